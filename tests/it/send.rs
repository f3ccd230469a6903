//! `textus-relay send` and `textus-relay health` against a real relay (issue 7, part 7).

use serde_json::Value;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn routed_to(sink: &Sink) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\", \"textus-older-secret\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &sink.url("/t"), "")
    )
}

fn send(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let config = config.to_string_lossy();
    let mut all = vec!["send", "--config", &config];
    all.extend_from_slice(args);
    cli(&all)
}

/// The `action` and envelope `id` of each request the sink got.
fn actions_and_ids(sink: &Sink) -> Vec<(String, String)> {
    sink.received()
        .iter()
        .map(|r| {
            let event: Value = serde_json::from_slice(&r.body).expect("relay forwards JSON");
            (
                event["action"].as_str().unwrap_or_default().to_owned(),
                event["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_fresh_sample_events_through_a_running_relay() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start(&routed_to(&sink)).await;

    // The same event twice: each gets a new id, so neither is a duplicate.
    for _ in 0..2 {
        let (code, out, err) = send(&relay.config, &["--event", "message.received"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("message.received: 200 OK "), "{out}");
        assert!(out.contains("\"accepted\""), "{out}");
    }
    sink.wait_for(2, PATIENCE).await.expect("both delivered");
    let seen = actions_and_ids(&sink);
    assert!(seen.iter().all(|(action, _)| action == "message.received"));
    assert_ne!(seen[0].1, seen[1].1, "fresh ids");
    let sample: Value = serde_json::from_slice(&fixture("message.received")).expect("JSON");
    assert!(seen.iter().all(|(_, id)| sample["id"] != *id.as_str()));

    let (code, out, err) = send(&relay.config, &["--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 8, "{out}");
    sink.wait_for(10, PATIENCE)
        .await
        .expect("all eight delivered");
    let mut actions: Vec<String> = actions_and_ids(&sink)[2..]
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    actions.sort();
    let mut expected: Vec<String> = EVENT_TYPES.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(actions, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_1_with_the_reason_when_the_relay_refuses_or_is_not_there() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let mut relay = TestRelay::start(&routed_to(&sink)).await;

    // A config whose first secret is not one the relay has: 401, exit 1, and a hint.
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.yaml");
    let yaml = std::fs::read_to_string(&relay.config)
        .expect("config")
        .replace(SECRET, "textus-not-the-secret");
    std::fs::write(&wrong, yaml).expect("write");
    let (code, out, err) = send(&wrong, &["--event", "contact.created"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("contact.created: 401"), "{out}");
    assert!(err.contains("signature was refused"), "{err}");

    // A bad event type is a usage error.
    let (code, _, err) = send(&relay.config, &["--event", "message.sent"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("message.sent"), "{err}");

    relay.kill9();
    let (code, out, err) = send(&relay.config, &["--event", "contact.created"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot reach the relay at http://"), "{err}");
    assert!(sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_speaks_https_to_a_tls_listener_trusting_the_given_ca() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, chain) = crate::tls::relay_with_tls(dir.path(), &routed_to(&sink)).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &chain.ca_pem).expect("write CA");

    // Not trusted: the certificate is refused and nothing is sent.
    let (code, _, err) = send(&relay.config, &["--event", "contact.opted_in"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("https://127.0.0.1:"), "{err}");

    let (code, out, err) = send(
        &relay.config,
        &[
            "--event",
            "contact.opted_in",
            "--ca-cert",
            &ca.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = send(
        &relay.config,
        &["--event", "contact.opted_out", "--insecure"],
    );
    assert_eq!(code, 0, "{out}{err}");
    sink.wait_for(2, PATIENCE).await.expect("both delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_0_while_the_relay_runs_and_1_once_it_is_gone() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let mut relay = TestRelay::start(&routed_to(&sink)).await;
    let config = relay.config.to_string_lossy().into_owned();
    let (code, out, err) = cli(&["health", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/healthz answered 200"), "{out}");
    let (code, out, err) = cli(&["health", "--config", &config, "--ready"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/readyz answered 200"), "{out}");
    let url = format!("http://{}", relay.admin);
    let (code, out, err) = cli(&["health", "--url", &url]);
    assert_eq!(code, 0, "{out}{err}");

    relay.kill9();
    let (code, out, err) = cli(&["health", "--config", &config]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.starts_with("not ok: cannot reach http://"), "{err}");
}
