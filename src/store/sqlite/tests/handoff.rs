//! Deliveries leased at birth and handed to a dispatcher that offered room, on a real SQLite
//! file.

use std::time::Duration;

use super::super::SqliteStore;
use super::{LEASE, claim_ids, claim_ids_of, event, target};
use crate::config::Priority;
use crate::store::{Operations, Queue, Routed};

/// Waits for a notification that must come; a missing one fails instead of hanging.
async fn notified(notify: &tokio::sync::Notify) {
    tokio::time::timeout(Duration::from_secs(10), notify.notified())
        .await
        .expect("notified");
}

/// Target `a`'s queued and in-flight deliveries.
async fn queued_and_in_flight(store: &SqliteStore) -> (u64, u64) {
    let counts = store.counts(&target("a")).await.expect("counts");
    (counts.queued, counts.in_flight)
}

#[tokio::test]
async fn a_delivery_is_handed_over_leased_and_claims_do_not_see_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mailbox = store.handoff(&target("a"));
    mailbox.offer(4, LEASE);
    let e = event("e1", &["a", "b"]);
    let body = e.body.clone();
    store.ingest(e).await.expect("ingest");
    let jobs = mailbox.next_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].event_id, "e1");
    assert_eq!(jobs[0].attempts, 0);
    assert_eq!(jobs[0].body, body);
    assert_eq!(jobs[0].event_type.as_deref(), Some("message.received"));
    // Leased in the file: in flight, not claimable a second time.
    assert_eq!(queued_and_in_flight(&store).await, (0, 1));
    assert!(claim_ids(&store, 10).await.is_empty());
    // b offered nothing: its delivery is queued, and its dispatcher woken to claim it.
    notified(&store.wakeup(&target("b"))).await;
    assert_eq!(claim_ids_of(&store, "b", 10).await.len(), 1);
    // Acked like a claimed one.
    store.ack(jobs[0].id).await.expect("ack");
    assert_eq!(queued_and_in_flight(&store).await, (0, 0));
}

#[tokio::test]
async fn a_handed_over_delivery_keeps_its_creation_time_not_its_lease_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mailbox = store.handoff(&target("a"));
    mailbox.offer(1, LEASE);
    let before = std::time::SystemTime::now();
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    let job = mailbox.next_jobs().await.remove(0);
    let after = std::time::SystemTime::now();
    // Retried: `max_age` and the oldest queued age must count from when it was stored.
    let failed = crate::store::AttemptRecord {
        status: Some(503),
        reason: "HTTP 503".into(),
    };
    store.retry_at(job.id, after, failed).await.expect("retry");
    let oldest = store
        .counts(&target("a"))
        .await
        .expect("counts")
        .oldest_queued_at
        .expect("one queued");
    let stored = crate::store::unix_ms(before)..=crate::store::unix_ms(after);
    assert!(stored.contains(&oldest), "{oldest} in {stored:?}");
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(claimed.jobs[0].created_at, job.created_at);
}

#[tokio::test]
async fn past_the_room_offered_deliveries_are_queued_and_the_dispatcher_woken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mailbox = store.handoff(&target("a"));
    let wake = store.wakeup(&target("a"));
    mailbox.offer(2, LEASE);
    for key in ["e1", "e2", "e3"] {
        store.ingest(event(key, &["a"])).await.expect("ingest");
    }
    // Woken after the earlier batches filled the mailbox.
    notified(&wake).await;
    assert_eq!(claim_ids(&store, 10).await, ["e3"]);
    // Taking the jobs makes room again.
    let keys: Vec<_> = mailbox.take().into_iter().map(|j| j.event_id).collect();
    assert_eq!(keys, ["e1", "e2"]);
    store.ingest(event("e4", &["a"])).await.expect("ingest");
    let keys: Vec<_> = mailbox
        .next_jobs()
        .await
        .into_iter()
        .map(|j| j.event_id)
        .collect();
    assert_eq!(keys, ["e4"]);
}

#[tokio::test]
async fn a_withdrawn_offer_hands_nothing_and_returns_what_was_handed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mailbox = store.handoff(&target("a"));
    mailbox.offer(4, LEASE);
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    tokio::time::timeout(Duration::from_secs(10), mailbox.arrived())
        .await
        .expect("handed over");
    let back = mailbox.withdraw();
    assert_eq!(back.len(), 1);
    // What a dispatcher does with them when its target stops sending.
    store.release(back[0].id).await.expect("release");
    store.ingest(event("e2", &["a"])).await.expect("ingest");
    // Decided in the ingest's transaction, so visible once it is answered: queued, not leased.
    assert_eq!(queued_and_in_flight(&store).await, (2, 0));
    let mut keys = claim_ids(&store, 10).await;
    keys.sort_unstable();
    assert_eq!(keys, ["e1", "e2"]);
}

#[tokio::test]
async fn ordered_deliveries_are_never_handed_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mailbox = store.handoff(&target("a"));
    mailbox.offer(4, LEASE);
    for key in ["e1", "e2"] {
        let mut e = event(key, &[]);
        e.targets = vec![Routed {
            target: target("a"),
            priority: Priority::Normal,
            order_key: Some("contact-1".into()),
            quota: None,
        }];
        store.ingest(e).await.expect("ingest");
    }
    // Decided in the ingest's transaction, so visible once it is answered: queued, not leased.
    assert_eq!(queued_and_in_flight(&store).await, (2, 0));
    // Queued in order: only the head is claimable.
    assert_eq!(claim_ids(&store, 10).await, ["e1"]);
}

#[tokio::test]
async fn a_delivery_handed_to_a_process_that_died_is_due_again_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        let mailbox = store.handoff(&target("a"));
        mailbox.offer(4, Duration::from_secs(3600));
        store.ingest(event("e1", &["a"])).await.expect("ingest");
        assert_eq!(mailbox.next_jobs().await.len(), 1);
        // Dropped without ack: as if the process died mid-attempt.
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(claimed.jobs.len(), 1);
    assert_eq!(claimed.jobs[0].event_id, "e1");
}
