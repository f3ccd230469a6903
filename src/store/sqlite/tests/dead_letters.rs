//! Dead letters on a real SQLite file: attempt history, show, filters, replay, purge, retention.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::super::dead::{KEEP_ATTEMPTS, SLICE};
use super::super::{SqliteOptions, SqliteStore};
use super::{LEASE, event, target};
use crate::store::{
    AttemptRecord, DeadLetterFilter, DeadLetterQuery, DeliveryId, NewEvent, Operations, Queue,
    unix_ms,
};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("relay.db")).expect("open")
}

fn failed(status: u16) -> AttemptRecord {
    AttemptRecord {
        status: Some(status),
        reason: format!("HTTP {status}"),
    }
}

fn typed(key: &str, event_type: &str, targets: &[&str]) -> NewEvent {
    let mut e = event(key, targets);
    e.event_type = Some(event_type.to_owned());
    e.body = Bytes::from(format!(r#"{{"id":"{key}","action":"{event_type}"}}"#));
    e
}

fn never_an_event(key: &str) -> NewEvent {
    let mut e = event(key, &[]);
    e.event_type = None;
    e.body = Bytes::from_static(b"this is not json");
    e.dead_reason = Some("body is not a JSON object".into());
    e
}

/// Ingests `e` and buries its delivery to `t` after one failed attempt; returns its id.
async fn dead_letter(store: &SqliteStore, e: NewEvent, t: &str) -> DeliveryId {
    store.ingest(e).await.expect("ingest");
    let job = store
        .claim(&target(t), 1, LEASE)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    store.bury(job.id, failed(400)).await.expect("bury");
    job.id
}

fn all(limit: usize) -> DeadLetterQuery {
    DeadLetterQuery {
        limit,
        ..DeadLetterQuery::default()
    }
}

fn ids(filter_ids: &[DeliveryId]) -> DeadLetterFilter {
    DeadLetterFilter {
        ids: Some(filter_ids.to_vec()),
        ..DeadLetterFilter::default()
    }
}

fn count(store: &SqliteStore, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(store.path()).expect("reopen");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[tokio::test]
async fn every_settled_attempt_is_kept_and_shown_with_the_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    for status in [503, 502] {
        let job = store.claim(&target("a"), 1, LEASE).await.expect("claim");
        let id = job.jobs[0].id;
        store
            .retry_at(id, SystemTime::now(), failed(status))
            .await
            .expect("retry");
    }
    let job = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    let id = job.jobs[0].id;
    assert!(
        store.dead_letter(id).await.expect("show").is_none(),
        "still queued"
    );
    store.bury(id, failed(500)).await.expect("bury");

    let shown = store
        .dead_letter(id)
        .await
        .expect("show")
        .expect("a dead letter");
    assert_eq!(
        &shown.body[..],
        br#"{"id":"e1","action":"message.received"}"#
    );
    assert_eq!(shown.letter.attempts, 3);
    assert_eq!(shown.letter.last_status, Some(500));
    let history: Vec<(u32, Option<u16>, &str)> = shown
        .history
        .iter()
        .map(|a| (a.attempt, a.status, a.reason.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            (1, Some(503), "HTTP 503"),
            (2, Some(502), "HTTP 502"),
            (3, Some(500), "HTTP 500")
        ]
    );
    assert!(shown.history.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(shown.history[2].at <= shown.letter.dead_at);
}

#[tokio::test]
async fn ack_and_purge_take_the_attempt_history_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(event("acked", &["a"])).await.expect("ingest");
    let id = store
        .claim(&target("a"), 1, LEASE)
        .await
        .expect("claim")
        .jobs[0]
        .id;
    store
        .retry_at(id, SystemTime::now(), failed(503))
        .await
        .expect("retry");
    assert_eq!(count(&store, "attempts"), 1);
    store.claim(&target("a"), 1, LEASE).await.expect("claim");
    store.ack(id).await.expect("ack");
    assert_eq!(count(&store, "attempts"), 0, "acked: history gone");

    let dead = dead_letter(&store, event("purged", &["a"]), "a").await;
    assert_eq!(count(&store, "attempts"), 1);
    assert_eq!(store.purge(ids(&[dead])).await.expect("purge"), 1);
    assert_eq!(count(&store, "attempts"), 0, "purged: history gone");
    assert_eq!(count(&store, "events"), 0, "purged: event gone");
    assert_eq!(store.purge(ids(&[dead])).await.expect("purge"), 0);
}

#[tokio::test]
async fn the_history_keeps_only_the_most_recent_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    let id = store
        .claim(&target("a"), 1, LEASE)
        .await
        .expect("claim")
        .jobs[0]
        .id;
    let total = KEEP_ATTEMPTS + 5;
    for _ in 1..total {
        store
            .retry_at(id, SystemTime::now(), failed(503))
            .await
            .expect("retry");
    }
    store.bury(id, failed(503)).await.expect("bury");
    let shown = store.dead_letter(id).await.expect("show").expect("dead");
    assert_eq!(shown.letter.attempts, total);
    assert_eq!(shown.history.len(), KEEP_ATTEMPTS as usize);
    assert_eq!(shown.history[0].attempt, 6);
    assert_eq!(shown.history.last().map(|a| a.attempt), Some(total));
}

#[tokio::test]
async fn replay_requeues_due_now_with_attempts_reset_and_wakes_the_dispatcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let id = dead_letter(&store, event("e1", &["a"]), "a").await;
    let wake = store.wakeup(&target("a"));
    let before = SystemTime::now();
    let done = store
        .replay(ids(&[id]), &[target("a")])
        .await
        .expect("replay");
    assert_eq!(done.replayed, 1);
    assert_eq!(done.targets.get("a"), Some(&1));
    assert!(done.skipped.is_empty(), "{done:?}");
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("the dispatcher is woken");
    assert!(store.dead_letters(all(10)).await.expect("list").is_empty());
    assert_eq!(
        count(&store, "attempts"),
        0,
        "history cleared with the reset"
    );
    let job = store
        .claim(&target("a"), 1, LEASE)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!((job.id, job.attempts), (id, 0));
    assert!(
        unix_ms(job.created_at) >= unix_ms(before),
        "max_age counts from the replay"
    );
}

