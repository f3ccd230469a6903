//! Dead letters end to end: the admin API and the `dead-letters` CLI against the real binary,
//! with real sinks that refuse, then accept.

use std::time::SystemTime;

use reqwest::Method;
use serde_json::{Value, json};
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

const TOKEN: &str = "adm1n-t0ken";

fn one_target(url: &str, extra: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, extra)
    )
}

/// A sink that refuses everything with a permanent 400, until told otherwise.
async fn refusing_sink() -> Sink {
    Sink::start(vec![], Reply::StatusWithBody(400, "invalid_payload".into()))
        .await
        .expect("sink")
}

/// `textus-relay dead-letters ARGS --config <relay's config>`.
fn dead_letters_cli(relay: &TestRelay, args: &[&str]) -> (i32, String, String) {
    let config = relay.config.to_string_lossy().into_owned();
    let mut all = vec!["dead-letters"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config]);
    cli(&all)
}

fn unix_ms_now() -> i64 {
    textus_relay::store::unix_ms(SystemTime::now())
}

/// Waits until the target has nothing queued or in flight and no dead letters: delivered.
async fn wait_all_delivered(relay: &TestRelay, token: Option<&str>) {
    eventually("everything delivered, no dead letter left", async || {
        let (_, targets) = relay
            .admin_call(Method::GET, "/api/v1/targets", token, None)
            .await;
        let t = &targets["targets"][0];
        if t["queued"] == 0 && t["in_flight"] == 0 && t["dead"] == 0 {
            Ok(())
        } else {
            Err(targets)
        }
    })
    .await;
}

#[tokio::test]
async fn a_400_is_one_dead_letter_that_the_api_lists_shows_and_replays() {
    let sink = refusing_sink().await;
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    let body = fixture("contact.created");
    assert_eq!(relay.post_signed(&body).await.0, 200);
    let dead = relay.wait_dead_letters(1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["last_status"], 400);
    let id = dead[0]["id"].as_i64().expect("id");

    let (status, list) = relay
        .admin_get("/api/v1/dead-letters?target=t&type=contact.created&limit=5")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["dead_letters"][0]["id"], id);
    let (_, none) = relay
        .admin_get("/api/v1/dead-letters?type=message.received")
        .await;
    assert_eq!(none["dead_letters"], json!([]));

    let (status, shown) = relay.admin_get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["target"], "t");
    assert_eq!(shown["body_format"], "json");
    let sent: Value = serde_json::from_slice(&body).expect("fixture is JSON");
    assert_eq!(shown["body"], sent);
    let history = shown["attempt_history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{shown}");
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(history[0]["status"], 400);
    assert!(
        history[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_payload")),
        "{shown}"
    );

    sink.set_then(Reply::Status(200));
    let (status, replayed) = relay
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/replay",
            None,
            Some(json!({ "ids": [id] })),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        replayed,
        json!({"replayed": 1, "targets": {"t": 1}, "skipped": []})
    );
    let got = sink
        .wait_for(2, PATIENCE)
        .await
        .expect("delivered on replay");
    assert_eq!(got[1].body[..], body[..]);
    assert_eq!(
        got[0].headers.get("webhook-id"),
        got[1].headers.get("webhook-id"),
        "a replay is the same delivery: receivers de-duplicate on webhook-id"
    );
    wait_all_delivered(&relay, None).await;
    let (status, _) = relay.admin_get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(status, 404, "delivered: no longer a dead letter");
}

