//! A task's family as the store holds it: every descendant a task read
//! back (or retried) has, with what each spent, so the engine charges its
//! budget with what finished children spent before it forgot them (see
//! `family`).

use std::collections::HashMap;

use tidewright_core::Cost;
use tidewright_core::family::PARENT_LABEL;
use tidewright_store::{Store, TaskQuery, TaskRecord, Unfinished};

/// How deep the store is searched for a task's descendants: past any
/// depth `--max-child-depth` allows, so only a broken store stops it.
const KIN_DEPTH: usize = 64;
/// How many of a task's children one store read takes.
const KIN_PAGE: usize = 500;

/// What each task read back has in its family as the store holds it:
/// every descendant's id and what it has spent.
pub(crate) type StoredKin = HashMap<String, Vec<(String, Cost)>>;

/// Reads the descendants of each task among `tasks` (see [`stored_family`]).
pub(crate) async fn stored_kin(
    store: &dyn Store,
    tasks: &[Unfinished],
) -> tidewright_store::Result<StoredKin> {
    let mut kin = StoredKin::default();
    for task in tasks {
        if let Unfinished::Whole(task) = task {
            let family = stored_family(store, task).await?;
            if !family.is_empty() {
                kin.insert(task.id.clone(), family);
            }
        }
    }
    Ok(kin)
}

/// Every descendant of `task` and what it spent, as the store has them,
/// when `task` has a budget and has run a step (only a step submits a
/// child; only a budget is charged with what children spend), so a queued
/// backlog costs no read.
pub(crate) async fn stored_family(
    store: &dyn Store,
    task: &TaskRecord,
) -> tidewright_store::Result<Vec<(String, Cost)>> {
    let mut family = Vec::new();
    if task.spec.budget.is_none() || task.steps.iter().all(|s| s.attempt == 0) {
        return Ok(family);
    }
    let mut parents = vec![task.id.clone()];
    for _ in 0..KIN_DEPTH {
        let mut children = Vec::new();
        for parent in &parents {
            let mut before_id = None;
            loop {
                let page = store
                    .list_tasks(TaskQuery {
                        labels: vec![(PARENT_LABEL.to_string(), parent.clone())],
                        page_size: KIN_PAGE,
                        before_id,
                        ..TaskQuery::default()
                    })
                    .await?;
                let full = page.len() == KIN_PAGE;
                before_id = page.last().map(|t| t.id.clone());
                for child in page {
                    children.push(child.id.clone());
                    family.push((child.id, child.cost));
                }
                if !full {
                    break;
                }
            }
        }
        if children.is_empty() {
            break;
        }
        parents = children;
    }
    Ok(family)
}
