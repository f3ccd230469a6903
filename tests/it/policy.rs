//! Delivery policy (issue 4): circuit breaker, ordering, priority, quotas, Retry-After as a
//! date, 410 Gone, and pausing and enabling targets through the admin API.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use textus_relay::support::sink::{Received, Reply, Sink};

use crate::support::*;

/// One http target `t` with fast retries and `extra` settings, receiving every event.
fn one_target(url: &str, extra: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, extra)
    )
}

/// A distinct event of `event_type` with envelope id `id`.
fn event(event_type: &str, id: &str) -> Vec<u8> {
    fixture_with_id(event_type, id)
}

/// A message.received in conversation `conversation`, with envelope id `id`.
fn in_conversation(conversation: &str, id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("message.received")).expect("json");
    v["id"] = Value::String(id.to_owned());
    v["conversation"]["id"] = Value::String(conversation.to_owned());
    serde_json::to_vec(&v).expect("json")
}

/// The envelope ids of what a sink received, in arrival order.
fn ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).expect("json body");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

async fn send_all(relay: &TestRelay, bodies: &[Vec<u8>]) {
    for body in bodies {
        let (status, answer) = relay.post_signed(body).await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// Whether a target holds back `n` deliveries. SQLite counts them queued; JetStream counts
/// a delivery that was handed out and put back (a retry, a release) as pending an ack, so it
/// shows in flight until it is handed out again (README, "Several relays on NATS JetStream").
fn held_back(n: u64) -> impl Fn(&Value) -> bool {
    move |t| {
        if nats_backend() {
            t["queued"].as_u64().unwrap_or(0) + t["in_flight"].as_u64().unwrap_or(0) == n
        } else {
            t["queued"] == n
        }
    }
}

/// Polls `GET /api/v1/targets` until `ready` holds for target `name`.
async fn wait_target(relay: &TestRelay, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("target {name} in the awaited state"), async || {
        let t = target(relay, name).await;
        if ready(&t) { Ok(t) } else { Err(t) }
    })
    .await
}

async fn admin_post(relay: &TestRelay, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(relay.admin_url(path))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn metrics(relay: &TestRelay) -> String {
    reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text")
}

fn drained(t: &Value) -> bool {
    t["queued"] == 0 && t["in_flight"] == 0
}

#[tokio::test]
async fn a_dead_target_is_probed_not_hammered_and_closes_once_it_recovers() {
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let extra = "    concurrency: 1\n    breaker: { failures: 3, probe: 2s }\n";
    let relay = TestRelay::start(&one_target(&sink.url("/t"), extra)).await;
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            event(
                "message.received",
                &format!("/integrations/b/deliveries/{i}"),
            )
        })
        .collect();
    send_all(&relay, &bodies).await;
    wait_target(&relay, "t", |t| t["breaker"] == "open").await;
    // Three failures open the breaker; the next two requests are its probes, one per 2 s,
    // each timed from the failure before it. Retries alone (every 500 ms at most, five events
    // due) would have sent them within half a second.
    let got = sink.wait_for(5, PATIENCE).await.expect("two probes");
    for (before, probe) in [(2, 3), (3, 4)] {
        let gap = got[probe].at.duration_since(got[before].at);
        assert!(
            gap >= Duration::from_secs(2),
            "request {} came {gap:?} after the failure before it, with the breaker open",
            probe + 1
        );
    }
    let t = target(&relay, "t").await;
    assert_ne!(t["breaker"], "closed", "{t}");
    assert!(
        metrics(&relay)
            .await
            .contains("relay_breaker_open{target=\"t\"} 1\n"),
        "the gauge follows the breaker"
    );
    assert_eq!(
        t["queued"].as_u64().unwrap_or(0) + t["in_flight"].as_u64().unwrap_or(0),
        5
    );

    sink.set_then(Reply::Status(200));
    let t = wait_target(&relay, "t", |t| drained(t) && t["breaker"] == "closed").await;
    assert_eq!(t["dead"], 0, "{t}");
    assert!(
        metrics(&relay)
            .await
            .contains("relay_breaker_open{target=\"t\"} 0\n")
    );
    let mut delivered = ids(&sink.received());
    delivered.sort();
    delivered.dedup();
    assert_eq!(
        delivered.len(),
        5,
        "every waiting event is delivered: {delivered:?}"
    );
}

