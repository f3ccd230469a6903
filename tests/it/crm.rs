//! `kind: crm` against real loopback sinks standing in for a CRM API and an OAuth2 token endpoint.

use serde_json::{Value, json};
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn crm_config(target: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{target}routes:\n  - events: [\"*\"]\n    to: [crm]\n"
    )
}

#[tokio::test]
async fn typed_leaves_missing_fields_and_bearer_auth() {
    let sink = Sink::start(vec![], Reply::Status(201)).await.expect("sink");
    let target = format!(
        r#"  crm:
    kind: crm
    method: PATCH
    url: "{}/contacts/{{{{ event.conversation.assignedContact.id | replace('/contacts/', '') }}}}"
    auth: {{ bearer: "pat-na1-test" }}
    headers: {{ X-Event: "{{{{ meta.type }}}}" }}
    body:
      properties:
        phone: "{{{{ event.conversation.phoneNumber }}}}"
        unanswered: "{{{{ event.conversation.unanswered }}}}"
        tags: "{{{{ event.conversation.assignedContact.data.tags }}}}"
        nickname: "{{{{ event.conversation.assignedContact.nickname }}}}"
        source: textus
        priority: 3
"#,
        sink.url("/crm")
    );
    let relay = TestRelay::start(&crm_config(&target)).await;
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    let got = sink.wait_for(1, PATIENCE).await.expect("crm request");
    let r = &got[0];
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.path, "/crm/contacts/Vled2N");
    assert_eq!(
        r.headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer pat-na1-test")
    );
    assert_eq!(
        r.headers.get("x-event").and_then(|v| v.to_str().ok()),
        Some("message.received")
    );
    let body: Value = serde_json::from_slice(&r.body).expect("json body");
    assert_eq!(
        body,
        json!({"properties": {
            "phone": "+13035551234",
            "unanswered": true,
            "tags": ["candidate", "forklift"],
            "nickname": "",
            "source": "textus",
            "priority": 3
        }})
    );
}

#[tokio::test]
async fn basic_auth_header() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let target = format!(
        "  crm:\n    kind: crm\n    url: \"{}\"\n    auth: {{ basic: {{ username: relay, password: s3cret }} }}\n    body: {{ id: \"{{{{ meta.id }}}}\" }}\n",
        sink.url("/api")
    );
    let relay = TestRelay::start(&crm_config(&target)).await;
    assert_eq!(relay.post_signed(&fixture("contact.created")).await.0, 200);
    let got = sink.wait_for(1, PATIENCE).await.expect("request");
    // base64("relay:s3cret")
    assert_eq!(
        got[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Basic cmVsYXk6czNjcmV0")
    );
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["id"], "/integrations/h13Jc5/deliveries/Qs5dV1e");
}

#[tokio::test]
async fn oauth2_token_is_reused_and_refreshed_once_after_a_401() {
    let token =
        json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}).to_string();
    let issuer = Sink::start(vec![], Reply::StatusWithBody(200, token))
        .await
        .expect("token endpoint");
    let api = Sink::start(
        vec![Reply::Status(200), Reply::Status(401)],
        Reply::Status(200),
    )
    .await
    .expect("api");
    let target = format!(
        r#"  crm:
    kind: crm
    url: "{}"
    concurrency: 1
    auth:
      oauth2: {{ token_url: "{}", client_id: relay, client_secret: shh, scope: api }}
    body: {{ type: "{{{{ meta.type }}}}" }}
"#,
        api.url("/services/data"),
        issuer.url("/oauth2/token")
    );
    let relay = TestRelay::start(&crm_config(&target)).await;
    // One event at a time, so the 401 falls on the second event's first request.
    assert_eq!(relay.post_signed(&fixture("message.received")).await.0, 200);
    api.wait_for(1, PATIENCE).await.expect("first event");
    assert_eq!(
        relay.post_signed(&fixture("message.delivered")).await.0,
        200
    );
    api.wait_for(3, PATIENCE)
        .await
        .expect("401 then the retried request");
    assert_eq!(relay.post_signed(&fixture("message.failed")).await.0, 200);
    let calls = api.wait_for(4, PATIENCE).await.expect("third event");
    assert!(calls.iter().all(
        |c| c.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer tok-1")
    ));
    let fetches = issuer.received();
    assert_eq!(
        fetches.len(),
        2,
        "one fetch, reused, and exactly one refresh after the 401"
    );
    let form = String::from_utf8_lossy(&fetches[0].body);
    assert!(
        form.contains("grant_type=client_credentials")
            && form.contains("client_id=relay")
            && form.contains("scope=api"),
        "{form}"
    );
    assert!(relay.dead_letters().await.is_empty());
}

#[tokio::test]
async fn when_filters_decide_which_events_a_route_takes() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let yaml = format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
{}routes:
  - events: ["message.*"]
    when: "event.message.direction == 'in'"
    to: [t]
  - events: ["contact.*"]
    when: "event.contact is defined"
    to: [t]
"#,
        http_target("t", &sink.url("/t"), "")
    );
    let relay = TestRelay::start(&yaml).await;
    for ty in EVENT_TYPES {
        assert_eq!(relay.post_signed(&fixture(ty)).await.0, 200);
    }
    // Inbound messages: only message.received. Contact events with a `contact`: contact.created.
    let got = sink.wait_for(2, PATIENCE).await.expect("two deliveries");
    let mut types: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).expect("json")["action"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["contact.created", "message.received"]);
    let metrics = reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_events_total{type=\"message.delivered\",outcome=\"unrouted\"} 1"),
        "{metrics}"
    );
}
