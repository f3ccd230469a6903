//! Claim order (heads, priority), quotas, control state and max_age credit, on a real SQLite
//! file.

use std::time::{Duration, SystemTime};

use super::super::SqliteStore;
use super::{LEASE, claim_ids, event, target};
use crate::config::{OnFull, Priority};
use crate::store::{
    AttemptRecord, ControlChange, DeadLetterFilter, DeadLetterQuery, Ingested, NewEvent,
    Operations, Queue, QueueLimit, Quota, Routed,
};

/// `event(key)` for target `a` with the given priority, order key and quota.
fn routed(
    key: &str,
    priority: Priority,
    order_key: Option<&str>,
    quota: Option<Quota>,
) -> NewEvent {
    let mut e = event(key, &[]);
    e.targets = vec![Routed {
        target: target("a"),
        priority,
        order_key: order_key.map(str::to_owned),
        quota,
    }];
    e
}

fn keyed(key: &str, order_key: &str) -> NewEvent {
    routed(key, Priority::Normal, Some(order_key), None)
}

fn quota(max_queue: u64, on_full: OnFull) -> Option<Quota> {
    Some(Quota {
        max_queue: Some(max_queue),
        share_percent: None,
        on_full,
    })
}

fn failed() -> AttemptRecord {
    AttemptRecord {
        status: Some(503),
        reason: "HTTP 503".into(),
    }
}

#[tokio::test]
async fn a_fifo_head_waits_through_its_retries_and_blocks_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    for key in ["e1", "e2", "e3"] {
        store.ingest(keyed(key, "")).await.expect("ingest");
    }
    let head = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert_eq!(head.jobs.len(), 1, "only the head is claimable");
    assert_eq!(head.jobs[0].event_id, "e1");
    assert!(claim_ids(&store, 10).await.is_empty(), "head in flight");
    let later = SystemTime::now() + Duration::from_secs(3600);
    store
        .retry_at(head.jobs[0].id, later, failed())
        .await
        .expect("retry");
    let blocked = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert!(blocked.jobs.is_empty(), "e2 and e3 wait behind the head");
    // Deliveries behind the head are not due: the dispatcher must sleep until the head is.
    let due = blocked.next_due.expect("the head's retry");
    assert!(
        due > SystemTime::now() + Duration::from_secs(3500),
        "{due:?}"
    );
    store
        .retry_at(head.jobs[0].id, SystemTime::now(), failed())
        .await
        .expect("retry");
    let again = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert_eq!(again.jobs[0].event_id, "e1");
    assert_eq!(again.jobs[0].attempts, 2);
    store.ack(again.jobs[0].id).await.expect("ack");
    assert_eq!(claim_ids(&store, 10).await, ["e2"]);
}

#[tokio::test]
async fn keyed_claims_take_one_head_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    for (key, order) in [
        ("a1", "A"),
        ("b1", "B"),
        ("a2", "A"),
        ("b2", "B"),
        ("c1", "C"),
    ] {
        store.ingest(keyed(key, order)).await.expect("ingest");
    }
    let first = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    let keys: Vec<&str> = first.jobs.iter().map(|j| j.event_id.as_str()).collect();
    assert_eq!(keys, ["a1", "b1", "c1"]);
    store.ack(first.jobs[0].id).await.expect("ack a1");
    assert_eq!(claim_ids(&store, 10).await, ["a2"]);
    // b1 fails: b2 stays behind it, while A and C are free to go.
    store
        .retry_at(first.jobs[1].id, SystemTime::now(), failed())
        .await
        .expect("retry b1");
    assert_eq!(claim_ids(&store, 10).await, ["b1"]);
}

#[tokio::test]
async fn due_high_priority_deliveries_are_claimed_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    for i in 0..5 {
        let key = format!("m{i}");
        store
            .ingest(routed(&key, Priority::Normal, None, None))
            .await
            .expect("ingest");
    }
    store
        .ingest(routed("optout", Priority::High, None, None))
        .await
        .expect("ingest");
    assert_eq!(claim_ids(&store, 1).await, ["optout"]);
    assert_eq!(claim_ids(&store, 3).await, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn priority_never_jumps_an_ordered_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    store
        .ingest(routed("m1", Priority::Normal, Some(""), None))
        .await
        .expect("ingest");
    store
        .ingest(routed("optout", Priority::High, Some(""), None))
        .await
        .expect("ingest");
    let first = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert_eq!(first.jobs.len(), 1);
    assert_eq!(first.jobs[0].event_id, "m1", "fifo keeps strict order");
    store.ack(first.jobs[0].id).await.expect("ack");
    assert_eq!(claim_ids(&store, 10).await, ["optout"]);
}

