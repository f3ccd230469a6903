//! `textus-relay textus subscribe` against a TextUs-shaped Integrations API on loopback that
//! records each request as received (request line, headers, body), and `check`'s notes on
//! routed event types TextUs does not send by default (issue 19).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::support::*;

const TOKEN: &str = "tok-3f9a0c1d2e";
const WEBHOOK_SECRET: &str = "textus-Zq8rT1vXk2LmN4pQ";

/// One request as the API saw it.
struct Seen {
    /// e.g. `POST /my_account/integrations HTTP/1.1`.
    line: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The stand-in for TextUs's API: answers every request with one canned status and body.
struct Api {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    async fn start(status: u16, body: Value) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Bytes::from(serde_json::to_vec(&body).expect("json"));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (record, answer) = (record.clone(), answer.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (record, answer) = (record.clone(), answer.clone());
                    async move {
                        let (head, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        record.lock().expect("lock").push(Seen {
                            line: format!("{} {} {:?}", head.method, head.uri, head.version),
                            headers: head.headers,
                            body,
                        });
                        let mut response = Response::new(Full::new(answer));
                        *response.status_mut() = StatusCode::from_u16(status).expect("status");
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/vnd.textus+jsonld"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Api { addr, seen }
    }

    /// TextUs's create answer (201), with the secret.
    async fn creating() -> Api {
        Api::start(
            201,
            json!({"@type": "Integration", "@context": "/contexts/Integration.jsonld",
                   "id": "/integrations/0yX2VrJ", "active": true, "provider": "webhook",
                   "config": {"baseUrl": "https://relay.example.com/webhooks/textus",
                              "webhookSecret": WEBHOOK_SECRET},
                   "settings": {}, "isHealthy": true}),
        )
        .await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().expect("lock")
    }
}

/// Routes: message.received, contact.*, and message.failed behind a `when:` the sample fails.
const ROUTED: &str = "source: { path: /webhooks/textus, secrets: [s] }
targets:
  a: { kind: http, url: \"http://127.0.0.1:1/a\" }
  b: { kind: http, url: \"http://127.0.0.1:1/b\" }
routes:
  - events: [message.received]
    to: [a]
  - events: [\"contact.*\"]
    to: [b]
  - events: [message.failed]
    when: \"event.message.direction == 'sideways'\"
    to: [a]
";

const EVERYTHING: &str = "source: { secrets: [s] }
targets:
  a: { kind: http, url: \"http://127.0.0.1:1/a\" }
routes:
  - events: [\"*\"]
    to: [a]
";

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("relay.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path.to_string_lossy().into_owned()
}

/// `--config CONFIG --url URL --api API` and then `more`.
fn args<'a>(config: &'a str, api: &'a str, url: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--config", config, "--url", url, "--api", api];
    all.extend_from_slice(more);
    all
}

/// Runs `textus subscribe` with the token set (unless `token` is None): (code, stdout, stderr).
fn subscribe(args: &[&str], token: Option<&str>, rust_log: &str) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(["textus", "subscribe"])
        .args(args)
        .env("RUST_LOG", rust_log);
    match token {
        Some(t) => command.env("TEXTUS_API_TOKEN", t),
        None => command.env_remove("TEXTUS_API_TOKEN"),
    };
    let out = command.output().expect("run textus-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn actions(seen: &Seen) -> Value {
    let body: Value = serde_json::from_slice(&seen.body).expect("JSON body");
    body["settings"]["actions"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sends_the_guides_call_with_exactly_the_routed_actions() {
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://relay.example.com",
            &["--account", "my_account"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 0, "{out}{err}");
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.line, "POST /my_account/integrations HTTP/1.1");
    assert_eq!(header(request, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header(request, "accept"), "application/vnd.textus+jsonld");
    assert_eq!(header(request, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"@type": "Integration", "@context": "/contexts/Integration.jsonld",
               "active": true, "provider": "webhook",
               "config": {"baseUrl": "https://relay.example.com/webhooks/textus"},
               "settings": {"actions": {
                   "message.received": true, "message.delivered": false,
                   "message.failed": true, "message.unknown": false,
                   "phone_call.completed": false, "contact.opted_out": true,
                   "contact.opted_in": true, "contact.created": true}}})
    );
    // In TextUs's order, as in its docs.
    let text = String::from_utf8_lossy(&request.body);
    let positions: Vec<usize> = EVENT_TYPES
        .iter()
        .map(|t| {
            text.find(&format!("\"{t}\""))
                .expect("every type is listed")
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

    assert!(out.contains("integration /integrations/0yX2VrJ"), "{out}");
    assert_eq!(out.matches(WEBHOOK_SECRET).count(), 1, "{out}");
    assert!(out.contains("source.secrets"), "{out}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_route_enables_all_eight_and_a_url_with_a_path_is_kept() {
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), EVERYTHING);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://edge.example.com/in/textus",
            &["--account", "acme-east"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 0, "{out}{err}");
    let seen = api.seen();
    let expected: serde_json::Map<String, Value> = EVENT_TYPES
        .iter()
        .map(|t| (t.to_string(), Value::Bool(true)))
        .collect();
    assert_eq!(actions(&seen[0]), Value::Object(expected));
    let body: Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
    assert_eq!(
        body["config"]["baseUrl"],
        "https://edge.example.com/in/textus"
    );
    assert_eq!(seen[0].line, "POST /acme-east/integrations HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_public_url_is_a_usage_error_and_nothing_is_sent() {
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "http://relay.example.com",
            &["--account", "my_account"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("https"), "{err}");
    assert_eq!(api.seen().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_goes_to_a_0600_file_and_nowhere_else() {
    use std::os::unix::fs::PermissionsExt;
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let secret_file = dir.path().join("textus-secret");
    let secret_arg = secret_file.to_string_lossy().into_owned();
    let api_url = api.url();
    let args = args(
        &config,
        &api_url,
        "https://relay.example.com",
        &["--account", "my_account", "--secret-file", &secret_arg],
    );
    // Every log event on, HTTP layers included: the secret must still not appear.
    let (code, out, err) = subscribe(&args, Some(TOKEN), "trace");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(&secret_file).expect("secret file"),
        WEBHOOK_SECRET
    );
    let mode = std::fs::metadata(&secret_file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(!out.contains(WEBHOOK_SECRET), "{out}");
    assert!(!err.contains(WEBHOOK_SECRET), "{err}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "the token leaked:\n{out}{err}"
    );
    assert!(out.contains("integration /integrations/0yX2VrJ"), "{out}");
    assert!(
        out.contains(&secret_arg) && out.contains("source.secrets"),
        "{out}"
    );

    // An existing file is never overwritten, and is refused before anything is sent.
    let (code, out, err) = subscribe(&args, Some(TOKEN), "warn");
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(api.seen().len(), 1);
    assert_eq!(
        std::fs::read_to_string(&secret_file).expect("secret file"),
        WEBHOOK_SECRET
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_exits_1_quoting_the_status_and_the_apis_message() {
    let api = Api::start(
        403,
        json!({"@type": "hydra:Error", "hydra:title": "Forbidden",
               "hydra:description": "You are not authorized to manage integrations for my_account"}),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let secret_file = dir.path().join("textus-secret");
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://relay.example.com",
            &[
                "--account",
                "my_account",
                "--secret-file",
                &secret_file.to_string_lossy(),
            ],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains("You are not authorized to manage integrations for my_account"),
        "{err}"
    );
    assert_eq!(api.seen().len(), 1);
    assert!(!secret_file.exists(), "no secret, no file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_api_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    // Bound and released: nothing listens there.
    let dead = format!("http://{}", free_port());
    let (code, out, err) = subscribe(
        &args(
            &config,
            &dead,
            "https://relay.example.com",
            &["--account", "my_account"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot reach the TextUs API at"), "{err}");
    assert!(err.contains(&dead), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_request_masked_and_sends_nothing() {
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://relay.example.com",
            &["--account", "my_account", "--dry-run"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(api.seen().len(), 0);
    assert!(
        out.starts_with(&format!("POST {}/my_account/integrations\n", api.url())),
        "{out}"
    );
    assert!(out.contains("Authorization: Bearer ********"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    assert!(
        out.contains("\"message.failed\": true") && out.contains("\"message.unknown\": false"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_puts_the_documented_body_to_the_integration() {
    let api = Api::start(
        200,
        json!({"@type": "Integration", "id": "/integrations/0yX2VrJ",
               "config": {"baseUrl": "https://relay.example.com/webhooks/textus",
                          "webhookSecret": WEBHOOK_SECRET}}),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), EVERYTHING);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://relay.example.com",
            &["--update", "/integrations/0yX2VrJ"],
        ),
        Some(TOKEN),
        "warn",
    );
    assert_eq!(code, 0, "{out}{err}");
    let seen = api.seen();
    assert_eq!(seen[0].line, "PUT /integrations/0yX2VrJ HTTP/1.1");
    assert_eq!(header(&seen[0], "authorization"), format!("Bearer {TOKEN}"));
    let body: Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["active", "config", "settings"]);
    assert_eq!(
        body["config"]["baseUrl"],
        "https://relay.example.com/webhooks/textus"
    );
    assert_eq!(actions(&seen[0])["phone_call.completed"], true);
    assert!(out.contains("integration /integrations/0yX2VrJ"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_it_is_a_usage_error_and_nothing_is_sent() {
    let api = Api::creating().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let (code, out, err) = subscribe(
        &args(
            &config,
            &api.url(),
            "https://relay.example.com",
            &["--account", "my_account"],
        ),
        None,
        "warn",
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("TEXTUS_API_TOKEN"), "{err}");
    assert_eq!(api.seen().len(), 0);
}

#[test]
fn check_notes_each_routed_type_textus_does_not_send_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), ROUTED);
    let (code, out, err) = cli(&["check", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("`textus-relay textus subscribe`"), "{out}");
    let noted = |ty: &str| {
        out.lines().any(|l| {
            l.trim_start().starts_with(ty)
                && l.contains("must be enabled in the integration's settings.actions")
        })
    };
    for ty in [
        "message.failed",
        "contact.opted_out",
        "contact.opted_in",
        "contact.created",
    ] {
        assert!(noted(ty), "{ty}:\n{out}");
    }
    // A default type and unrouted types get no note.
    for ty in [
        "message.received",
        "message.delivered",
        "message.unknown",
        "phone_call.completed",
    ] {
        assert!(!noted(ty), "{ty}:\n{out}");
    }

    // Routing only the defaults: nothing to enable, no note.
    let defaults = ROUTED
        .replace("[\"contact.*\"]", "[message.delivered]")
        .replace("[message.failed]", "[message.received]");
    let config = write_config(dir.path(), &defaults);
    let (code, out, err) = cli(&["check", "--config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("must be enabled"), "{out}");
}
