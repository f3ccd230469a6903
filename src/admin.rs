//! The operator's HTTP API: health, readiness, metrics, targets and dead letters.
//!
//! It listens on `admin.address` (loopback by default). When `admin.token` is set, every
//! `/api/` call needs `Authorization: Bearer <token>`.

mod dead_letters;
pub mod params;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::TargetId;
use crate::delivery::health::TargetHealth;
use crate::metrics::{Metrics, TargetGauges};
use crate::store::Store;

/// Status, body and content type of an answer.
type Answer = (StatusCode, String, &'static str);

/// The admin service.
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Every target with its health view, in config order.
    pub targets: Vec<(TargetId, Arc<TargetHealth>)>,
    pub token: Option<String>,
    /// Dispatchers currently running; ready when it equals the number of targets.
    pub running: Arc<AtomicUsize>,
    /// The store's file (its WAL sits beside it), for `relay_store_bytes`.
    pub store_path: Option<PathBuf>,
}

impl Admin {
    async fn route(&self, session: &mut ServerSession) -> Answer {
        let path = session.req_header().uri.path().to_owned();
        if path.starts_with("/api/") && !self.authorized(session) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            );
        }
        // Dead letters take more methods than GET, so they route themselves.
        if let Some(rest) = path.strip_prefix("/api/v1/dead-letters")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return dead_letters::route(self, session, rest).await;
        }
        let head = session.req_header();
        if head.method != http::Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is served here",
            );
        }
        match path.as_str() {
            "/healthz" => json_ok(json!({"status": "ok"})),
            "/readyz" => self.ready().await,
            "/metrics" => self.metrics_text().await,
            "/api/v1/targets" => self.target_list().await,
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = session
            .get_header(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Comparing digests keeps the comparison time independent of where the strings differ.
        Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
    }

    async fn metrics_text(&self) -> (StatusCode, String, &'static str) {
        let mut gauges = Vec::new();
        for (name, _) in &self.targets {
            // A store that cannot answer leaves the gauges out rather than reporting zeros.
            if let Ok(c) = self.store.counts(name).await {
                gauges.push(TargetGauges {
                    target: name.to_string(),
                    queued: c.queued + c.in_flight,
                    dead: c.dead,
                    breaker_open: false,
                });
            }
        }
        let bytes = self.store_path.as_ref().map(|p| {
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
            size(p) + size(&PathBuf::from(format!("{}-wal", p.display())))
        });
        let text = self.metrics.render(&gauges, bytes);
        (StatusCode::OK, text, "text/plain; version=0.0.4")
    }

    async fn ready(&self) -> (StatusCode, String, &'static str) {
        let running = self.running.load(Ordering::SeqCst);
        let store = self.store.ping().await;
        let ready = store.is_ok() && running >= self.targets.len();
        let body = json!({
            "ready": ready,
            "store": store.map(|()| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
            "dispatchers_running": running,
            "targets": self.targets.len(),
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body.to_string(), "application/json")
    }

    async fn target_list(&self) -> (StatusCode, String, &'static str) {
        let mut out = Vec::new();
        for (name, health) in &self.targets {
            let h = health.snapshot();
            match self.store.counts(name).await {
                Ok(c) => out.push(json!({
                    "name": name.as_str(),
                    "queued": c.queued,
                    "in_flight": c.in_flight,
                    "dead": c.dead,
                    "last_error": h.last_error,
                    "needs_attention": h.needs_attention,
                })),
                Err(e) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        &e.to_string(),
                    );
                }
            }
        }
        json_ok(json!({ "targets": out }))
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body, content_type) = self.route(session).await;
        let body = body.into_bytes();
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

fn json_ok(value: serde_json::Value) -> (StatusCode, String, &'static str) {
    (StatusCode::OK, value.to_string(), "application/json")
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, String, &'static str) {
    (
        status,
        json!({"error": code, "message": message}).to_string(),
        "application/json",
    )
}

/// `a=1&b=2` into a map; values are taken as written (target names need no decoding).
fn parse_query(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}
