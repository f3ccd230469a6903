//! Admin routing and the target endpoints, against a real store in a temporary folder.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use http::{Method, StatusCode};
use serde_json::Value;

use super::AdminConfig;
use super::{Admin, AdminTarget};
use crate::app::live::Live;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::sqlite::SqliteStore;
use crate::targets::health::TargetHealth;

const YAML: &str = "source: { secrets: [s] }\ntargets:\n  t: { kind: http, url: \"http://127.0.0.1:1/\", rate_limit: 1/s, concurrency: 2, ordering: fifo, max_queue: 10 }\nroutes:\n  - events: [\"*\"]\n    to: [t]\n";

fn admin(dir: &Path, token: Option<&str>) -> Admin {
    let config = Config::from_yaml_str(YAML, Path::new("relay.yaml"), &|_| None).expect("valid");
    Admin {
        store: Arc::new(SqliteStore::open(&dir.join("relay.db")).expect("open")),
        metrics: Arc::new(Metrics::default()),
        config: Arc::new(Live::new(AdminConfig {
            targets: vec![AdminTarget {
                config: config.targets[0].clone(),
                health: Arc::new(TargetHealth::default()),
            }],
            token: token.map(crate::config::Secret::from),
        })),
        reloader: None,
        running: Arc::new(AtomicUsize::new(1)),
        store_path: None,
        ingress: None,
    }
}

async fn call(admin: &Admin, method: Method, path: &str, auth: Option<&str>) -> (u16, Value) {
    let (status, body, _) = admin.answer(&method, path, auth).await;
    (
        status.as_u16(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn target_controls_need_the_token_like_every_api_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = admin(dir.path(), Some("s3cret"));
    let pause = "/api/v1/targets/t/pause";
    for auth in [
        None,
        Some("Bearer nope"),
        Some("s3cret"),
        Some("Basic s3cret"),
    ] {
        let (status, body) = call(&admin, Method::POST, pause, auth).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    assert_eq!(
        call(&admin, Method::GET, "/api/v1/targets", None).await.0,
        401
    );
    assert_eq!(
        call(&admin, Method::GET, "/api/v1/nothing", None).await.0,
        401
    );
    // Health and metrics stay open, for probes and scrapers.
    assert_eq!(call(&admin, Method::GET, "/healthz", None).await.0, 200);
    let (status, body) = call(&admin, Method::POST, pause, Some("Bearer s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"], true);
}

#[tokio::test]
async fn pause_and_enable_are_persisted_and_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = admin(dir.path(), None);
    let (status, list) = call(&admin, Method::GET, "/api/v1/targets", None).await;
    assert_eq!(status, 200);
    let t = &list["targets"][0];
    assert_eq!(t["name"], "t");
    assert_eq!(t["breaker"], "closed");
    assert_eq!(t["disabled"], false);
    assert_eq!(t["paused"], false);
    assert_eq!(t["rate_limit"], "1/s");
    assert_eq!(t["concurrency"], 2);
    assert_eq!(t["ordering"], "fifo");
    assert_eq!(t["max_queue"], 10);
    assert_eq!(t["on_full"], "reject");
    assert_eq!(t["queued"], 0);
    assert!(t["oldest_queued_age_seconds"].is_null());

    let (status, t) = call(&admin, Method::POST, "/api/v1/targets/t/pause", None).await;
    assert_eq!((status, &t["paused"]), (200, &Value::Bool(true)));
    assert!(
        admin.config.get().targets[0]
            .health
            .control()
            .paused_at
            .is_some()
    );
    let (_, t) = call(&admin, Method::POST, "/api/v1/targets/t/enable", None).await;
    assert_eq!(t["paused"], false);
    assert_eq!(t["disabled"], false);
    assert_eq!(
        admin.config.get().targets[0].health.control(),
        Default::default()
    );
}

#[tokio::test]
async fn unknown_targets_paths_and_methods_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = admin(dir.path(), None);
    let cases = [
        (
            Method::POST,
            "/api/v1/targets/nope/pause",
            404,
            "unknown_target",
        ),
        (Method::POST, "/api/v1/targets/t/explode", 404, "not_found"),
        (Method::POST, "/api/v1/targets//pause", 404, "not_found"),
        (
            Method::GET,
            "/api/v1/targets/t/pause",
            405,
            "method_not_allowed",
        ),
        (Method::DELETE, "/api/v1/targets", 405, "method_not_allowed"),
        (Method::POST, "/healthz", 405, "method_not_allowed"),
        (Method::GET, "/nowhere", 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let (got, body) = call(&admin, method.clone(), path, None).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
    }
    assert_eq!(
        StatusCode::OK,
        admin.answer(&Method::GET, "/healthz", None).await.0
    );
}
