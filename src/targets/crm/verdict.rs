//! Turns a CRM API answer (HubSpot, Salesforce or a generic JSON API) into an [`Outcome`].
//!
//! The rules follow textus-webhooks.md §3 (HubSpot "Retry classification"), §4 (Salesforce
//! "Errors") and §6 (cross-target retry summary); each arm below cites its row. A 2xx is not
//! always a success: a HubSpot 207 and a Salesforce composite or sObject Collections answer
//! carry per-item results, and one failed item fails the delivery. Reasons start with
//! `HTTP <status>`, carry the provider's error code and message, and are at most
//! [`REASON_CHARS`] characters. The caller handles the one OAuth2 refresh on 401 before asking.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::targets::{Outcome, parse_retry_after};

/// The longest reason kept; the rest of a provider's message is cut with `…`.
pub const REASON_CHARS: usize = 300;
/// §3 423 Locked: "yes, after ≥2 s".
const LOCKED_DELAY: Duration = Duration::from_secs(2);
/// §3 429 `TEN_SECONDLY_ROLLING`: "else about 10 s" (the HubSpot SDK waits 10 s × attempt).
const TEN_SECONDLY_DELAY: Duration = Duration::from_secs(10);
/// §3 429 `SECONDLY` (search): "about 1 s".
const SECONDLY_DELAY: Duration = Duration::from_secs(1);
/// §3 429 `DAILY`: "defer until the reset (account-timezone midnight)". The account's time zone
/// is unknown here, so probe hourly: at most an hour late after the reset, and about 24 wasted
/// requests a day instead of a guess at the wrong midnight. The dispatcher caps it at
/// `max_delay`; pausing the whole target is its breaker's job.
const DAILY_DELAY: Duration = Duration::from_secs(3600);
/// §4 403 `REQUEST_LIMIT_EXCEEDED`: "yes, later (minutes to hours)". Salesforce sends no
/// `Retry-After`. The concurrent-request limit clears in minutes; the daily one ("TotalRequests
/// Limit exceeded", C: not in the notes) needs the rolling 24 h window to move, so wait longer.
const SALESFORCE_LIMIT_DELAY: Duration = Duration::from_secs(5 * 60);
const SALESFORCE_DAILY_LIMIT_DELAY: Duration = Duration::from_secs(3600);

/// Salesforce codes that mean "try again later" whatever the status (§4, §6).
const RETRYABLE_CODES: [&str; 2] = ["UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED"];
/// Salesforce items that failed only because another item did (§4 Composite, C).
const CONSEQUENTIAL_CODES: [&str; 2] = ["PROCESSING_HALTED", "ALL_OR_NONE_OPERATION_ROLLED_BACK"];