#[tokio::test]
async fn fifo_order_holds_through_retries_of_the_head() {
    let sink = Sink::start(
        vec![Reply::Status(503), Reply::Status(503)],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let extra = "    ordering: fifo\n    concurrency: 4\n";
    let relay = TestRelay::start(&one_target(&sink.url("/t"), extra)).await;
    let sent: Vec<String> = (0..5)
        .map(|i| format!("/integrations/f/deliveries/{i}"))
        .collect();
    let bodies: Vec<Vec<u8>> = sent
        .iter()
        .map(|id| event("message.received", id))
        .collect();
    send_all(&relay, &bodies).await;
    let got = sink
        .wait_for(7, PATIENCE)
        .await
        .expect("five events, two retries");
    let expected: Vec<&str> = [0, 0, 0, 1, 2, 3, 4]
        .iter()
        .map(|&i| sent[i].as_str())
        .collect();
    assert_eq!(
        ids(&got),
        expected,
        "the head waits through its retries, the rest wait for it"
    );
    wait_target(&relay, "t", drained).await;
    assert_eq!(sink.received().len(), 7, "nothing sent twice");
}

#[tokio::test]
async fn per_key_order_holds_while_keys_interleave_and_a_failing_key_blocks_only_itself() {
    let retry_after =
        |secs: &str| Reply::StatusWithHeaders(503, vec![("Retry-After".into(), secs.into())]);
    let sink = Sink::start(vec![retry_after("1"), retry_after("3")], Reply::Status(200))
        .await
        .expect("sink");
    let extra = "    ordering: { key: \"{{ event.conversation.id }}\" }\n    concurrency: 4\n    retry: { initial: 100ms, max_delay: 10s }\n";
    let yaml = format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
  t:
    kind: http
    url: "{}"
{extra}routes:
  - events: ["*"]
    to: [t]
"#,
        sink.url("/t")
    );
    let relay = TestRelay::start(&yaml).await;
    send_all(&relay, &[in_conversation("/conversations/A", "a1")]).await;
    // a1 has failed twice and waits out a 3 s Retry-After; now the keys interleave.
    sink.wait_for(2, PATIENCE).await.expect("a1 failed twice");
    let rest = [
        ("A", "a2"),
        ("B", "b1"),
        ("A", "a3"),
        ("B", "b2"),
        ("B", "b3"),
    ];
    let bodies: Vec<Vec<u8>> = rest
        .iter()
        .map(|(c, id)| in_conversation(&format!("/conversations/{c}"), id))
        .collect();
    send_all(&relay, &bodies).await;
    let got = ids(&sink.wait_for(8, PATIENCE).await.expect("every event"));
    let of = |prefix: char| -> Vec<&str> {
        got.iter()
            .map(String::as_str)
            .filter(|id| id.starts_with(prefix))
            .collect()
    };
    assert_eq!(of('a'), ["a1", "a1", "a1", "a2", "a3"], "{got:?}");
    assert_eq!(of('b'), ["b1", "b2", "b3"], "{got:?}");
    let last_b = got.iter().rposition(|id| id == "b3").expect("b3");
    let a1_delivered = got.iter().rposition(|id| id == "a1").expect("a1");
    assert!(
        last_b < a1_delivered,
        "conversation B kept flowing while A's head waited: {got:?}"
    );
}

#[tokio::test]
async fn an_opt_out_overtakes_a_backlog_of_messages() {
    let sink = Sink::start(vec![], Reply::Delay(Duration::from_millis(50), 200))
        .await
        .expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "    concurrency: 1\n")).await;
    let mut bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            event(
                "message.received",
                &format!("/integrations/p/deliveries/{i}"),
            )
        })
        .collect();
    bodies.push(event(
        "contact.opted_out",
        "/integrations/p/deliveries/opt-out",
    ));
    send_all(&relay, &bodies).await;
    let got = ids(&sink.wait_for(101, PATIENCE).await.expect("all delivered"));
    let position = got
        .iter()
        .position(|id| id.ends_with("opt-out"))
        .expect("the opt-out");
    assert!(
        position < 50,
        "the opt-out was delivered {position}th of 101, behind most of the backlog"
    );
}

#[tokio::test]
async fn a_full_queue_answers_504_and_the_retry_is_accepted_once_there_is_room() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "    max_queue: 2\n")).await;
    let (status, t) = admin_post(&relay, "/api/v1/targets/t/pause").await;
    assert_eq!((status, &t["paused"]), (200, &Value::Bool(true)), "{t}");
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            event(
                "message.received",
                &format!("/integrations/q/deliveries/{i}"),
            )
        })
        .collect();
    send_all(&relay, &bodies[..2]).await;
    let (status, answer) = relay.post_signed(&bodies[2]).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"], "queue_full");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_queue 2")),
        "{answer}"
    );
    let t = target(&relay, "t").await;
    assert_eq!(
        (&t["queued"], &t["dead"]),
        (&Value::from(2), &Value::from(0)),
        "{t}"
    );
    assert!(t["oldest_queued_age_seconds"].as_f64().is_some(), "{t}");
    assert!(sink.received().is_empty(), "paused: nothing sent");

    let (status, t) = admin_post(&relay, "/api/v1/targets/t/enable").await;
    assert_eq!((status, &t["paused"]), (200, &Value::Bool(false)), "{t}");
    sink.wait_for(2, PATIENCE).await.expect("the queue drains");
    wait_target(&relay, "t", drained).await;
    // TextUs retries the refused event: it was never stored, so it is not a duplicate.
    let (status, answer) = relay.post_signed(&bodies[2]).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &Value::from("accepted")),
        "{answer}"
    );
    let mut got = ids(&sink.wait_for(3, PATIENCE).await.expect("delivered"));
    got.sort();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|id| id.starts_with("/integrations/q/")));
}

