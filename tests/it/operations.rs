//! What an operator watches: metrics that move with the traffic, and a store that stays small.

use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn config(url: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, "    concurrency: 8\n")
    )
}

async fn metrics(relay: &TestRelay) -> String {
    reqwest::get(relay.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one sample line (`name{labels} value`), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_carry_the_standard_process_metrics_of_the_relay_itself() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let relay = TestRelay::start(&config(&sink.url("/t"))).await;
    let text = metrics(&relay).await;
    // CPU is counted in ticks of 10 ms: a relay just started may not have spent one yet.
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_cpu_seconds_total ")),
        "{text}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(value(&text, name) > 0.0, "{name} missing or zero: {text}");
    }
    // The relay's own start, not the test's: within the last hour, and after the epoch.
    let started = value(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(
        started > now - 3600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
}

#[tokio::test]
async fn metrics_move_as_events_are_accepted_and_delivered() {
    let sink = Sink::start(vec![Reply::Status(503)], Reply::Status(200))
        .await
        .expect("sink");
    let relay = TestRelay::start(&config(&sink.url("/t"))).await;
    let before = metrics(&relay).await;
    for i in 0..5 {
        let body = fixture_with_id(
            "message.received",
            &format!("/integrations/m/deliveries/{i}"),
        );
        assert_eq!(relay.post_signed(&body).await.0, 200);
    }
    sink.wait_for(6, PATIENCE)
        .await
        .expect("five events, one retried");
    // The last ack is recorded just after the sink answers; poll until the counter catches up.
    let after = eventually("five deliveries counted", async || {
        let text = metrics(&relay).await;
        if value(
            &text,
            "relay_deliveries_total{target=\"t\",outcome=\"delivered\"}",
        ) >= 5.0
        {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        delta("relay_requests_total{outcome=\"accepted\"}"),
        5.0,
        "{after}"
    );
    assert_eq!(
        delta("relay_events_total{type=\"message.received\",outcome=\"accepted\"}"),
        5.0
    );
    assert_eq!(
        delta("relay_deliveries_total{target=\"t\",outcome=\"retry\"}"),
        1.0
    );
    assert_eq!(
        delta("relay_delivery_duration_seconds_count{target=\"t\"}"),
        6.0
    );
    assert_eq!(value(&after, "relay_queue_depth{target=\"t\"}"), 0.0);
    // The writer's commits and the store file are SQLite's; JetStream has neither.
    if !nats_backend() {
        assert!(delta("relay_commit_batch_size_count") >= 1.0);
        assert!(delta("relay_commit_duration_seconds_count") >= 1.0);
        assert!(value(&after, "relay_store_bytes") > 0.0, "{after}");
    }
    // No label carries a URL or error text.
    assert!(
        !after.contains("127.0.0.1") && !after.contains("HTTP 503"),
        "{after}"
    );
}

#[tokio::test]
async fn the_store_stops_growing_under_steady_traffic() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::start_in(dir.path(), &config(&sink.url("/t"))).await;
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
    let mut sizes = Vec::new();
    let mut sent = 0;
    for round in 0..6 {
        for i in 0..200 {
            let body = fixture_with_id(
                "message.delivered",
                &format!("/integrations/s/deliveries/{round}-{i}"),
            );
            assert_eq!(relay.post_signed(&body).await.0, 200);
        }
        sent += 200;
        sink.wait_for(sent, PATIENCE)
            .await
            .expect("round delivered");
        let text = eventually("the queue drained", async || {
            let text = metrics(&relay).await;
            if value(&text, "relay_queue_depth{target=\"t\"}") == 0.0 {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .await;
        let (db, wal) = (size("relay.db"), size("relay.db-wal"));
        // The gauge operators see is the two together.
        assert!(value(&text, "relay_store_bytes") > 0.0, "{text}");
        sizes.push((db, wal));
    }
    // Delivered events are pruned and their pages reused: after the first rounds have sized
    // the file, more of the same traffic grows it only by the de-duplication ids (~100 bytes
    // per event, kept for the dedupe window), never by the bodies (~2.5 KB each).
    let (early, late) = (sizes[1].0, sizes[5].0);
    let per_event = late.saturating_sub(early) / 800;
    assert!(
        per_event <= 512,
        "database grew by {per_event} bytes per delivered event: {sizes:?}"
    );
    // The log is rewound whenever a checkpoint has caught up with it, and at the latest when
    // it reaches the writer's backstop of 2,048 pages (4 KiB and a 24-byte frame header each),
    // plus what one batch wrote past it: however the checkpoints fell, it stays under that.
    let bound = (2_048 + 1_024) * (4_096 + 24);
    assert!(
        sizes.iter().all(|&(_, wal)| wal <= bound),
        "the log outgrew its bound of {bound} bytes: {sizes:?}"
    );
}

/// `--log-format json`: every line is one JSON object, pingora's own lines included, and each
/// accepted event and delivery outcome is one line with stable field names.
#[tokio::test]
async fn json_logs_carry_one_line_per_event_and_outcome() {
    use textus_relay::support::sink::{Reply, Sink};
    let sink = Sink::start(vec![Reply::Status(503)], Reply::Status(200))
        .await
        .expect("sink");
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &sink.url("/t"), "")
    );
    let relay = TestRelay::start_json_logs(&yaml, "info,pingora_core=info").await;
    let body = fixture_with_id("message.received", "/integrations/logs/1");
    assert_eq!(relay.post_signed(&body).await.0, 200);
    sink.wait_for(2, PATIENCE)
        .await
        .expect("retried, then delivered");

    let lines: Vec<serde_json::Value> = eventually("a \"delivered\" log line", async || {
        let log = relay.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if lines.iter().any(|l| l["fields"]["message"] == "delivered") {
            Ok(lines)
        } else {
            Err(log)
        }
    })
    .await;
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {lines:?}"))["fields"]
            .clone()
    };
    let accepted = find("event accepted");
    assert_eq!(accepted["event_id"], "/integrations/logs/1");
    assert_eq!(accepted["event_type"], "message.received");
    for (message, attempt, status) in [
        ("delivery failed; will retry", 1, 503),
        ("delivered", 2, 200),
    ] {
        let f = find(message);
        assert_eq!(f["event_id"], "/integrations/logs/1", "{f}");
        assert_eq!(f["event_type"], "message.received", "{f}");
        assert_eq!(f["target"], "t", "{f}");
        assert_eq!(f["attempt"], attempt, "{f}");
        assert_eq!(f["status"], status, "{f}");
        assert!(f["duration_ms"].is_u64(), "{f}");
    }
    assert!(
        lines.iter().any(|l| l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("pingora"))),
        "pingora's own lines are JSON too"
    );
}
