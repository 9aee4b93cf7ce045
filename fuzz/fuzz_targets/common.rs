//! What every target checks of a spec that parsed: validation never panics,
//! and a spec it accepts runs to the end when every step succeeds.

use tidewright_core::{Limits, Outcome, TaskRun, TaskSpec, TaskState, validate};

pub fn check(spec: &TaskSpec) {
    if validate(spec, &Limits::default()).is_err() {
        return;
    }
    // An accepted spec is a DAG: running ready steps until none is left
    // must start every step exactly once and end in success.
    let (mut run, _) = TaskRun::new(spec);
    let mut started = vec![false; spec.steps.len()];
    loop {
        let ready: Vec<usize> = run.queued().collect();
        if ready.is_empty() {
            break;
        }
        for index in ready {
            assert!(!started[index], "step {index} started twice");
            started[index] = true;
            run.start(index).expect("a queued step starts");
            run.finish(index, Outcome::Succeeded)
                .expect("a running step finishes");
        }
    }
    assert!(started.iter().all(|s| *s), "a step never became ready");
    assert_eq!(run.state(), TaskState::Succeeded);
}
