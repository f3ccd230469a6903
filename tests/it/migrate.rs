//! `textus-relay migrate`: a SQLite relay's backlog and dead letters moved into JetStream
//! with the real binary and a real nats-server, then delivered by a relay on NATS.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use reqwest::Method;
use serde_json::{Value, json};
use textus_relay::support::sink::{Received, Reply, Sink};

use crate::nats_server::NatsCluster;
use crate::support::*;

const EVENTS: [&str; 3] = ["mig-1", "mig-2", "mig-3"];

/// A target with quick retries giving up after `max_attempts`, and `extra` lines. Its breaker
/// never opens here: the test counts attempts, which an open breaker would hold back.
fn target(name: &str, url: &str, max_attempts: u32, extra: &str) -> String {
    format!(
        r#"  {name}:
    kind: http
    url: "{url}"
    retry: {{ initial: 100ms, max_delay: 300ms, max_attempts: {max_attempts} }}
    breaker: {{ failures: 1000 }}
{extra}"#
    )
}

/// Sinks of the four targets: `a` unordered, `f` fifo, `d` dies after two attempts, `c`
/// keeps failing (its attempts must carry over).
struct Sinks {
    a: Sink,
    f: Sink,
    d: Sink,
    c: Sink,
}

impl Sinks {
    async fn refusing() -> Sinks {
        let start = || Sink::start(vec![], Reply::Status(503));
        Sinks {
            a: start().await.expect("sink"),
            f: start().await.expect("sink"),
            d: start().await.expect("sink"),
            c: start().await.expect("sink"),
        }
    }

    /// Targets and routes; `c` gives up after `c_attempts`.
    fn config(&self, c_attempts: u32) -> String {
        format!(
            "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}{}{}{}routes:\n  - events: [\"*\"]\n    to: [a, f, d, c]\n",
            target("a", &self.a.url("/a"), 100, ""),
            target("f", &self.f.url("/f"), 100, "    ordering: fifo\n"),
            target("d", &self.d.url("/d"), 2, ""),
            target("c", &self.c.url("/c"), c_attempts, ""),
        )
    }
}

fn event_id(r: &Received) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// How many requests each event made to `sink` from its `start`-th request on.
fn per_event(sink: &Sink, start: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in sink.received_from(start) {
        *counts.entry(event_id(&r)).or_default() += 1;
    }
    counts
}

/// Waits until every event made at least `n` requests to `sink`.
async fn wait_each(sink: &Sink, n: usize, what: &str) {
    eventually(what, async || {
        let counts = per_event(sink, 0);
        if EVENTS
            .iter()
            .all(|e| counts.get(*e).copied().unwrap_or(0) >= n)
        {
            Ok(())
        } else {
            Err(format!("requests per event {counts:?}"))
        }
    })
    .await;
}

/// Waits until the relay has nothing queued or in flight for `names`.
async fn wait_drained(relay: &TestRelay, names: &[&str]) {
    for name in names {
        crate::support::wait_drained(relay, name).await;
    }
}

fn migrate(config: &Path, from: &Path, extra: &[&str]) -> (i32, String, String) {
    let config = config.to_string_lossy().into_owned();
    let from = from.to_string_lossy().into_owned();
    let mut args = vec!["migrate", "--config", &config, "--from", &from];
    args.extend_from_slice(extra);
    cli(&args)
}

fn nats_storage(url: &str) -> String {
    format!("storage: {{ kind: nats, urls: [\"{url}\"], replicas: 1, prefix: mig }}")
}

