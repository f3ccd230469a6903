//! Config reload (SIGHUP and `POST /api/v1/reload`): routes, targets, templates and secrets
//! change without a restart, no request fails while they do, nothing queued is lost, and an
//! invalid file changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use textus_relay::ingress::signature;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn routes_to(targets: &str, to: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"], dedupe_window: 0s }}\ntargets:\n{targets}routes:\n  - events: [\"*\"]\n    to: [{to}]\n"
    )
}

/// Posts signed events with unique ids one after another until `stop`; returns every id with
/// the status it got.
fn keep_posting(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(String, u16)>> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .expect("client");
        let mut sent = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = format!("/integrations/reload/deliveries/{i}");
            let body = fixture_with_id("message.received", &id);
            let status = match client
                .post(&url)
                .header("X-TextUs-Signature", signature::sign(SECRET, &body))
                .body(body)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            sent.push((id, status));
            i += 1;
        }
        sent
    })
}

fn ids(received: &[textus_relay::support::sink::Received]) -> Vec<String> {
    received
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until `sink` has received the event with envelope id `id`.
async fn wait_for_id(sink: &Sink, id: &str) {
    eventually(&format!("{id} to arrive"), async || {
        let got = ids(&sink.received());
        if got.iter().any(|g| g == id) {
            Ok(())
        } else {
            Err(format!("{} other events", got.len()))
        }
    })
    .await;
}

#[tokio::test]
async fn sighup_adds_a_target_and_reroutes_without_failing_a_request() {
    let a = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("sink a");
    let b = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("sink b");
    let relay = TestRelay::start(&routes_to(&http_target("a", &a.url("/a"), ""), "a")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = keep_posting(relay.url("/webhooks/textus"), stop.clone());
    a.wait_for(5, PATIENCE).await.expect("the load reaches a");
    let two = format!(
        "{}{}",
        http_target("a", &a.url("/a"), ""),
        http_target("b", &b.url("/b"), "")
    );
    relay.rewrite_config(&routes_to(&two, "a, b"));
    signal(relay.pid(), "-HUP");
    relay.wait_targets(&["a", "b"]).await;
    // The load goes on across the reload until the new route carries it.
    b.wait_for(5, PATIENCE)
        .await
        .expect("the load reaches b after the reload");
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.expect("load task");

    let failed: Vec<_> = sent.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "requests failed during the reload: {failed:?}"
    );
    // Every acknowledged event reached the target that was routed before and after.
    let got_a = ids(&a
        .wait_for(sent.len(), PATIENCE)
        .await
        .expect("all events reach a"));
    for (id, _) in &sent {
        assert!(
            got_a.contains(id),
            "{id} was acknowledged but never reached a"
        );
    }
    // The new route applies to what arrives after the reload.
    let after = fixture_with_id("message.received", "/integrations/reload/after");
    assert_eq!(relay.post_signed(&after).await.0, 200);
    wait_for_id(&b, "/integrations/reload/after").await;
    assert!(relay.log().contains("config reloaded"), "{}", relay.log());
    // The unchanged target kept running: the reload did not restart it.
    assert_eq!(
        relay.log().matches("dispatcher started").count(),
        2,
        "{}",
        relay.log()
    );
}

#[tokio::test]
async fn a_removed_target_keeps_its_queue_until_it_is_configured_again() {
    let gone_sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let kept_sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let both = format!(
        "{}{}",
        http_target("gone", &gone_sink.url("/gone"), ""),
        http_target("kept", &kept_sink.url("/kept"), "")
    );
    let relay = TestRelay::start(&routes_to(&both, "gone, kept")).await;
    // Paused, so its deliveries wait in the queue.
    let (status, _) = relay
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/targets/gone/pause",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        let body = fixture_with_id("contact.created", &format!("/integrations/r/{i}"));
        assert_eq!(relay.post_signed(&body).await.0, 200);
    }
    kept_sink
        .wait_for(3, PATIENCE)
        .await
        .expect("kept target delivered");

    let only_kept = routes_to(&http_target("kept", &kept_sink.url("/kept"), ""), "kept");
    relay.rewrite_config(&only_kept);
    let (status, report) = relay.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"]["removed"], serde_json::json!(["gone"]));
    assert_eq!(report["targets"]["unchanged"], serde_json::json!(["kept"]));
    assert_eq!(
        report["targets"]["orphaned"],
        serde_json::json!([{"target": "gone", "queued": 3, "dead": 0}])
    );
    let (_, list) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(list["unconfigured"][0]["target"], "gone", "{list}");
    let metrics = reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_queue_depth{target=\"gone\"} 3"),
        "{metrics}"
    );
    assert!(
        relay.log().contains("its deliveries stay in the store"),
        "{}",
        relay.log()
    );
    // New events no longer go to it.
    let late = fixture_with_id("contact.created", "/integrations/r/late");
    assert_eq!(relay.post_signed(&late).await.0, 200);
    kept_sink
        .wait_for(4, PATIENCE)
        .await
        .expect("kept still delivers");

    // Configured again: still paused (that is persisted), and enabling it sends the queue.
    relay.rewrite_config(&routes_to(&both, "kept"));
    let (status, report) = relay.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"]["added"], serde_json::json!(["gone"]));
    assert_eq!(report["targets"]["orphaned"], serde_json::json!([]));
    let (status, _) = relay
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/targets/gone/enable",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let got = gone_sink
        .wait_for(3, PATIENCE)
        .await
        .expect("queue delivered");
    let mut got = ids(&got);
    got.sort();
    assert_eq!(
        got,
        [
            "/integrations/r/0",
            "/integrations/r/1",
            "/integrations/r/2"
        ]
    );
}

