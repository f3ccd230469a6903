//! The operator's HTTP API: health, readiness, metrics, targets, dead letters, finding an
//! event, and the web console that shows them (`GET /`, see `console`).
//!
//! It listens on `admin.address` (loopback by default). When `admin.token` is set, every
//! `/api/` call needs `Authorization: Bearer <token>`; that is checked before any `/api/` path
//! is even looked at. Apart from dead letters (which read request bodies, see
//! `dead_letters`), routing is a plain function of method, path, query and credentials
//! ([`Admin::answer`]), so it is tested without a socket.

mod console;
mod dead_letters;
mod events;
pub mod listening;
pub mod params;
mod targets;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::live::Live;
use crate::app::reload::Reloader;
use crate::config::Secret;
use crate::metrics::{Metrics, TargetGauges};
use crate::store::{ControlChange, Store};
pub use targets::AdminTarget;

/// What the admin API reads for each call; a reload replaces it whole.
pub struct AdminConfig {
    /// Every configured target with its settings and health view, in config order.
    pub targets: Vec<AdminTarget>,
    /// Bearer token for `/api/`; `None` for none.
    pub token: Option<Secret>,
}

/// Status, body and content type of an answer.
type Answer = (StatusCode, String, &'static str);

/// The admin service.
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// The targets and token of the config in force; a reload replaces them.
    pub config: Arc<Live<AdminConfig>>,
    /// Serves `POST /api/v1/reload`; `None` answers it 404 (tests without a running relay).
    pub reloader: Option<Arc<Reloader>>,
    /// Dispatchers currently running; ready when it equals the number of targets.
    pub running: Arc<AtomicUsize>,
    /// The store's file (its WAL sits beside it), for `relay_store_bytes`.
    pub store_path: Option<PathBuf>,
    /// The ingress port, which must accept connections before `/readyz` says ready; `None`
    /// where no ingress runs (the admin API's own tests).
    pub ingress: Option<Arc<listening::IngressProbe>>,
}

