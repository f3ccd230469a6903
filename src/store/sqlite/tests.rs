//! Store tests on a real SQLite file in a temporary folder.

mod budget;
mod dead_letters;
mod find;
mod handoff;
mod takeover;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::SqliteStore;
use crate::config::TargetId;
use crate::store::{AttemptRecord, DeadLetterQuery, Ingested, NewEvent, Operations, Queue, Routed};

mod policy;

fn target(name: &str) -> TargetId {
    TargetId(Arc::from(name))
}

fn event(event_id: &str, targets: &[&str]) -> NewEvent {
    NewEvent {
        event_id: event_id.to_string(),
        event_type: Some("message.received".to_string()),
        body: Bytes::from(format!(
            r#"{{"id":"{event_id}","action":"message.received"}}"#
        )),
        parsed: Default::default(),
        signature: "abc".to_string(),
        received_at: SystemTime::now(),
        targets: targets.iter().map(|t| Routed::plain(target(t))).collect(),
        dead_reason: None,
        dedupe_window: Duration::from_secs(3600),
        keep_unrouted: false,
    }
}

const LEASE: Duration = Duration::from_secs(60);

/// Claims up to `limit` deliveries of target `a`; their event ids, in claim order.
async fn claim_ids(store: &SqliteStore, limit: usize) -> Vec<String> {
    claim_ids_of(store, "a", limit).await
}

async fn claim_ids_of(store: &SqliteStore, name: &str, limit: usize) -> Vec<String> {
    let claimed = store
        .claim(&target(name), limit, LEASE)
        .await
        .expect("claim");
    claimed.jobs.into_iter().map(|j| j.event_id).collect()
}

/// Ingests `key` for target `a` and claims its delivery.
async fn ingest_and_claim(store: &SqliteStore, key: &str) -> crate::store::Job {
    store.ingest(event(key, &["a"])).await.expect("ingest");
    let mut claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    claimed.jobs.pop().expect("one job")
}

#[tokio::test]
async fn ingest_claim_ack_and_prune() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("nested/relay.db")).expect("open");
    assert_eq!(
        store
            .ingest(event("e1", &["a", "b"]))
            .await
            .expect("ingest"),
        Ingested::Accepted
    );
    let a = store.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert_eq!(a.jobs.len(), 1);
    assert_eq!(a.jobs[0].event_id, "e1");
    assert_eq!(a.jobs[0].attempts, 0);
    // Leased: a second claim does not hand it out again.
    assert!(
        store
            .claim(&target("a"), 10, LEASE)
            .await
            .expect("claim")
            .jobs
            .is_empty()
    );
    store.ack(a.jobs[0].id).await.expect("ack");
    // b still needs the event, so its body is kept.
    let b = store.claim(&target("b"), 10, LEASE).await.expect("claim");
    assert_eq!(b.jobs.len(), 1);
    assert_eq!(
        &b.jobs[0].body[..],
        br#"{"id":"e1","action":"message.received"}"#
    );
    store.ack(b.jobs[0].id).await.expect("ack");
    let conn = rusqlite::Connection::open(store.path()).expect("reopen");
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(events, 0, "delivered events are pruned");
}

#[tokio::test]
async fn duplicates_are_recognised_within_the_window_and_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(
            store.ingest(event("dup", &["a"])).await.expect("ingest"),
            Ingested::Accepted
        );
        assert_eq!(
            store.ingest(event("dup", &["a"])).await.expect("ingest"),
            Ingested::Duplicate
        );
        let mut off = event("dup", &["a"]);
        off.dedupe_window = Duration::ZERO;
        assert_eq!(store.ingest(off).await.expect("ingest"), Ingested::Accepted);
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.ingest(event("dup", &["a"])).await.expect("ingest"),
        Ingested::Duplicate
    );
    let mut short = event("short", &["a"]);
    short.dedupe_window = Duration::from_millis(1);
    store.ingest(short.clone()).await.expect("ingest");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        store.ingest(short).await.expect("ingest"),
        Ingested::Accepted,
        "window expired"
    );
}

