//! Finding an event by its key on a real SQLite file: what the store holds and what is gone.

use std::time::{Duration, SystemTime};

use super::super::SqliteStore;
use super::{LEASE, event, target};
use crate::store::{
    AttemptRecord, DeadLetterFilter, DeliveryState, EventDelivery, Operations, Queue, unix_ms,
};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("relay.db")).expect("open")
}

/// The one delivery of `key`'s event for `name`, claimed.
async fn claim_one(store: &SqliteStore, name: &str) -> crate::store::Job {
    let mut claimed = store.claim(&target(name), 1, LEASE).await.expect("claim");
    claimed.jobs.pop().expect("one job")
}

fn by_target<'a>(deliveries: &'a [EventDelivery], name: &str) -> Vec<&'a EventDelivery> {
    deliveries
        .iter()
        .filter(|d| d.target.as_deref() == Some(name))
        .collect()
}

#[tokio::test]
async fn an_unknown_key_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(event("known", &["a"])).await.expect("ingest");
    assert_eq!(store.find_event("unknown").await.expect("find"), None);
    // Keys are matched exactly, not as patterns.
    assert_eq!(store.find_event("know%").await.expect("find"), None);
}

#[tokio::test]
async fn each_delivery_is_found_where_it_stands_and_a_delivered_one_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let key = "/integrations/h13Jc5/deliveries/xyz";
    let before = unix_ms(SystemTime::now());
    store
        .ingest(event(key, &["a", "b", "c", "d"]))
        .await
        .expect("ingest");
    store.ingest(event("other", &["a"])).await.expect("ingest");

    let found = store.find_event(key).await.expect("find").expect("known");
    assert_eq!(found.stored.len(), 1);
    assert_eq!(
        found.stored[0].event_type.as_deref(),
        Some("message.received")
    );
    assert!(found.stored[0].received_at >= before);
    assert!(
        found
            .remembered_until
            .is_some_and(|until| until >= before + 3_500_000),
        "{found:?}"
    );
    assert_eq!(found.deliveries.len(), 4);
    assert!(
        found
            .deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Queued && d.attempts == 0)
    );

    // a: delivered. b: dead after a 422. c: retrying later. d: leased right now.
    let a = claim_one(&store, "a").await;
    assert_eq!(a.event_id, key);
    store.ack(a.id).await.expect("ack");
    let b = claim_one(&store, "b").await;
    let rejected = AttemptRecord {
        status: Some(422),
        reason: "HTTP 422: no such contact".into(),
    };
    store.bury(b.id, rejected).await.expect("bury");
    let c = claim_one(&store, "c").await;
    let later = SystemTime::now() + Duration::from_secs(600);
    let refused = AttemptRecord {
        status: None,
        reason: "connection refused".into(),
    };
    store.retry_at(c.id, later, refused).await.expect("retry");
    let d = claim_one(&store, "d").await;

    let found = store.find_event(key).await.expect("find").expect("known");
    assert_eq!(found.stored.len(), 1, "d, b and c still need the body");
    assert!(by_target(&found.deliveries, "a").is_empty(), "{found:?}");
    let dead = by_target(&found.deliveries, "b");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, b.id);
    assert_eq!(dead[0].state, DeliveryState::Dead);
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].last_status, Some(422));
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("HTTP 422: no such contact")
    );
    assert_eq!(dead[0].next_attempt_at, None);
    let retrying = by_target(&found.deliveries, "c");
    assert_eq!(retrying[0].state, DeliveryState::Queued);
    assert_eq!(retrying[0].next_attempt_at, Some(unix_ms(later)));
    assert_eq!(
        retrying[0].last_error.as_deref(),
        Some("connection refused")
    );
    let leased = by_target(&found.deliveries, "d");
    assert_eq!(leased[0].state, DeliveryState::InFlight);
    assert!(
        leased[0]
            .next_attempt_at
            .is_some_and(|until| until > unix_ms(SystemTime::now())),
        "the lease runs out in the future"
    );

    // Once every delivery is done the event row is pruned: only the key is left.
    for id in [c.id, d.id] {
        store.ack(id).await.expect("ack");
    }
    let filter = DeadLetterFilter {
        ids: Some(vec![b.id]),
        ..DeadLetterFilter::default()
    };
    assert_eq!(store.purge(filter).await.expect("purge"), 1);
    let found = store
        .find_event(key)
        .await
        .expect("find")
        .expect("key kept");
    assert!(found.stored.is_empty(), "{found:?}");
    assert!(found.deliveries.is_empty(), "{found:?}");
    assert!(found.remembered_until.is_some());
    // The key keeps where the event was routed, so "delivered" is told from "not routed".
    let routed: Vec<&str> = ["a", "b", "c", "d"].into();
    assert_eq!(
        found.routed,
        Some(routed.iter().map(|s| s.to_string()).collect())
    );
    let other = store.find_event("other").await.expect("find").expect("key");
    assert_eq!(other.routed, Some(vec!["a".to_string()]));
}

#[tokio::test]
async fn without_de_duplication_a_delivered_event_is_forgotten_and_copies_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut once = event("k", &["a"]);
    once.dedupe_window = Duration::ZERO;
    store.ingest(once.clone()).await.expect("ingest");
    store.ingest(once).await.expect("ingest again");
    let found = store.find_event("k").await.expect("find").expect("stored");
    assert_eq!(found.remembered_until, None);
    assert_eq!(found.routed, None, "nothing kept without a key");
    assert_eq!(found.stored.len(), 2, "{found:?}");
    assert_eq!(found.deliveries.len(), 2);

    for _ in 0..2 {
        let job = claim_one(&store, "a").await;
        store.ack(job.id).await.expect("ack");
    }
    assert_eq!(store.find_event("k").await.expect("find"), None);
}

#[tokio::test]
async fn an_unrouted_event_is_known_by_its_key_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(event("nobody", &[])).await.expect("ingest");
    let found = store
        .find_event("nobody")
        .await
        .expect("find")
        .expect("key");
    assert!(found.remembered_until.is_some());
    assert!(found.stored.is_empty() && found.deliveries.is_empty());
    assert_eq!(found.routed, Some(vec![]), "routed nowhere");
}
