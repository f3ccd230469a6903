//! Target kinds: each turns a delivery into a request and the response into an [`Outcome`].
//!
//! A kind is one folder (`http/`, `slack/`, `crm/`) holding its settings, its compile step and
//! `check` preview ([`kind`]) and its runtime ([`Target`]); [`TargetKind`] lists them.
//! A delivery result is data, not an error: the dispatcher's loop is a plain `match` over
//! [`Outcome`]. Classification of HTTP answers shared by every kind lives here so that Slack and
//! CRM kinds can refine it without restating the common rules.

pub mod crm;
pub mod health;
pub mod http;
pub mod kind;
pub mod slack;
pub mod standard_webhooks;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::config::TargetSettings;
use crate::store::{Job, unix_ms};
use crate::templates::{Meta, rfc3339_from_unix_ms};
use health::TargetHealth;
use kind::Preview;
pub use kind::TargetKind;

/// What one attempt decided. Every arm is normal operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Worth trying again; `retry_after` is the receiver's own hint, when it gave one.
    Retry {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: becomes a dead letter.
    Dead {
        status: Option<u16>,
        reason: String,
    },
}

/// One kind of downstream system.
#[async_trait]
pub trait Target: Send + Sync {
    /// Makes one attempt. Must finish within the target's timeout; must not panic.
    async fn deliver(&self, job: &Job, webhook_id: &str) -> Outcome;

    /// What `check` renders for sample events; `None` for a kind that renders nothing (it
    /// sends events as they came).
    fn previewer(&self) -> Option<&dyn Preview> {
        None
    }
}

/// A target ready to dispatch to.
pub struct Built {
    /// Its settings as validated (queue, retry and breaker policy among them).
    pub config: TargetSettings,
    /// Its runtime, as its kind built it.
    pub target: Arc<dyn Target>,
    /// Shared by its dispatcher, its kind (Slack flags a revoked webhook) and the admin API.
    pub health: Arc<TargetHealth>,
}

/// How much of a response body is kept as the reason of a failure.
pub const REASON_BYTES: usize = 512;

/// What templates see as `meta` for one delivery.
pub fn meta(job: &Job, target: &str) -> Meta {
    Meta {
        event_type: job.event_type.clone().unwrap_or_default(),
        event_id: job.event_id.clone(),
        received_at: rfc3339_from_unix_ms(unix_ms(job.received_at)),
        target: target.to_string(),
    }
}

/// What a downstream response said, in the form every kind's classifier reads.
pub struct ResponseStart {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body (see [`read_response`]).
    pub body: String,
}

/// Reads a response's status, `Retry-After` and at most `body_limit(status)` bytes of its body.
pub async fn read_response(
    mut response: reqwest::Response,
    body_limit: impl Fn(u16) -> usize,
) -> ResponseStart {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_start(&mut response, body_limit(status)).await;
    ResponseStart {
        status,
        retry_after,
        body,
    }
}

/// A template that cannot render is permanent: retrying cannot fix it.
pub fn template_failure(reason: impl std::fmt::Display) -> Outcome {
    Outcome::Dead {
        status: None,
        reason: format!("template error: {reason}"),
    }
}

/// Reads at most `limit` bytes of a response body, for error reasons (a huge or endless body
/// is never read whole).
pub async fn read_start(response: &mut reqwest::Response, limit: usize) -> String {
    let mut start = Vec::new();
    while start.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            _ => break,
        }
    }
    start.truncate(limit);
    String::from_utf8_lossy(&start).into_owned()
}

/// The common rules of design.md §5: 2xx delivered; connection errors, timeouts, 408, 425,
/// 429 and 5xx retried; 3xx (redirects are not followed) retried as failures; other 4xx permanent.
pub fn classify(status: u16, retry_after: Option<&str>, body_start: &str) -> Outcome {
    let detail = if body_start.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", body_start.trim())
    };
    match status {
        200..=299 => Outcome::Delivered { status },
        300..=399 => Outcome::Retry {
            status: Some(status),
            reason: format!("HTTP {status} redirect (redirects are not followed){detail}"),
            retry_after: None,
        },
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            reason: format!("HTTP {status}{detail}"),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        _ => Outcome::Dead {
            status: Some(status),
            reason: format!("HTTP {status} (permanent){detail}"),
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date; `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_as_design_says() {
        assert_eq!(classify(200, None, ""), Outcome::Delivered { status: 200 });
        assert_eq!(classify(204, None, ""), Outcome::Delivered { status: 204 });
        for s in [408, 425, 429, 500, 502, 503, 504, 301, 302] {
            assert!(
                matches!(classify(s, None, ""), Outcome::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 409, 410, 422] {
            assert!(matches!(classify(s, None, ""), Outcome::Dead { .. }), "{s}");
        }
        match classify(400, None, "invalid_payload") {
            Outcome::Dead { reason, status } => {
                assert_eq!(status, Some(400));
                assert!(reason.contains("invalid_payload"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        match classify(429, Some("7"), "") {
            Outcome::Retry { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_kind_honours_retry_after_as_a_date_on_429_and_503() {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        for status in [429, 503] {
            let outcomes = [
                ("http", classify(status, Some(&date), "")),
                (
                    "slack",
                    slack::verdict::classify(status, Some(&date), "").outcome,
                ),
                ("crm", crm::verdict::classify(status, Some(&date), "")),
            ];
            for (kind, outcome) in outcomes {
                let Outcome::Retry { retry_after, .. } = outcome else {
                    panic!("{kind} {status}: {outcome:?}")
                };
                let wait = retry_after.unwrap_or_else(|| panic!("{kind} {status}: no hint"));
                // Whole seconds in the date, and a little time passing in between.
                assert!(
                    wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
                    "{kind} {status}: {wait:?}"
                );
            }
        }
    }
}