#[tokio::test]
async fn the_cli_lists_shows_and_replays_by_target_with_the_token() {
    let sink = refusing_sink().await;
    let relay = TestRelay::start_with_token(TOKEN, &one_target(&sink.url("/t"), "")).await;
    assert_eq!(relay.post_signed(&fixture("contact.created")).await.0, 200);
    let listed = eventually("the CLI to list a dead letter", async || {
        let (code, out, err) = dead_letters_cli(&relay, &["list", "--target", "t"]);
        assert_eq!(code, 0, "{out}{err}");
        if out.starts_with("no dead letters") {
            Err(out)
        } else {
            Ok(out)
        }
    })
    .await;
    let mut lines = listed.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("ID  DEAD AT"), "{listed}");
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[2..6], ["t", "contact.created", "1", "400"], "{listed}");
    assert!(listed.contains("invalid_payload"), "{listed}");
    assert!(
        listed.ends_with("1 dead letter, newest first\n"),
        "{listed}"
    );
    let id = row[0].to_owned();

    let (code, json_out, err) = dead_letters_cli(&relay, &["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let parsed: Value = serde_json::from_str(&json_out).expect("--json prints JSON");
    assert_eq!(parsed["dead_letters"][0]["id"].to_string(), id);

    let (code, shown, err) = dead_letters_cli(&relay, &["show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.starts_with(&format!("dead letter {id}\n")), "{shown}");
    assert!(
        shown.contains("  event type:  contact.created\n"),
        "{shown}"
    );
    assert!(shown.contains("\nattempts:\n  #  AT"), "{shown}");
    let attempt = shown
        .lines()
        .find(|l| l.trim_start().starts_with("1  "))
        .unwrap_or_default();
    let cells: Vec<&str> = attempt.split_whitespace().collect();
    assert_eq!(cells[2..5], ["400", "HTTP", "400"], "{shown}");
    assert!(shown.contains("\nbody (json):\n{\n"), "{shown}");
    assert!(shown.contains("\"action\": \"contact.created\""), "{shown}");

    sink.set_then(Reply::Status(200));
    let (code, out, err) = dead_letters_cli(&relay, &["replay", "--target", "t"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "replayed 1 dead letter (t: 1)\n"),
        "{err}"
    );
    sink.wait_for(2, PATIENCE)
        .await
        .expect("delivered on replay");
    wait_all_delivered(&relay, Some(TOKEN)).await;
    let (code, out, _) = dead_letters_cli(&relay, &["list"]);
    assert_eq!((code, out.as_str()), (0, "no dead letters\n"));
    let (code, _, err) = dead_letters_cli(&relay, &["show", &id]);
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains(&format!("no dead letter with id {id}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_503_until_max_attempts_dead_letter_shows_every_attempt() {
    let (relay, _sink) = relay_giving_up_after_three_503s().await;
    assert_eq!(relay.post_signed(&fixture("message.failed")).await.0, 200);
    let id = relay.wait_dead_letters(1).await[0]["id"].clone();
    let (_, shown) = relay.admin_get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(shown["attempts"], 3);
    let history = shown["attempt_history"].as_array().expect("history");
    let seen: Vec<(i64, i64)> = history
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap_or(0),
                a["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(seen, [(1, 503), (2, 503), (3, 503)], "{shown}");
    let times: Vec<i64> = history.iter().filter_map(|a| a["at"].as_i64()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{shown}");
    assert!(
        shown["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("gave up after 3 attempts")),
        "{shown}"
    );
}

#[tokio::test]
async fn dead_letters_are_filtered_by_type_and_time_and_purged_by_id_and_filter() {
    let sink = refusing_sink().await;
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    relay.post_signed(&fixture("contact.created")).await;
    let first = relay.wait_dead_letters(1).await[0].clone();
    // A marker just after the first letter died (`until` is exclusive, `since` inclusive); the
    // later ones are sent once the clock has passed it, so they die at or after it.
    let marker = first["dead_at"].as_i64().expect("dead_at") + 1;
    eventually("the clock to pass the first dead letter", async || {
        let now = unix_ms_now();
        if now >= marker { Ok(()) } else { Err(now) }
    })
    .await;
    let first = first["id"].clone();
    for i in 0..2 {
        let id = format!("/integrations/x/deliveries/later-{i}");
        relay
            .post_signed(&fixture_with_id("message.received", &id))
            .await;
    }
    relay.wait_dead_letters(3).await;

    let count = |query: String| {
        let relay = &relay;
        async move {
            let (status, list) = relay
                .admin_get(&format!("/api/v1/dead-letters{query}"))
                .await;
            assert_eq!(status, 200, "{list}");
            list["dead_letters"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(count(format!("?since={marker}")).await, 2);
    assert_eq!(count(format!("?until={marker}")).await, 1);
    assert_eq!(count("?type=message.received".into()).await, 2);
    assert_eq!(count("?type=contact.created&target=t".into()).await, 1);
    assert_eq!(
        count("?since=2000-01-01T00:00:00Z&until=2999-12-31T23:59:59%2B01:00".into()).await,
        3
    );
    assert_eq!(count("?until=2000-01-01T00:00:00Z".into()).await, 0);
    assert_eq!(count("?limit=1".into()).await, 1);

    let path = format!("/api/v1/dead-letters/{first}");
    let (status, purged) = relay.admin_call(Method::DELETE, &path, None, None).await;
    assert_eq!((status, purged), (200, json!({"purged": 1})));
    let (status, again) = relay.admin_call(Method::DELETE, &path, None, None).await;
    assert_eq!(status, 404, "{again}");
    assert_eq!(again["error"], "not_found");

    let (status, purged) = relay
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/purge",
            None,
            Some(json!({"type": "message.received", "since": marker})),
        )
        .await;
    assert_eq!((status, purged), (200, json!({"purged": 2})));
    assert!(relay.dead_letters().await.is_empty());
    let (_, targets) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(targets["targets"][0]["dead"], 0);
}

#[tokio::test]
async fn every_dead_letter_call_needs_the_token_when_one_is_set() {
    let sink = refusing_sink().await;
    let relay = TestRelay::start_with_token(TOKEN, &one_target(&sink.url("/t"), "")).await;
    let filter = json!({"target": "t"});
    let calls = [
        (Method::GET, "/api/v1/dead-letters", None),
        (Method::GET, "/api/v1/dead-letters/1", None),
        (Method::DELETE, "/api/v1/dead-letters/1", None),
        (Method::POST, "/api/v1/dead-letters/replay", Some(&filter)),
        (Method::POST, "/api/v1/dead-letters/purge", Some(&filter)),
    ];
    for (method, path, body) in &calls {
        for token in [None, Some("wrong")] {
            let (status, answer) = relay
                .admin_call(method.clone(), path, token, body.cloned())
                .await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {answer}");
            assert_eq!(answer["error"], "unauthorized");
        }
    }
    let (status, _) = relay
        .admin_call(Method::GET, "/api/v1/dead-letters", Some(TOKEN), None)
        .await;
    assert_eq!(status, 200);
    let (status, answer) = relay
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/replay",
            Some(TOKEN),
            Some(filter.clone()),
        )
        .await;
    assert_eq!((status, answer["replayed"].clone()), (200, json!(0)));
    let (status, _) = relay.admin_get("/healthz").await;
    assert_eq!(status, 200, "health needs no token");

    // The CLI with a config whose token is wrong says so, and exits 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!("admin: {{ address: \"{}\", token: nope }}\n", relay.admin),
    )
    .expect("write");
    let (code, _, err) = cli(&[
        "dead-letters",
        "list",
        "--config",
        &config.to_string_lossy(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401") && err.contains("admin.token"), "{err}");
}

#[tokio::test]
async fn a_body_that_was_never_an_event_is_listed_shown_skipped_by_replay_and_purged() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    assert_eq!(relay.post_signed(b"this is not json").await.0, 200);
    let dead = relay.wait_dead_letters(1).await;
    assert!(dead[0]["target"].is_null(), "{dead:?}");
    let id = dead[0]["id"].as_i64().expect("id");

    let (_, shown) = relay.admin_get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(shown["body_format"], "text");
    assert_eq!(shown["body"], "this is not json");
    assert_eq!(shown["attempt_history"], json!([]));
    let (code, out, _) = dead_letters_cli(&relay, &["show", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("  target:      -\n"), "{out}");
    assert!(out.contains("\nno attempts were made\n"), "{out}");
    assert!(out.ends_with("\nbody (text):\nthis is not json\n"), "{out}");

    let (status, replayed) = relay
        .admin_call(
            Method::POST,
            "/api/v1/dead-letters/replay",
            None,
            Some(json!({ "ids": [id] })),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 0);
    let skipped = &replayed["skipped"][0];
    assert_eq!(
        (skipped["count"].clone(), skipped["ids"].clone()),
        (json!(1), json!([id]))
    );
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("never an event")),
        "{replayed}"
    );
    let (code, out, _) = dead_letters_cli(&relay, &["replay", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("replayed 0 dead letters\nskipped 1: the body was never an event"),
        "{out}"
    );
    assert!(out.ends_with(&format!("(ids {id})\n")), "{out}");

    let (code, out, _) = dead_letters_cli(&relay, &["purge", &id.to_string()]);
    assert_eq!((code, out.as_str()), (0, "purged 1 dead letter\n"));
    assert!(relay.dead_letters().await.is_empty());
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn bad_dead_letter_requests_are_400_and_unknown_ids_404() {
    let sink = refusing_sink().await;
    let relay = TestRelay::start(&one_target(&sink.url("/t"), "")).await;
    for query in ["?limit=ten", "?since=soon", "?until=1&since=2", "?targt=t"] {
        let (status, answer) = relay
            .admin_get(&format!("/api/v1/dead-letters{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"], "bad_query");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let bodies = [
        json!({}),
        json!({"tpye": "x"}),
        json!({"ids": "1"}),
        json!([1]),
    ];
    for body in bodies {
        for path in ["/api/v1/dead-letters/replay", "/api/v1/dead-letters/purge"] {
            let (status, answer) = relay
                .admin_call(Method::POST, path, None, Some(body.clone()))
                .await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_eq!(answer["error"], "bad_filter");
        }
    }
    let (status, answer) = relay.admin_get("/api/v1/dead-letters/abc").await;
    assert_eq!((status, answer["error"].clone()), (400, json!("bad_id")));
    let (status, answer) = relay.admin_get("/api/v1/dead-letters/987654").await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["message"], "no dead letter with id 987654");
    let (status, _) = relay
        .admin_call(Method::PUT, "/api/v1/dead-letters/replay", None, None)
        .await;
    assert_eq!(status, 405);
    let (status, _) = relay
        .admin_call(Method::DELETE, "/api/v1/dead-letters", None, None)
        .await;
    assert_eq!(status, 405);
}

#[test]
fn the_cli_exits_1_when_the_relay_is_unreachable_and_2_for_bad_config_or_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!("admin: {{ address: \"{}\" }}\n", free_port()),
    )
    .expect("write");
    let config = config.to_string_lossy().into_owned();
    let (code, _, err) = cli(&["dead-letters", "list", "--config", &config]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach the relay's admin API"), "{err}");

    let (code, _, err) = cli(&["dead-letters", "replay", "--config", &config]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("say which dead letters"), "{err}");
    let (code, _, err) = cli(&[
        "dead-letters",
        "list",
        "--since",
        "soon",
        "--config",
        &config,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a time"), "{err}");
    let (code, _, _) = cli(&["dead-letters", "show", "abc", "--config", &config]);
    assert_eq!(code, 2);

    let missing = dir.path().join("missing.yaml");
    let (code, _, err) = cli(&[
        "dead-letters",
        "list",
        "--config",
        &missing.to_string_lossy(),
    ]);
    assert_eq!(code, 2, "{err}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "admin: { address: nowhere }\n").expect("write");
    let (code, _, err) = cli(&["dead-letters", "list", "--config", &bad.to_string_lossy()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:1:19: admin.address: "), "{err}");
}
