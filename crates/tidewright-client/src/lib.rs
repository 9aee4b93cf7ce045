//! The Rust client of tidewright's control plane: connects from a context (the
//! CLI's config file, `TIDEWRIGHT_*` variables, or settings given outright) and
//! submits, waits on, watches, lists, cancels and retries tasks, and reads
//! and writes shared state. The `tidewright` CLI is a thin shell over it.
//!
//! A GitHub-bot style program: turn an issue into a task, once per issue
//! however often the webhook fires, and report how it went.
//!
//! ```
//! use futures::StreamExt;
//! use tidewright_client::{Client, Settings, Submit, v1};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // An embedded control plane and one worker, as `tidewright up` runs them.
//! # let dir = tempfile::tempdir()?;
//! # let control_plane = tidewright_server::start(tidewright_server::Config::new(
//! #     "127.0.0.1:0".parse()?, dir.path().to_path_buf())).await?;
//! # let server = format!("http://{}", control_plane.local_addr);
//! # let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).map(|t| t.trim().to_string());
//! # let (token, worker_token) = (read("admin.token")?, read("worker.token")?);
//! # let mut worker = tidewright_worker::WorkerConfig::new(server.clone(), "doc", dir.path().join("work"));
//! # worker.token = Some(worker_token);
//! # let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # let worker = tokio::spawn(tidewright_worker::run(worker, async move { let _ = stopped.await; }));
//! let client = Client::connect(Settings::new(server, Some(token))).await?;
//!
//! let spec = tidewright_client::parse_task(r#"
//!   name: issue-42
//!   labels: {repo: tidewright}
//!   steps:
//!     - id: reproduce
//!       shell: {command: [sh, -c, "echo reproduced issue 42"]}
//! "#)?;
//! // The same key gives the same task, however often this runs.
//! let task = client.submit_and_wait(Submit::new(spec).idempotency_key("gh-issue-42")).await?;
//! assert_eq!(task.state, v1::TaskState::Succeeded as i32);
//!
//! let again = client.submit(Submit::from(tidewright_client::parse_task(
//!     "name: issue-42\nsteps:\n  - id: reproduce\n    shell: {command: [true]}\n")?)
//!     .idempotency_key("gh-issue-42")).await?;
//! assert_eq!((again.task_id.as_str(), again.created), (task.id.as_str(), false));
//!
//! // Every event, in order; the stream resumes by itself if the connection
//! // breaks, and ends with the task.
//! let mut events = client.watch(&task.id);
//! while let Some(event) = events.next().await {
//!     if let Some(v1::event::Kind::Log(log)) = event?.kind {
//!         println!("{} | {}", log.step_id, log.line);
//!     }
//! }
//!
//! // A refusal keeps its gRPC code and names the field at fault.
//! let bad = tidewright_client::parse_task("name: bad\nsteps: []\n")?;
//! let refused = client.submit(bad).await.unwrap_err();
//! assert_eq!(refused.code(), Some(tonic::Code::InvalidArgument));
//! assert_eq!(refused.field(), Some("spec.steps"));
//! # let _ = stop.send(());
//! # worker.await??;
//! # control_plane.stop().await?;
//! # Ok(())
//! # }
//! ```

// The client first: its `retried!` is for the calls after it.
#[macro_use]
mod client;
mod config;
mod decisions;
mod error;
mod producer;
mod schedules;
mod seeds;
mod state;
mod stubs;
mod triggers;
mod watch;
mod webhooks;

pub use crate::client::{
    Client, EventStream, RETRY_UNAVAILABLE, Submit, Submitted, TaskStream, TemplateRun, load_task,
    parse_task,
};
pub use crate::config::{
    ConfigFile, Context, DEFAULT_SERVER, LOCAL_ADMIN_TOKEN, Overrides, Settings, default_path,
    load as load_config, save as save_config,
};
pub use crate::decisions::Decision;
pub use crate::error::{Error, FIELD_METADATA, code_name};
pub use crate::producer::{Batching, MAX_BATCH, Producer};
pub use crate::stubs::{AgentStub, StateStub, TaskStub};
pub use crate::watch::{WatchOptions, is_final};
pub use tidewright_api::client::ClientTls;
pub use tidewright_api::v1;
pub use tidewright_core::TaskSpec;

pub use crate::state::StateKey;
