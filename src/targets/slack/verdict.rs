//! How Slack answered a post to an incoming webhook: [`classify`] makes it a [`Verdict`].
//!
//! Slack answers `ok` or a short error string in plain text (textus-webhooks.md §2); the
//! status says whether to retry and the string says why. Beyond design.md §5's common rules,
//! Slack's answers split the permanent failures in two (§6): a rejected *message* (400
//! `invalid_payload`, `no_text`, …) dead-letters that event only, while a broken *webhook*
//! (revoked, channel archived or deleted, posting prohibited) fails every event alike, so the
//! verdict also carries [`Verdict::attention`] for the operator.

use std::time::SystemTime;

use crate::targets::{Outcome, parse_retry_after};

use super::mrkdwn::truncate;

/// Longest part of a response body kept in a reason: Slack's errors are one short word; a
/// longer body (a proxy's HTML page) only needs enough to be recognised.
const MAX_ERROR_CHARS: usize = 200;

/// How Slack answered, per textus-webhooks.md §2 and §6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do with this delivery.
    pub outcome: Outcome,
    /// Some(reason) when the webhook itself is broken (revoked, channel gone, archived,
    /// prohibited): the target needs an operator, and every other event will fail the same way.
    pub attention: Option<String>,
}

/// The verdict on one answer: `status`, the `Retry-After` header if any, and the body (or its
/// start).
///
/// 2xx delivered; 3xx retried (redirects are not followed); 408, 425, 429 and 5xx retried,
/// honouring `Retry-After`; other statuses dead. A dead answer needs attention when its error
/// names a broken webhook, whatever the status (Slack sends `invalid_token` with 400 or 403),
/// or when the status is 403, 404 or 410, which Slack uses only for the webhook itself.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Verdict {
    let error = slack_error(body);
    let outcome = match status {
        200..=299 => Outcome::Delivered { status },
        300..=399 => Outcome::Retry {
            status: Some(status),
            reason: format!("HTTP {status} {error} from Slack: a redirect, which is not followed"),
            retry_after: None,
        },
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            reason: format!(
                "HTTP {status} {error} from Slack: {}",
                transient_meaning(status)
            ),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        },
        _ => Outcome::Dead {
            status: Some(status),
            reason: format!(
                "HTTP {status} {error} from Slack: {}",
                permanent_meaning(&error)
            ),
        },
    };
    let attention = match &outcome {
        Outcome::Dead { .. } => attention(status, &error),
        _ => None,
    };
    Verdict { outcome, attention }
}

fn transient_meaning(status: u16) -> &'static str {
    match status {
        429 => "rate limited",
        500..=599 => "Slack-side error",
        _ => "timed out",
    }
}

fn permanent_meaning(error: &str) -> &'static str {
    if fix_for(error).is_some() {
        "the webhook is broken"
    } else {
        "the message was rejected"
    }
}

/// What the operator is told when the webhook itself is broken.
fn attention(status: u16, error: &str) -> Option<String> {
    match (fix_for(error), status) {
        (Some(fix), _) => Some(format!("Slack says {error} (HTTP {status}): {fix}")),
        (None, 403 | 404 | 410) => Some(format!(
            "Slack answered HTTP {status} {error}: the webhook URL looks revoked or wrong; \
             check it in Slack and update the target's url"
        )),
        (None, _) => None,
    }
}

/// The error strings of §2 that mean the webhook (not the message) is broken, with the fix.
fn fix_for(error: &str) -> Option<&'static str> {
    Some(match error {
        "action_prohibited" => {
            "a workspace admin restricted posting through this webhook; ask a Slack admin to allow it"
        }
        "channel_not_found" => {
            "the webhook's channel was deleted; create a new webhook and update the target's url"
        }
        "channel_is_archived" => {
            "the webhook's channel was archived; unarchive it, or create a new webhook and update the target's url"
        }
        "posting_to_general_channel_denied" => {
            "only admins may post to the webhook's channel; create a webhook for another channel"
        }
        "invalid_token" => {
            "the webhook's token is invalid or revoked; create a new webhook and update the target's url"
        }
        "no_service" => {
            "the webhook was disabled or removed (or its app uninstalled); create a new webhook"
        }
        "no_service_id" => {
            "the webhook URL is invalid; copy it again from Slack into the target's url"
        }
        "no_team" => {
            "the webhook's Slack workspace no longer exists; create a webhook in a current one"
        }
        "team_disabled" => {
            "the webhook's Slack workspace was disabled; create a webhook in an active workspace"
        }
        _ => return None,
    })
}

/// Slack's error string: the plain-text body, or `error` of a JSON body (Web API style, seen on
/// some 429s), on one line and short; `(empty body)` when there is none.
fn slack_error(body: &str) -> String {
    let body = body.trim();
    if body.starts_with('{')
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(error) = json.get("error").and_then(|e| e.as_str())
    {
        return truncate(error.trim(), MAX_ERROR_CHARS);
    }
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".to_owned()
    } else {
        truncate(&one_line, MAX_ERROR_CHARS)
    }
}

#[cfg(test)]
mod tests;
