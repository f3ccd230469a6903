//! A relay that cannot wedge itself (issue 14): a backlog that fills the store's budget (or its
//! disk) gets 504 `store_full`, drains by itself once the target is back, and ingest resumes;
//! the same after a restart on a full store. One relay per store. Root-only tests (a real full
//! disk on a tmpfs) are `#[ignore]`d and named `as_root_`; scripts/test runs them as root.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use textus_relay::support::sink::{Reply, Sink};

use crate::disk_full::{Tmpfs, fill};
use crate::load::wait_delivered;
use crate::support::*;

/// A `message.received` of about 20 KB that does not compress (the reproduction).
fn big_event(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("message.received")).expect("fixture");
    v["id"] = Value::String(id.to_owned());
    let noise: Vec<u8> = (0..15_000).map(|_| rand::random::<u8>()).collect();
    v["payload"]["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(noise));
    serde_json::to_vec(&v).expect("serialize")
}

fn id(run: &str, i: usize) -> String {
    format!("/integrations/budget/deliveries/{run}-{i}")
}

/// One `http` target `t` (retrying every 100-500 ms, its breaker probing every second) at
/// `url`, every event routed to it.
fn one_target(url: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, "    breaker: { failures: 5, probe: 1s }\n")
    )
}

/// Posts big events until one is refused; returns the acknowledged ids. Every refusal must be
/// the budget's 504.
async fn post_until_full(relay: &TestRelay, run: &str) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..5_000 {
        let (status, body) = relay.post_signed(&big_event(&id(run, i))).await;
        match status {
            200 => acked.push(id(run, i)),
            504 => {
                assert_eq!(body["error"], "store_full", "{body}");
                return acked;
            }
            other => panic!("event {i}: {other} {body}"),
        }
    }
    panic!("the store took 5000 events of 20 KB without stopping");
}

/// Posts new events until one is stored again (ingest resumed by itself), each refusal a 504.
async fn wait_resumed(relay: &TestRelay, run: &str) {
    let mut i = 0;
    let resumed = poll_within(PATIENCE, async || {
        let (status, body) = relay.post_signed(&big_event(&id(run, i))).await;
        i += 1;
        assert!(status == 200 || status == 504, "{status} {body}");
        if status == 200 { Ok(()) } else { Err(body) }
    })
    .await;
    if let Err(body) = resumed {
        panic!("ingest never resumed: {body}; log:\n{}", relay.log());
    }
}

async fn assert_delivered(sink: &Sink, acked: &[String]) {
    let waited = wait_delivered(&[sink], acked, PATIENCE).await;
    let missing = &waited[0].1;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events not delivered",
        missing.len(),
        acked.len()
    );
}

/// The database, log and reserve file: what the store takes on disk.
fn store_files(store: &Path) -> u64 {
    ["", "-wal", "-shm", "-reserve"]
        .iter()
        .map(|s| std::fs::metadata(format!("{}{s}", store.display())).map_or(0, |m| m.len()))
        .sum()
}

