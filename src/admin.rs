//! The operator's HTTP API: health, readiness, metrics, targets and dead letters.
//!
//! It listens on `admin.address` (loopback by default). When `admin.token` is set, every
//! `/api/` call needs `Authorization: Bearer <token>`; that is checked before any `/api/` path
//! is even looked at. Routing is a plain function of method, path, query and credentials
//! ([`Admin::answer`]), so it is tested without a socket.

mod targets;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::store::{ControlChange, DeadLetterQuery, Store};
pub use targets::AdminTarget;

/// Status, body and content type of one answer.
type Reply = (StatusCode, String, &'static str);

/// The most dead letters one list call returns.
const MAX_LIMIT: usize = 1000;

/// The admin service.
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Every target with its settings and health view, in config order.
    pub targets: Vec<AdminTarget>,
    pub token: Option<String>,
    /// Dispatchers currently running; ready when it equals the number of targets.
    pub running: Arc<AtomicUsize>,
}

impl Admin {
    async fn route(&self, session: &ServerSession) -> Reply {
        let head = session.req_header();
        let credentials = session
            .get_header(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.answer(
            &head.method,
            head.uri.path(),
            head.uri.query().unwrap_or(""),
            credentials,
        )
        .await
    }

    /// The answer to one request; `credentials` is the `Authorization` header, if any.
    pub async fn answer(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        credentials: Option<&str>,
    ) -> Reply {
        if path.starts_with("/api/") && !authorized(self.token.as_deref(), credentials) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            );
        }
        if let Some(rest) = path.strip_prefix("/api/v1/targets/") {
            return match rest.split_once('/') {
                Some((name, action @ ("enable" | "pause"))) if !name.is_empty() => {
                    if *method != Method::POST {
                        return not_allowed("POST");
                    }
                    let change = if action == "enable" {
                        ControlChange::Enable
                    } else {
                        ControlChange::Pause
                    };
                    self.control_target(name, change).await
                }
                _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
            };
        }
        let get = |reply: Reply| {
            if *method == Method::GET {
                reply
            } else {
                not_allowed("GET")
            }
        };
        match path {
            "/healthz" => get(json_ok(json!({"status": "ok"}))),
            "/readyz" if *method == Method::GET => self.ready().await,
            "/metrics" => get((
                StatusCode::OK,
                self.metrics.render(),
                "text/plain; version=0.0.4",
            )),
            "/api/v1/dead-letters" if *method == Method::GET => {
                self.dead_letters(&parse_query(query)).await
            }
            "/api/v1/targets" if *method == Method::GET => self.target_list().await,
            "/readyz" | "/api/v1/dead-letters" | "/api/v1/targets" => not_allowed("GET"),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    async fn ready(&self) -> Reply {
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

    async fn dead_letters(&self, query: &HashMap<String, String>) -> Reply {
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None => 100,
            Some(Ok(n)) => n.min(MAX_LIMIT),
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_limit",
                    "limit must be a whole number",
                );
            }
        };
        let q = DeadLetterQuery {
            target: query.get("target").cloned(),
            limit,
        };
        match self.store.dead_letters(q).await {
            Ok(list) => json_ok(json!({ "dead_letters": list })),
            Err(e) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                &e.to_string(),
            ),
        }
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

/// Whether `credentials` (an `Authorization` header) carry `token`; anything goes without one.
fn authorized(token: Option<&str>, credentials: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = credentials
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Comparing digests keeps the comparison time independent of where the strings differ.
    Sha256::digest(given.as_bytes()) == Sha256::digest(token.as_bytes())
}

fn json_ok(value: serde_json::Value) -> Reply {
    (StatusCode::OK, value.to_string(), "application/json")
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    (
        status,
        json!({"error": code, "message": message}).to_string(),
        "application/json",
    )
}

fn not_allowed(allowed: &str) -> Reply {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("only {allowed} is served here"),
    )
}

/// `a=1&b=2` into a map; values are taken as written (target names need no decoding).
fn parse_query(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests;
