//! The storage budget on a real file: ingest stops before the store could wedge, the work that
//! drains the queue fits in the reserve, and ingest resumes by itself once there is room.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;

use super::{LEASE, event, target};
use crate::config::OnFull;
use crate::store::sqlite::budget::{Limits, MinFree};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{
    AttemptRecord, DeadLetterFilter, Ingested, NewEvent, Operations, Queue, QueueLimit, Quota,
    Routed, SpaceLimit,
};

/// The smallest `storage.max_bytes` the config accepts.
const MAX: u64 = 16 << 20;

fn open(path: &Path) -> SqliteStore {
    let options = SqliteOptions {
        limits: Limits {
            max_bytes: Some(MAX),
            min_free: MinFree::Bytes(0),
        },
        ..SqliteOptions::default()
    };
    SqliteStore::open_with(path, options).expect("open")
}

/// About 20 KB of JSON that does not compress, like the issue's reproduction.
fn big(key: &str, targets: &[&str]) -> NewEvent {
    let noise: Vec<u8> = (0..15_000).map(|_| rand::random::<u8>()).collect();
    let text = base64::engine::general_purpose::STANDARD.encode(noise);
    let mut e = event(key, targets);
    e.body = Bytes::from(format!(
        r#"{{"id":"{key}","action":"message.received","body":"{text}"}}"#
    ));
    e
}

/// Database, log and reserve file together: what the store takes on disk.
fn files(path: &Path) -> u64 {
    ["", "-wal", "-shm", "-reserve"]
        .iter()
        .map(|suffix| {
            let p = format!("{}{suffix}", path.display());
            std::fs::metadata(p).map_or(0, |m| m.len())
        })
        .sum()
}

/// Ingests events for `targets` until the store refuses one; the keys it accepted and why it
/// stopped. Checks after each event that the files stay within the budget.
async fn fill(store: &SqliteStore, path: &Path, prefix: &str) -> (Vec<String>, Ingested) {
    let mut accepted = Vec::new();
    for i in 0..10_000 {
        let key = format!("{prefix}-{i}");
        let answer = store.ingest(big(&key, &["a"])).await.expect("ingest");
        assert!(
            files(path) <= MAX,
            "the store passed max_bytes while ingesting"
        );
        match answer {
            Ingested::Accepted => accepted.push(key),
            other => return (accepted, other),
        }
    }
    panic!("ingest never stopped");
}

/// Claims everything due for `a`, in slices, acking each: the queue drains.
async fn drain(store: &SqliteStore, path: &Path) -> usize {
    let mut acked = 0;
    loop {
        let claimed = store.claim(&target("a"), 64, LEASE).await.expect("claim");
        if claimed.jobs.is_empty() {
            return acked;
        }
        for job in claimed.jobs {
            store.ack(job.id).await.expect("ack");
            acked += 1;
        }
        assert!(files(path) <= MAX, "the drain passed max_bytes");
    }
}

#[tokio::test]
async fn ingest_stops_before_max_bytes_and_resumes_once_the_queue_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = open(&path);
    let (accepted, stopped) = fill(&store, &path, "fill").await;
    assert_eq!(stopped, Ingested::Full(SpaceLimit::MaxBytes));
    assert!(
        accepted.len() > 100,
        "only {} events fit in 16 MiB",
        accepted.len()
    );
    let status = store.storage().expect("a sqlite store has a budget");
    assert_eq!(status.ingest, "stopped");
    assert_eq!(status.stopped_by, Some(SpaceLimit::MaxBytes));
    assert_eq!(status.ingest_room_bytes, 0);

    // While full: a repeat is still a duplicate (nothing to store), a new event is refused
    // without leaving its key behind, so TextUs's retry is stored later.
    let repeat = store
        .ingest(big(&accepted[0], &["a"]))
        .await
        .expect("repeat");
    assert_eq!(repeat, Ingested::Duplicate);
    let refused = store.ingest(big("later", &["a"])).await.expect("refused");
    assert_eq!(refused, Ingested::Full(SpaceLimit::MaxBytes));

    assert_eq!(drain(&store, &path).await, accepted.len());
    // Room is measured before a batch; the first ingest after the drain may still be judged
    // on the reading taken before the last acks.
    let mut resumed = false;
    for _ in 0..3 {
        if store.ingest(big("later", &["a"])).await.expect("ingest") == Ingested::Accepted {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "ingest did not resume after the queue drained");
    assert_eq!(store.storage().expect("budget").ingest, "open");
}

