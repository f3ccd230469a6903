//! Target kinds: each turns a delivery into a request and the response into an [`Outcome`].
//!
//! A delivery result is data, not an error: the dispatcher's loop is a plain `match` over
//! [`Outcome`]. Classification of HTTP answers shared by every kind lives here so that Slack and
//! CRM kinds can refine it without restating the common rules.

pub mod http;
pub mod standard_webhooks;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::store::Job;

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
}

/// How much of a response body is kept as the reason of a failure.
pub const REASON_BYTES: usize = 512;

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
}