#[tokio::test]
async fn a_sqlite_backlog_and_its_dead_letters_move_to_nats_once_and_are_delivered_there() {
    let nats = NatsCluster::single().await;
    let url = nats.urls()[0].clone();
    let sinks = Sinks::refusing().await;
    let old_dir = tempfile::tempdir().expect("tempdir");
    let db = old_dir.path().join("relay.db");
    let sqlite = format!("storage: {{ kind: sqlite, path: \"{}\" }}", db.display());
    let mut old = TestRelay::start_with_storage(old_dir.path(), &sqlite, &sinks.config(100)).await;
    for id in EVENTS {
        let (status, body) = old
            .post_signed(&fixture_with_id("message.received", id))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // d's three die; c's have each failed (and recorded) at least one attempt.
    old.wait_dead_letters(3).await;
    wait_each(&sinks.c, 2, "c attempted each event twice").await;
    wait_each(&sinks.a, 1, "a attempted each event").await;
    assert!(old.terminate().success(), "{}", old.log());

    let new_dir = tempfile::tempdir().expect("tempdir");
    let config = new_dir.path().join("migrate.yaml");
    std::fs::write(
        &config,
        format!("{}\n{}", nats_storage(&url), sinks.config(2)),
    )
    .expect("write config");
    let (code, out, err) = migrate(&config, &db, &["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "would move 9 pending deliveries and 3 dead letters, and remember 3 event ids"
        ),
        "{out}"
    );
    let moved_at = textus_relay::store::unix_ms(SystemTime::now());
    let (code, out, err) = migrate(&config, &db, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("moved 9 pending deliveries and 3 dead letters (0 already in JetStream); 3 event ids remembered for de-duplication (0 already)"),
        "{out}{err}"
    );
    let (code, out, err) = migrate(&config, &db, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("moved 0 pending deliveries and 0 dead letters (0 already in JetStream); 3 event ids remembered for de-duplication (3 already)"),
        "a second run moves nothing: {out}{err}"
    );

    let before = (
        sinks.a.received().len(),
        sinks.f.received().len(),
        sinks.c.received().len(),
    );
    sinks.a.set_then(Reply::Status(200));
    sinks.f.set_then(Reply::Status(200));
    sinks.d.set_then(Reply::Status(200));
    let new =
        TestRelay::start_with_storage(new_dir.path(), &nats_storage(&url), &sinks.config(2)).await;

    // TextUs retrying an event the SQLite relay acknowledged: the relays on NATS know it.
    let (status, answer) = new
        .post_signed(&fixture_with_id("message.received", EVENTS[0]))
        .await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("duplicate")),
        "{answer}"
    );

    // Every pending delivery arrives exactly once; fifo's in the order they came.
    wait_drained(&new, &["a", "f"]).await;
    let a = per_event(&sinks.a, before.0);
    let f = per_event(&sinks.f, before.1);
    for id in EVENTS {
        assert_eq!(a.get(id), Some(&1), "a: {a:?}");
        assert_eq!(f.get(id), Some(&1), "f: {f:?}");
    }
    let f_order: Vec<String> = sinks
        .f
        .received_from(before.1)
        .iter()
        .map(event_id)
        .collect();
    assert_eq!(f_order, EVENTS, "fifo order kept");

    // c's attempts came along: with max_attempts 2 and one or more made on SQLite, one more
    // failure on NATS buries each, with its whole history.
    let dead = new.wait_dead_letters(6).await;
    wait_drained(&new, &["c"]).await;
    let c = per_event(&sinks.c, before.2);
    for id in EVENTS {
        assert_eq!(c.get(id), Some(&1), "one attempt on NATS per event: {c:?}");
    }
    for letter in dead.iter().filter(|l| l["target"] == "c") {
        let attempts = letter["attempts"].as_u64().unwrap_or(0);
        assert!(attempts >= 2, "{letter}");
        let (status, shown) = new
            .admin_get(&format!("/api/v1/dead-letters/{}", letter["id"]))
            .await;
        assert_eq!(status, 200, "{shown}");
        let history = shown["attempt_history"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // The store keeps the most recent 20.
        assert_eq!(history.len() as u64, attempts.min(20), "{shown}");
        assert!(
            history[0]["at"].as_i64().is_some_and(|at| at < moved_at),
            "the first attempts were made on SQLite: {shown}"
        );
    }

    // d's dead letters are NATS dead letters: listed, shown with their history, replayed.
    let d_letters: Vec<&Value> = dead.iter().filter(|l| l["target"] == "d").collect();
    assert_eq!(d_letters.len(), 3, "{dead:?}");
    for letter in &d_letters {
        assert_eq!(letter["attempts"], 2, "{letter}");
        assert_eq!(letter["last_status"], 503, "{letter}");
        let (status, shown) = new
            .admin_get(&format!("/api/v1/dead-letters/{}", letter["id"]))
            .await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(
            shown["attempt_history"].as_array().map(Vec::len),
            Some(2),
            "{shown}"
        );
    }
    let d_before = sinks.d.received().len();
    let (status, replayed) = new
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/replay",
            None,
            Some(json!({ "target": "d" })),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 3, "{replayed}");
    sinks
        .d
        .wait_for(d_before + 3, PATIENCE)
        .await
        .expect("replayed dead letters delivered");
    wait_drained(&new, &["d"]).await;
    let d = per_event(&sinks.d, d_before);
    for id in EVENTS {
        assert_eq!(d.get(id), Some(&1), "d: {d:?}");
    }
    drop(nats);
}

#[tokio::test]
async fn migrate_refuses_a_store_a_relay_holds_and_a_config_not_on_nats() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("relay.db");
    let sqlite = format!("storage: {{ kind: sqlite, path: \"{}\" }}", db.display());
    let rest = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [a]\n",
        target("a", &sink.url("/a"), 3, "")
    );
    let relay = TestRelay::start_with_storage(dir.path(), &sqlite, &rest).await;

    // The lock is checked before anything is sent, so no server needs to listen here.
    let config = dir.path().join("nats.yaml");
    std::fs::write(
        &config,
        format!("{}\n{rest}", nats_storage("nats://127.0.0.1:1")),
    )
    .expect("write config");
    let (code, out, err) = migrate(&config, &db, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("pid {}", relay.pid())),
        "names the holder: {err}"
    );

    let (code, out, err) = migrate(&relay.config, &db, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("kind: sqlite"), "{err}");
}
