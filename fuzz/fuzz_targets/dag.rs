//! The DAG validator on graphs rather than text: small id alphabets make
//! duplicates, self-loops, unknown references and cycles common.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tidewright_core::{StepSpec, TaskSpec};

#[path = "common.rs"]
mod common;

#[derive(Debug, Arbitrary)]
struct Graph {
    steps: Vec<(u8, Vec<u8>)>,
}

fn id(n: u8) -> String {
    format!("s{}", n % 24)
}

fuzz_target!(|graph: Graph| {
    let steps = graph
        .steps
        .iter()
        .take(64)
        .map(|(n, deps)| {
            let mut step = StepSpec::shell(&id(*n), &["true"]);
            step.depends_on = deps.iter().take(8).map(|d| id(*d)).collect();
            step
        })
        .collect();
    common::check(&TaskSpec {
        name: "fuzz".into(),
        steps,
        ..TaskSpec::default()
    });
});