#[tokio::test]
async fn replay_skips_what_it_cannot_deliver_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(never_an_event("junk")).await.expect("ingest");
    let gone = dead_letter(&store, event("e1", &["gone"]), "gone").await;
    let live = dead_letter(&store, event("e2", &["a"]), "a").await;
    let since_epoch = DeadLetterFilter {
        since: Some(SystemTime::UNIX_EPOCH),
        ..DeadLetterFilter::default()
    };
    let done = store
        .replay(since_epoch, &[target("a")])
        .await
        .expect("replay");
    assert_eq!(done.replayed, 1);
    let reasons: Vec<(&str, u64)> = done
        .skipped
        .iter()
        .map(|s| (s.reason.as_str(), s.count))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].0.contains("never an event") && reasons[0].1 == 1);
    assert!(reasons[1].0.contains("not in the running configuration"));
    assert_eq!(done.skipped[1].ids, [gone]);
    // The skipped ones are still dead letters; the replayed one is not.
    let left: Vec<DeliveryId> = store
        .dead_letters(all(10))
        .await
        .expect("list")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&live));

    let done = store
        .replay(ids(&[DeliveryId(9_999), live]), &[target("a")])
        .await
        .expect("replay");
    assert_eq!(done.replayed, 0, "{done:?}");
    assert_eq!(done.skipped.len(), 1);
    assert!(
        done.skipped[0]
            .reason
            .contains("no dead letter with this id")
    );
    assert_eq!(done.skipped[0].ids, [DeliveryId(9_999), live]);
}