impl Admin {
    async fn route(&self, session: &mut ServerSession) -> Answer {
        let head = session.req_header();
        let (method, path) = (head.method.clone(), head.uri.path().to_owned());
        let credentials = session
            .get_header(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(denied) = self.deny(&path, credentials.as_deref()) {
            return denied;
        }
        // Dead letters take more methods than GET and read bodies, so they route themselves.
        if let Some(rest) = path.strip_prefix("/api/v1/dead-letters")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return dead_letters::route(self, session, rest).await;
        }
        // Event ids contain slashes, so they come in the query, which `serve` does not see.
        if let Some(rest) = path.strip_prefix("/api/v1/events")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let query = session.req_header().uri.query().unwrap_or("").to_owned();
            return events::route(self, &method, rest, &query).await;
        }
        self.serve(&method, &path).await
    }

    /// The answer to one request outside `/api/v1/dead-letters`; `credentials` is the
    /// `Authorization` header, if any.
    pub async fn answer(&self, method: &Method, path: &str, credentials: Option<&str>) -> Answer {
        match self.deny(path, credentials) {
            Some(denied) => denied,
            None => self.serve(method, path).await,
        }
    }

    /// `Some(401)` for an `/api/` call without the token.
    fn deny(&self, path: &str, credentials: Option<&str>) -> Option<Answer> {
        let config = self.config.get();
        let token = config.token.as_ref().map(ExposeSecret::expose_secret);
        (path.starts_with("/api/") && !authorized(token, credentials)).then(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            )
        })
    }

    /// Everything but dead letters, once authorized.
    async fn serve(&self, method: &Method, path: &str) -> Answer {
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
        if let Some(asset) = console::asset(path) {
            return if *method == Method::GET {
                asset
            } else {
                not_allowed("GET")
            };
        }
        match path {
            "/healthz" | "/readyz" | "/metrics" | "/api/v1/targets" | "/api/v1/store"
                if *method != Method::GET =>
            {
                not_allowed("GET")
            }
            "/api/v1/reload" if *method != Method::POST => not_allowed("POST"),
            "/api/v1/reload" => self.reload().await,
            "/healthz" => json_ok(json!({"status": "ok"})),
            "/readyz" => self.ready().await,
            "/metrics" => self.metrics_text().await,
            "/api/v1/targets" => self.target_list().await,
            "/api/v1/store" => match self.store.storage() {
                Some(status) => json_ok(json!(status)),
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "this store keeps no storage budget",
                ),
            },
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    /// `POST /api/v1/reload`: the same as SIGHUP, with the outcome in the answer.
    async fn reload(&self) -> Answer {
        let Some(reloader) = &self.reloader else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "reload is not available here",
            );
        };
        match reloader.reload_logged("admin API").await {
            Ok(report) => json_ok(json!({"reloaded": true, "targets": report})),
            Err(e) => {
                let status = match e {
                    crate::app::reload::ReloadError::Fleet(_)
                    | crate::app::reload::ReloadError::Internal(_) => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                error(status, e.code(), &e.to_string())
            }
        }
    }

    async fn metrics_text(&self) -> Answer {
        let config = self.config.get();
        let mut gauges = Vec::new();
        for target in &config.targets {
            let name = &target.config.name;
            // A store that cannot answer leaves the gauges out rather than reporting zeros.
            if let Ok(c) = self.store.counts(name).await {
                gauges.push(TargetGauges {
                    target: name.to_string(),
                    queued: c.queued + c.in_flight,
                    dead: c.dead,
                    breaker_open: target.health.breaker_open(),
                });
            }
        }
        // Removed targets' queues stay visible, so an alert on queue depth still fires.
        for o in orphans(self.store.as_ref(), &config).await {
            gauges.push(TargetGauges {
                target: o.target,
                queued: o.queued,
                dead: o.dead,
                breaker_open: false,
            });
        }
        let storage = self.store.storage();
        let bytes = storage.as_ref().map(|s| s.store_bytes).or_else(|| {
            self.store_path.as_ref().map(|p| {
                let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
                size(p) + size(&PathBuf::from(format!("{}-wal", p.display())))
            })
        });
        let text = self.metrics.render(&gauges, bytes, storage.as_ref());
        (StatusCode::OK, text, "text/plain; version=0.0.4")
    }

    async fn ready(&self) -> Answer {
        let targets = self.config.get().targets.len();
        let running = self.running.load(Ordering::SeqCst);
        let store = self.store.ping().await;
        // A spent storage budget leaves the relay ready: it still answers every request,
        // with the 504 that TextUs retries. Failing readiness would take it out of its
        // Service, and TextUs would see connection errors instead (README, "Storage budget").
        let store_ok = store.is_ok() || !self.store.readiness_follows_store();
        let listening = match &self.ingress {
            Some(probe) => probe.listening().await,
            None => true,
        };
        let ready = store_ok && running >= targets && listening;
        let ingest = self.store.storage().map(|s| s.ingest);
        let body = json!({
            "ready": ready,
            "store": store.map(|()| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
            "ingest": ingest,
            "listening": listening,
            "dispatchers_running": running,
            "targets": targets,
            "relays": self.store.relays(),
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body.to_string(), "application/json")
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, body, content_type) = self.route(session).await;
        let body = body.into_bytes();
        let mut response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len());
        for (name, value) in console::SECURITY_HEADERS {
            response = response.header(name, value);
        }
        response
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

fn json_ok(value: serde_json::Value) -> Answer {
    (StatusCode::OK, value.to_string(), "application/json")
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    (
        status,
        json!({"error": code, "message": message}).to_string(),
        "application/json",
    )
}

fn not_allowed(allowed: &str) -> Answer {
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

/// Deliveries kept for a target that is not configured.
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct Orphan {
    pub target: String,
    pub queued: u64,
    pub dead: u64,
}

/// Targets that have deliveries in `store` but are not in `admin`'s config.
pub async fn orphans(store: &dyn Store, admin: &AdminConfig) -> Vec<Orphan> {
    let Ok(names) = store.targets().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names {
        if admin.targets.iter().any(|t| t.config.name == name) {
            continue;
        }
        if let Ok(c) = store.counts(&name).await {
            out.push(Orphan {
                target: name.to_string(),
                queued: c.queued + c.in_flight,
                dead: c.dead,
            });
        }
    }
    out
}