#[tokio::test]
async fn a_buried_head_hands_over_and_a_replay_makes_it_claimable_and_pending_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let limited = |key: &str| routed(key, Priority::Normal, Some("A"), quota(2, OnFull::Reject));
    store.ingest(limited("a1")).await.expect("ingest");
    store.ingest(limited("a2")).await.expect("ingest");
    let head = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    store.bury(head.jobs[0].id, failed()).await.expect("bury");
    assert_eq!(claim_ids(&store, 10).await, ["a2"]);
    let replay = DeadLetterFilter {
        ids: Some(vec![head.jobs[0].id]),
        ..DeadLetterFilter::default()
    };
    let done = store.replay(replay, &[target("a")]).await.expect("replay");
    assert_eq!(done.replayed, 1);
    // Dead letters stay heads, so the replayed one goes out without waiting for a2.
    assert_eq!(claim_ids(&store, 10).await, ["a1"]);
    // And it counts towards the quota again: a1 and a2 are pending.
    assert!(matches!(
        store.ingest(limited("a3")).await.expect("ingest"),
        Ingested::Rejected { .. }
    ));
}

#[tokio::test]
async fn a_full_reject_quota_stores_nothing_and_holds_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let limited = |key: &str| routed(key, Priority::Normal, None, quota(2, OnFull::Reject));
    {
        let store = SqliteStore::open(&path).expect("open");
        for key in ["e1", "e2"] {
            assert_eq!(
                store.ingest(limited(key)).await.expect("ingest"),
                Ingested::Accepted
            );
        }
        let rejected = Ingested::Rejected {
            target: target("a"),
            limit: QueueLimit::Deliveries(2),
        };
        assert_eq!(store.ingest(limited("e3")).await.expect("ingest"), rejected);
        // Not remembered as seen: the sender's retry is judged again, not called a duplicate.
        assert_eq!(store.ingest(limited("e3")).await.expect("ingest"), rejected);
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(
        matches!(
            store.ingest(limited("e3")).await.expect("ingest"),
            Ingested::Rejected { .. }
        ),
        "the count of pending deliveries is rebuilt at open"
    );
    let first = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert!(
        matches!(
            store.ingest(limited("e3")).await.expect("ingest"),
            Ingested::Rejected { .. }
        ),
        "a delivery in flight still counts"
    );
    store.ack(first.jobs[0].id).await.expect("ack");
    assert_eq!(
        store.ingest(limited("e3")).await.expect("ingest"),
        Ingested::Accepted
    );
    let second = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    store.bury(second.jobs[0].id, failed()).await.expect("bury");
    assert_eq!(
        store.ingest(limited("e4")).await.expect("ingest"),
        Ingested::Accepted,
        "a dead letter is not queued"
    );
}

#[tokio::test]
async fn a_full_dead_letter_quota_buries_only_that_targets_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let both = |key: &str| {
        let mut e = event(key, &["b"]);
        e.targets.insert(
            0,
            Routed {
                quota: quota(1, OnFull::DeadLetter),
                ..Routed::plain(target("a"))
            },
        );
        e
    };
    for key in ["e1", "e2"] {
        assert_eq!(
            store.ingest(both(key)).await.expect("ingest"),
            Ingested::Accepted
        );
    }
    let dead = store
        .dead_letters(DeadLetterQuery {
            target: Some("a".into()),
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "e2");
    assert_eq!(dead[0].reason, "queue full (max_queue 1)");
    assert_eq!(dead[0].attempts, 0);
    let a = store.counts(&target("a")).await.expect("counts");
    assert_eq!((a.queued, a.dead), (1, 1));
    assert!(a.oldest_queued_at.is_some());
    let b = store.counts(&target("b")).await.expect("counts");
    assert_eq!((b.queued, b.dead), (2, 0));
}

#[tokio::test]
async fn control_state_is_persisted_until_enabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(
            store.control(&target("a")).await.expect("control"),
            Default::default()
        );
        let gone = ControlChange::Disable {
            reason: "HTTP 410 Gone".into(),
        };
        let c = store
            .set_control(&target("a"), gone)
            .await
            .expect("disable");
        assert_eq!(
            c.disabled.as_ref().map(|d| d.reason.as_str()),
            Some("HTTP 410 Gone")
        );
        let c = store
            .set_control(&target("a"), ControlChange::Pause)
            .await
            .expect("pause");
        assert!(c.paused_at.is_some() && c.disabled.is_some());
        assert_eq!(c.held_since(), c.disabled.as_ref().map(|d| d.at));
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let c = store.control(&target("a")).await.expect("control");
    assert!(c.disabled.is_some() && c.paused_at.is_some(), "{c:?}");
    assert_eq!(
        store.control(&target("b")).await.expect("control"),
        Default::default()
    );
    let c = store
        .set_control(&target("a"), ControlChange::Enable)
        .await
        .expect("enable");
    assert_eq!(c, Default::default());
}

#[tokio::test]
async fn released_claims_cost_no_attempt_and_waiting_is_credited_to_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    let first = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    let job = &first.jobs[0];
    store.release(job.id).await.expect("release");
    let created = job.created_at;
    // Held from well before the delivery existed until a minute after: only the minute it
    // spent queued is credited.
    store
        .credit_wait(
            &target("a"),
            created - Duration::from_secs(3600),
            created + Duration::from_secs(60),
        )
        .await
        .expect("credit");
    let again = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(again.jobs.len(), 1, "released: due again at once");
    assert_eq!(again.jobs[0].attempts, 0);
    assert_eq!(again.jobs[0].created_at, created + Duration::from_secs(60));
}