#[tokio::test]
async fn filters_select_by_target_type_and_time_for_list_replay_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let created = dead_letter(&store, typed("c1", "contact.created", &["a"]), "a").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let received = dead_letter(&store, typed("m1", "message.received", &["a"]), "a").await;
    let other = dead_letter(&store, typed("m2", "message.received", &["b"]), "b").await;

    let list = |q: DeadLetterQuery| {
        let store = &store;
        async move {
            let found = store.dead_letters(q).await.expect("list");
            found.iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(all(10)).await,
        [other, received, created],
        "newest first"
    );
    assert_eq!(list(all(2)).await, [other, received]);
    let by_type = DeadLetterQuery {
        event_type: Some("message.received".into()),
        ..all(10)
    };
    assert_eq!(list(by_type).await, [other, received]);
    let before_middle = DeadLetterQuery {
        until: Some(middle),
        ..all(10)
    };
    assert_eq!(list(before_middle).await, [created]);
    let after_middle_on_a = DeadLetterQuery {
        target: Some("a".into()),
        since: Some(middle),
        ..all(10)
    };
    assert_eq!(list(after_middle_on_a).await, [received]);
    let dead_at = store.dead_letters(all(10)).await.expect("list")[2].dead_at;
    let exactly = DeadLetterQuery {
        since: Some(crate::store::from_unix_ms(dead_at)),
        until: Some(crate::store::from_unix_ms(dead_at + 1)),
        ..all(10)
    };
    assert!(list(exactly).await.contains(&created), "since is inclusive");

    let type_on_a = DeadLetterFilter {
        target: Some("a".into()),
        event_type: Some("message.received".into()),
        ..DeadLetterFilter::default()
    };
    let done = store
        .replay(type_on_a, &[target("a"), target("b")])
        .await
        .expect("replay");
    assert_eq!(done.replayed, 1);
    assert_eq!(list(all(10)).await, [other, created]);

    let since_middle = DeadLetterFilter {
        since: Some(middle),
        ..DeadLetterFilter::default()
    };
    assert_eq!(store.purge(since_middle).await.expect("purge"), 1);
    assert_eq!(list(all(10)).await, [created]);
    assert!(
        unix_ms(SystemTime::now()) >= dead_at,
        "dead_at is a past Unix ms"
    );
}

#[tokio::test]
async fn purge_removes_bodies_that_were_never_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.ingest(never_an_event("junk")).await.expect("ingest");
    let letter = store.dead_letters(all(10)).await.expect("list").remove(0);
    let shown = store
        .dead_letter(letter.id)
        .await
        .expect("show")
        .expect("dead");
    assert_eq!(&shown.body[..], b"this is not json");
    assert!(shown.history.is_empty());
    assert_eq!(store.purge(ids(&[letter.id])).await.expect("purge"), 1);
    assert_eq!(count(&store, "events"), 0);
}

#[tokio::test]
async fn replay_and_purge_walk_more_than_one_slice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir));
    let n = SLICE + 10;
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.ingest(never_an_event(&format!("junk{i}"))).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("ingest");
    }
    let everything = DeadLetterFilter {
        since: Some(SystemTime::UNIX_EPOCH),
        ..DeadLetterFilter::default()
    };
    let done = store
        .replay(everything.clone(), &[target("a")])
        .await
        .expect("replay");
    assert_eq!(done.skipped[0].count, n as u64, "each letter counted once");
    assert_eq!(done.skipped[0].ids.len(), crate::store::Skipped::MAX_IDS);
    assert_eq!(store.purge(everything).await.expect("purge"), n as u64);
    assert_eq!(count(&store, "deliveries"), 0);
    assert_eq!(count(&store, "events"), 0);
}

#[tokio::test]
async fn retention_sweeps_old_dead_letters_in_bounded_slices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        dead_letter_retention: Duration::from_millis(300),
        sweep_interval: Duration::ZERO,
        ..SqliteOptions::default()
    };
    let store =
        Arc::new(SqliteStore::open_with(&dir.path().join("relay.db"), options).expect("open"));
    let old = SLICE + 10;
    let mut tasks = Vec::new();
    for i in 0..old {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.ingest(never_an_event(&format!("old{i}"))).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("ingest");
    }
    // Never swept: it is queued, not dead, however old.
    store.ingest(event("queued", &["b"])).await.expect("ingest");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The writer sweeps one slice after each batch, after replying to it: the ping's batch is
    // followed by one slice, which the list (the next batch) sees done.
    store.ping().await.expect("ping");
    let left = store.dead_letters(all(5 * SLICE)).await.expect("list");
    assert_eq!(left.len(), old - SLICE, "one bounded slice per batch");
    store.ping().await.expect("ping");
    assert!(store.dead_letters(all(10)).await.expect("list").is_empty());
    let fresh = dead_letter(&store, event("fresh", &["a"]), "a").await;
    store.ping().await.expect("ping");
    let left = store.dead_letters(all(10)).await.expect("list");
    assert_eq!(left.len(), 1, "a fresh dead letter is kept");
    assert_eq!(left[0].id, fresh);
    assert_eq!(
        count(&store, "deliveries"),
        2,
        "queued deliveries are never swept"
    );
    assert_eq!(count(&store, "events"), 2);
}
