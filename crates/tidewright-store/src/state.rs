//! Shared state (the state service's keys) as every backend stores it:
//! keys, entries and their versions, and the compare-and-set each change
//! is decided by.

use tidewright_core::Micros;

/// Where a shared-state value lives: a tenant's scope (a task's id, or a
/// name shared by the tenant's tasks) and a key in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub tenant: String,
    pub scope: String,
    pub key: String,
}

/// A tenant's scope of shared state, for listing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateScope {
    pub tenant: String,
    pub scope: String,
}

/// A stored shared-state value.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    pub value_json: String,
    /// 1 when first put; every put or delete adds one, so a compare-and-set
    /// never mistakes a new value for an old one.
    pub version: u64,
    pub updated_at: Micros,
    /// 0 for never.
    pub expires_at: Micros,
}

/// What a conditional put or delete expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// Nothing (or only an expired value).
    Absent,
    /// Exactly this version.
    Version(u64),
}

impl Expect {
    /// Whether a key whose live version is `live` (`None`: absent, deleted
    /// or expired) meets this expectation; every backend decides a
    /// compare-and-set with this.
    pub fn met_by(self, live: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => live.is_none(),
            Expect::Version(v) => live == Some(v),
        }
    }
}

/// A change to shared state; applied in order with every other write.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    Put {
        key: StateKey,
        value_json: String,
        expect: Expect,
        /// 0 for never.
        expires_at: Micros,
        now: Micros,
    },
    Delete {
        key: StateKey,
        expect: Expect,
        now: Micros,
    },
}

impl StateChange {
    /// The key it changes.
    pub fn key(&self) -> &StateKey {
        match self {
            StateChange::Put { key, .. } | StateChange::Delete { key, .. } => key,
        }
    }

    /// When it is made: what is live is live then.
    pub fn now(&self) -> Micros {
        match self {
            StateChange::Put { now, .. } | StateChange::Delete { now, .. } => *now,
        }
    }

    /// What the change does to its key, whose row is `row` (its version,
    /// and whether it holds a value live at the change's time; `None`:
    /// never written): refused with the version found when its expectation
    /// fails, else the row to store (none for a delete of what is not
    /// there). Every backend decides a compare-and-set with this; a
    /// deleted or expired value keeps its version, so versions never
    /// repeat.
    pub fn decide(
        &self,
        row: Option<(u64, bool)>,
    ) -> std::result::Result<Option<NextState>, StateOutcome> {
        let now = self.now();
        let expect = match self {
            StateChange::Put { expect, .. } | StateChange::Delete { expect, .. } => *expect,
        };
        let live = row.filter(|(_, live)| *live).map(|(version, _)| version);
        if !expect.met_by(live) {
            return Err(StateOutcome::Conflict { found: live });
        }
        let version = row.map_or(0, |(version, _)| version) + 1;
        Ok(match self {
            StateChange::Put {
                value_json,
                expires_at,
                ..
            } => Some(NextState {
                version,
                updated_at: now,
                entry: Some(StateEntry {
                    value_json: value_json.clone(),
                    version,
                    updated_at: now,
                    expires_at: *expires_at,
                }),
            }),
            StateChange::Delete { .. } => live.map(|_| NextState {
                version,
                updated_at: now,
                entry: None,
            }),
        })
    }
}

/// A key's row after a state change: its new version, and its entry
/// (`None`: its value deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct NextState {
    pub version: u64,
    pub updated_at: Micros,
    pub entry: Option<StateEntry>,
}

/// A page of a tenant's scope of shared state: up to `limit` live (at
/// `now`) values whose keys sort after `after_key` ("" for the first).
#[derive(Debug, Clone, PartialEq)]
pub struct StateQuery {
    pub scope: StateScope,
    pub after_key: String,
    pub limit: usize,
    pub now: Micros,
}

/// How a state change went: the entry as it is now (`None` once deleted),
/// or the version found when the expectation failed (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub enum StateOutcome {
    Done(Option<StateEntry>),
    Conflict { found: Option<u64> },
}
