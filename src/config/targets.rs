//! The `targets:` section: names, kinds, the settings every kind shares (retry policy,
//! rate limit, concurrency, timeout; breaker, ordering and quota are in `targets/policy.rs`),
//! and the http target with its headers and Standard Webhooks signing key. The slack and
//! crm kinds are in `targets/`.
//!
//! A target's kind decides which keys are valid, so the deserializer reads it first; with an
//! unknown kind, that is the one problem reported for the target, rather than one
//! "unknown key" per key.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue};

use super::reader::{Ctx, Entry, boolean, child, integer};
use super::schema as raw;
use super::tree::Node;
use super::{
    HttpSettings, Rate, RetryPolicy, Signing, TargetId, TargetKind, TargetSettings, units,
};

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

/// Largest `concurrency`.
pub(super) const MAX_CONCURRENCY: u64 = 1024;

/// Slack's limit per incoming webhook: one message per second.
const SLACK_RATE: Rate = Rate {
    count: 1,
    per: Duration::from_secs(1),
};

/// Reads `targets`; also returns every name defined (valid or not), so routes can be
/// checked against them without a second round of problems for the same target.
pub(super) fn targets<'e>(
    ctx: &mut Ctx<'e>,
    node: &'e Node,
) -> (Option<Vec<TargetSettings>>, Vec<String>) {
    let Some(m) = ctx.mapping(node, "targets".to_owned()) else {
        return (None, Vec::new());
    };
    let names: Vec<String> = m.entries.iter().map(|e| e.key.to_owned()).collect();
    if m.entries.is_empty() {
        ctx.report(m.at, "targets", "at least one target is required");
        return (None, names);
    }
    let targets: Vec<Option<TargetSettings>> = m
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
fn target<'e>(
    ctx: &mut Ctx<'e>,
    name: Option<TargetId>,
    node: &'e Node,
    path: String,
) -> Option<TargetSettings> {
    let raw: raw::Target = ctx.read(node, &path, false)?;
    let (target_kind, delivery, default_rate) = match &raw {
        raw::Target::Http(t) => {
            ctx.section(&t.at)?;
            (http_target(ctx, t).map(TargetKind::Http), &t.delivery, None)
        }
        raw::Target::Slack(t) => {
            ctx.section(&t.at)?;
            let slack = slack::slack_target(ctx, t).map(TargetKind::Slack);
            (slack, &t.delivery, Some(SLACK_RATE))
        }
        raw::Target::Crm(t) => {
            ctx.section(&t.at)?;
            (
                crm::crm_target(ctx, t).map(TargetKind::Crm),
                &t.delivery,
                None,
            )
        }
    };
    let d = delivery;
    let concurrency = ctx
        .value(d.concurrency.as_ref(), "concurrency", |s| {
            // At most MAX_CONCURRENCY, so the conversion cannot fail.
            integer(s, 1, MAX_CONCURRENCY).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        })
        .or(raw::Delivery::CONCURRENCY as usize);
    let timeout = ctx.value_or(
        d.timeout.as_ref(),
        "duration",
        raw::Delivery::TIMEOUT,
        positive,
    );
    let retry = retry(ctx, d.retry.as_ref());
    let rate_limit = ctx
        .value(d.rate_limit.as_ref(), "rate", units::rate)
        .optional()
        .map(|rate| rate.or(default_rate));
    let policy = policy::policy(ctx, d);
    Some(TargetSettings {
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

fn http_target(ctx: &mut Ctx<'_>, t: &raw::HttpTarget) -> Option<HttpSettings> {
    let url = ctx
        .require_at(&t.url)
        .and_then(|(node, path)| ctx.parse(node, &path, "URL", http_url));
    let headers = match ctx.present(t.headers.as_ref()) {
        None => Some(Vec::new()),
        Some((node, path)) => headers(ctx, node, path, false, header_value),
    };
    let signing = match &t.signing {
        None => Some(None),
        Some(raw) => signing(ctx, raw).map(Some),
    };
    let forward_textus_signature = ctx
        .value(t.forward_textus_signature.as_ref(), "boolean", boolean)
        .or(false);
    Some(HttpSettings {
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

fn signing(ctx: &mut Ctx<'_>, raw: &raw::Signing) -> Option<Signing> {
    let (secret, path) = ctx.require_at(&raw.secret)?;
    // Never quoted: this is the signing key itself.
    let key = ctx.convert(secret, &path, |t| signing_key(&t.value))?;
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

/// `retry:`; `None` when left out.
fn retry(ctx: &mut Ctx<'_>, raw: Option<&raw::Retry>) -> Option<RetryPolicy> {
    let path = match raw {
        Some(raw) => ctx.section(&raw.at)?,
        None => String::new(),
    };
    let initial = raw.and_then(|r| r.initial.as_ref());
    let initial = ctx.value_or(initial, "duration", raw::Retry::INITIAL, positive);
    let max_delay = raw.and_then(|r| r.max_delay.as_ref());
    let max_delay = ctx.value_or(max_delay, "duration", raw::Retry::MAX_DELAY, positive);
    let max_age = raw.and_then(|r| r.max_age.as_ref());
    let max_age = ctx.value_or(max_age, "duration", raw::Retry::MAX_AGE, positive);
    let max_attempts = ctx
        .value(
            raw.and_then(|r| r.max_attempts.as_ref()),
            "max_attempts",
            |s| {
                // Bounded by u32::MAX, so the conversion cannot fail.
                integer(s, 1, u64::from(u32::MAX)).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            },
        )
        .optional();
    if let (Some(initial), Some(max_delay), Some(raw)) = (initial, max_delay, raw)
        && max_delay < initial
    {
        // Point at whichever of the two is written; max_delay when both are.
        let (key, at) = match (&raw.max_delay, &raw.initial) {
            (Some(loc), _) => ("max_delay", ctx.at(loc)),
            (None, Some(loc)) => ("initial", ctx.at(loc)),
            (None, None) => ("initial", ctx.at(&raw.at)),
        };
        let message =
            format!("max_delay ({max_delay:?}) must not be less than initial ({initial:?})");
        ctx.report(at, &child(&path, key), message);
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
