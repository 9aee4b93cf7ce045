//! The conformance suite: what every [`Store`] backend must do, as test
//! functions generic over the backend. A backend's tests instantiate all of
//! them with [`conformance_suite!`](crate::conformance_suite), giving a
//! [`Backend`] that opens the store under test:
//!
//! ```text
//! tidewright_store::conformance_suite!(SqliteBackend::new());
//! ```

mod events;
mod retention;
mod schedules;
mod state;
mod steps;
mod tasks;
mod triggers;
mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use tidewright_core::{
    Budget, Cost, Event, EventKind, LogStream, Micros, StepSpec, StepState, TaskSpec, TaskState,
    TenantBudget, TenantShare,
};

pub use events::*;
pub use retention::*;
pub use schedules::*;
pub use state::*;
pub use steps::*;
pub use tasks::*;
pub use triggers::*;
pub use webhooks::*;

use crate::webhooks::{Delivery, DeliveryQuery, DeliveryState, TaskPush, Webhook};
use crate::{
    AttemptWrite, AuditRecord, Checkpoint, Created, Error, Expect, NewTask, QueuedTask,
    StateChange, StateKey, StateOutcome, StateQuery, StateScope, StepBranch, StepWrite, Store,
    TaskQuery, TaskWrite, Unfinished, Write,
};

/// The store under test, as a backend's tests provide it.
#[async_trait]
pub trait Backend: Send {
    /// Opens the store: empty the first time; after every handle to it was
    /// dropped, again with what was committed before (a restart).
    async fn open(&mut self) -> Arc<dyn Store>;
}

/// One `#[tokio::test]` per function of the suite, each with its own
/// backend from `$backend` (an expression evaluated per test).
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_suite!(@tests $backend;
            created_tasks_read_back_with_their_steps_and_events,
            idempotency_keys_find_the_first_task_within_a_tenant,
            writes_commit_in_the_order_they_were_handed_over,
            events_replay_after_any_sequence_number,
            interleaved_events_of_one_write_read_back_one_by_one,
            attempts_are_kept_in_order_and_the_running_one_is_known,
            costs_add_up_per_step_and_task_in_reads_and_listings,
            state_compares_and_sets_by_version_and_expires,
            listings_filter_by_tenant_state_and_label_and_page_newest_first,
            a_failing_write_fails_alone_as_a_conflict,
            audit_records_are_numbered_in_order_and_kept_per_tenant,
            everything_committed_survives_a_reopen,
            unfinished_tasks_are_listed_by_id_and_read_back_a_range_at_a_time,
            the_fleet_sees_every_event_but_log_lines_and_session_items_in_commit_order_and_resumes,
            a_scope_lists_its_live_values_in_key_order_a_page_at_a_time,
            a_step_awaiting_approval_keeps_its_deadline_until_it_is_cleared,
            a_steps_work_on_its_repository_reads_back_until_it_is_cleared,
            budgets_shares_and_spend_per_tenant_are_kept_and_a_paused_task_is_unfinished,
            cost_sums_add_up_per_day_and_key_and_old_days_go,
            a_step_keeps_its_current_attempts_newest_checkpoint_until_its_task_expires,
            a_step_keeps_its_current_attempts_branch_until_its_task_expires,
            webhooks_their_deliveries_and_the_cursor_are_kept_and_listed,
            schedules_are_kept_replaced_and_removed,
            triggers_are_kept_replaced_and_removed_with_their_replies_owed,
            a_task_written_with_its_first_dispatch_is_made_in_that_commit,
            finished_tasks_expire_by_their_own_their_tenants_or_the_default_window,
            an_expired_task_goes_with_everything_of_it_and_leaves_a_record,
            a_task_reopened_since_it_was_found_is_not_removed,
            history_is_trimmed_by_age_a_batch_at_a_time,
        );
    };
    (@tests $backend:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::conformance::$test($backend).await;
            }
        )*
    };
}

