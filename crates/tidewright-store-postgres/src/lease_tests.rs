//! The lease and the fence against a real PostgreSQL: one leader at a time,
//! a takeover only once the lease expired, and a deposed leader's writes,
//! even one it had begun, never committed.

use std::time::Duration;

use tidewright_store::conformance::new_task;

use super::*;
use crate::lease::{Lease, Replica, Roster, Round};
use crate::tests::{log_event, stall_the_writer};
use crate::throwaway::Server;

const TTL: Duration = Duration::from_millis(400);

fn replica(name: &str) -> Replica {
    Replica {
        id: format!("{name}-id"),
        name: name.into(),
        address: format!("{name}:7443"),
        named: false,
    }
}

async fn join(url: &str, name: &str) -> Lease {
    Lease::join(url, replica(name), TTL).await.expect("join")
}

/// Rounds of `lease` until it leads; its epoch.
async fn lead(lease: &mut Lease) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Round::Leading(leader) = lease.try_lead().await.expect("round") {
            return leader.epoch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: the lease is taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_only_once_its_lease_expired_or_was_released() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    let mut a = join(&url, "a").await;
    let mut b = join(&url, "b").await;
    let first = match a.try_lead().await.expect("round") {
        Round::Leading(leader) => leader,
        other => panic!("a free lease is taken at once, got {other:?}"),
    };
    assert_eq!((first.epoch, first.address.as_str()), (1, "a:7443"));
    // While a renews, b follows it.
    for _ in 0..3 {
        assert!(a.renew(1).await.expect("renew"), "a still leads");
        match b.try_lead().await.expect("round") {
            Round::Following(Some(leader)) => assert_eq!(leader, first),
            other => panic!("b follows a, got {other:?}"),
        }
        tokio::time::sleep(TTL / 4).await;
    }
    // a stops renewing: b leads at the next epoch once the lease expired.
    assert_eq!(lead(&mut b).await, 2);
    assert!(!a.renew(1).await.expect("renew"), "a's epoch has ended");
    a.release(1).await.expect("a release changes nothing");
    match a.try_lead().await.expect("round") {
        Round::Following(Some(leader)) => {
            assert_eq!((leader.epoch, leader.name.as_str()), (2, "b"))
        }
        other => panic!("a follows b, got {other:?}"),
    }
    let roster = Roster::new(&url).expect("roster");
    let replicas = roster.replicas().await.expect("replicas");
    let mut leading: Vec<_> = replicas
        .iter()
        .map(|r| (r.name.as_str(), r.leading, r.epoch))
        .collect();
    leading.sort();
    assert_eq!(leading, [("a", false, 2), ("b", true, 2)]);
    // Released, the lease is taken at once, with no wait for its TTL.
    b.release(2).await.expect("release");
    match a.try_lead().await.expect("round") {
        Round::Leading(leader) => assert_eq!(leader.epoch, 3),
        other => panic!("a released lease is taken at once, got {other:?}"),
    }
    let names: Vec<_> = roster
        .replicas()
        .await
        .expect("replicas")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a"], "a released replica leaves the list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_commits_nothing_even_a_transaction_it_had_begun() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    let mut a = join(&url, "a").await;
    let mut b = join(&url, "b").await;
    assert_eq!(lead(&mut a).await, 1);
    let store_a = PostgresStore::open_leading(&url, 1).await.expect("open");
    store_a
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("the leader writes");

    // a's writer begins a transaction (fenced, holding the lease row) and
    // then stalls inside it, as a paused process would.
    let (holder, stalled, _) = stall_the_writer(&url, &store_a, "from the old leader").await;

    // a's lease expires; b takes over, ending a's open transaction.
    assert_eq!(lead(&mut b).await, 2);
    holder.batch_execute("ROLLBACK").await.expect("unlock");
    match stalled.await.expect("answer") {
        Err(Error::Deposed(message)) => assert!(message.contains("epoch 2"), "{message}"),
        other => panic!("the old leader's write is refused, got {other:?}"),
    }
    // New work is refused too: as deposed once a session of a's is open
    // again (b's takeover ended a's sessions, so one may first answer that
    // it was lost, having written nothing).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store_a
            .create_tasks(vec![new_task("t2", "default", None)])
            .await
        {
            Err(Error::Deposed(_)) => break,
            Err(Error::Unavailable(lost)) if std::time::Instant::now() < deadline => {
                assert!(lost.contains("nothing was written"), "{lost}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("new work from the old leader is refused, got {other:?}"),
        }
    }

    let store_b = PostgresStore::open_leading(&url, 2).await.expect("open");
    let events = store_b.events_after("t1", 0, 10).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1],
        "nothing of the stalled transaction"
    );
    assert!(store_b.get_task("t2").await.expect("read").is_none());
    assert!(
        store_b
            .audit_after(0, 10, None)
            .await
            .expect("audit")
            .is_empty(),
        "no audit record from the old leader"
    );
    store_b
        .write(vec![log_event("t1", 2, "from the new leader")])
        .await
        .expect("answer")
        .expect("the new leader writes");
}

/// A pod's control plane restarted (killed, so its lease was never
/// released) leads again at its first round under the name it was given,
/// not a lease's length later; the run before is fenced out. A replica
/// of another name, or one whose name was not given, waits.
#[tokio::test]
async fn a_replica_restarted_under_its_given_name_takes_its_lease_back_at_once() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    // A lease far longer than the test: only the name can explain a
    // takeover.
    let ttl = Duration::from_secs(600);
    let run = |id: &str, name: &str, named: bool| Replica {
        id: id.into(),
        named,
        ..replica(name)
    };
    let mut before = Lease::join(&url, run("first-run", "tidewright-0", true), ttl)
        .await
        .expect("join");
    let epoch = lead(&mut before).await;

    let mut other = Lease::join(&url, run("other", "tidewright-1", true), ttl)
        .await
        .expect("join");
    let mut unnamed = Lease::join(&url, run("unnamed", "tidewright-0", false), ttl)
        .await
        .expect("join");
    for standby in [&mut other, &mut unnamed] {
        match standby.try_lead().await.expect("round") {
            Round::Following(Some(leader)) => assert_eq!(leader.holder, "first-run"),
            round => panic!("the lease is tidewright-0's first run's, got {round:?}"),
        }
    }

    let mut after = Lease::join(&url, run("second-run", "tidewright-0", true), ttl)
        .await
        .expect("join");
    match after.try_lead().await.expect("round") {
        Round::Leading(leader) => {
            assert_eq!(
                (leader.epoch, leader.holder.as_str()),
                (epoch + 1, "second-run")
            )
        }
        round => panic!("the restarted run leads at its first round, got {round:?}"),
    }
    assert!(
        !before.renew(epoch).await.expect("renew"),
        "the run before is fenced out"
    );
    assert!(after.renew(epoch + 1).await.expect("renew"));
    // Only a first round reclaims: the run before, still about, waits
    // like any standby.
    match before.try_lead().await.expect("round") {
        Round::Following(Some(leader)) => assert_eq!(leader.holder, "second-run"),
        round => panic!("the run before follows, got {round:?}"),
    }
}
