//! What TextUs sees: status codes, JSON bodies, de-duplication, dead letters for bad bodies.

use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

async fn relay_with_sink() -> (TestRelay, Sink) {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let yaml = format!(
        r#"source:
  secrets: ["textus-old-secret", "{SECRET}"]
  max_body: 64KiB
targets:
{}routes:
  - events: ["*"]
    to: [all]
"#,
        http_target("all", &sink.url("/in"), "")
    );
    (TestRelay::start(&yaml).await, sink)
}

#[tokio::test]
async fn every_fixture_is_accepted_and_delivered_byte_for_byte() {
    let (relay, sink) = relay_with_sink().await;
    for ty in EVENT_TYPES {
        let (status, body) = relay.post_signed(&fixture(ty)).await;
        assert_eq!(status, 200, "{ty}: {body}");
        assert_eq!(body["status"], "accepted", "{ty}");
        assert!(
            body["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("/integrations/")),
            "{body}"
        );
    }
    let got = sink.wait_for(8, PATIENCE).await.expect("eight deliveries");
    for ty in EVENT_TYPES {
        let expected = fixture(ty);
        assert!(
            got.iter().any(|r| r.body[..] == expected[..]),
            "{ty} not delivered unchanged"
        );
    }
    assert!(got.iter().all(|r| r.path == "/in" && r.method == "POST"));
}

#[tokio::test]
async fn signatures_are_checked_before_anything_is_stored() {
    let (relay, sink) = relay_with_sink().await;
    let body = fixture("message.received");
    let (status, json) = relay.post_with(&body, None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("missing_signature")),
        "{json}"
    );
    let (status, json) = relay.post_with(&body, Some(&"ab".repeat(32))).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("bad_signature")),
        "{json}"
    );
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    let other = textus_relay::ingress::signature::sign("textus-not-ours", &body);
    let (status, _) = relay.post_with(&body, Some(&other)).await;
    assert_eq!(status, 401);
    // A rotated-out secret that is still configured is accepted.
    let old = textus_relay::ingress::signature::sign("textus-old-secret", &body);
    let (status, _) = relay.post_with(&body, Some(&old)).await;
    assert_eq!(status, 200);
    assert_eq!(
        sink.wait_for(1, PATIENCE)
            .await
            .expect("one delivery")
            .len(),
        1
    );
}

#[tokio::test]
async fn oversize_unknown_path_and_wrong_method_get_their_status() {
    let (relay, _sink) = relay_with_sink().await;
    let big = vec![b'x'; 65 * 1024];
    let (status, json) = relay.post_signed(&big).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (413, Some("body_too_large")),
        "{json}"
    );

    let client = reqwest::Client::new();
    let r = client
        .post(relay.url("/elsewhere"))
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 404);
    let json: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("json error body");
    assert_eq!(json["error"], "not_found");

    let r = client
        .get(relay.url("/webhooks/textus"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let json: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("body")).expect("json error body");
    assert_eq!(json["error"], "method_not_allowed");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (relay, _sink) = relay_with_sink().await;
    let mut conn = tokio::net::TcpStream::connect(relay.listen)
        .await
        .expect("connect");
    let head = "POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\nX-TextUs-Signature: 00\r\n\r\n";
    conn.write_all(head.as_bytes()).await.expect("write head");
    // 64 KiB in 1 KiB chunks and one byte more: just over the 64 KiB limit, and small enough
    // that the relay has read everything when it answers (no reset racing the answer).
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"1\r\na\r\n0\r\n\r\n");
    conn.write_all(&body).await.expect("write body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("body_too_large"), "{text}");
}

#[tokio::test]
async fn the_same_event_twice_is_delivered_once() {
    let (relay, sink) = relay_with_sink().await;
    let body = fixture("message.delivered");
    let (status, first) = relay.post_signed(&body).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("accepted")));
    let (status, second) = relay.post_signed(&body).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(first["id"], second["id"]);
    // A different event after the duplicate proves the queue moved on without a second copy.
    relay.post_signed(&fixture("message.failed")).await;
    let got = sink.wait_for(2, PATIENCE).await.expect("two deliveries");
    // A stored copy would be queued before its 200 was sent: once the queue is empty, every
    // stored delivery has been attempted.
    let target = wait_drained(&relay, "all").await;
    let all = sink.received();
    assert_eq!(
        all.len(),
        2,
        "duplicate must not be delivered: {got:?} {target}"
    );
}

#[tokio::test]
async fn signed_bodies_that_are_not_events_are_kept_as_dead_letters() {
    let (relay, sink) = relay_with_sink().await;
    let (status, json) = relay.post_signed(b"this is not json").await;
    assert_eq!(status, 200, "{json}");
    assert!(
        json["dead_letter"]
            .as_str()
            .is_some_and(|r| r.contains("not a JSON object")),
        "{json}"
    );
    let (status, _) = relay
        .post_signed(br#"{"id":"/integrations/x/deliveries/1","hello":"world"}"#)
        .await;
    assert_eq!(status, 200);
    let dead = relay.wait_dead_letters(2).await;
    assert!(
        dead.iter().any(|d| d["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no `action`"))),
        "{dead:?}"
    );
    assert!(dead.iter().all(|d| d["target"].is_null()));
    assert!(sink.received().is_empty(), "nothing routable was delivered");
}

#[tokio::test]
async fn unrouted_events_are_answered_200() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"contact.*\"]\n    to: [c]\n",
        http_target("c", &sink.url("/c"), "")
    );
    let relay = TestRelay::start(&yaml).await;
    let (status, json) = relay.post_signed(&fixture("message.received")).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("accepted")));
    let (status, _) = relay.post_signed(&fixture("contact.opted_out")).await;
    assert_eq!(status, 200);
    let got = sink.wait_for(1, PATIENCE).await.expect("contact delivered");
    assert_eq!(got[0].body[..], fixture("contact.opted_out")[..]);
    let metrics = reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_events_total{type=\"message.received\",outcome=\"unrouted\"} 1"),
        "{metrics}"
    );
}