#[tokio::test]
async fn retry_schedules_and_bury_keeps_a_dead_letter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    store.ingest(event("e1", &["a"])).await.expect("ingest");
    let job = store
        .claim(&target("a"), 1, LEASE)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    let later = SystemTime::now() + Duration::from_secs(3600);
    let last = AttemptRecord {
        status: Some(503),
        reason: "HTTP 503".into(),
    };
    store.retry_at(job.id, later, last).await.expect("retry");
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert!(claimed.jobs.is_empty(), "not due yet");
    let due = claimed.next_due.expect("next due");
    assert!(due > SystemTime::now() + Duration::from_secs(3500));
    assert_eq!(store.counts(&target("a")).await.expect("counts").queued, 1);

    store.ingest(event("e2", &["a"])).await.expect("ingest");
    let job = store
        .claim(&target("a"), 1, LEASE)
        .await
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(job.event_id, "e2");
    let last = AttemptRecord {
        status: Some(400),
        reason: "HTTP 400 (permanent): nope".into(),
    };
    store.bury(job.id, last).await.expect("bury");
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
    assert_eq!(dead[0].last_status, Some(400));
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].reason.contains("nope"));
    assert!(
        store
            .dead_letters(DeadLetterQuery {
                target: Some("b".into()),
                limit: 10,
                ..DeadLetterQuery::default()
            })
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn leases_from_a_crashed_process_are_released_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        store.ingest(event("e1", &["a"])).await.expect("ingest");
        let claimed = store
            .claim(&target("a"), 1, Duration::from_secs(3600))
            .await
            .expect("claim");
        assert_eq!(claimed.jobs.len(), 1);
        // Dropped without ack: as if the process died mid-attempt.
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(
        claimed.jobs.len(),
        1,
        "in-flight delivery is due again after restart"
    );
    assert_eq!(claimed.jobs[0].attempts, 0);
}

#[tokio::test]
async fn malformed_bodies_are_dead_letters_without_a_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    let mut bad = event("sha256:00", &[]);
    bad.event_type = None;
    bad.body = Bytes::from_static(b"not json");
    bad.dead_reason = Some("body is not a JSON object".into());
    assert_eq!(store.ingest(bad).await.expect("ingest"), Ingested::Accepted);
    let dead = store
        .dead_letters(DeadLetterQuery {
            target: None,
            limit: 10,
            ..DeadLetterQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].target, None);
    assert!(dead[0].reason.contains("not a JSON object"));
}

#[tokio::test]
async fn concurrent_ingests_are_group_committed_and_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.ingest(event(&format!("e{i}"), &["a"])).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("ingest"), Ingested::Accepted);
    }
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 500);
    let sync: i64 = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map(|m| i64::from(m == "wal"))
        .expect("mode");
    assert_eq!(sync, 1, "WAL mode persists");
}

#[tokio::test]
async fn an_unhurried_ack_waits_for_the_next_ingest_and_commits_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    // A hold far longer than the test, so that only the ingest can end it.
    let options = super::SqliteOptions {
        gather: Duration::from_secs(600),
        ..super::SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).expect("open");
    let job = ingest_and_claim(&store, "e1").await;
    let ack = store.ack_unhurried(job.id);
    tokio::pin!(ack);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut ack)
            .await
            .is_err(),
        "held for company"
    );
    store.ingest(event("e2", &["a"])).await.expect("ingest");
    // Answered in the ingest's batch, before the ingest itself: already done.
    tokio::time::timeout(Duration::ZERO, &mut ack)
        .await
        .expect("answered with the ingest")
        .expect("ack");
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let keys: Vec<String> = conn
        .prepare("SELECT key FROM events ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("events");
    assert_eq!(keys, ["e2"], "e1 was delivered and pruned, durably");
}

#[tokio::test]
async fn an_unhurried_ack_alone_commits_after_the_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).expect("open");
    let job = ingest_and_claim(&store, "e1").await;
    store.ack_unhurried(job.id).await.expect("ack");
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(events, 0);
}

#[tokio::test]
async fn bodies_are_kept_compressed_and_claims_read_them_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).expect("open");
    let (_, sample) = crate::support::samples::SAMPLES[0];
    let mut e = event("e1", &["a"]);
    e.body = Bytes::from_static(sample);
    store.ingest(e).await.expect("ingest");
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let (kept, encoding): (i64, i64) = conn
        .query_row("SELECT length(body), body_encoding FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("row");
    assert_eq!(encoding, super::body::ZSTD);
    assert!(
        kept * 2 < sample.len() as i64,
        "{kept} of {} bytes",
        sample.len()
    );
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(&claimed.jobs[0].body[..], sample);
}

