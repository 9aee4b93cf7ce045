//! tidewright's domain: task and step specs, DAG validation, the task state machine
//! and the scheduling queue. Pure logic, no I/O, so every rule is unit-tested.

pub mod address;
pub mod attempts;
pub mod auto;
pub mod budget;
pub mod build;
pub mod calendar;
pub mod cost;
pub mod cost_sums;
pub mod credential;
pub mod egress;
mod error;
pub mod eval;
pub mod failover;
pub mod family;
pub mod jitter;
pub mod plan;
pub mod queue;
pub mod replay;
pub mod repo;
pub mod review;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod session_item;
pub mod setup;
pub mod share;
pub mod spec;
pub mod state;
pub mod steer;
pub mod step_limits;
pub mod template;
mod text;
pub mod touches;
pub mod trigger;
pub mod unserved;
pub mod validate;
pub mod verify;

pub use budget::{Budget, Exhausted, TenantBudget, TenantSpend, Window};
pub use cost::Cost;
pub use egress::Egress;
pub use error::Error;
pub use queue::{Capabilities, QueueKey, ReadyQueue};
pub use repo::{RepoSpec, StepWork};
pub use run::{Change, Outcome, StepStatus, TaskRun};
pub use share::TenantShare;
pub use spec::{
    AGENT_CAPABILITIES, AgentSpec, ApprovalSpec, CLAUDE_CODE, CODEX, ClaudeCodeSpec, CodexSandbox,
    CodexSpec, DEFAULT_AGENT_STALL_SECONDS, GEMINI_CLI, GeminiSpec, NoopSpec, OnConflict,
    PROMPT_STEP, PermissionMode, QWEN_CODE, QueueView, RetryPolicy, Runtime, ShellSpec, StepSpec,
    TaskSpec, UNSANDBOXED, is_agent_capability,
};
pub use state::{AttemptKey, Event, EventKind, LogStream, Micros, StepState, TaskState};
pub use step_limits::StepLimits;
pub use text::{hex, human_bytes, last_bytes, truncate_at_char_boundary};
pub use validate::{Limits, validate};
pub use verify::{CheckResult, CheckSpec, Verification, VerifySpec};
