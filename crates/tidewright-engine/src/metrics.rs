//! The control plane's Prometheus metrics. Counters and histograms move as
//! the engine works; the gauges (queue depth, workers, slots) are read from
//! the engine when scraped, so they are never stale.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tidewright_core::TaskState;
use tidewright_core::calendar::now_micros;

use crate::activity::{Activity, Ended, Happened, MinuteSummary};
use crate::handle::FleetNow;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    tasks_submitted: Counter,
    tasks_finished: Family<Labels, Counter>,
    attempts_started: Counter,
    attempts_finished: Family<Labels, Counter>,
    dispatch_latency: Histogram,
    /// The same, by tenant: how each fares in the fair share.
    tenant_wait: Family<Labels, Histogram, fn() -> Histogram>,
    tenant_waiting: Family<Labels, Gauge>,
    tenant_running: Family<Labels, Gauge>,
    step_duration: Histogram,
    agent_cost: Family<Labels, Counter<f64, AtomicU64>>,
    agent_tokens: Family<Labels, Counter>,
    cost_usd: Family<Labels, Counter<f64, AtomicU64>>,
    cost_tokens: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    approvals: Family<Labels, Counter>,
    rate_limits: Family<Labels, Counter>,
    failovers: Family<Labels, Counter>,
    pools_paused: Gauge,
    agents_paused: Family<Labels, Gauge>,
    budget_pauses: Family<Labels, Counter>,
    touches_exceeded: Counter,
    verify_rounds: Family<Labels, Counter>,
    verify_failures: Family<Labels, Counter>,
    rounds_per_step: Histogram,
    landings: Family<Labels, Counter>,
    time_to_land: Histogram,
    landing_wait: Histogram,
    landing_queue: Family<Labels, Gauge>,
    landing_fixes: Counter,
    pull_request_fixes: Counter,
    awaiting_approval: Gauge,
    workers: Gauge,
    slots: Gauge,
    slots_busy: Gauge,
    /// The last hour per tenant, for the console.
    activity: Mutex<Activity>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tidewright");
        let metrics = Metrics {
            tasks_submitted: Counter::default(),
            tasks_finished: Family::default(),
            attempts_started: Counter::default(),
            attempts_finished: Family::default(),
            // 100 µs to ~52 s.
            dispatch_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            tenant_wait: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 20))
            }),
            tenant_waiting: Family::default(),
            tenant_running: Family::default(),
            // 10 ms to ~3 h.
            step_duration: Histogram::new(exponential_buckets(0.01, 2.0, 21)),
            agent_cost: Family::default(),
            agent_tokens: Family::default(),
            cost_usd: Family::default(),
            cost_tokens: Family::default(),
            queue_depth: Family::default(),
            approvals: Family::default(),
            rate_limits: Family::default(),
            failovers: Family::default(),
            pools_paused: Gauge::default(),
            agents_paused: Family::default(),
            budget_pauses: Family::default(),
            touches_exceeded: Counter::default(),
            verify_rounds: Family::default(),
            verify_failures: Family::default(),
            // 1 to 21 rounds: one bucket each.
            rounds_per_step: Histogram::new((1..=21).map(f64::from)),
            landings: Family::default(),
            // 10 ms to ~3 h.
            time_to_land: Histogram::new(exponential_buckets(0.01, 2.0, 21)),
            // 10 ms to ~3 h.
            landing_wait: Histogram::new(exponential_buckets(0.01, 2.0, 21)),
            landing_queue: Family::default(),
            landing_fixes: Counter::default(),
            pull_request_fixes: Counter::default(),
            awaiting_approval: Gauge::default(),
            workers: Gauge::default(),
            slots: Gauge::default(),
            slots_busy: Gauge::default(),
            activity: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tasks_submitted",
            "Tasks created by submits",
            metrics.tasks_submitted.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks that reached a final state, by state",
            metrics.tasks_finished.clone(),
        );
        registry.register(
            "step_attempts_started",
            "Step attempts given to a worker",
            metrics.attempts_started.clone(),
        );
        registry.register(
            "step_attempts_finished",
            "Step attempts that ended, by outcome (succeeded, failed, stalled, rate_limited, budget, requeued, cancelled, lost)",
            metrics.attempts_finished.clone(),
        );
        registry.register(
            "dispatch_latency_seconds",
            "From a step being ready to its attempt being given to a worker",
            metrics.dispatch_latency.clone(),
        );
        registry.register(
            "tenant_wait_seconds",
            "From a step being ready to its attempt being given to a worker, by tenant",
            metrics.tenant_wait.clone(),
        );
        registry.register(
            "tenant_steps_waiting",
            "Ready steps waiting for a worker, by tenant",
            metrics.tenant_waiting.clone(),
        );
        registry.register(
            "tenant_steps_running",
            "Steps running on workers, by tenant",
            metrics.tenant_running.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long step attempts ran, as their workers reported",
            metrics.step_duration.clone(),
        );
        registry.register(
            "agent_cost_usd",
            "What agent steps cost, by model, as their CLI priced it",
            metrics.agent_cost.clone(),
        );
        registry.register(
            "agent_tokens",
            "Tokens agent steps used, by model and kind",
            metrics.agent_tokens.clone(),
        );
        registry.register(
            "cost_usd",
            "What attempts cost, as the cost sums add it, by tenant, repository, runtime, model and template",
            metrics.cost_usd.clone(),
        );
        registry.register(
            "cost_tokens",
            "Tokens attempts used, as the cost sums add them, by tenant, repository, runtime, model, template and kind",
            metrics.cost_tokens.clone(),
        );
        registry.register(
            "queue_depth",
            "Steps waiting for a worker, by the capabilities they need",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "approvals",
            "Decisions on steps' approval gates, by decision (approved, rejected, timed_out)",
            metrics.approvals.clone(),
        );
        registry.register(
            "rate_limits",
            "Agent runs stopped by a provider limit, by pool and agent runtime (claude-code, codex, gemini-cli); each pauses that runtime's agents of the pool",
            metrics.rate_limits.clone(),
        );
        registry.register(
            "failovers",
            "Agent steps moved to a fallback runtime while a provider limit paused their own, by the runtime left and the one taken",
            metrics.failovers.clone(),
        );
        registry.register(
            "pools_paused",
            "Pools some of whose agents a provider limit has paused now",
            metrics.pools_paused.clone(),
        );
        registry.register(
            "agents_paused",
            "1 for each pool and agent runtime a provider limit has paused now",
            metrics.agents_paused.clone(),
        );
        registry.register(
            "budget_pauses",
            "Tasks paused because a budget was spent, by budget (task, tenant)",
            metrics.budget_pauses.clone(),
        );
        registry.register(
            "steps_outside_touches",
            "Step attempts that changed paths their step's touches do not name",
            metrics.touches_exceeded.clone(),
        );
        registry.register(
            "verify_rounds",
            "Verified steps' rounds of checks, by outcome (passed, sent_back, failed)",
            metrics.verify_rounds.clone(),
        );
        registry.register(
            "verify_failures",
            "What failed verified steps' rounds, by kind (check, protected, rubric, same_failure, rounds_spent, no_checks, not_graded)",
            metrics.verify_failures.clone(),
        );
        registry.register(
            "verify_rounds_per_step",
            "The rounds a verified step took, when it passed or failed for good",
            metrics.rounds_per_step.clone(),
        );
        registry.register(
            "landings",
            "Tasks' landings on their base through its queue, by outcome (landed, conflict, checks_failed; split: a batch whose checks failed, split to find the task that broke it)",
            metrics.landings.clone(),
        );
        registry.register(
            "time_to_land_seconds",
            "From a task's making to its landing on its base",
            metrics.time_to_land.clone(),
        );
        registry.register(
            "landing_wait_seconds",
            "From a landing task's deliver step being ready to its turn on its base",
            metrics.landing_wait.clone(),
        );
        registry.register(
            "landing_fix_rounds",
            "Failed landings sent back to the agent whose work it is, to fix and land again",
            metrics.landing_fixes.clone(),
        );
        registry.register(
            "pull_request_fix_rounds",
            "Failed checks and requested changes on followed pull requests sent back to the agent whose work it is",
            metrics.pull_request_fixes.clone(),
        );
        registry.register(
            "landing_queue_depth",
            "Tasks landing on a base or waiting their turn there, by repository and base",
            metrics.landing_queue.clone(),
        );
        registry.register(
            "steps_awaiting_approval",
            "Steps waiting for an approver's decision now",
            metrics.awaiting_approval.clone(),
        );
        registry.register(
            "workers_connected",
            "Workers connected",
            metrics.workers.clone(),
        );
        registry.register(
            "worker_slots",
            "Slots of the connected workers",
            metrics.slots.clone(),
        );
        registry.register(
            "worker_slots_busy",
            "Slots running a step",
            metrics.slots_busy.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn task_submitted(&self, tenant: &str) {
        self.tasks_submitted.inc();
        self.record(tenant, Happened::Submitted);
    }

    pub fn task_finished(&self, tenant: &str, state: TaskState) {
        self.tasks_finished
            .get_or_create(&vec![("state", state.as_str().to_string())])
            .inc();
        let ended = match state {
            TaskState::Succeeded => Ended::Succeeded,
            TaskState::Cancelled => Ended::Cancelled,
            _ => Ended::Failed,
        };
        self.record(tenant, Happened::Finished(ended));
    }

    pub fn attempt_started(&self, tenant: &str, waited_seconds: f64) {
        self.attempts_started.inc();
        self.dispatch_latency.observe(waited_seconds.max(0.0));
        self.tenant_wait
            .get_or_create(&vec![("tenant", tenant.to_string())])
            .observe(waited_seconds.max(0.0));
        self.record(tenant, Happened::Dispatched { waited_seconds });
    }

    /// An attempt ended: `outcome` is succeeded, failed, cancelled or lost;
    /// `ran_seconds` is known for attempts that reported.
    pub fn attempt_finished(&self, outcome: &str, ran_seconds: Option<f64>) {
        self.attempts_finished
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        if let Some(seconds) = ran_seconds {
            self.step_duration.observe(seconds.max(0.0));
        }
    }

    /// A verified step's round ended as `outcome` (passed, sent_back,
    /// failed), for the `failures` it names; `ended` is its round number
    /// when the step is done with rounds.
    pub fn verify_round(&self, outcome: &str, failures: &[&str], ended: Option<u32>) {
        self.verify_rounds
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        for kind in failures {
            self.verify_failures
                .get_or_create(&vec![("kind", kind.to_string())])
                .inc();
        }
        if let Some(rounds) = ended {
            self.rounds_per_step.observe(f64::from(rounds));
        }
    }

    /// A task's landing ended in `outcome`; `took`: the seconds from its
    /// making, when it landed.
    pub fn landing(&self, outcome: &str, took: Option<f64>) {
        self.landings
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        if let Some(seconds) = took {
            self.time_to_land.observe(seconds);
        }
    }

    /// A failed landing was sent back to its agent to fix.
    pub fn landing_sent_back(&self) {
        self.landing_fixes.inc();
    }

    /// A followed pull request's failure was sent back to its agent.
    pub fn pull_request_sent_back(&self) {
        self.pull_request_fixes.inc();
    }

    /// A landing task's deliver step took its turn on its base, `waited`
    /// seconds after it was ready.
    pub fn landing_turn(&self, waited: f64) {
        self.landing_wait.observe(waited);
    }

    /// A step began to wait for approval (or, after a restart, is found
    /// waiting).
    pub fn approval_waiting(&self) {
        self.awaiting_approval.inc();
    }

    /// A step's attempt changed paths its `touches` do not name.
    pub fn touches_exceeded(&self) {
        self.touches_exceeded.inc();
    }

    /// A step stopped waiting for approval, however that ended.
    pub fn approval_left(&self) {
        self.awaiting_approval.dec();
    }

    /// A provider limit paused `pool`'s agents of the `runtime`.
    /// A step moved from agent runtime `from` to its fallback `to`.
    pub fn failed_over(&self, from: &str, to: &str) {
        self.failovers
            .get_or_create(&vec![("from", from.to_string()), ("to", to.to_string())])
            .inc();
    }

    pub fn rate_limited(&self, pool: &str, runtime: &str) {
        self.rate_limits
            .get_or_create(&vec![
                ("pool", pool.to_string()),
                ("runtime", runtime.to_string()),
            ])
            .inc();
    }

    /// A spent budget paused a task; `budget`: task or tenant.
    pub fn budget_paused(&self, budget: &str) {
        self.budget_pauses
            .get_or_create(&vec![("budget", budget.to_string())])
            .inc();
    }

    /// `decision`: approved, rejected or timed_out.
    pub fn approval_decided(&self, _tenant: &str, decision: &str) {
        self.approvals
            .get_or_create(&vec![("decision", decision.to_string())])
            .inc();
    }

    pub fn agent_spent(&self, tenant: &str, model: &str, cost: &tidewright_core::Cost) {
        let model = if model.is_empty() { "unknown" } else { model };
        self.record(tenant, Happened::Spent { model, cost: *cost });
        self.agent_cost
            .get_or_create(&vec![("model", model.to_string())])
            .inc_by(cost.usd.max(0.0));
        for (kind, tokens) in [
            ("input", cost.input_tokens),
            ("output", cost.output_tokens),
            ("cache_read", cost.cache_read_tokens),
            ("cache_creation", cost.cache_creation_tokens),
        ] {
            self.agent_tokens
                .get_or_create(&vec![
                    ("model", model.to_string()),
                    ("kind", kind.to_string()),
                ])
                .inc_by(tokens);
        }
    }

    /// An attempt's cost, added to its day's sum: counted by the sum's
    /// key but the day (Prometheus keeps the time).
    pub fn cost_summed(
        &self,
        key: &tidewright_core::cost_sums::CostKey,
        cost: &tidewright_core::Cost,
    ) {
        let labels: Labels = vec![
            ("tenant", key.tenant.clone()),
            ("repo", key.repo.clone()),
            ("runtime", key.runtime.clone()),
            ("model", key.model.clone()),
            ("template", key.template.clone()),
        ];
        self.cost_usd
            .get_or_create(&labels)
            .inc_by(cost.usd.max(0.0));
        for (kind, tokens) in [
            ("input", cost.input_tokens),
            ("output", cost.output_tokens),
            ("cache_read", cost.cache_read_tokens),
            ("cache_creation", cost.cache_creation_tokens),
        ] {
            let mut labels = labels.clone();
            labels.push(("kind", kind.to_string()));
            self.cost_tokens.get_or_create(&labels).inc_by(tokens);
        }
    }

    fn record(&self, tenant: &str, what: Happened<'_>) {
        self.activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now_micros(), tenant, what);
    }

    /// The last hour, minute by minute, of `tenants` (all when `None`).
    pub fn activity(&self, tenants: Option<&[String]>) -> Vec<MinuteSummary> {
        self.activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(now_micros(), tenants)
    }

    /// The text exposition, with the gauges set from `now`.
    pub fn render(&self, now: &FleetNow) -> String {
        self.queue_depth.clear();
        for depth in &now.queue {
            let needs: Vec<&str> = depth.needs.iter().map(String::as_str).collect();
            self.queue_depth
                .get_or_create(&vec![("capabilities", needs.join(","))])
                .set(i64::try_from(depth.queued).unwrap_or(i64::MAX));
        }
        for (family, counts) in [
            (&self.tenant_waiting, &now.waiting_by_tenant),
            (&self.tenant_running, &now.running_by_tenant),
        ] {
            family.clear();
            for (tenant, n) in counts {
                family
                    .get_or_create(&vec![("tenant", tenant.clone())])
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        self.landing_queue.clear();
        for queue in &now.landings {
            self.landing_queue
                .get_or_create(&vec![
                    ("repo", queue.repo.clone()),
                    ("base", queue.base.clone()),
                ])
                .set(i64::try_from(queue.tasks.len()).unwrap_or(i64::MAX));
        }
        self.workers.set(now.workers.len() as i64);
        let paused: std::collections::BTreeSet<&str> = now
            .workers
            .iter()
            .filter(|w| w.paused.is_some())
            .map(|w| w.info.pool.as_str())
            .collect();
        self.pools_paused.set(paused.len() as i64);
        self.agents_paused.clear();
        for (pool, runtime) in &now.paused_agents {
            self.agents_paused
                .get_or_create(&vec![("pool", pool.clone()), ("runtime", runtime.clone())])
                .set(1);
        }
        self.slots
            .set(now.workers.iter().map(|w| i64::from(w.info.slots)).sum());
        self.slots_busy
            .set(now.workers.iter().map(|w| w.running as i64).sum());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.task_submitted("default");
        metrics.task_finished("default", TaskState::Succeeded);
        metrics.attempt_started("default", 0.002);
        metrics.attempt_finished("failed", Some(1.5));
        metrics.agent_spent(
            "default",
            "claude-test",
            &tidewright_core::Cost {
                usd: 0.25,
                input_tokens: 100,
                ..tidewright_core::Cost::default()
            },
        );
        metrics.rate_limited("agents", "codex");
        metrics.landing_turn(0.5);
        let text = metrics.render(&FleetNow {
            workers: vec![crate::WorkerNow {
                id: 1,
                info: crate::WorkerInfo {
                    name: "w".into(),
                    pool: String::new(),
                    capabilities: Default::default(),
                    slots: 4,
                    peer: String::new(),
                    max_concurrent_agents: 0,
                    isolation: String::new(),
                },
                running: 1,
                connected_at: 0,
                draining: false,
                paused: None,
            }],
            queue: vec![crate::QueueDepth {
                needs: ["gpu".to_string(), "shell".to_string()].into(),
                queued: 3,
            }],
            waiting_by_tenant: vec![("acme".into(), 7)],
            running_by_tenant: vec![("zeta".into(), 2)],
            paused_agents: vec![("agents".into(), "codex".into())],
            gone: Vec::new(),
            landings: vec![crate::LandingQueue {
                repo: "https://git.example/app.git".into(),
                base: "main".into(),
                tasks: vec![
                    crate::QueuedLanding {
                        task_id: "t1".into(),
                        task_name: "a".into(),
                        tenant: "default".into(),
                        landing: true,
                        since: 1,
                    },
                    crate::QueuedLanding {
                        task_id: "t2".into(),
                        task_name: "b".into(),
                        tenant: "default".into(),
                        landing: false,
                        since: 2,
                    },
                ],
            }],
        });
        for line in [
            "tidewright_tasks_submitted_total 1",
            "tidewright_tasks_finished_total{state=\"succeeded\"} 1",
            "tidewright_step_attempts_finished_total{outcome=\"failed\"} 1",
            "tidewright_dispatch_latency_seconds_count 1",
            "tidewright_tenant_wait_seconds_count{tenant=\"default\"} 1",
            "tidewright_tenant_steps_waiting{tenant=\"acme\"} 7",
            "tidewright_tenant_steps_running{tenant=\"zeta\"} 2",
            "tidewright_step_duration_seconds_sum 1.5",
            "tidewright_agent_cost_usd_total{model=\"claude-test\"} 0.25",
            "tidewright_agent_tokens_total{model=\"claude-test\",kind=\"input\"} 100",
            "tidewright_queue_depth{capabilities=\"gpu,shell\"} 3",
            "tidewright_rate_limits_total{pool=\"agents\",runtime=\"codex\"} 1",
            "tidewright_agents_paused{pool=\"agents\",runtime=\"codex\"} 1",
            "tidewright_workers_connected 1",
            "tidewright_landing_queue_depth{repo=\"https://git.example/app.git\",base=\"main\"} 2",
            "tidewright_landing_wait_seconds_sum 0.5",
            "tidewright_worker_slots 4",
            "tidewright_worker_slots_busy 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