/// Classifies a CRM API response (HubSpot, Salesforce or a generic JSON API) per
/// textus-webhooks.md §3, §4 and §6. `body` should be the whole body for 2xx answers (per-item
/// results live there) and at least the start of it otherwise.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
    // §6 Success: HubSpot "200/201/204 (207: check items)", Salesforce "(composite: check each
    // item)", generic "2xx".
    if (200..=299).contains(&status) {
        return classify_success(status, body);
    }
    let hint = retry_after.and_then(|v| parse_retry_after(v, SystemTime::now()));
    let error = Detail::parse(body);
    let retry = |label: &str, after: Option<Duration>| Outcome::Retry {
        status: Some(status),
        reason: reason(status, label, &error),
        retry_after: after,
    };
    let dead = |label: &str| Outcome::Dead {
        status: Some(status),
        reason: reason(status, label, &error),
    };
    match status {
        // §4 300: "the external ID matched several records | no (fix the data)"; §6 lists 300
        // under "drop the event". Not a redirect, so it does not fall under the 3xx row.
        300 => dead("multiple records match the external ID, nothing written"),
        // §6 files generic "3xx (don't follow)" under "permanent", but §5 (W1: "3xx = failure
        // … Everything else is a failure; retry it") and design.md §5 retry it, as the crate's
        // common `classify` does; kept consistent so a moved endpoint looks the same everywhere.
        301..=399 => retry("redirect (redirects are not followed)", hint),
        // §4 400 "Except UNABLE_TO_LOCK_ROW: retry with jitter"; §6 Salesforce transient.
        400 if error.mentions("UNABLE_TO_LOCK_ROW") => retry("record locked", hint),
        // §3 401 "no. Re-check or rotate the token"; §4 401 INVALID_SESSION_ID "refresh the
        // token and retry once" (done by the caller; a 401 reaching here is final).
        401 => dead("unauthorized"),
        // §4 403 REQUEST_LIMIT_EXCEEDED "yes, later (minutes to hours)"; §6 Salesforce throttle.
        403 if error.mentions("REQUEST_LIMIT_EXCEEDED") => {
            let wait = if error.message_contains("TotalRequests") {
                SALESFORCE_DAILY_LIMIT_DELAY
            } else {
                SALESFORCE_LIMIT_DELAY
            };
            retry("API request limit exceeded", hint.or(Some(wait)))
        }
        // §3 403 "no. A scope is missing"; §4 403 "other (permissions) | no".
        403 => dead("forbidden (missing scope or permission)"),
        // §3 "400 / VALIDATION_ERROR, 404, 405, 414, 415 | no"; §4 400, 404, 405, 415 "no".
        400 => dead("bad request"),
        404 => dead("not found"),
        // §3 409 "no as-is. Convert to update or upsert"; §4 409 "no (rare)".
        409 => dead("conflict (use an update or upsert for records that may exist)"),
        // Not in §3/§4; retried as design.md §5 does for every target: both mean "send again".
        408 => retry("request timeout", hint),
        425 => retry("too early", hint),
        // §3 423 Locked "yes, after ≥2 s"; §6 HubSpot throttle.
        423 => retry("locked", hint.or(Some(LOCKED_DELAY))),
        // §3 429 rows by policyName; §6 "429 (policyName)" and generic "429 + Retry-After".
        429 => retry("rate limited", hint.or_else(|| rate_limit_delay(&error))),
        // §3 "500, 502, 503, 504, 521–526 | yes, with backoff"; §4 500/502/503 "yes";
        // §6 generic "5xx". Retry-After is honoured when given (§5 generic "e.g. on 503").
        500..=599 => retry("server error", hint),
        // §6 "other 4xx" (405, 410, 412, 414, 415, 422, …): permanent. 410 keeps its status
        // so the dispatcher can disable the target (design.md §5).
        _ => dead("rejected"),
    }
}

/// The per-policy wait of §3's 429 rows, used when the answer has no `Retry-After`.
fn rate_limit_delay(error: &Detail) -> Option<Duration> {
    let policy = error.policy.as_deref()?;
    if policy.eq_ignore_ascii_case("DAILY") {
        Some(DAILY_DELAY)
    } else if policy.eq_ignore_ascii_case("SECONDLY") {
        Some(SECONDLY_DELAY)
    } else if policy.eq_ignore_ascii_case("TEN_SECONDLY_ROLLING") {
        Some(TEN_SECONDLY_DELAY)
    } else {
        None
    }
}

/// Why a 2xx still failed, and whether resending can help.
enum Failure {
    Retry(String),
    Dead(String),
}

/// A 2xx: delivered, unless the body reports per-item failures.
fn classify_success(status: u16, body: &str) -> Outcome {
    let json = serde_json::from_str::<Value>(body).ok();
    let failure = match (status, &json) {
        // §3 "207 | Multi-Status for batch creates … Inspect each item".
        (207, Some(json)) => hubspot_batch_failure(json),
        // Without a readable body nobody can tell which items were written; a dead letter can
        // be inspected and replayed, a false "delivered" cannot.
        (207, None) => Some(Failure::Dead(
            "multi-status without a readable body".to_owned(),
        )),
        // §4 Composite "Check every httpStatusCode"; §6 "(composite: check each item)".
        (_, Some(json)) => salesforce_items(json).and_then(|items| items_failure(&items)),
        (_, None) => None,
    };
    match failure {
        None => Outcome::Delivered { status },
        Some(Failure::Retry(reason)) => Outcome::Retry {
            status: Some(status),
            reason: truncate(&format!("HTTP {status} {reason}")),
            retry_after: None,
        },
        Some(Failure::Dead(reason)) => Outcome::Dead {
            status: Some(status),
            reason: truncate(&format!("HTTP {status} {reason}")),
        },
    }
}