#[tokio::test]
async fn the_reserve_holds_retries_burials_replay_and_acks_of_a_full_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = open(&path);
    let (accepted, _) = fill(&store, &path, "fill").await;
    // Every delivery fails three times with a long reason (the worst a reason can be), then
    // dies; all of them are replayed and delivered. No step may fail or pass max_bytes.
    let reason = "x".repeat(4_000);
    for _ in 0..3 {
        let mut retried = 0;
        loop {
            let claimed = store.claim(&target("a"), 64, LEASE).await.expect("claim");
            if claimed.jobs.is_empty() {
                break;
            }
            for job in claimed.jobs {
                let last = AttemptRecord {
                    status: Some(503),
                    reason: reason.clone(),
                };
                // Due again after this round: far enough that this round's claims skip it.
                let at = SystemTime::now() + Duration::from_secs(3600);
                store.retry_at(job.id, at, last).await.expect("retry");
                retried += 1;
            }
            assert!(files(&path) <= MAX, "retries passed max_bytes");
        }
        assert_eq!(retried, accepted.len());
        // The next round: everything due now.
        make_all_due(&path);
    }
    loop {
        let claimed = store.claim(&target("a"), 64, LEASE).await.expect("claim");
        if claimed.jobs.is_empty() {
            break;
        }
        for job in claimed.jobs {
            let last = AttemptRecord {
                status: Some(422),
                reason: reason.clone(),
            };
            store.bury(job.id, last).await.expect("bury");
        }
        assert!(files(&path) <= MAX, "burials passed max_bytes");
    }
    let replayed = store
        .replay(DeadLetterFilter::default(), &[target("a")])
        .await
        .expect("replay");
    assert_eq!(replayed.replayed as usize, accepted.len());
    assert!(files(&path) <= MAX, "the replay passed max_bytes");
    assert_eq!(drain(&store, &path).await, accepted.len());
}

/// Moves every queued delivery's next attempt to now, from a second connection (as an operator
/// waiting an hour would).
fn make_all_due(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = 0 WHERE state = 0",
        [],
    )
    .expect("due");
}

#[tokio::test]
async fn one_dead_target_cannot_take_the_whole_budget_from_a_healthy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let store = open(&path);
    let shared = |name: &str| Routed {
        quota: Some(Quota {
            max_queue: None,
            share_percent: Some(50),
            on_full: OnFull::Reject,
        }),
        ..Routed::plain(target(name))
    };
    // `dead` never takes anything: its queue grows until it holds its half.
    let mut stored = 0;
    let limit = loop {
        let mut e = big(&format!("dead-{stored}"), &[]);
        e.targets = vec![shared("dead")];
        match store.ingest(e).await.expect("ingest") {
            Ingested::Accepted => stored += 1,
            Ingested::Rejected { target: t, limit } => {
                assert_eq!(t, target("dead"));
                break limit;
            }
            other => panic!("expected the dead target's share to run out first, got {other:?}"),
        }
        assert!(stored < 10_000, "the share never ran out");
    };
    assert!(
        matches!(limit, QueueLimit::Share { percent: 50, .. }),
        "{limit:?}"
    );
    // The healthy target still gets its events, and delivers them.
    for i in 0..50 {
        let mut e = big(&format!("healthy-{i}"), &[]);
        e.targets = vec![shared("b")];
        assert_eq!(
            store.ingest(e).await.expect("ingest"),
            Ingested::Accepted,
            "event {i} for the healthy target"
        );
        let claimed = store.claim(&target("b"), 1, LEASE).await.expect("claim");
        for job in claimed.jobs {
            store.ack(job.id).await.expect("ack");
        }
    }
    let status = store.storage().expect("budget");
    assert_eq!(status.ingest, "open", "{status:?}");
}

#[tokio::test]
async fn a_store_reopened_over_its_budget_refuses_ingest_drains_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let accepted = {
        let store = open(&path);
        let (accepted, stopped) = fill(&store, &path, "before").await;
        assert_eq!(stopped, Ingested::Full(SpaceLimit::MaxBytes));
        accepted
    };
    // The writer thread ends once its handle is gone; the next open waits for its lock.
    let store = open(&path);
    assert_eq!(
        store.ingest(big("after", &["a"])).await.expect("ingest"),
        Ingested::Full(SpaceLimit::MaxBytes)
    );
    assert_eq!(store.storage().expect("budget").ingest, "stopped");
    assert_eq!(drain(&store, &path).await, accepted.len());
    let mut resumed = false;
    for _ in 0..3 {
        if store.ingest(big("after", &["a"])).await.expect("ingest") == Ingested::Accepted {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "ingest did not resume after the reopened store drained"
    );
}