#[tokio::test]
async fn a_full_dead_letter_queue_buries_only_that_targets_delivery() {
    let slow = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let ok = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}{}routes:\n  - events: [\"*\"]\n    to: [t, ok]\n",
        http_target(
            "t",
            &slow.url("/t"),
            "    max_queue: 1\n    on_full: dead_letter\n"
        ),
        http_target("ok", &ok.url("/ok"), ""),
    );
    let relay = TestRelay::start(&yaml).await;
    assert_eq!(admin_post(&relay, "/api/v1/targets/t/pause").await.0, 200);
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            event(
                "message.received",
                &format!("/integrations/d/deliveries/{i}"),
            )
        })
        .collect();
    send_all(&relay, &bodies).await;
    let dead = relay.wait_dead_letters(2).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert_eq!(d["target"], "t");
        assert_eq!(d["reason"], "queue full (max_queue 1)");
    }
    let mut dead_ids: Vec<&str> = dead.iter().filter_map(|d| d["event_id"].as_str()).collect();
    dead_ids.sort();
    assert_eq!(
        dead_ids,
        [
            "/integrations/d/deliveries/1",
            "/integrations/d/deliveries/2"
        ]
    );
    assert_eq!(
        ok.wait_for(3, PATIENCE).await.expect("ok gets all").len(),
        3
    );
    assert_eq!(admin_post(&relay, "/api/v1/targets/t/enable").await.0, 200);
    let got = slow.wait_for(1, PATIENCE).await.expect("the queued one");
    assert_eq!(ids(&got), ["/integrations/d/deliveries/0"]);
    let t = wait_target(&relay, "t", drained).await;
    assert_eq!(t["dead"], 2, "{t}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_delays_the_next_attempt() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
    let sink = Sink::start(
        vec![Reply::StatusWithHeaders(
            503,
            vec![("Retry-After".into(), at)],
        )],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let extra = "    retry: { initial: 100ms, max_delay: 10s }\n";
    let yaml = format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
  t:
    kind: http
    url: "{}"
{extra}routes:
  - events: ["*"]
    to: [t]
"#,
        sink.url("/t")
    );
    let relay = TestRelay::start(&yaml).await;
    send_all(&relay, &[fixture("message.received")]).await;
    let got = sink.wait_for(2, PATIENCE).await.expect("retried");
    let gap = got[1].at.duration_since(got[0].at);
    // The date has whole seconds and was taken before the relay started: at least 2 s remain.
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before the date"
    );
}

#[tokio::test]
async fn gone_disables_the_target_across_restarts_until_enabled_and_nothing_is_lost() {
    let sink = Sink::start(
        vec![Reply::StatusWithBody(410, "endpoint removed".into())],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = one_target(&sink.url("/t"), "");
    let mut relay = TestRelay::start_in(dir.path(), &yaml).await;
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            event(
                "message.received",
                &format!("/integrations/g/deliveries/{i}"),
            )
        })
        .collect();
    send_all(&relay, &bodies[..1]).await;
    let t = wait_target(&relay, "t", |t| t["disabled"] == true).await;
    assert!(
        t["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{t}"
    );
    send_all(&relay, &bodies[1..]).await;
    let t = wait_target(&relay, "t", held_back(3)).await;
    assert_eq!(t["dead"], 0, "{t}");
    assert!(relay.dead_letters().await.is_empty());
    assert_eq!(sink.received().len(), 1, "disabled: nothing more is sent");

    relay.kill9();
    let relay = TestRelay::start_in(dir.path(), &yaml).await;
    let t = target(&relay, "t").await;
    assert!(t["disabled"] == true && held_back(3)(&t), "{t}");
    let (status, t) = admin_post(&relay, "/api/v1/targets/t/enable").await;
    assert_eq!((status, &t["disabled"]), (200, &Value::Bool(false)), "{t}");
    let got = sink.wait_for(4, PATIENCE).await.expect("the backlog");
    let mut delivered = ids(&got[1..]);
    delivered.sort();
    assert_eq!(
        delivered,
        [
            "/integrations/g/deliveries/0",
            "/integrations/g/deliveries/1",
            "/integrations/g/deliveries/2"
        ]
    );
    let t = wait_target(&relay, "t", drained).await;
    assert_eq!(t["dead"], 0, "{t}");
}

#[tokio::test]
async fn the_targets_api_names_each_targets_kind() {
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}
targets:
  hook: {{ kind: http, url: \"http://127.0.0.1:9/hook\" }}
  chat: {{ kind: slack, url: \"http://127.0.0.1:9/slack\" }}
  sync: {{ kind: crm, url: \"http://127.0.0.1:9/crm\" }}
routes:
  - events: [\"*\"]
    to: [hook, chat, sync]
"
    );
    let relay = TestRelay::start(&yaml).await;
    let (status, list) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(status, 200, "{list}");
    let kinds: Vec<(&str, &str)> = list["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or(""),
                        t["kind"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [("hook", "http"), ("chat", "slack"), ("sync", "crm")],
        "{list}"
    );
}