/// HubSpot batch answer (`{"status","results":[…],"numErrors":n,"errors":[StandardError]}`):
/// any listed error fails the delivery. Dead, not retried: the items in `results` were written,
/// and HubSpot has no idempotency key (§3 Idempotency), so resending the batch would duplicate
/// them.
fn hubspot_batch_failure(json: &Value) -> Option<Failure> {
    let errors = json
        .get("errors")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let failed = json
        .get("numErrors")
        .and_then(Value::as_u64)
        .unwrap_or(errors.len() as u64);
    if failed == 0 && errors.is_empty() {
        return None;
    }
    let written = json
        .get("results")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let first = errors.first().map(Detail::from_json).unwrap_or_default();
    Some(Failure::Dead(format!(
        "batch partly failed ({failed} failed, {written} written): {}",
        first.describe()
    )))
}

/// One sub-result of a Salesforce composite or sObject Collections answer.
struct Item {
    label: String,
    /// `None` when the item succeeded.
    failure: Option<Detail>,
    /// The item's own HTTP status, when the shape has one (composite).
    status: Option<u16>,
}

/// Salesforce per-item answers, or `None` when the body is neither shape (§4 Composite, F3:
/// `{"compositeResponse":[{body,httpHeaders,httpStatusCode,referenceId}]}`; F4 sObject
/// Collections: `[{"id","success","errors":[{"statusCode","message","fields"}]}]`).
fn salesforce_items(json: &Value) -> Option<Vec<Item>> {
    if let Some(parts) = json.get("compositeResponse").and_then(Value::as_array) {
        let items = parts.iter().enumerate().map(|(i, part)| {
            let code = part.get("httpStatusCode").and_then(Value::as_u64);
            let status = code.and_then(|c| u16::try_from(c).ok());
            let ok = matches!(status, Some(200..=299));
            let body = part.get("body").unwrap_or(&Value::Null);
            Item {
                label: label(part, "referenceId", i),
                failure: (!ok).then(|| Detail::from_json(body)),
                status,
            }
        });
        return Some(items.collect());
    }
    let records = json.as_array()?;
    // Only an array of records that all have `success` flags is this shape.
    if records.is_empty() || !records.iter().all(|r| r.get("success").is_some()) {
        return None;
    }
    let items = records.iter().enumerate().map(|(i, record)| {
        let ok = record.get("success").and_then(Value::as_bool) != Some(false);
        let errors = record.get("errors").unwrap_or(&Value::Null);
        Item {
            label: label(record, "id", i),
            failure: (!ok).then(|| Detail::from_json(errors)),
            status: None,
        }
    });
    Some(items.collect())
}

fn label(item: &Value, key: &str, index: usize) -> String {
    match item.get(key).and_then(Value::as_str) {
        Some(name) => name.to_owned(),
        None => format!("#{index}"),
    }
}

/// The verdict on per-item answers. The first failure that is not merely a consequence of
/// another (PROCESSING_HALTED, rolled back) is the cause. A transient cause is retried only when
/// no item was written, so resending cannot duplicate a create; otherwise the delivery is dead.
fn items_failure(items: &[Item]) -> Option<Failure> {
    let failed: Vec<(&Item, &Detail)> = items
        .iter()
        .filter_map(|i| i.failure.as_ref().map(|d| (i, d)))
        .collect();
    let consequential = |d: &Detail| CONSEQUENTIAL_CODES.iter().any(|c| d.has_code(c));
    let &(cause, detail) = failed
        .iter()
        .find(|(_, d)| !consequential(d))
        .or(failed.first())?;
    let item_status = cause
        .status
        .map(|s| format!(" HTTP {s}"))
        .unwrap_or_default();
    let text = format!(
        "{} of {} items failed; {}{item_status}: {}",
        failed.len(),
        items.len(),
        cause.label,
        detail.describe()
    );
    let transient = RETRYABLE_CODES.iter().any(|c| detail.has_code(c))
        || matches!(cause.status, Some(500..=599));
    if transient && failed.len() == items.len() {
        Some(Failure::Retry(text))
    } else {
        Some(Failure::Dead(text))
    }
}

