//! The operator's web console (issue 16) in a real headless Chromium, and the find-event call
//! it uses.
//!
//! The browser half is tests/console/e2e.py (Playwright driving Debian's /usr/bin/chromium;
//! scripts/prereqs installs both, nothing downloads a browser). This side runs the relay with
//! a healthy target, one that answers 422 and one nobody listens on, sends the events, fixes
//! the 422 target when the page has shown its dead letter, and checks that the Replay clicked
//! in the page delivered it. Screenshots land in target/console-screenshots/.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::Value;
use textus_relay::support::sink::{Reply, Sink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

const TOKEN: &str = "console-test-token";
const EVENT_ID: &str = "/integrations/h13Jc5/deliveries/console-e2e-1";

/// Three targets: `warehouse` answers 200, `crm-sync` 422 (until fixed), `analytics` is a
/// loopback port nobody listens on, with a breaker that opens after two failures and probes
/// too rarely to be seen half open during the test. Only `message.received` goes to
/// `crm-sync`, so one event makes its one dead letter.
fn config(healthy: &Sink, rejecting: &Sink, down: &str) -> String {
    let fast = "    retry: { initial: 100ms, max_delay: 200ms }\n";
    format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
  warehouse:
    kind: http
    url: "{}"
    rate_limit: 50/s
{fast}  crm-sync:
    kind: http
    url: "{}"
{fast}  analytics:
    kind: http
    url: "{down}"
{fast}    breaker: {{ failures: 2, probe: 10m }}
routes:
  - events: [message.received]
    to: [warehouse, crm-sync, analytics]
  - events: ["contact.*"]
    to: [warehouse, analytics]
"#,
        healthy.url("/warehouse"),
        rejecting.url("/crm"),
    )
}

/// The browser half needs Debian's Chromium and Python Playwright (`scripts/prereqs`, which
/// `scripts/test` runs, installs both); without them the test fails rather than passing by
/// skipping.
fn require_browser() {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        chromium && playwright,
        "the console test needs /usr/bin/chromium ({}) and Python playwright ({}); run scripts/prereqs",
        if chromium { "found" } else { "missing" },
        if playwright { "found" } else { "missing" },
    );
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

/// The browser script, spoken to line by line.
struct Browser {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: tokio::process::ChildStdin,
}

impl Browser {
    /// Waits for the script to say `expected`; a script that fails says why on stderr.
    async fn expect(&mut self, expected: &str) {
        let line = tokio::time::timeout(PATIENCE * 4, self.lines.next_line()).await;
        match line {
            Ok(Ok(Some(line))) if line == expected => {}
            other => {
                let _ = self.child.start_kill();
                let status = self.child.wait().await;
                panic!(
                    "the browser script did not say {expected} (got {other:?}, exit {status:?}); its stderr is above"
                );
            }
        }
    }

    async fn tell(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the browser script");
        self.stdin.flush().await.expect("flush");
    }
}

#[tokio::test]
async fn the_console_shows_targets_and_dead_letters_live_and_replays_from_the_page() {
    require_browser();
    let healthy = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let rejecting = Sink::start(vec![], Reply::Status(422)).await.expect("sink");
    let down = format!("http://{}/analytics", free_port());
    let relay = TestRelay::start_with_token(TOKEN, &config(&healthy, &rejecting, &down)).await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/e2e.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--url", &relay.admin_url("")])
        .args(["--token", TOKEN])
        .args(["--healthy", "warehouse", "--rejecting", "crm-sync"])
        .args(["--down", "analytics", "--event-id", EVENT_ID])
        .arg("--shots")
        .arg(screenshots())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take().expect("piped stdin");
    let mut browser = Browser {
        child,
        lines: BufReader::new(stdout).lines(),
        stdin,
    };
    browser.expect("READY").await;

    // Sent only now, so the page sees the breaker open and the dead letter arrive live.
    let (status, body) = relay
        .post_signed(&fixture_with_id("message.received", EVENT_ID))
        .await;
    assert_eq!(status, 200, "{body}");
    for n in 2..=3 {
        let id = format!("/integrations/h13Jc5/deliveries/console-e2e-{n}");
        let (status, _) = relay
            .post_signed(&fixture_with_id("contact.created", &id))
            .await;
        assert_eq!(status, 200);
    }
    browser.expect("DEAD_LETTER_SHOWN").await;

    // The receiver is fixed; the page's Replay must now deliver the event.
    let before = rejecting.received().len();
    rejecting.set_then(Reply::Status(200));
    browser.tell("FIXED").await;
    browser.expect("REPLAYED").await;
    eventually(
        "the replayed dead letter to reach the fixed target",
        async || {
            let got = rejecting.received_from(before);
            let delivered = got.iter().any(|r| {
                serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["id"] == EVENT_ID)
            });
            if delivered {
                Ok(())
            } else {
                Err(format!("{} other requests", got.len()))
            }
        },
    )
    .await;
    // Wait for the ack too, so the page's lookup finds no delivery left for crm-sync.
    eventually("the replayed delivery acknowledged", async || {
        let (_, found) = find(&relay, EVENT_ID).await;
        if found["targets"][1]["state"] == "delivered" {
            Ok(())
        } else {
            Err(found)
        }
    })
    .await;
    browser.tell("DELIVERED").await;
    browser.expect("DONE").await;
    let status = browser.child.wait().await.expect("browser script exits");
    assert!(status.success(), "browser script: {status}");
}