#[tokio::test]
async fn a_file_from_before_compression_is_upgraded_and_its_bodies_read_as_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let conn = rusqlite::Connection::open(&path).expect("create");
    conn.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, key TEXT NOT NULL, type TEXT,
             body BLOB NOT NULL, signature TEXT NOT NULL, received_at INTEGER NOT NULL);
         INSERT INTO events(key, type, body, signature, received_at)
             VALUES ('old', 'message.received', CAST('{\"id\":\"old\"}' AS BLOB), 'abc', 0);",
    )
    .expect("old schema");
    drop(conn);
    drop(SqliteStore::open(&path).expect("open upgrades"));
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    conn.execute(
        "INSERT INTO deliveries(event_id, target, state, next_attempt_at, created_at, updated_at)
         VALUES (1, 'a', 0, 0, 0, 0)",
        [],
    )
    .expect("queued delivery");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    let claimed = store.claim(&target("a"), 1, LEASE).await.expect("claim");
    assert_eq!(&claimed.jobs[0].body[..], br#"{"id":"old"}"#);
}

#[tokio::test]
async fn targets_lists_each_target_with_deliveries_in_any_state_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");
    store
        .ingest(event("e1", &["queued", "leased", "buried"]))
        .await
        .expect("ingest");
    store
        .ingest(event("e2", &["queued", "leased"]))
        .await
        .expect("ingest");
    // A body that was not an event: a dead letter without a target.
    let mut bad = event("e3", &[]);
    bad.dead_reason = Some("not an event".to_string());
    store.ingest(bad).await.expect("ingest");
    let leased = store
        .claim(&target("leased"), 1, LEASE)
        .await
        .expect("claim");
    assert_eq!(leased.jobs.len(), 1);
    let buried = store
        .claim(&target("buried"), 1, LEASE)
        .await
        .expect("claim");
    let last = AttemptRecord {
        status: Some(400),
        reason: "bad request".to_string(),
    };
    store.bury(buried.jobs[0].id, last).await.expect("bury");

    let names: Vec<String> = store
        .targets()
        .await
        .expect("targets")
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(names, ["buried", "leased", "queued"]);
}

#[tokio::test]
async fn counts_follow_claims_acks_and_burials_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let a = target("a");
    let expected = {
        let store = SqliteStore::open(&path).expect("open");
        for i in 1..=5 {
            store
                .ingest(event(&format!("e{i}"), &["a", "b"]))
                .await
                .expect("ingest");
            // Distinct creation times, so "oldest" has one answer.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let claimed = store.claim(&a, 2, LEASE).await.expect("claim").jobs;
        assert_eq!(claimed.len(), 2);
        let during = store.counts(&a).await.expect("counts");
        assert_eq!((during.queued, during.in_flight, during.dead), (3, 2, 0));
        let first_created = during.oldest_queued_at.expect("oldest");

        store.ack(claimed[0].id).await.expect("ack");
        let last = AttemptRecord {
            status: Some(400),
            reason: "bad request".to_string(),
        };
        store.bury(claimed[1].id, last).await.expect("bury");
        let after = store.counts(&a).await.expect("counts");
        assert_eq!((after.queued, after.in_flight, after.dead), (3, 0, 1));
        // The two oldest left the queue: the oldest pending one is younger now.
        let oldest = after.oldest_queued_at.expect("oldest");
        assert!(oldest > first_created, "{oldest} > {first_created}");
        // Another target's queue is its own.
        let b = store.counts(&target("b")).await.expect("counts");
        assert_eq!((b.queued, b.in_flight, b.dead), (5, 0, 0));
        assert_eq!(b.oldest_queued_at, Some(first_created));
        after
    };
    // After a restart the counts come from the table again, and agree.
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.counts(&a).await.expect("counts"), expected);
}

#[tokio::test]
async fn committed_pages_reach_the_database_file_without_waiting_for_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).expect("open");
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    // Far below the writer's own checkpoint threshold: only the checkpoint thread copies
    // these pages out of the log into the database file.
    for i in 0..50 {
        store
            .ingest(event(&format!("e{i}"), &["a"]))
            .await
            .expect("ingest");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "relay.db stayed at {before} bytes: nothing was checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
