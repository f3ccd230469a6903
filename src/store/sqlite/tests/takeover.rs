//! Sharing a file during a zero-downtime restart, and taking it over once the old relay exits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::super::SqliteStore;
use super::{LEASE, claim_ids, event, target};
use crate::store::{Ingested, Queue};

#[tokio::test]
async fn after_a_zero_downtime_restart_bodies_are_kept_as_they_came_while_the_old_process_may_run()
{
    // The old process may be from before compression: it would send a compressed body as is.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let upgrade = super::super::SqliteOptions {
        resume_in_flight: false,
        ..super::super::SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, upgrade).expect("open");
    let mut e = event("e1", &["a"]);
    e.body = Bytes::from_static(crate::support::samples::SAMPLES[0].1);
    store.ingest(e).await.expect("ingest");
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    let encoding: i64 = conn
        .query_row("SELECT body_encoding FROM events", [], |r| r.get(0))
        .expect("row");
    assert_eq!(encoding, super::super::body::RAW);
}

/// A zero-downtime restart has two processes (here: two stores) writing one file for a few
/// seconds. Every ingest must commit, and de-duplication must hold across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_file_both_commit_and_dedupe() {
    // Regression: #5
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let old = Arc::new(SqliteStore::open(&path).expect("open old"));
    let options = super::super::SqliteOptions {
        resume_in_flight: false,
        ..super::super::SqliteOptions::default()
    };
    let new = Arc::new(SqliteStore::open_with(&path, options).expect("open new"));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = if i % 2 == 0 { old.clone() } else { new.clone() };
        tasks.push(tokio::spawn(async move {
            // Each event is sent to both stores: exactly one may accept it.
            let key = format!("e{}", i / 2);
            let ingested = store.ingest(event(&key, &["a"])).await;
            let claimed = store
                .claim(&target("a"), 5, LEASE)
                .await
                .map(|c| c.jobs.len());
            (ingested, claimed)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (ingested, claimed) = t.await.expect("join");
        match ingested.expect("every ingest commits") {
            Ingested::Accepted => accepted += 1,
            Ingested::Duplicate => {}
            other => panic!("unexpected {other:?}"),
        }
        claimed.expect("every claim commits");
    }
    assert_eq!(accepted, 200, "each key accepted once across both writers");
}

/// `run --upgrade` opens the store while the old process still delivers: its leases must be
/// left to run out (or be acked), not made due again, or every in-flight delivery would be
/// sent twice. A normal start (the old process is gone) makes them due at once.
#[tokio::test]
async fn an_upgrade_leaves_the_old_process_leases_alone() {
    // Regression: #5
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let old = SqliteStore::open(&path).expect("open old");
    old.ingest(event("e1", &["a"])).await.expect("ingest");
    assert_eq!(
        old.claim(&target("a"), 10, LEASE)
            .await
            .expect("claim")
            .jobs
            .len(),
        1
    );

    let upgrade = super::super::SqliteOptions {
        resume_in_flight: false,
        ..super::super::SqliteOptions::default()
    };
    let new = SqliteStore::open_with(&path, upgrade).expect("open new");
    let claimed = new.claim(&target("a"), 10, LEASE).await.expect("claim");
    assert!(
        claimed.jobs.is_empty(),
        "the old process's lease was released"
    );
    drop(new);
    // The old process crashes; the next start owns the store alone.
    drop(old);

    let restarted = SqliteStore::open(&path).expect("open after a crash");
    let claimed = restarted
        .claim(&target("a"), 10, LEASE)
        .await
        .expect("claim");
    assert_eq!(
        claimed.jobs.len(),
        1,
        "a normal start resumes in-flight deliveries"
    );
}

/// After a zero-downtime restart the new process takes the store's lock once the old one is
/// gone, and makes due what the old one left in flight (it can no longer ack it), while its
/// own leases stay.
#[tokio::test]
async fn the_new_process_releases_the_old_ones_leases_once_it_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let old = SqliteStore::open(&path).expect("open old");
    old.ingest(event("old-one", &["a"])).await.expect("ingest");
    assert_eq!(claim_ids(&old, 10).await, ["old-one"]);
    let upgrade = super::super::SqliteOptions {
        resume_in_flight: false,
        ..super::super::SqliteOptions::default()
    };
    let new = SqliteStore::open_with(&path, upgrade).expect("open new");
    new.ingest(event("new-one", &["a"])).await.expect("ingest");
    assert_eq!(claim_ids(&new, 10).await, ["new-one"]);
    assert!(
        claim_ids(&new, 10).await.is_empty(),
        "the old lease is the old process's"
    );
    drop(old);
    // Once the new store has taken the lock, the old lease is due; the new one is not.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = claim_ids(&new, 10).await;
        if !keys.is_empty() {
            assert_eq!(keys, ["old-one"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old lease was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second store on a file another one holds (a second relay) is refused, naming the file.
#[tokio::test]
async fn a_second_owner_of_one_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.db");
    let _first = SqliteStore::open(&path).expect("open");
    let second = SqliteStore::open(&path)
        .err()
        .expect("a second owner is refused");
    let message = second.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("held by another relay"),
        "{message}"
    );
}