#[tokio::test]
async fn an_invalid_config_is_rejected_and_the_running_one_stays() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let good = routes_to(&http_target("t", &sink.url("/t"), ""), "t");
    let relay = TestRelay::start(&good).await;

    relay.rewrite_config(&good.replace("kind: http", "kind: http\n    concurrensy: 4"));
    let (status, body) = relay.reload().await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_config");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("relay.yaml:") && message.contains("concurrensy"),
        "the error names file, line and key: {message}"
    );
    signal(relay.pid(), "-HUP");

    // Still running the old config.
    assert_eq!(
        relay.post_signed(&fixture("message.delivered")).await.0,
        200
    );
    sink.wait_for(1, PATIENCE)
        .await
        .expect("delivered with the old config");
    eventually("two rejected reloads counted", async || {
        let metrics = reqwest::get(relay.admin_url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("relay_config_reloads_total{outcome=\"error\"} 2") {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    assert!(
        relay.log().contains("config reload rejected"),
        "{}",
        relay.log()
    );
}

#[tokio::test]
async fn changing_the_listener_needs_a_restart() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start(&routes_to(&http_target("t", &sink.url("/t"), ""), "t")).await;
    let text = std::fs::read_to_string(&relay.config).expect("config");
    let moved = text.replacen(&relay.listen.to_string(), &free_port().to_string(), 1);
    std::fs::write(&relay.config, moved).expect("write");
    let (status, body) = relay.reload().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("restart_required")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("listen"),
        "{body}"
    );
    assert_eq!(relay.post_signed(&fixture("contact.created")).await.0, 200);
}

#[tokio::test]
async fn secrets_rotate_and_targets_change_on_reload() {
    let old_sink = Sink::start(vec![], Reply::Status(200)).await.expect("old");
    let new_sink = Sink::start(vec![], Reply::Status(200)).await.expect("new");
    let relay = TestRelay::start(&routes_to(&http_target("t", &old_sink.url("/t"), ""), "t")).await;
    let new_secret = "rotated-secret-0123456789";
    let rotated = format!(
        "source: {{ secrets: [\"{new_secret}\"], dedupe_window: 0s }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &new_sink.url("/t"), "")
    );
    relay.rewrite_config(&rotated);
    let (status, report) = relay.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"]["changed"], serde_json::json!(["t"]));

    let body = fixture("contact.opted_in");
    assert_eq!(
        relay.post_signed(&body).await.0,
        401,
        "the old secret no longer verifies"
    );
    let (status, _) = relay
        .post_with(&body, Some(&signature::sign(new_secret, &body)))
        .await;
    assert_eq!(status, 200);
    let got = new_sink.wait_for(1, PATIENCE).await.expect("new url used");
    assert_eq!(got[0].body[..], body[..]);
    assert!(old_sink.received().is_empty());
}

#[tokio::test]
async fn a_target_changed_under_load_delivers_everything_acknowledged() {
    // Slow answers, so attempts are in flight when the dispatcher is replaced.
    let sink = Sink::start(
        vec![],
        Reply::Delay(std::time::Duration::from_millis(30), 200),
    )
    .await
    .expect("sink");
    let relay = TestRelay::start(&routes_to(&http_target("a", &sink.url("/a"), ""), "a")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = keep_posting(relay.url("/webhooks/textus"), stop.clone());
    sink.wait_for(5, PATIENCE)
        .await
        .expect("the load is flowing");
    let faster = http_target("a", &sink.url("/a"), "    concurrency: 16\n");
    relay.rewrite_config(&routes_to(&faster, "a"));
    let (status, report) = relay.reload().await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"]["changed"], serde_json::json!(["a"]));
    // The load goes on until the replaced dispatcher has delivered some of it.
    let at_reload = sink.received().len();
    sink.wait_for(at_reload + 5, PATIENCE)
        .await
        .expect("delivered after the reload");
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.expect("load task");

    assert!(sent.iter().all(|(_, s)| *s == 200), "a request failed");
    for (id, _) in &sent {
        wait_for_id(&sink, id).await;
    }
    let (_, list) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(list["targets"][0]["concurrency"], 16, "{list}");
}

#[tokio::test]
async fn readiness_holds_while_a_changed_target_finishes_its_attempts() {
    let sink = Sink::start(vec![], Reply::Delay(std::time::Duration::from_secs(2), 200))
        .await
        .expect("slow sink");
    let relay = TestRelay::start(&routes_to(&http_target("t", &sink.url("/t"), ""), "t")).await;
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    sink.wait_for(1, PATIENCE).await.expect("attempt in flight");

    relay.rewrite_config(&routes_to(
        &http_target("t", &sink.url("/t"), "    concurrency: 2\n"),
        "t",
    ));
    // /readyz, asked every 50 ms (a pace, not a wait for anything) for as long as the reload
    // takes: it waits for the attempt in flight, about two seconds.
    let reload = relay.reload();
    tokio::pin!(reload);
    let mut answers = Vec::new();
    let (status, report) = loop {
        tokio::select! {
            done = &mut reload => break done,
            ready = async {
                let status = relay.admin_get("/readyz").await.0;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                status
            } => answers.push(ready),
        }
    };
    assert!(!answers.is_empty(), "no /readyz answer during the reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"]["changed"], serde_json::json!(["t"]));
    assert!(
        answers.iter().all(|s| *s == 200),
        "readyz during the reload: {answers:?}"
    );
    // The attempt in flight was allowed to finish: delivered once, not cut off and re-sent
    // (a re-sent attempt would keep the delivery queued or in flight until it was answered).
    wait_drained(&relay, "t").await;
    assert_eq!(sink.received().len(), 1);
}
