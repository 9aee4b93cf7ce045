//! A worker's own Prometheus metrics: what it runs now, how its attempts
//! ended, and how often a runtime itself failed (a process that would not
//! start, an agent that ended without a result) as opposed to a step that
//! failed on its own terms. The control plane counts tasks and queues; only
//! the worker sees these.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct WorkerMetrics {
    registry: Registry,
    running: Family<Labels, Gauge>,
    finished: Family<Labels, Counter>,
    runtime_failures: Family<Labels, Counter>,
    egress: Family<Labels, Counter>,
    slots: Gauge,
    connected: Gauge,
}

/// Why a runtime failed an attempt, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The step names a runtime this worker does not have.
    UnknownRuntime,
    /// A secret the step asks for is not on this worker.
    Secrets,
    /// The workspace (or the agent CLI's home) could not be made.
    Workspace,
    /// The process could not be started (no such program, no permission).
    Start,
    /// Waiting for the process failed.
    Wait,
    /// The step ran past its timeout and was killed.
    Timeout,
    /// The step showed no sign of life for its stall timeout and was
    /// killed.
    Stalled,
    /// The agent CLI exited without its result line.
    NoResult,
    /// The task's repository could not be made ready for the step (its
    /// mirror, its commit, its credentials, its worktree).
    Repository,
    /// The step's dependencies' work would not merge.
    Conflict,
    /// The task's branch could not be pushed, or its pull request opened.
    Delivery,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::UnknownRuntime => "unknown_runtime",
            Fault::Secrets => "secrets",
            Fault::Workspace => "workspace",
            Fault::Start => "start",
            Fault::Wait => "wait",
            Fault::Timeout => "timeout",
            Fault::Stalled => "stalled",
            Fault::NoResult => "no_result",
            Fault::Repository => "repository",
            Fault::Conflict => "conflict",
            Fault::Delivery => "delivery",
        }
    }
}

impl WorkerMetrics {
    pub fn new(slots: u32) -> WorkerMetrics {
        let mut registry = Registry::with_prefix("tidewright_worker");
        let metrics = WorkerMetrics {
            running: Family::default(),
            finished: Family::default(),
            runtime_failures: Family::default(),
            egress: Family::default(),
            slots: Gauge::default(),
            connected: Gauge::default(),
            registry: Registry::default(),
        };
        metrics.slots.set(i64::from(slots));
        registry.register(
            "steps_running",
            "Step attempts running on this worker now, by runtime",
            metrics.running.clone(),
        );
        registry.register(
            "step_attempts_finished",
            "Step attempts this worker finished, by runtime and outcome",
            metrics.finished.clone(),
        );
        registry.register(
            "runtime_failures",
            "Attempts a runtime failed by itself (not the step's own failure), by runtime and reason",
            metrics.runtime_failures.clone(),
        );
        registry.register(
            "egress_connections",
            "Connections steps asked of their egress proxy, by pool and verdict (allowed, refused)",
            metrics.egress.clone(),
        );
        registry.register(
            "slots",
            "Steps this worker runs at once",
            metrics.slots.clone(),
        );
        registry.register(
            "connected",
            "1 while the worker is registered with the control plane",
            metrics.connected.clone(),
        );
        WorkerMetrics {
            registry,
            ..metrics
        }
    }

    /// An attempt of `runtime` started; the guard counts it as running
    /// until dropped, so an attempt that panics is not counted forever.
    pub fn started(&self, runtime: &'static str) -> Running {
        let gauge = self.running.get_or_create(&runtime_label(runtime)).clone();
        gauge.inc();
        Running(gauge)
    }

    pub fn finished(&self, runtime: &'static str, outcome: &'static str, fault: Option<Fault>) {
        self.finished
            .get_or_create(&vec![
                ("runtime", runtime.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        if let Some(fault) = fault {
            self.runtime_failures
                .get_or_create(&vec![
                    ("runtime", runtime.to_string()),
                    ("reason", fault.as_str().to_string()),
                ])
                .inc();
        }
    }

    /// One connection a step asked of its egress proxy.
    pub fn egress(&self, pool: &str, allowed: bool) {
        let verdict = if allowed { "allowed" } else { "refused" };
        self.egress
            .get_or_create(&vec![
                ("pool", pool.to_string()),
                ("verdict", verdict.to_string()),
            ])
            .inc();
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    pub fn is_connected(&self) -> bool {
        self.connected.get() == 1
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn runtime_label(runtime: &'static str) -> Labels {
    vec![("runtime", runtime.to_string())]
}

/// Counts one attempt as running while it lives.
pub struct Running(Gauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_follows_the_guard_and_faults_count_by_reason() {
        let metrics = WorkerMetrics::new(3);
        let shell = metrics.started("shell");
        let text = metrics.render();
        assert!(
            text.contains("tidewright_worker_steps_running{runtime=\"shell\"} 1"),
            "{text}"
        );
        assert!(text.contains("tidewright_worker_slots 3"), "{text}");
        drop(shell);
        metrics.finished("shell", "failed", Some(Fault::Start));
        metrics.finished("shell", "failed", None);
        metrics.finished("claude_code", "succeeded", None);
        metrics.egress("agents", false);
        let text = metrics.render();
        for line in [
            "tidewright_worker_steps_running{runtime=\"shell\"} 0",
            "tidewright_worker_step_attempts_finished_total{runtime=\"shell\",outcome=\"failed\"} 2",
            "tidewright_worker_step_attempts_finished_total{runtime=\"claude_code\",outcome=\"succeeded\"} 1",
            "tidewright_worker_runtime_failures_total{runtime=\"shell\",reason=\"start\"} 1",
            "tidewright_worker_connected 0",
            "tidewright_worker_egress_connections_total{pool=\"agents\",verdict=\"refused\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