/// What a provider's error body says: HubSpot `{"category","message","policyName",
/// "correlationId","errors":[…]}`, Salesforce `[{"errorCode","message","fields"}]` (collections
/// use `statusCode`), OAuth-style `{"error","error_description"}`, or anything else as text.
#[derive(Debug, Default)]
struct Detail {
    codes: Vec<String>,
    message: Option<String>,
    /// Further Salesforce errors beyond the one shown.
    more: usize,
    policy: Option<String>,
    correlation: Option<String>,
    /// The body on one line, when nothing above was recognised.
    raw: String,
}

impl Detail {
    fn parse(body: &str) -> Detail {
        match serde_json::from_str::<Value>(body) {
            Ok(json) => Detail::from_json(&json),
            Err(_) => Detail {
                raw: one_line(body),
                ..Detail::default()
            },
        }
    }

    fn from_json(json: &Value) -> Detail {
        let mut detail = Detail::default();
        match json {
            Value::Array(errors) => {
                for error in errors {
                    if let Some(code) = text(error, &["errorCode", "statusCode"]) {
                        detail.codes.push(code);
                    }
                }
                if let Some(first) = errors.first() {
                    detail.message = text(first, &["message"]);
                    detail.more = errors.len() - 1;
                }
            }
            Value::Object(map) => {
                if let Some(nested @ Value::Object(_)) = map.get("error") {
                    detail = Detail::from_json(nested);
                }
                let code = text(
                    json,
                    &["errorCode", "category", "errorType", "code", "error"],
                );
                detail.codes.extend(code);
                let keys = [
                    "message",
                    "error_description",
                    "detail",
                    "title",
                    "hydra:description",
                ];
                detail.message = text(json, &keys).or(detail.message);
                // HubSpot's top message is often generic; the first sub-error names the field.
                let sub = json.pointer("/errors/0/message").and_then(Value::as_str);
                if let (Some(message), Some(sub)) = (&mut detail.message, sub)
                    && !message.contains(sub)
                {
                    message.push_str(": ");
                    message.push_str(sub);
                }
                detail.policy = text(json, &["policyName"]);
                detail.correlation = text(json, &["correlationId"]);
            }
            _ => {}
        }
        if detail.codes.is_empty() && detail.message.is_none() && !json.is_null() {
            detail.raw = one_line(&json.to_string());
        }
        detail
    }

    fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }

    /// The code as a Salesforce/HubSpot code, or anywhere in a body that is not JSON (an XML
    /// error answer when `Accept` was not honoured).
    fn mentions(&self, code: &str) -> bool {
        self.has_code(code) || self.raw.contains(code)
    }

    fn message_contains(&self, text: &str) -> bool {
        self.message.as_deref().is_some_and(|m| m.contains(text)) || self.raw.contains(text)
    }

    /// `CODE: message (+N more) (policy P, correlationId C)`, or the raw body.
    fn describe(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        parts.extend(self.codes.first().map(String::as_str));
        parts.extend(self.message.as_deref());
        let mut text = if parts.is_empty() {
            self.raw.clone()
        } else {
            parts.join(": ")
        };
        if self.more > 0 {
            text.push_str(&format!(" (+{} more)", self.more));
        }
        let mut extras = Vec::new();
        extras.extend(self.policy.as_ref().map(|p| format!("policy {p}")));
        extras.extend(
            self.correlation
                .as_ref()
                .map(|c| format!("correlationId {c}")),
        );
        if !extras.is_empty() {
            text.push_str(&format!(" ({})", extras.join(", ")));
        }
        text
    }
}

/// The first of `keys` whose value is a non-empty string.
fn text(json: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| json.get(*k).and_then(Value::as_str))
        .find(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned())
}

fn reason(status: u16, label: &str, error: &Detail) -> String {
    let described = error.describe();
    if described.is_empty() {
        truncate(&format!("HTTP {status} {label}"))
    } else {
        truncate(&format!("HTTP {status} {label}: {described}"))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(REASON_CHARS - 1) {
        // Cut one short so that the `…` keeps the total at REASON_CHARS.
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
