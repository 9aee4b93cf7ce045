//! How many worker pods a pool needs: pure, so every rule has a table test.
//!
//! Replicas follow demand, `ceil((queued + running) / slots)`, within
//! `[min, max]`. A pool with nothing to do keeps its pods for the idle period
//! before it goes to `min` (zero when allowed), so bursts a minute apart do
//! not pay a cold start each. A pool never shrinks below the pods that are
//! running steps, and pods that run steps are the last the ReplicaSet
//! removes (their deletion cost is high), so scaling in never kills work.

/// What the control plane reports for a pool's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Steps waiting for a worker with these capabilities.
    pub queued: u32,
    /// Steps running on the pool's workers.
    pub running: u32,
    /// Pods with at least one running step.
    pub busy_pods: u32,
}

/// The pool's limits, from its `Agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub slots_per_pod: u32,
    /// Seconds with nothing to do before scaling to `min`.
    pub idle_seconds: u64,
}

/// The decision, and the idle clock to keep for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub replicas: u32,
    /// Unix seconds since when the pool has had nothing to do.
    pub idle_since: Option<i64>,
}

pub fn decide(
    load: Load,
    bounds: Bounds,
    current: u32,
    idle_since: Option<i64>,
    now: i64,
) -> Decision {
    let (min, max) = (bounds.min, bounds.max.max(bounds.min));
    let work = u64::from(load.queued) + u64::from(load.running);
    let slots = u64::from(bounds.slots_per_pod.max(1));
    let demand = u32::try_from(work.div_ceil(slots)).unwrap_or(u32::MAX);
    let (replicas, idle_since) = if work > 0 {
        (demand.clamp(min, max), None)
    } else {
        let since = idle_since.unwrap_or(now);
        let idle_for = u64::try_from(now.saturating_sub(since)).unwrap_or(0);
        if idle_for >= bounds.idle_seconds {
            (min, Some(since))
        } else {
            (current.clamp(min, max), Some(since))
        }
    };
    Decision {
        // Never below the pods running steps, whatever the bounds say.
        replicas: replicas.max(load.busy_pods),
        idle_since,
    }
}

/// `controller.kubernetes.io/pod-deletion-cost` for a pod running `steps`
/// steps: the ReplicaSet removes the cheapest pods first, so idle pods go
/// and busy ones stay.
pub fn deletion_cost(steps: u32) -> i32 {
    i32::try_from(u64::from(steps) * 1000).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        min: 0,
        max: 10,
        slots_per_pod: 4,
        idle_seconds: 300,
    };

    fn load(queued: u32, running: u32, busy_pods: u32) -> Load {
        Load {
            queued,
            running,
            busy_pods,
        }
    }

    #[test]
    fn replicas_follow_the_queue_within_bounds() {
        // (queued, running, busy pods, current, min, max) -> replicas
        let table = [
            ((0, 0, 0, 0, 0, 10), 0),   // nothing to do, nothing running
            ((1, 0, 0, 0, 0, 10), 1),   // one step wakes the pool
            ((4, 0, 0, 1, 0, 10), 1),   // a pod's slots exactly
            ((5, 0, 0, 1, 0, 10), 2),   // one more needs a second pod
            ((30, 8, 2, 2, 0, 10), 10), // many: capped at max
            ((500, 0, 0, 0, 0, 3), 3),  // a burst never passes max
            ((1, 0, 0, 0, 2, 10), 2),   // min holds even when less would do
            ((0, 3, 1, 1, 0, 10), 1),   // running work counts as demand
        ];
        for ((queued, running, busy, current, min, max), want) in table {
            let bounds = Bounds { min, max, ..BOUNDS };
            let got = decide(load(queued, running, busy), bounds, current, None, 1000);
            assert_eq!(
                got.replicas, want,
                "queued {queued}, running {running}, min {min}, max {max}"
            );
        }
    }

    #[test]
    fn an_idle_pool_waits_out_the_idle_period_before_scaling_to_zero() {
        let idle = load(0, 0, 0);
        let first = decide(idle, BOUNDS, 3, None, 1000);
        assert_eq!(
            first,
            Decision {
                replicas: 3,
                idle_since: Some(1000)
            }
        );
        let later = decide(idle, BOUNDS, 3, first.idle_since, 1000 + 299);
        assert_eq!(later.replicas, 3, "still inside the idle period");
        let after = decide(idle, BOUNDS, 3, first.idle_since, 1000 + 300);
        assert_eq!(
            after,
            Decision {
                replicas: 0,
                idle_since: Some(1000)
            }
        );
        // Work resets the clock.
        let busy = decide(load(1, 0, 0), BOUNDS, 0, after.idle_since, 2000);
        assert_eq!(
            busy,
            Decision {
                replicas: 1,
                idle_since: None
            }
        );
        // With a minimum, idling ends at the minimum, not at zero.
        let floor = Bounds { min: 1, ..BOUNDS };
        assert_eq!(decide(idle, floor, 3, Some(0), 1000).replicas, 1);
    }

    #[test]
    fn busy_pods_are_never_scaled_away() {
        // Six pods each running a step; max lowered to 2 meanwhile.
        let bounds = Bounds { max: 2, ..BOUNDS };
        assert_eq!(decide(load(0, 6, 6), bounds, 6, None, 0).replicas, 6);
        // Idle past the period, but two pods still finish steps.
        assert_eq!(
            decide(load(0, 2, 2), BOUNDS, 4, Some(0), 10_000).replicas,
            2
        );
    }

    #[test]
    fn scale_in_removes_idle_pods_first() {
        // The ReplicaSet removes the lowest deletion cost first.
        let mut pods = [("a", 2), ("b", 0), ("c", 1), ("d", 0)];
        pods.sort_by_key(|(_, steps)| deletion_cost(*steps));
        let removed: Vec<&str> = pods.iter().take(2).map(|(name, _)| *name).collect();
        assert_eq!(removed, ["b", "d"]);
        assert!(deletion_cost(1) > deletion_cost(0));
        assert_eq!(deletion_cost(u32::MAX), i32::MAX);
    }
}
