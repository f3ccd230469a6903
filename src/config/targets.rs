//! The `targets:` section: names, kinds, the settings every kind shares (retry policy,
//! rate limit, concurrency, timeout; breaker, ordering and quota are in `targets/policy.rs`),
//! and the http target with its headers and Standard Webhooks signing key. The slack and
//! crm kinds are in `targets/`.
//!
//! A target's kind decides which keys are valid, so the kind is read first; with an
//! unknown kind, that is the one problem reported for the target, rather than one
//! "unknown key" per key.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue};

use super::reader::{Ctx, Entry, Mapping, boolean, child, integer};
use super::schema::keys;
use super::tree::Node;
use super::{HttpTarget, Rate, RetryPolicy, Signing, Target, TargetId, TargetKind, units};

pub(super) mod crm;
pub(super) mod policy;
pub(super) mod slack;

/// Headers the relay sets itself on every request; configuring them would break
/// idempotency keys, signatures or framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-textus-signature",
];

const DEFAULT_CONCURRENCY: usize = 4;
/// Largest `concurrency`.
pub(super) const MAX_CONCURRENCY: u64 = 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack's limit per incoming webhook: one message per second.
const SLACK_RATE: Rate = Rate {
    count: 1,
    per: Duration::from_secs(1),
};

/// The kinds of target, as named by `kind:`.
#[derive(Clone, Copy)]
enum Kind {
    Http,
    Slack,
    Crm,
}

/// Reads `targets`; also returns every name defined (valid or not), so routes can be
/// checked against them without a second round of problems for the same target.
pub(super) fn targets(ctx: &mut Ctx<'_>, node: &Node) -> (Option<Vec<Target>>, Vec<String>) {
    let Some(m) = ctx.mapping(node, "targets".to_owned()) else {
        return (None, Vec::new());
    };
    let names: Vec<String> = m.entries.iter().map(|e| e.key.to_owned()).collect();
    if m.entries.is_empty() {
        ctx.report(m.at, "targets", "at least one target is required");
        return (None, names);
    }
    let targets: Vec<Option<Target>> = m
        .entries
        .iter()
        .map(|entry| {
            let path = child("targets", entry.key);
            let name = valid_name(entry.key);
            if name.is_none() {
                let message = format!(
                    "invalid target name {:?} (expected letters, digits, `-` and `_`)",
                    entry.key
                );
                ctx.report(entry.key_at, &path, message);
            }
            target(ctx, name, entry.value, path)
        })
        .collect();
    (targets.into_iter().collect(), names)
}

fn valid_name(name: &str) -> Option<TargetId> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| TargetId(Arc::from(name)))
}

/// Reads one target; `name` is `None` when the name is invalid (already reported), and
/// the body is still checked.
fn target(ctx: &mut Ctx<'_>, name: Option<TargetId>, node: &Node, path: String) -> Option<Target> {
    let m = ctx.mapping(node, path)?;
    let kind_node = ctx.required(&m, "kind")?;
    let kind = ctx.convert(kind_node, &child(&m.path, "kind"), |t| {
        match t.value.as_str() {
            "http" => Ok(Kind::Http),
            "slack" => Ok(Kind::Slack),
            "crm" => Ok(Kind::Crm),
            _ => Err(format!(
                "unknown target kind {} (expected one of: http, slack, crm)",
                t.quoted
            )),
        }
    })?;
    let (target_kind, default_rate) = match kind {
        Kind::Http => {
            ctx.check_keys(&m, keys::HTTP);
            (http_target(ctx, &m).map(TargetKind::Http), None)
        }
        Kind::Slack => {
            ctx.check_keys(&m, keys::SLACK);
            let slack = slack::slack_target(ctx, &m).map(TargetKind::Slack);
            (slack, Some(SLACK_RATE))
        }
        Kind::Crm => {
            ctx.check_keys(&m, keys::CRM);
            (crm::crm_target(ctx, &m).map(TargetKind::Crm), None)
        }
    };
    let concurrency = ctx
        .field(&m, "concurrency", "concurrency", |s| {
            // At most MAX_CONCURRENCY, so the conversion cannot fail.
            integer(s, 1, MAX_CONCURRENCY)
                .map(|n| usize::try_from(n).unwrap_or(DEFAULT_CONCURRENCY))
        })
        .or(DEFAULT_CONCURRENCY);
    let timeout = ctx
        .field(&m, "timeout", "duration", positive)
        .or(DEFAULT_TIMEOUT);
    let retry = match m.present("retry") {
        None => Some(RetryPolicy::default()),
        Some(node) => retry(ctx, node, child(&m.path, "retry")),
    };
    let rate_limit = ctx
        .field(&m, "rate_limit", "rate", units::rate)
        .optional()
        .map(|rate| rate.or(default_rate));
    let policy = policy::policy(ctx, &m);
    Some(Target {
        name: name?,
        kind: target_kind?,
        concurrency: concurrency?,
        timeout: timeout?,
        retry: retry?,
        rate_limit: rate_limit?,
        breaker: policy.breaker?,
        ordering: policy.ordering?,
        max_queue: policy.max_queue?,
        on_full: policy.on_full?,
    })
}

