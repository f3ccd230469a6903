//! Planned stops under load: the zero-downtime restart (SIGQUIT plus `run --upgrade`) and
//! SIGTERM. Both must keep every acknowledged event; the upgrade must also fail no request.

use textus_relay::support::sink::{Reply, Sink};

use crate::crash::two_targets;
use crate::load::{Load, wait_delivered};
use crate::support::*;

/// Connections sending continuously through the handover.
const CONNECTIONS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_under_load_fails_no_request_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Sink::start(vec![], Reply::Status(200)).await.expect("a");
    let b = Sink::start(vec![], Reply::Status(200)).await.expect("b");
    let mut relay = TestRelay::start_in(dir.path(), &two_targets(&a, &b)).await;
    let load = Load::start(relay.listen, CONNECTIONS, "upgrade");
    load.wait_for_progress(0, 20).await;

    let old = relay.upgrade().await;
    assert!(
        old.success(),
        "old relay exit {old:?}; log:\n{}",
        relay.log()
    );
    // The new process is serving: more events get through after the old one exited.
    load.wait_for_progress(load.acknowledged(), 20).await;
    let tally = load.stop().await;

    println!(
        "upgrade: sent={} acknowledged={} failed={} (other statuses {:?}, no answer {})",
        tally.sent(),
        tally.acknowledged.len(),
        tally.sent() - tally.acknowledged.len(),
        tally.other,
        tally.no_answer
    );
    assert!(
        tally.other.is_empty() && tally.no_answer == 0,
        "requests failed during the handover: {tally:?}; log:\n{}",
        relay.log()
    );
    let waited = wait_delivered(&[&a, &b], &tally.acknowledged, PATIENCE).await;
    let missing: Vec<&Vec<String>> = waited.iter().map(|(_, m)| m).collect();
    assert!(
        missing.iter().all(|m| m.is_empty()),
        "acknowledged events not delivered: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_answers_200_stored_or_504_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Sink::start(vec![], Reply::Status(200)).await.expect("a");
    let b = Sink::start(vec![], Reply::Status(200)).await.expect("b");
    let mut relay = TestRelay::start_in(dir.path(), &two_targets(&a, &b)).await;
    let load = Load::start(relay.listen, CONNECTIONS * 2, "sigterm");
    load.wait_for_progress(0, 20).await;

    let pid = relay.pid();
    let exited = tokio::task::spawn_blocking(move || {
        signal(pid, "-TERM");
    });
    exited.await.expect("signal");
    let status = tokio::task::block_in_place(|| relay.wait_exit());
    assert!(status.success(), "exit {status:?}; log:\n{}", relay.log());
    let tally = load.stop().await;
    println!(
        "sigterm: sent={} acknowledged={} other={:?} no_answer={}",
        tally.sent(),
        tally.acknowledged.len(),
        tally.other,
        tally.no_answer
    );
    // 504 is the only refusal TextUs retries with backoff; anything else would pause it.
    assert!(
        tally.other.keys().all(|s| *s == 504),
        "answers other than 200 and 504: {:?}",
        tally.other
    );

    // Every 200 was stored: the next process delivers each to both targets.
    relay.restart().await;
    let waited = wait_delivered(&[&a, &b], &tally.acknowledged, PATIENCE).await;
    let missing: Vec<&Vec<String>> = waited.iter().map(|(_, m)| m).collect();
    assert!(
        missing.iter().all(|m| m.is_empty()),
        "events answered 200 but not delivered: {missing:?}"
    );
}
