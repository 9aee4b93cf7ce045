//! How many steps a worker run with `--steps N` may still be given: it
//! grants the control plane no more credits than that, and leaves once the
//! last one has ended, so each of its pods (`Agent.spec.isolation: pod`)
//! runs a single step and goes.

/// The steps taken and the credits out, against an optional limit.
#[derive(Debug, Default)]
pub(crate) struct Quota {
    limit: Option<u32>,
    taken: u32,
    /// Credits granted in this session that no assignment has used yet.
    outstanding: u32,
}

impl Quota {
    /// `steps`: how many in all; 0 for no end.
    pub(crate) fn new(steps: u32) -> Quota {
        Quota {
            limit: (steps > 0).then_some(steps),
            ..Quota::default()
        }
    }

    /// A new session: the control plane forgot the old one's credits.
    pub(crate) fn new_session(&mut self) {
        self.outstanding = 0;
    }

    /// The credits to grant of the `wanted` (free slots): no more than the
    /// steps left after those taken and those already granted.
    pub(crate) fn grant(&mut self, wanted: u32) -> u32 {
        let granted = match self.limit {
            None => wanted,
            Some(limit) => wanted.min(limit.saturating_sub(self.taken + self.outstanding)),
        };
        self.outstanding += granted;
        granted
    }

    /// A step was assigned, on one of the credits.
    pub(crate) fn assigned(&mut self) {
        self.taken += 1;
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// Whether every step it may run has been given.
    pub(crate) fn spent(&self) -> bool {
        self.limit.is_some_and(|limit| self.taken >= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_grants_what_is_free_and_never_ends() {
        let mut quota = Quota::new(0);
        assert_eq!(quota.grant(4), 4);
        for _ in 0..100 {
            quota.assigned();
        }
        assert_eq!(quota.grant(1), 1);
        assert!(!quota.spent());
    }

    #[test]
    fn one_step_grants_one_credit_then_none_and_ends() {
        let mut quota = Quota::new(1);
        assert_eq!(quota.grant(4), 1, "four slots free, one step to run");
        assert_eq!(quota.grant(1), 0, "the one credit is out");
        assert!(!quota.spent());
        quota.assigned();
        assert!(quota.spent());
        assert_eq!(quota.grant(1), 0, "done: no more work");
    }

    #[test]
    fn a_new_session_grants_again_what_the_old_one_left_unused() {
        let mut quota = Quota::new(3);
        assert_eq!(quota.grant(2), 2);
        quota.assigned();
        // The stream broke with one credit unused: the new session's
        // control plane knows none of it.
        quota.new_session();
        assert_eq!(quota.grant(4), 2, "three steps, one taken");
        quota.assigned();
        quota.assigned();
        assert!(quota.spent());
        assert_eq!(quota.grant(1), 0);
    }
}
