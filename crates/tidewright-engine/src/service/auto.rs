//! `runtimes: auto` at submit: each such step's runtime chosen from the
//! outcomes kept on the task's repository for its tenant (see
//! [`tidewright_core::auto`]), before its attempts and reviewer are put
//! in place.

use std::collections::HashSet;

use tidewright_core::TaskSpec;
use tidewright_core::attempts::score::{ATTEMPTS_LABEL, Score, standings};
use tidewright_core::auto::{self, Asked, Ran};
use tidewright_core::eval::{EVALS_LABEL, REPO_LABEL};
use tidewright_store::{StepRecord, TaskQuery, TaskRecord};

use super::Context;
use crate::error::Error;

/// The newest tasks of each kind (with attempts; of evals on the
/// repository) read for a choice: enough to stand on, few enough that a
/// submit stays quick.
const KEPT_READ: usize = 100;

impl Context {
    /// Chooses the runtime of each step of `spec` with `runtimes: auto`,
    /// from the outcomes kept on its repository for `tenant`.
    pub(super) async fn choose_runtimes(
        &self,
        spec: &mut TaskSpec,
        tenant: &str,
    ) -> Result<(), Error> {
        if spec.steps.iter().all(|s| s.runtimes.is_none()) {
            return Ok(());
        }
        let Some(repo) = spec
            .repo
            .as_ref()
            .map(|r| tidewright_core::repo::key(&r.url))
        else {
            // Validation asks for a repo with `runtimes: auto`.
            return Ok(());
        };
        let scores: Vec<Score> = self
            .kept_scores(tenant, &repo)
            .await?
            .into_iter()
            .filter(|s| s.repo == repo)
            .collect();
        let standings = standings(&scores);
        let budget_usd = spec.budget.as_ref().and_then(|b| b.usd);
        for step in spec.steps.iter_mut().filter(|s| s.runtimes.is_some()) {
            let own = step.agent_capability().unwrap_or_default().to_string();
            let mut unusable = Vec::new();
            for standing in &standings {
                let runtime = &standing.runtime;
                if step.review.as_ref().is_some_and(|r| &r.runtime == runtime) {
                    unusable.push((runtime.clone(), "it reviews the step".to_string()));
                    continue;
                }
                let needs = tidewright_core::queue::capabilities(
                    &step.on_runtime(runtime).required_capabilities(),
                );
                if self.engine.unserved(&needs).is_some() {
                    unusable.push((runtime.clone(), "no connected worker runs it".to_string()));
                }
            }
            let asked = Asked {
                own: &own,
                tries: step.attempts.as_ref().map_or(1, |a| a.n),
                budget_usd,
                unusable,
            };
            auto::apply(step, auto::choose(&standings, &asked));
        }
        Ok(())
    }

    /// The scores of the tasks kept for `tenant` that may hold outcomes on
    /// the repository keyed `repo`: the newest with attempts (on any
    /// repository: their repository is in their spec), and the newest of
    /// evals on it.
    async fn kept_scores(&self, tenant: &str, repo: &str) -> Result<Vec<Score>, Error> {
        let queries = [
            vec![(ATTEMPTS_LABEL.to_string(), "true".to_string())],
            vec![
                (EVALS_LABEL.to_string(), "true".to_string()),
                (REPO_LABEL.to_string(), repo.to_string()),
            ],
        ];
        let mut seen = HashSet::new();
        let mut scores = Vec::new();
        for labels in queries {
            let listed = self
                .store
                .list_tasks(TaskQuery {
                    labels,
                    page_size: KEPT_READ,
                    tenants: Some(vec![tenant.to_string()]),
                    ..TaskQuery::default()
                })
                .await?;
            for listed in listed {
                // An eval's task with attempts carries both labels.
                if !seen.insert(listed.id.clone()) {
                    continue;
                }
                // A listing leaves a task's steps out.
                if let Some(task) = self.store.get_task(&listed.id).await? {
                    scores.extend(scores_of(&task));
                }
            }
        }
        Ok(scores)
    }
}

/// A kept task's scores, from its steps as the store keeps them.
fn scores_of(task: &TaskRecord) -> Vec<Score> {
    let ran = |step: &StepRecord| Ran {
        passed: step.state == tidewright_core::StepState::Succeeded,
        head: step.work.as_ref().map(|w| w.head_commit.clone()),
        usd: step.cost.usd,
        millis: match (step.attempts.first(), step.attempts.last()) {
            (Some(first), Some(last)) if last.finished_at > first.started_at => {
                ((last.finished_at - first.started_at) / 1000) as u64
            }
            _ => 0,
        },
    };
    auto::scores_of(&task.spec, |id| {
        task.steps.iter().find(|s| s.id == id).map(ran)
    })
}