fn positive(text: &str) -> Result<Duration, String> {
    let duration = units::duration(text)?;
    if duration.is_zero() {
        Err("must be greater than zero".to_owned())
    } else {
        Ok(duration)
    }
}

fn http_target(ctx: &mut Ctx<'_>, m: &Mapping<'_>) -> Option<HttpTarget> {
    let url = ctx
        .required(m, "url")
        .and_then(|node| ctx.parse(node, &child(&m.path, "url"), "URL", http_url));
    let headers = match m.present("headers") {
        None => Some(Vec::new()),
        Some(node) => headers(ctx, node, child(&m.path, "headers"), false, header_value),
    };
    let signing = match m.present("signing") {
        None => Some(None),
        Some(node) => signing(ctx, node, child(&m.path, "signing")).map(Some),
    };
    let forward_textus_signature = ctx
        .field(m, "forward_textus_signature", "boolean", boolean)
        .or(false);
    Some(HttpTarget {
        url: url?,
        headers: headers?,
        signing: signing?,
        forward_textus_signature: forward_textus_signature?,
    })
}

fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    if url.host().is_none() {
        return Err("missing host".to_owned());
    }
    Ok(url)
}

/// Reads a `headers:` mapping. Names are checked here (`authorization` is refused too
/// when `auth` sets it); each value is read by `value`, which reports its own problems.
fn headers<V>(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: String,
    auth: bool,
    mut value: impl FnMut(&mut Ctx<'_>, &Node, &str) -> Option<V>,
) -> Option<Vec<(HeaderName, V)>> {
    let m = ctx.mapping(node, path)?;
    let mut headers = Vec::with_capacity(m.entries.len());
    let mut valid = true;
    for entry in &m.entries {
        let path = child(&m.path, entry.key);
        let name = header_name(ctx, entry, &path, auth, &headers);
        // Never quoted: header values often carry credentials.
        let value = value(ctx, entry.value, &path);
        match (name, value) {
            (Some(name), Some(value)) => headers.push((name, value)),
            _ => valid = false,
        }
    }
    valid.then_some(headers)
}

fn header_name<V>(
    ctx: &mut Ctx<'_>,
    entry: &Entry<'_>,
    path: &str,
    auth: bool,
    seen: &[(HeaderName, V)],
) -> Option<HeaderName> {
    let message = match HeaderName::from_bytes(entry.key.as_bytes()) {
        Err(_) => format!("invalid header name {:?}", entry.key),
        Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
            format!("header `{name}` is set by the relay")
        }
        Ok(name) if auth && name == http::header::AUTHORIZATION => {
            format!("header `{name}` is set by `auth`; remove one of the two")
        }
        // Header names are case-insensitive, so YAML's duplicate check misses these.
        Ok(name) if seen.iter().any(|(seen, _)| *seen == name) => {
            format!("header `{name}` is set twice")
        }
        Ok(name) => return Some(name),
    };
    ctx.report(entry.key_at, path, message);
    None
}

