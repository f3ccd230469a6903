//! `/api/v1/dead-letters`: list, show, replay, purge and delete (design.md §7).
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/v1/dead-letters?target=&type=&since=&until=&limit=` | `{"dead_letters": [...]}`, newest first |
//! | `GET /api/v1/dead-letters/{id}` | the letter, its `body` and `attempt_history` |
//! | `POST /api/v1/dead-letters/replay` + filter | `{"replayed", "targets", "skipped"}` |
//! | `POST /api/v1/dead-letters/purge` + filter | `{"purged": n}` |
//! | `DELETE /api/v1/dead-letters/{id}` | `{"purged": 1}` |
//!
//! Bad input is 400 and an unknown id 404, each with `{"error", "message"}`; a store that
//! cannot answer is 503. The token check happened before any of this (see [`super::Admin`]).

use std::time::Duration;

use base64::Engine as _;
use http::{Method, StatusCode};
use pingora::protocols::http::ServerSession;
use serde_json::{Value, json};

use super::params;
use super::{Admin, Answer, error, json_ok, parse_query};
use crate::config::TargetId;
use crate::store::{DeadLetterDetail, DeadLetterFilter, DeliveryId, StoreError};

/// Largest replay or purge body: room for [`params::MAX_IDS`] ids and then some.
const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send that body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves everything under `/api/v1/dead-letters`; `rest` is the path after that prefix.
pub(super) async fn route(admin: &Admin, session: &mut ServerSession, rest: &str) -> Answer {
    let method = session.req_header().method.clone();
    match rest {
        "" | "/" if method == Method::GET => {
            let query = parse_query(session.req_header().uri.query().unwrap_or(""));
            list(admin, &query).await
        }
        "" | "/" => wrong_method("GET"),
        "/replay" | "/purge" if method != Method::POST => wrong_method("POST"),
        "/replay" | "/purge" => {
            let filter = match read_body(session)
                .await
                .and_then(|b| params::filter_body(&b).map_err(|m| bad_request("bad_filter", &m)))
            {
                Ok(filter) => filter,
                Err(answer) => return answer,
            };
            if rest == "/replay" {
                replay(admin, filter).await
            } else {
                purge(admin, filter).await
            }
        }
        _ => {
            let Some(raw) = rest.strip_prefix('/').filter(|r| !r.contains('/')) else {
                return error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint");
            };
            let Ok(id) = raw.parse::<i64>().map(DeliveryId) else {
                return bad_request(
                    "bad_id",
                    &format!("{raw:?} is not a dead letter id (a whole number)"),
                );
            };
            match method {
                Method::GET => show(admin, id).await,
                Method::DELETE => delete(admin, id).await,
                _ => wrong_method("GET or DELETE"),
            }
        }
    }
}

async fn list(admin: &Admin, query: &std::collections::HashMap<String, String>) -> Answer {
    let q = match params::list_query(query) {
        Ok(q) => q,
        Err(m) => return bad_request("bad_query", &m),
    };
    match admin.store.dead_letters(q).await {
        Ok(list) => json_ok(json!({ "dead_letters": list })),
        Err(e) => unavailable(&e),
    }
}

async fn show(admin: &Admin, id: DeliveryId) -> Answer {
    match admin.store.dead_letter(id).await {
        Ok(Some(detail)) => json_ok(detail_json(detail)),
        Ok(None) => not_found(id),
        Err(e) => unavailable(&e),
    }
}

async fn replay(admin: &Admin, filter: DeadLetterFilter) -> Answer {
    let targets: Vec<TargetId> = admin
        .config
        .get()
        .targets
        .iter()
        .map(|t| t.config.name.clone())
        .collect();
    match admin.store.replay(filter, &targets).await {
        Ok(done) => {
            tracing::info!(
                replayed = done.replayed,
                skipped = done.skipped.iter().map(|s| s.count).sum::<u64>(),
                "dead letters replayed"
            );
            json_ok(json!(done))
        }
        Err(e) => unavailable(&e),
    }
}

async fn purge(admin: &Admin, filter: DeadLetterFilter) -> Answer {
    match admin.store.purge(filter).await {
        Ok(purged) => {
            tracing::info!(purged, "dead letters purged");
            json_ok(json!({ "purged": purged }))
        }
        Err(e) => unavailable(&e),
    }
}

async fn delete(admin: &Admin, id: DeliveryId) -> Answer {
    let filter = DeadLetterFilter {
        ids: Some(vec![id]),
        ..DeadLetterFilter::default()
    };
    match admin.store.purge(filter).await {
        Ok(0) => not_found(id),
        Ok(purged) => json_ok(json!({ "purged": purged })),
        Err(e) => unavailable(&e),
    }
}

/// The letter's fields, then the body as JSON when it parses (else as text, or base64 when it
/// is not even UTF-8, as `body_format` says), then every attempt kept.
fn detail_json(detail: DeadLetterDetail) -> Value {
    let mut out = json!(detail.letter);
    let (format, body) = match serde_json::from_slice::<Value>(&detail.body) {
        Ok(value) => ("json", value),
        Err(_) => match std::str::from_utf8(&detail.body) {
            Ok(text) => ("text", Value::String(text.to_owned())),
            Err(_) => (
                "base64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(&detail.body)),
            ),
        },
    };
    out["body_format"] = json!(format);
    out["body"] = body;
    out["attempt_history"] = json!(detail.history);
    out
}

/// The whole request body, or the answer to give instead.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Answer> {
    session.set_read_timeout(Some(BODY_TIMEOUT));
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    &format!("the body is over {MAX_BODY} bytes; use a filter instead of ids"),
                ));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body),
            Err(e) => return Err(bad_request("bad_body", &format!("reading the body: {e}"))),
        }
    }
}

fn bad_request(code: &str, message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn not_found(id: DeliveryId) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no dead letter with id {id}"),
    )
}

fn wrong_method(allowed: &str) -> Answer {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("use {allowed} here"),
    )
}

fn unavailable(e: &StoreError) -> Answer {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        &e.to_string(),
    )
}