async fn find(relay: &TestRelay, id: &str) -> (u16, Value) {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id", id)
        .finish();
    relay
        .admin_call(
            Method::GET,
            &format!("/api/v1/events?{query}"),
            Some(TOKEN),
            None,
        )
        .await
}

#[tokio::test]
async fn finding_an_event_says_where_it_is_for_every_target() {
    let healthy = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let rejecting = Sink::start(vec![], Reply::Status(422)).await.expect("sink");
    let down = format!("http://{}/analytics", free_port());
    let relay = TestRelay::start_with_token(TOKEN, &config(&healthy, &rejecting, &down)).await;
    let (status, _) = relay
        .post_signed(&fixture_with_id("message.received", EVENT_ID))
        .await;
    assert_eq!(status, 200);
    healthy.wait_for(1, PATIENCE).await.expect("delivered");

    // The token guards it like every /api/ call.
    let (status, body) = relay
        .admin_call(Method::GET, "/api/v1/events?id=x", None, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    let found = eventually("delivered to warehouse, dead at crm-sync", async || {
        let (status, found) = find(&relay, EVENT_ID).await;
        assert_eq!(status, 200, "{found}");
        // The healthy delivery is acked a moment after the sink saw it.
        if found["targets"][0]["state"] == "delivered" && found["targets"][1]["state"] == "dead" {
            Ok(found)
        } else {
            Err(found)
        }
    })
    .await;
    assert_eq!(found["id"], EVENT_ID);
    assert_eq!(found["seen"], true);
    assert!(found["remembered_until"].as_i64().is_some(), "{found}");
    assert_eq!(found["stored"][0]["event_type"], "message.received");
    let targets = found["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(
        names,
        ["warehouse", "crm-sync", "analytics"],
        "config order"
    );
    assert_eq!(targets[0]["deliveries"], serde_json::json!([]));
    let dead = &targets[1];
    assert_eq!(dead["state"], "dead", "{found}");
    assert_eq!(dead["deliveries"][0]["last_status"], 422);
    let dead_id = dead["deliveries"][0]["id"].as_i64().expect("delivery id");
    let (_, listed) = relay
        .admin_call(Method::GET, "/api/v1/dead-letters", Some(TOKEN), None)
        .await;
    assert_eq!(
        listed["dead_letters"][0]["id"].as_i64(),
        Some(dead_id),
        "the same id as the dead letter"
    );
    let waiting = &targets[2];
    assert!(
        ["queued", "in_flight"].contains(&waiting["state"].as_str().unwrap_or("")),
        "{found}"
    );
    assert!(
        waiting["deliveries"][0]["next_attempt_at"]
            .as_i64()
            .is_some()
    );

    // A contact event is routed to warehouse and analytics only: crm-sync never had it, and
    // the relay says so rather than "delivered".
    let contact = "/integrations/h13Jc5/deliveries/console-contact";
    let (status, _) = relay
        .post_signed(&fixture_with_id("contact.created", contact))
        .await;
    assert_eq!(status, 200);
    let found = eventually("the contact event delivered to warehouse", async || {
        let (_, found) = find(&relay, contact).await;
        if found["targets"][0]["state"] == "delivered" {
            Ok(found)
        } else {
            Err(found)
        }
    })
    .await;
    assert_eq!(found["targets"][1]["state"], "not_routed", "{found}");
    assert_eq!(
        found["routed"],
        serde_json::json!(["warehouse", "analytics"]),
        "{found}"
    );

    // The path form takes the id percent-encoded, or as it is, slashes and all.
    for path in [
        "/api/v1/events/%2Fintegrations%2Fh13Jc5%2Fdeliveries%2Fconsole-e2e-1".to_string(),
        format!("/api/v1/events/{EVENT_ID}"),
    ] {
        let (status, same) = relay
            .admin_call(Method::GET, &path, Some(TOKEN), None)
            .await;
        assert_eq!(status, 200, "{path}: {same}");
        assert_eq!(same["id"], EVENT_ID, "{path}");
    }

    // Unknown ids are 404, bad queries 400, other methods 405, all with a JSON error.
    let (status, body) = find(&relay, "/integrations/h13Jc5/deliveries/never").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    for (path, want) in [
        ("/api/v1/events", 400),
        ("/api/v1/events?id=", 400),
        ("/api/v1/events?id=a&target=b", 400),
    ] {
        let (status, body) = relay.admin_call(Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(status, want, "{path}: {body}");
        assert_eq!(body["error"], "bad_query", "{path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = relay
        .admin_call(Method::POST, "/api/v1/events?id=x", Some(TOKEN), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn the_console_page_is_served_without_the_token_and_locked_to_this_origin() {
    let relay = TestRelay::start_with_token(
        TOKEN,
        &format!(
            "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
            http_target("t", "http://127.0.0.1:9/t", "")
        ),
    )
    .await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let response = client
            .get(relay.admin_url(path))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        let text = response.text().await.expect("body");
        // Nothing in the assets points anywhere but this listener.
        for outside in ["http://", "https://", "//cdn", "@import", "fonts."] {
            let hits: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(outside) && !l.contains("www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{path} refers to {outside}: {hits:?}");
        }
    }
    let page = client
        .get(relay.admin_url("/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(!page.contains("<script>"), "no inline script");
    // The data is guarded even though the page is not.
    let (status, _) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(status, 401);
    let (status, body) = relay.admin_call(Method::POST, "/", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}