/// An http target's header value, used as is.
fn header_value(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<HeaderValue> {
    ctx.convert(node, path, |t| {
        HeaderValue::from_str(&t.value)
            .map(|mut value| {
                value.set_sensitive(true);
                value
            })
            .map_err(|_| INVALID_HEADER_VALUE.to_owned())
    })
}

const INVALID_HEADER_VALUE: &str =
    "invalid header value (control characters are not allowed; value not shown)";

fn signing(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<Signing> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::SIGNING);
    let secret = ctx.required(&m, "secret")?;
    // Never quoted: this is the signing key itself.
    let key = ctx.convert(secret, &child(&m.path, "secret"), |t| signing_key(&t.value))?;
    Some(Signing { key: key.into() })
}

/// Decodes a Standard Webhooks secret: `whsec_` + standard base64 (with padding) of
/// 24 to 64 random bytes. Messages never include any part of the secret.
fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        return Err(
            "signing secret must start with `whsec_` (Standard Webhooks format)".to_owned(),
        );
    };
    let key = STANDARD.decode(encoded).map_err(|_| {
        "signing secret is not valid base64 after `whsec_` (standard alphabet, with padding)"
            .to_owned()
    })?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "signing secret decodes to {} bytes (expected 24 to 64)",
            key.len()
        ));
    }
    Ok(key)
}

fn retry(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<RetryPolicy> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::RETRY);
    let defaults = RetryPolicy::default();
    let initial = ctx
        .field(&m, "initial", "duration", positive)
        .or(defaults.initial);
    let max_delay = ctx
        .field(&m, "max_delay", "duration", positive)
        .or(defaults.max_delay);
    let max_age = ctx
        .field(&m, "max_age", "duration", positive)
        .or(defaults.max_age);
    let max_attempts = ctx
        .field(&m, "max_attempts", "max_attempts", |s| {
            // Bounded by u32::MAX, so the conversion cannot fail.
            integer(s, 1, u64::from(u32::MAX)).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        })
        .optional();
    if let (Some(initial), Some(max_delay)) = (initial, max_delay)
        && max_delay < initial
    {
        // Point at whichever of the two is written; max_delay when both are.
        let key = if m.present("max_delay").is_some() {
            "max_delay"
        } else {
            "initial"
        };
        let message =
            format!("max_delay ({max_delay:?}) must not be less than initial ({initial:?})");
        ctx.report(m.value_at(key), &child(&m.path, key), message);
    }
    Some(RetryPolicy {
        initial: initial?,
        max_delay: max_delay?,
        max_age: max_age?,
        max_attempts: max_attempts?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_restricted() {
        assert_eq!(
            valid_name("warehouse-2_b").map(|id| id.to_string()),
            Some("warehouse-2_b".to_owned())
        );
        for bad in ["", "a b", "a.b", "é", "a/b"] {
            assert!(valid_name(bad).is_none(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn signing_keys_follow_standard_webhooks() {
        let key24 = format!("whsec_{}", STANDARD.encode([7u8; 24]));
        assert_eq!(signing_key(&key24), Ok(vec![7u8; 24]));
        assert!(signing_key(&format!("whsec_{}", STANDARD.encode([1u8; 64]))).is_ok());
        assert!(signing_key(&format!("whsec_{}", STANDARD.encode([1u8; 23]))).is_err());
        assert!(signing_key(&format!("whsec_{}", STANDARD.encode([1u8; 65]))).is_err());
        // URL-safe alphabet, missing prefix.
        assert!(signing_key("whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_").is_err());
        assert!(signing_key(&STANDARD.encode([7u8; 24])).is_err());
    }

    #[test]
    fn unpadded_base64_is_refused() {
        // 25 bytes encode with one `=` of padding.
        let padded = STANDARD.encode([9u8; 25]);
        assert!(padded.ends_with('='));
        assert!(signing_key(&format!("whsec_{padded}")).is_ok());
        assert!(signing_key(&format!("whsec_{}", padded.trim_end_matches('='))).is_err());
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(http_url("https://ingest.example.com/textus").is_ok());
        assert!(http_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com/x",
            "https://",
            "mailto:a@b.c",
            "file:///etc/passwd",
        ] {
            assert!(http_url(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
