//! `kind: slack` against a real loopback sink standing in for Slack's webhook endpoint.

use std::time::Duration;

use serde_json::Value;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn slack_config(url: &str, extra: &str) -> String {
    format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
  slack:
    kind: slack
    url: "{url}"
    retry: {{ initial: 100ms, max_delay: 5s }}
{extra}routes:
  - events: ["*"]
    to: [slack]
"#
    )
}

fn payload(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("slack payload is JSON")
}

#[tokio::test]
async fn eight_events_give_eight_distinct_escaped_messages() {
    let sink = Sink::start(vec![], Reply::StatusWithBody(200, "ok".into()))
        .await
        .expect("sink");
    let relay = TestRelay::start(&slack_config(
        &sink.url("/services/T/B/x"),
        "    rate_limit: 100/s\n",
    ))
    .await;
    for ty in EVENT_TYPES {
        assert_eq!(relay.post_signed(&fixture(ty)).await.0, 200, "{ty}");
    }
    let got = sink.wait_for(8, PATIENCE).await.expect("eight posts");
    let texts: Vec<String> = got
        .iter()
        .map(|r| {
            payload(&r.body)["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(texts.iter().all(|t| !t.trim().is_empty()), "{texts:?}");
    let mut distinct = texts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{texts:?}");
    let received = got
        .iter()
        .map(|r| r.body.clone())
        .find(|b| {
            String::from_utf8_lossy(b).contains("Jamel")
                && String::from_utf8_lossy(b).contains("see pic")
        })
        .expect("the message.received post");
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("&lt;see pic&gt; &amp; thanks"), "{text}");
    assert!(!text.contains("<see pic>"), "{text}");
}

#[tokio::test]
async fn a_template_override_is_escaped_and_star_is_the_fallback() {
    let sink = Sink::start(vec![], Reply::StatusWithBody(200, "ok".into()))
        .await
        .expect("sink");
    let templates = "    templates:\n      message.received:\n        text: \"SMS: {{ event.message.body }}\"\n      \"*\":\n        text: \"{{ meta.type }} for {{ meta.target }}\"\n";
    let relay = TestRelay::start(&slack_config(&sink.url("/hook"), templates)).await;
    let mut body: Value = serde_json::from_slice(&fixture("message.received")).expect("json");
    body["message"]["body"] = Value::String("<!channel> free pizza & beer".into());
    let body = serde_json::to_vec(&body).expect("json");
    assert_eq!(relay.post_signed(&body).await.0, 200);
    assert_eq!(relay.post_signed(&fixture("contact.created")).await.0, 200);
    let got = sink.wait_for(2, PATIENCE).await.expect("two posts");
    let texts: Vec<String> = got
        .iter()
        .map(|r| {
            payload(&r.body)["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        texts.contains(&"SMS: &lt;!channel&gt; free pizza &amp; beer".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"contact.created for slack".to_string()),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_429_retry_after_delays_the_next_attempt() {
    let sink = Sink::start(
        vec![Reply::StatusWithHeaders(
            429,
            vec![("Retry-After".into(), "2".into())],
        )],
        Reply::StatusWithBody(200, "ok".into()),
    )
    .await
    .expect("sink");
    let relay = TestRelay::start(&slack_config(&sink.url("/hook"), "")).await;
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    let got = sink.wait_for(2, PATIENCE).await.expect("retried after 429");
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before Retry-After"
    );
}

#[tokio::test]
async fn rate_limit_spaces_the_posts() {
    let sink = Sink::start(vec![], Reply::StatusWithBody(200, "ok".into()))
        .await
        .expect("sink");
    let relay = TestRelay::start(&slack_config(&sink.url("/hook"), "    rate_limit: 2/s\n")).await;
    for ty in EVENT_TYPES {
        assert_eq!(relay.post_signed(&fixture(ty)).await.0, 200);
    }
    let got = sink.wait_for(8, PATIENCE).await.expect("eight posts");
    let span = got[7].at.duration_since(got[0].at);
    assert!(
        span >= Duration::from_secs(3),
        "eight posts at 2/s took only {span:?}"
    );
}

#[tokio::test]
async fn a_gone_channel_is_a_dead_letter_and_flags_the_target() {
    let sink = Sink::start(
        vec![],
        Reply::StatusWithBody(404, "channel_not_found".into()),
    )
    .await
    .expect("sink");
    let relay = TestRelay::start(&slack_config(&sink.url("/hook"), "")).await;
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    let dead = relay.wait_dead_letters(1).await;
    assert_eq!(dead[0]["last_status"], 404);
    assert!(
        dead[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("channel_not_found")),
        "{dead:?}"
    );
    let (_, targets) = relay.admin_get("/api/v1/targets").await;
    let attention = &targets["targets"][0]["needs_attention"]["message"];
    assert!(
        attention
            .as_str()
            .is_some_and(|m| m.contains("channel_not_found")),
        "{targets}"
    );
    assert_eq!(sink.received().len(), 1, "not retried");
}
