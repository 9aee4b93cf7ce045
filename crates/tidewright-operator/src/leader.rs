//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never reconcile at once. The holder renews the lease well inside
//! its duration; another replica takes it only once it has expired. Writes
//! carry the resourceVersion they read, so of two replicas racing for an
//! expired lease exactly one wins (the other gets a conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::error::Error;

/// What a replica should do with the lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// There is no lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire (or released it): take it over.
    TakeOver,
    /// Someone else holds it and it is live.
    Follow { holder: String },
}

/// Pure: the step for `lease` (as read) from `me`'s point of view at `now`.
pub fn next_step(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseStep {
    let Some(spec) = lease else {
        return LeaseStep::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return LeaseStep::Renew;
    }
    if holder.is_empty() {
        return LeaseStep::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at + duration > now => LeaseStep::Follow { holder },
        _ => LeaseStep::TakeOver,
    }
}

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseLock {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often the holder renews: a third of the duration, so two missed
    /// renewals still leave it the leader.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: `Ok(true)` when this replica holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let step = next_step(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let outcome = match (step, current) {
            (LeaseStep::Follow { .. }, _) => return Ok(false),
            (LeaseStep::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (step, Some(mut lease)) => {
                let old = lease.spec.take().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if step == LeaseStep::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    self.spec(now, None, transitions + 1)
                });
                // `replace` sends the resourceVersion read above: a lease
                // changed since then is a conflict, not overwritten.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match outcome {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.is_conflict() || e.is_already_exists() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), Error> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "trying for the leader lease"),
            }
            tokio::time::sleep(self.renew_interval()).await;
        }
    }

    /// Renews until it fails to for a whole lease duration (or loses the
    /// lease); then returns, and the caller must stop reconciling.
    pub async fn keep(&self) -> Error {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return Error::Leadership(format!(
                        "lease {} was taken by another replica",
                        self.name
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the leader lease");
                    if last_renewed.elapsed() >= self.duration {
                        return Error::Leadership(format!(
                            "could not renew lease {} for {:?}: {e}",
                            self.name, self.duration
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn held(by: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_goes_to_whoever_finds_it_free_or_expired() {
        let table = [
            (None, 100, LeaseStep::Create),
            (Some(held("a", 100)), 105, LeaseStep::Renew),
            (
                Some(held("b", 100)),
                114,
                LeaseStep::Follow { holder: "b".into() },
            ),
            // Expired exactly at renew + duration.
            (Some(held("b", 100)), 115, LeaseStep::TakeOver),
            (Some(held("", 100)), 101, LeaseStep::TakeOver),
            // Never renewed: expired.
            (
                Some(LeaseSpec {
                    renew_time: None,
                    ..held("b", 0)
                }),
                1,
                LeaseStep::TakeOver,
            ),
        ];
        for (lease, now, want) in table {
            assert_eq!(
                next_step(lease.as_ref(), "a", at(now)),
                want,
                "{lease:?} at {now}"
            );
        }
    }
}