// Regression: #14 (a backlog that filled the disk wedged the store: nothing could be claimed or
// acked, so nothing drained and the disk never freed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_that_fills_max_bytes_drains_when_the_target_returns_and_ingest_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("relay.db");
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let rest = one_target(&sink.url("/t"));
    let relay = TestRelay::launch_with(Layout {
        dir: dir.path(),
        store: &store,
        listen_extra: "",
        admin_extra: "",
        storage_extra: ", max_bytes: 16MiB",
        rest: &rest,
    })
    .await;
    let acked = post_until_full(&relay, "fill").await;
    assert!(acked.len() > 100, "only {} events fit", acked.len());
    assert!(
        store_files(&store) <= 16 << 20,
        "the store passed max_bytes"
    );

    let (status, budget) = relay.admin_get("/api/v1/store").await;
    assert_eq!(status, 200, "{budget}");
    assert_eq!(budget["ingest"], "stopped", "{budget}");
    assert_eq!(budget["stopped_by"], "max_bytes", "{budget}");
    assert_eq!(budget["max_bytes"], 16 << 20);
    let metrics = metrics_text(&relay).await;
    assert!(
        metrics.contains("relay_store_ingest_stopped 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("relay_store_max_bytes 16777216\n"));
    // Full is not unready: TextUs must keep getting 504s, not connection errors.
    let (status, ready) = relay.admin_get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ingest"], "stopped");
    assert_eq!(
        relay.log().matches("storage budget reached").count(),
        1,
        "one log line when ingest stops"
    );

    // The target comes back: the backlog drains inside the reserve, and ingest resumes.
    sink.set_then(Reply::Status(200));
    assert_delivered(&sink, &acked).await;
    wait_resumed(&relay, "after").await;
    let (_, budget) = relay.admin_get("/api/v1/store").await;
    assert_eq!(budget["ingest"], "open", "{budget}");
    println!(
        "max_bytes 16 MiB: {} events of ~20 KB acknowledged before store_full, all {} delivered once the target returned; store files {} bytes at the end",
        acked.len(),
        acked.len(),
        store_files(&store)
    );
    assert!(
        relay.log().contains("storage budget has room again"),
        "one log line when ingest resumes"
    );
    assert!(
        store_files(&store) <= 16 << 20,
        "the store passed max_bytes"
    );
}

async fn metrics_text(relay: &TestRelay) -> String {
    reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_on_a_full_store_opens_drains_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("relay.db");
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let rest = one_target(&sink.url("/t"));
    let mut relay = TestRelay::launch_with(Layout {
        dir: dir.path(),
        store: &store,
        listen_extra: "",
        admin_extra: "",
        storage_extra: ", max_bytes: 16MiB",
        rest: &rest,
    })
    .await;
    let acked = post_until_full(&relay, "fill").await;
    relay.kill9();
    relay.restart().await;
    let (status, body) = relay.post_signed(&big_event(&id("late", 0))).await;
    assert_eq!((status, &body["error"]), (504, &Value::from("store_full")));
    sink.set_then(Reply::Status(200));
    assert_delivered(&sink, &acked).await;
    wait_resumed(&relay, "after").await;
}

/// Posts events for `t` (which answers 503) until `n` are stored; their ids.
async fn backlog(relay: &TestRelay, run: &str, n: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..n {
        let (status, body) = relay.post_signed(&big_event(&id(run, i))).await;
        assert_eq!(status, 200, "{body}");
        acked.push(id(run, i));
    }
    acked
}

#[tokio::test]
async fn a_second_relay_on_the_same_store_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start_in(dir.path(), &one_target(&sink.url("/t"))).await;
    // The same file, other ports: only the store is shared.
    let second = dir.path().join("second.yaml");
    let config = std::fs::read_to_string(&relay.config).expect("config");
    let config = config
        .replace(&relay.listen.to_string(), &free_port().to_string())
        .replace(&relay.admin.to_string(), &free_port().to_string());
    std::fs::write(&second, config).expect("write");
    // Dropped (and so killed) if it is still running when the wait gives up.
    let child = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&second)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("a second relay on the same store kept running")
        .expect("output");
    let status = out.status;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let store = dir.path().join("relay.db");
    assert!(
        stderr.contains(&store.display().to_string()) && stderr.contains("held by another relay"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", relay.pid())), "{stderr}");
    // The first one was not disturbed.
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    sink.wait_for(1, PATIENCE).await.expect("delivered");
}

/// Sends events one at a time until `stop` is set; the ids answered 200.
async fn steady_load(
    relay_url: String,
    run: &'static str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut acked = Vec::new();
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let body = fixture_with_id("message.received", &id(run, i));
        let sig = textus_relay::ingress::signature::sign(SECRET, &body);
        let answer = client
            .post(&relay_url)
            .header("X-TextUs-Signature", sig)
            .body(body)
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 200) {
            acked.push(id(run, i));
        } else {
            // Paces retries while no relay answers (mid-handover); not a wait for anything.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    acked
}

/// A zero-downtime upgrade under load where one of the two processes is killed with SIGKILL
/// in the middle of the handover: every event answered 200 is still delivered.
async fn upgrade_with_a_kill(kill_old: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let mut relay = TestRelay::start_in(dir.path(), &one_target(&sink.url("/t"))).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = if kill_old { "kill-old" } else { "kill-new" };
    let load = tokio::spawn(steady_load(relay.url("/webhooks/textus"), run, stopped));
    sink.wait_for(20, PATIENCE).await.expect("load is flowing");

    let mut old = relay.begin_upgrade();
    // Once the new process has the listening sockets, both serve the store: the old one
    // finishes its requests and deliveries in its grace period. Kill one of them then.
    eventually("the new relay to start", async || {
        let log = relay.current_log();
        if log.contains("textus-relay starting") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    if kill_old {
        old.kill().expect("kill -9 the old relay");
        old.wait().expect("reap");
        // The new one takes the store's lock as soon as the old one is gone, and what the old
        // one had in flight is due again then, not when its leases would have run out.
        eventually("the new relay to take over the store", async || {
            let log = relay.current_log();
            if log.contains("this one owns the store") {
                Ok(())
            } else {
                Err(log)
            }
        })
        .await;
    } else {
        relay.kill9();
        // The old one finishes its grace period and exits; then nothing listens, and a new
        // relay starts as after any crash.
        let status = tokio::task::spawn_blocking(move || old.wait().expect("old exits"))
            .await
            .expect("join");
        assert!(status.success(), "old relay exit {status:?}");
        relay.restart().await;
    }
    let seen = sink.received().len();
    if let Err(e) = sink.wait_for(seen + 20, PATIENCE).await {
        panic!("load stopped after the kill: {e:?}; log:\n{}", relay.log());
    }
    stop.send_replace(true);
    let acked = load.await.expect("load");
    assert!(acked.len() > 60, "only {} acknowledged", acked.len());
    assert_delivered(&sink, &acked).await;
    println!(
        "{run}: {} acknowledged, all delivered; {} deliveries in all",
        acked.len(),
        sink.received().len()
    );
    let unique: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_old_relay_during_an_upgrade_loses_no_acknowledged_event() {
    upgrade_with_a_kill(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_new_relay_during_an_upgrade_loses_no_acknowledged_event() {
    upgrade_with_a_kill(false).await;
}

/// Mounts a tmpfs of `size` under a fresh temporary folder, or fails the test.
fn tmpfs(size: &str) -> (tempfile::TempDir, Tmpfs) {
    let outer = tempfile::tempdir().expect("tempdir");
    let mnt = outer.path().join("mnt");
    let fs = Tmpfs::mount(&mnt, size).unwrap_or_else(|why| panic!("cannot mount a tmpfs: {why}"));
    (outer, fs)
}

// Regression: #14, as the issue reproduced it: the relay's own backlog fills a small volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: mounts a tmpfs (scripts/test runs it as root)"]
async fn as_root_a_backlog_that_fills_the_disk_drains_when_the_target_returns() {
    let (outer, fs) = tmpfs("32m");
    let store = fs.dir.join("relay.db");
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let rest = one_target(&sink.url("/t"));
    let mut relay = TestRelay::launch_with(Layout {
        dir: outer.path(),
        store: &store,
        listen_extra: "",
        admin_extra: "",
        storage_extra: "",
        rest: &rest,
    })
    .await;
    let acked = post_until_full(&relay, "fill").await;
    let (_, budget) = relay.admin_get("/api/v1/store").await;
    assert_eq!(budget["stopped_by"], "min_free", "{budget}");
    println!(
        "32 MiB tmpfs: {} events acknowledged before store_full; free {} of {} bytes, reserve {}",
        acked.len(),
        budget["free_bytes"],
        budget["filesystem_bytes"],
        budget["reserve_bytes"]
    );
    // A restart on the full volume opens and stays in the same state.
    relay.kill9();
    relay.restart().await;
    sink.set_then(Reply::Status(200));
    assert_delivered(&sink, &acked).await;
    wait_resumed(&relay, "after").await;
}

// Regression: #14: the disk filled by something else while a backlog waits. The reserve file
// gives the drain its room, so the backlog is delivered while the disk is still full, and
// ingest resumes once the other writer's file is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: mounts a tmpfs (scripts/test runs it as root)"]
async fn as_root_a_disk_filled_by_something_else_still_drains_and_recovers() {
    let (outer, fs) = tmpfs("32m");
    let store = fs.dir.join("relay.db");
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let rest = one_target(&sink.url("/t"));
    let relay = TestRelay::launch_with(Layout {
        dir: outer.path(),
        store: &store,
        listen_extra: "",
        admin_extra: "",
        storage_extra: "",
        rest: &rest,
    })
    .await;
    let acked = backlog(&relay, "backlog", 100).await;
    fill(&fs.dir.join("filler"));
    let (status, body) = relay.post_signed(&big_event(&id("refused", 0))).await;
    assert_eq!(status, 504, "{body}");
    sink.set_then(Reply::Status(200));
    assert_delivered(&sink, &acked).await;
    std::fs::remove_file(fs.dir.join("filler")).expect("remove filler");
    wait_resumed(&relay, "after").await;
}
