//! Messages steering an attempt's agent (`tidewright steer`): the worker
//! hands each one the control plane sends to the attempt's run, and a CLI
//! that reads its input while it runs (Claude Code's streaming input)
//! takes it into its session. A CLI that does not (Codex, Gemini CLI) is
//! stopped by the control plane for a message, or, for a follow-up, has
//! its session kept when its turn ends; the control plane resumes it with
//! the message.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{Mutex, mpsc, watch};

/// A person's message for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steer {
    pub message: String,
    pub from: String,
    /// Once the current turn ends rather than into it.
    pub follow_up: bool,
}

/// An attempt's messages as they come. A run takes them while it runs;
/// the next run of the same attempt (a verified step's next round) takes
/// those that came after.
#[derive(Clone)]
pub struct Steers(Arc<Mutex<mpsc::UnboundedReceiver<Steer>>>);

impl Steers {
    /// The way in (kept by the worker while the attempt runs) and the
    /// attempt's side.
    pub fn channel() -> (mpsc::UnboundedSender<Steer>, Steers) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Steers(Arc::new(Mutex::new(rx))))
    }

    /// The messages, held by one run at a time.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, mpsc::UnboundedReceiver<Steer>> {
        self.0.lock().await
    }

    /// Whether a follow-up came for a CLI that reads no input while it
    /// runs (taken here): its session is then kept at the turn's end, for
    /// the control plane resumes it with the message.
    pub async fn follow_up_came(&self) -> bool {
        let mut steers = self.lock().await;
        let mut came = false;
        while let Ok(steer) = steers.try_recv() {
            came |= steer.follow_up;
        }
        came
    }
}

impl Default for Steers {
    /// An attempt no message reaches (a check's, a setup's).
    fn default() -> Self {
        Steers::channel().1
    }
}

/// How far a run fed through its input has got: the messages it took
/// (echoed back as it takes them), the turns it ended, and whether the
/// last ended in an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub replayed: u32,
    pub results: u32,
    pub failed: bool,
}

/// What a CLI that reads its input while it runs is fed: its prompt, then
/// people's messages as they come, each as `encode` writes a message.
pub struct Input {
    pub prompt: String,
    pub encode: fn(&str) -> String,
    pub progress: watch::Receiver<Progress>,
    pub steers: Steers,
    /// Says a line in the step's log (a message written to the agent).
    pub log: Option<Box<dyn Fn(String) + Send + Sync>>,
}

/// Feeds the CLI: the prompt; each message into the turn under way as it
/// comes (a follow-up once the turn ends); and, once a turn has ended
/// with every message written taken and no follow-up left, or in an
/// error, closes the input, which ends the CLI's session.
pub async fn feed(mut stdin: ChildStdin, input: Input) {
    let Input {
        prompt,
        encode,
        mut progress,
        steers,
        log,
    } = input;
    let said = |steer: &Steer, when: &str| {
        if let Some(log) = &log {
            log(format!(
                "a message from {} for the agent, written {when}",
                steer.from
            ));
        }
    };
    let mut steers = steers.lock().await;
    let mut written = 0u32;
    let mut follow_ups = VecDeque::new();
    let mut ended = 0u32;
    let mut open = true;
    if stdin.write_all(encode(&prompt).as_bytes()).await.is_err() {
        return;
    }
    written += 1;
    loop {
        tokio::select! {
            steer = steers.recv(), if open => match steer {
                Some(steer) if steer.follow_up => follow_ups.push_back(steer),
                Some(steer) => {
                    if stdin.write_all(encode(&steer.message).as_bytes()).await.is_err() {
                        return;
                    }
                    written += 1;
                    said(&steer, "into the turn under way");
                }
                // The attempt is over for the worker.
                None => open = false,
            },
            changed = progress.changed() => {
                if changed.is_err() {
                    // Its stream is read no more: the run is over.
                    return;
                }
                let now = *progress.borrow_and_update();
                if now.results == ended {
                    continue;
                }
                ended = now.results;
                if now.failed {
                    return;
                }
                // A message written as the turn ended is taken in a turn
                // of its own: wait for it.
                if now.replayed < written {
                    continue;
                }
                match follow_ups.pop_front() {
                    Some(steer) => {
                        if stdin.write_all(encode(&steer.message).as_bytes()).await.is_err() {
                            return;
                        }
                        written += 1;
                        said(&steer, "as the next turn");
                    }
                    None => return,
                }
            }
        }
    }
}
