//! A tenant's share of the fleet ([`TenantShare`], set by an admin): its
//! weight in the ready queue's fair share against the other tenants', and
//! how many of its steps may run at once.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The highest weight: a tenant of weight 1000 takes a thousand turns to
/// another's one.
pub const MAX_WEIGHT: u32 = 1000;

/// A tenant's weight in the fair share (1 when unset) and its cap on
/// running steps (none when unset; 0 runs nothing until raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantShare {
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
}

fn one() -> u32 {
    1
}

impl Default for TenantShare {
    fn default() -> Self {
        TenantShare {
            weight: 1,
            max_running: None,
        }
    }
}

impl TenantShare {
    /// Checks a share as it comes in, signed, so that a negative number is
    /// refused naming its field rather than wrapped. `field` is where it
    /// sits ("" at the top).
    pub fn from_signed(
        weight: Option<i64>,
        max_running: Option<i64>,
        field: &str,
    ) -> Result<Self, Error> {
        let at = |part: &str| {
            if field.is_empty() {
                part.to_string()
            } else {
                format!("{field}.{part}")
            }
        };
        let weight = match weight {
            None => 1,
            Some(w) if (1..=i64::from(MAX_WEIGHT)).contains(&w) => w as u32,
            Some(w) => {
                return Err(Error::Invalid {
                    field: at("weight"),
                    message: format!("must be 1 to {MAX_WEIGHT}, not {w}"),
                });
            }
        };
        let max_running = match max_running {
            None => None,
            Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(Error::Invalid {
                    field: at("maxRunning"),
                    message: format!("must be 0 or more, not {n}"),
                });
            }
        };
        Ok(TenantShare {
            weight,
            max_running,
        })
    }

    /// Checks a share read whole (a file, a resource): the weight in range.
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        TenantShare::from_signed(
            Some(i64::from(self.weight)),
            self.max_running.map(i64::from),
            field,
        )
        .map(|_| ())
    }

    /// Weight 1 and no cap: what a tenant has when none is set.
    pub fn is_default(&self) -> bool {
        *self == TenantShare::default()
    }

    /// Whether a tenant running `running` steps may start another.
    pub fn has_room(&self, running: usize) -> bool {
        self.max_running.is_none_or(|cap| running < cap as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_run_from_1_to_1000_and_a_cap_from_0_each_refusal_naming_its_field() {
        let share = TenantShare::from_signed(Some(3), Some(50), "").expect("valid");
        assert_eq!(
            share,
            TenantShare {
                weight: 3,
                max_running: Some(50)
            }
        );
        assert!(
            TenantShare::from_signed(None, None, "")
                .expect("valid")
                .is_default()
        );
        assert_eq!(
            TenantShare::from_signed(Some(1000), Some(0), "")
                .expect("valid")
                .max_running,
            Some(0)
        );
        for (weight, max_running, field) in [
            (Some(0), None, "share.weight"),
            (Some(-2), None, "share.weight"),
            (Some(1001), None, "share.weight"),
            (Some(1), Some(-1), "share.maxRunning"),
        ] {
            match TenantShare::from_signed(weight, max_running, "share") {
                Err(Error::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{weight:?} {max_running:?}: {other:?}"),
            }
        }
        let read: TenantShare = serde_yaml::from_str("{weight: 0}").expect("parse");
        assert!(read.validate("team-a").is_err());
    }

    #[test]
    fn a_cap_leaves_room_below_it_and_none_at_it() {
        let capped = TenantShare {
            weight: 1,
            max_running: Some(2),
        };
        assert!(capped.has_room(1));
        assert!(!capped.has_room(2));
        assert!(TenantShare::default().has_room(1_000_000));
        assert!(
            !TenantShare {
                max_running: Some(0),
                ..TenantShare::default()
            }
            .has_room(0)
        );
    }
}