/// A two-step task (`a`, then `b`) in `tenant`, created queued with its
/// first event.
pub fn new_task(id: &str, tenant: &str, key: Option<&str>) -> NewTask {
    NewTask {
        id: id.to_string(),
        tenant: tenant.to_string(),
        spec: TaskSpec {
            name: format!("task {id}"),
            steps: vec![StepSpec::noop("a"), StepSpec::noop("b").after(&["a"])],
            ..TaskSpec::default()
        },
        idempotency_key: key.map(str::to_string),
        created_at: 1,
        state: TaskState::Queued,
        message: String::new(),
        plan_json: String::new(),
        trace_context: String::new(),
        step_states: vec![StepState::Queued, StepState::Waiting],
        events: vec![event(id, 1, TaskState::Queued)],
        audit: None,
    }
}

pub(crate) fn event(task_id: &str, seq: u64, state: TaskState) -> Event {
    Event {
        task_id: task_id.to_string(),
        seq,
        at: seq as i64,
        kind: EventKind::TaskState {
            state,
            message: String::new(),
        },
    }
}

/// The events of tasks `t1` and `t2` in one write, interleaved, as
/// (task, number).
pub const INTERLEAVED: [(&str, u64); 5] = [("t1", 2), ("t2", 2), ("t1", 3), ("t2", 3), ("t1", 4)];

/// Creates tasks `t1` and `t2` in `store`, then writes their events in
/// one write, interleaved (`INTERLEAVED`): a backend's own test reads the
/// rows they made.
pub async fn write_interleaved(store: &dyn Store) {
    create(
        store,
        vec![
            new_task("t1", "default", None),
            new_task("t2", "default", None),
        ],
    )
    .await;
    let events = INTERLEAVED.iter();
    let writes = events.map(|(task, seq)| Write::Event(event(task, *seq, TaskState::Running)));
    commit(store, writes.collect()).await;
}

fn log(task_id: &str, seq: u64, line: &str) -> Event {
    Event {
        task_id: task_id.to_string(),
        seq,
        at: seq as i64,
        kind: EventKind::Log {
            step: "a".into(),
            attempt: 1,
            stream: LogStream::Stdout,
            line: line.into(),
        },
    }
}

/// An item of an agent's session: like a log line, its task's own.
fn said(task_id: &str, seq: u64, text: &str) -> Event {
    Event {
        task_id: task_id.to_string(),
        seq,
        at: seq as i64,
        kind: EventKind::SessionItem {
            step: "a".into(),
            attempt: 1,
            item: tidewright_core::session_item::SessionItem::Text { text: text.into() },
            usd: 0.5,
        },
    }
}

pub(crate) fn step(task_id: &str, step_id: &str) -> StepWrite {
    StepWrite {
        task_id: task_id.into(),
        step_id: step_id.into(),
        ..StepWrite::default()
    }
}

pub(crate) fn attempt(task_id: &str, step_id: &str, attempt: u32) -> AttemptWrite {
    AttemptWrite {
        task_id: task_id.into(),
        step_id: step_id.into(),
        attempt,
        ..AttemptWrite::default()
    }
}

pub(crate) async fn commit(store: &dyn Store, writes: Vec<Write>) {
    store
        .write(writes)
        .await
        .expect("an answer")
        .expect("committed");
}

pub async fn create(store: &dyn Store, tasks: Vec<NewTask>) -> Vec<Created> {
    store.create_tasks(tasks).await.expect("created")
}

/// The store `backend` opens, with a new task of tenant `default` for
/// each of `ids`.
pub(crate) async fn with_tasks(backend: &mut impl Backend, ids: &[&str]) -> Arc<dyn Store> {
    let store = backend.open().await;
    let tasks = ids.iter().map(|id| new_task(id, "default", None)).collect();
    create(&*store, tasks).await;
    store
}

fn page(size: usize) -> TaskQuery {
    TaskQuery {
        page_size: size,
        ..TaskQuery::default()
    }
}

fn ids(tasks: &[crate::TaskRecord]) -> Vec<&str> {
    tasks.iter().map(|t| t.id.as_str()).collect()
}
