//! Delivery to http targets: retries, stable ids, dead letters, signatures, isolation.

use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn one_target(url: &str, extra: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, extra)
    )
}

#[tokio::test]
async fn failing_twice_then_succeeding_delivers_with_one_stable_webhook_id() {
    let sink = Sink::start(
        vec![Reply::Status(503), Reply::Status(500)],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    let body = fixture("message.received");
    assert_eq!(relay.post_signed(&body).await.0, 200);
    let got = sink.wait_for(3, PATIENCE).await.expect("three attempts");
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.headers.get("webhook-id").cloned().expect("webhook-id"))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(got.iter().all(|r| r.body[..] == body[..]));
    assert!(
        got.iter()
            .all(|r| r.headers.contains_key("webhook-timestamp"))
    );
    // Delivered on the third attempt: nothing queued, nothing dead.
    let t = wait_drained(&relay, "t").await;
    assert_eq!(t["dead"], 0, "{t}");
}

#[tokio::test]
async fn a_permanent_400_is_one_attempt_and_one_dead_letter() {
    let sink = Sink::start(
        vec![Reply::StatusWithBody(400, "invalid_payload".into())],
        Reply::Status(200),
    )
    .await
    .expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    assert_eq!(relay.post_signed(&fixture("contact.created")).await.0, 200);
    let dead = relay.wait_dead_letters(1).await;
    assert_eq!(dead[0]["target"], "t");
    assert_eq!(dead[0]["event_type"], "contact.created");
    assert_eq!(dead[0]["last_status"], 400);
    assert_eq!(dead[0]["attempts"], 1);
    assert!(
        dead[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_payload")),
        "{dead:?}"
    );
    assert_eq!(
        sink.received().len(),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test]
async fn max_attempts_turns_retries_into_a_dead_letter() {
    let (relay, sink) = relay_giving_up_after_three_503s().await;
    assert_eq!(relay.post_signed(&fixture("message.failed")).await.0, 200);
    let dead = relay.wait_dead_letters(1).await;
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["last_status"], 503);
    assert!(
        dead[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("gave up after 3 attempts")),
        "{dead:?}"
    );
    assert_eq!(sink.received().len(), 3);
}

#[tokio::test]
async fn outbound_signature_verifies_with_the_standard_webhooks_library() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sink = Sink::start(vec![], Reply::Status(204)).await.expect("sink");
    let extra = format!(
        "    signing: {{ secret: \"{secret}\" }}\n    forward_textus_signature: true\n    headers: {{ X-Team: support }}\n"
    );
    let relay = TestRelay::start(&one_target(&sink.url("/t"), &extra)).await;
    let body = fixture("message.delivered");
    assert_eq!(relay.post_signed(&body).await.0, 200);
    let got = sink.wait_for(1, PATIENCE).await.expect("delivery");
    let r = &got[0];
    let verifier = standardwebhooks::Webhook::new(secret).expect("secret");
    verifier
        .verify(&r.body, &r.headers)
        .expect("signature verifies with an independent implementation");
    assert_eq!(
        r.headers
            .get("x-textus-signature")
            .and_then(|v| v.to_str().ok()),
        Some(textus_relay::ingress::signature::sign(SECRET, &body).as_str())
    );
    assert_eq!(
        r.headers.get("x-team").and_then(|v| v.to_str().ok()),
        Some("support")
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
}

#[tokio::test]
async fn a_black_holed_target_does_not_hold_up_a_healthy_one() {
    let dead = Sink::start(vec![], Reply::Hang).await.expect("black hole");
    let healthy = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("healthy");
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}{}routes:\n  - events: [\"*\"]\n    to: [stuck, ok]\n",
        http_target(
            "stuck",
            &dead.url("/x"),
            "    timeout: 120s\n    concurrency: 1\n"
        ),
        http_target("ok", &healthy.url("/y"), ""),
    );
    let relay = TestRelay::start(&yaml).await;
    for i in 0..20 {
        let (status, _) = relay
            .post_signed(&fixture_with_id(
                "message.received",
                &format!("/integrations/t/deliveries/{i}"),
            ))
            .await;
        assert_eq!(status, 200);
    }
    // The stuck target holds its one attempt open for two minutes; the healthy target gets
    // all twenty long before that.
    let got = healthy
        .wait_for(20, PATIENCE)
        .await
        .expect("healthy target unaffected");
    assert_eq!(got.len(), 20);
    assert_eq!(
        dead.received().len(),
        1,
        "the stuck target has exactly one attempt in flight"
    );
    dead.shutdown();
}

/// A caught-up dispatcher is handed new deliveries as they are stored, without claiming; a
/// retry that falls due meanwhile must still be claimed and sent while events keep coming.
#[tokio::test]
async fn a_retry_falls_due_and_is_sent_while_new_events_keep_arriving() {
    let sink = Sink::start(vec![Reply::Status(503)], Reply::Status(200))
        .await
        .expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    let first = fixture_with_id("message.received", "/integrations/t/deliveries/first");
    assert_eq!(relay.post_signed(&first).await.0, 200);
    sink.wait_for(1, PATIENCE).await.expect("first attempt");
    let is_first = |r: &textus_relay::support::sink::Received| r.body[..] == first[..];
    let mut sent = 1;
    // Retries of `t` come 100-500 ms apart; events go one after another, each delivered at
    // once, for up to 5,000 of them.
    while sink.received().iter().filter(|r| is_first(r)).count() < 2 {
        assert!(
            sent < 5_000,
            "the retry was not sent while events kept arriving"
        );
        let body = fixture_with_id(
            "message.received",
            &format!("/integrations/t/deliveries/{sent}"),
        );
        assert_eq!(relay.post_signed(&body).await.0, 200);
        sent += 1;
    }
    // And nothing else was held back: every event once, the first twice.
    let got = sink
        .wait_for(sent + 1, PATIENCE)
        .await
        .expect("all delivered");
    assert_eq!(got.len(), sent + 1);
}
