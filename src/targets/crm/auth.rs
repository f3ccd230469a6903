//! Authorization for CRM requests: a static bearer or basic credential, or an OAuth2
//! client-credentials token fetched on demand and cached until shortly before it expires.
//!
//! One [`Authorizer`] is shared by every concurrent delivery of a target. For OAuth2 at most one
//! token request is in flight: callers that find no fresh token queue on one gate, the first
//! through fetches, and everyone who queued behind that fetch takes its result, success or
//! failure. Header values are marked sensitive, and no [`AuthError`] message carries a client
//! secret, a password or a token.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_TYPE};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::CrmAuth;
use crate::config::Secret;

/// Lifetime assumed when the token response has no `expires_in`. Salesforce's
/// client-credentials answer has none (its session timeout, 2 h by default, applies), and an
/// hour is the common OAuth2 default.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token claiming a longer life is still re-fetched daily: one request a day is cheap, and it
/// bounds how long a token revoked on the provider's side can linger here.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Refresh this long before expiry, so a token does not lapse between `header()` and the CRM
/// checking it. Capped at half the lifetime, so short-lived tokens are still reused.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The most of a token response that is read; a real one is well under 4 KiB.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// How much of a token endpoint's error body is quoted in an [`AuthError`].
const DETAIL_CHARS: usize = 200;

/// Why no Authorization header could be produced. Messages name what failed and never contain
/// a secret or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{kind} credential contains characters not allowed in an HTTP header")]
    InvalidCredential { kind: &'static str },
    #[error("token endpoint {url} unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("token endpoint {url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        /// `": "` plus the OAuth2 `error`/`error_description` or the start of the body; or empty.
        detail: String,
    },
    #[error("token endpoint {url} gave an unusable token response: {problem}")]
    BadResponse { url: String, problem: String },
}

impl AuthError {
    /// Whether trying again later may help: the endpoint was unreachable, overloaded or failing.
    /// A rejected client (400/401 `invalid_client`), a bad credential or an unusable response
    /// needs an operator, so the delivery should not burn its retries on it.
    pub fn is_transient(&self) -> bool {
        match self {
            AuthError::Unreachable { .. } => true,
            AuthError::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            AuthError::InvalidCredential { .. } | AuthError::BadResponse { .. } => false,
        }
    }
}

/// Produces the Authorization header of a CRM target's requests.
pub struct Authorizer {
    kind: Kind,
}

enum Kind {
    None,
    /// Bearer or basic: computed once. An invalid value is kept as its error so that `new`
    /// never fails and every delivery reports the same clear message.
    Static {
        scheme: &'static str,
        value: Result<HeaderValue, AuthError>,
    },
    OAuth2(Box<OAuth2>),
}

impl Authorizer {
    /// `client` sends the token requests; its timeout bounds how long callers wait on a fetch.
    pub fn new(auth: Option<CrmAuth>, client: reqwest::Client) -> Authorizer {
        let kind = match auth {
            None => Kind::None,
            Some(CrmAuth::Bearer(token)) => Kind::Static {
                scheme: "bearer",
                value: sensitive(&format!("Bearer {}", token.expose_secret()), "bearer"),
            },
            Some(CrmAuth::Basic { username, password }) => Kind::Static {
                scheme: "basic",
                value: sensitive(
                    &format!(
                        "Basic {}",
                        STANDARD.encode(format!("{username}:{}", password.expose_secret()))
                    ),
                    "basic",
                ),
            },
            Some(CrmAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            }) => {
                let oauth = OAuth2::new(token_url, client_id, client_secret, scope, client);
                Kind::OAuth2(Box::new(oauth))
            }
        };
        Authorizer { kind }
    }

    /// The Authorization header value for the next request; `None` when no auth is configured.
    ///
    /// For OAuth2 this is the cached token, or a fresh one from the token endpoint (POST form
    /// with `grant_type=client_credentials`, `client_id`, `client_secret` and `scope` when set,
    /// i.e. `client_secret_post`, which Salesforce and most providers accept).
    pub async fn header(&self) -> Result<Option<HeaderValue>, AuthError> {
        match &self.kind {
            Kind::None => Ok(None),
            Kind::Static { value, .. } => value.clone().map(Some),
            Kind::OAuth2(oauth) => oauth.header().await.map(Some),
        }
    }

    /// Call after the target answered 401: drops the cached token so the next [`header`]
    /// fetches a fresh one. Returns true when a refresh is worth trying (OAuth2 only); for a
    /// static bearer or basic credential a 401 is permanent.
    ///
    /// Prefer [`invalidate_token`] when several deliveries run at once: this drops whatever is
    /// cached, even a token another delivery has just fetched.
    ///
    /// [`header`]: Authorizer::header
    /// [`invalidate_token`]: Authorizer::invalidate_token
    pub fn invalidate(&self) -> bool {
        match &self.kind {
            Kind::OAuth2(oauth) => {
                oauth.forget(None);
                true
            }
            Kind::None | Kind::Static { .. } => false,
        }
    }

    /// Like [`invalidate`](Authorizer::invalidate), but drops the cache only if it still holds
    /// `used`, the value that got the 401. Concurrent deliveries rejected with the same stale
    /// token then cause one refresh, not one each.
    pub fn invalidate_token(&self, used: &HeaderValue) -> bool {
        match &self.kind {
            Kind::OAuth2(oauth) => {
                oauth.forget(Some(used));
                true
            }
            Kind::None | Kind::Static { .. } => false,
        }
    }

    /// Whether a 401 can be cured by fetching a new token.
    pub fn is_oauth2(&self) -> bool {
        matches!(self.kind, Kind::OAuth2(_))
    }
}

/// Written by hand so that no credential can reach a log through `{:?}`.
impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Authorizer");
        match &self.kind {
            Kind::None => d.field("kind", &"none"),
            Kind::Static { scheme, .. } => d.field("kind", scheme),
            Kind::OAuth2(oauth) => d
                .field("kind", &"oauth2")
                .field("token_url", &oauth.shown_url),
        };
        d.finish_non_exhaustive()
    }
}

/// OAuth2 client credentials with a shared cache.
struct OAuth2 {
    token_url: url::Url,
    /// `token_url` without user info or query, for messages.
    shown_url: String,
    /// The encoded form body. Holds the secret: never logged.
    form: String,
    /// Kept only to scrub it from echoed error bodies.
    client_secret: Secret,
    client: reqwest::Client,
    /// Never held across an `.await`, so a std mutex is enough and `invalidate` can stay sync.
    state: Mutex<State>,
    /// Held for the whole fetch: this is what makes concurrent callers share one request.
    gate: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Completed fetches. A caller that saw N before queueing and finds more after it takes
    /// `last` instead of fetching again.
    fetches: u64,
    last: Option<Result<HeaderValue, AuthError>>,
}

struct Cached {
    value: HeaderValue,
    refresh_at: Instant,
}

impl OAuth2 {
    fn new(
        token_url: url::Url,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
        client: reqwest::Client,
    ) -> OAuth2 {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &client_id)
            .append_pair("client_secret", client_secret.expose_secret());
        if let Some(scope) = &scope {
            form.append_pair("scope", scope);
        }
        OAuth2 {
            shown_url: shown_url(&token_url),
            token_url,
            form: form.finish(),
            client_secret,
            client,
            state: Mutex::new(State::default()),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Poisoning only means another thread panicked mid-update of plain data; the data is
    /// still usable, and the worst case is one extra fetch.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn header(&self) -> Result<HeaderValue, AuthError> {
        let seen = {
            let state = self.state();
            if let Some(value) = state.fresh() {
                return Ok(value);
            }
            state.fetches
        };
        // Dropping this future (a cancelled delivery) releases the gate; the next caller fetches.
        let _gate = self.gate.lock().await;
        {
            let state = self.state();
            if let Some(value) = state.fresh() {
                return Ok(value);
            }
            if state.fetches != seen
                && let Some(last) = &state.last
            {
                return last.clone();
            }
        }
        let result = self.fetch().await;
        let mut state = self.state();
        state.fetches += 1;
        state.last = Some(result.clone().map(|(value, _)| value));
        state.token = None;
        let (value, lifetime) = result?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        state.token = Some(Cached {
            value: value.clone(),
            refresh_at: Instant::now() + (lifetime - margin),
        });
        Ok(value)
    }

    /// Drops the cached token (only if it is `used`, when given).
    fn forget(&self, used: Option<&HeaderValue>) {
        let mut state = self.state();
        let current = state.token.as_ref().map(|t| &t.value);
        if used.is_none() || current == used {
            state.token = None;
        }
        let last_is_used = matches!((&state.last, used), (Some(Ok(v)), Some(u)) if v == u);
        if used.is_none() || last_is_used {
            state.last = None;
        }
    }

    async fn fetch(&self) -> Result<(HeaderValue, Duration), AuthError> {
        let unreachable = |e: reqwest::Error| AuthError::Unreachable {
            url: self.shown_url.clone(),
            // Without the URL: the one in our message has its user info and query removed.
            cause: chain(&e.without_url()),
        };
        let mut response = self
            .client
            .post(self.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(self.form.clone())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_TOKEN_RESPONSE {
                break;
            }
        }
        if !(200..300).contains(&status) {
            return Err(AuthError::Status {
                url: self.shown_url.clone(),
                status,
                detail: self.detail(&body),
            });
        }
        let bad = |problem: String| AuthError::BadResponse {
            url: self.shown_url.clone(),
            problem,
        };
        if body.len() > MAX_TOKEN_RESPONSE {
            return Err(bad(format!("body larger than {MAX_TOKEN_RESPONSE} bytes")));
        }
        parse_token(&body).map_err(bad)
    }

    /// The OAuth2 `error` and `error_description` (RFC 6749 §5.2) when the body has them, else
    /// the start of the body with the client secret scrubbed, in case the endpoint echoes the
    /// request.
    fn detail(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let json = serde_json::from_str::<serde_json::Value>(&text).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let mut detail = match (field("error"), field("error_description")) {
            (Some(code), Some(description)) => format!("{code}: {description}"),
            (Some(code), None) => code,
            _ => text.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let secret = self.client_secret.expose_secret();
        if !secret.is_empty() {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            detail = detail
                .replace(secret, "[redacted]")
                .replace(&encoded, "[redacted]");
        }
        if detail.is_empty() {
            return detail;
        }
        format!(": {}", truncate(&detail, DETAIL_CHARS))
    }
}

impl State {
    fn fresh(&self) -> Option<HeaderValue> {
        self.token
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }
}

/// Reads `access_token`, `token_type` and `expires_in` (RFC 6749 §5.1). Problems are described
/// without quoting values, since a malformed response may still hold a live token.
fn parse_token(body: &[u8]) -> Result<(HeaderValue, Duration), String> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "body is not JSON (error at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    let token = json
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("no access_token string")?;
    if let Some(kind) = json.get("token_type").and_then(|v| v.as_str())
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("token_type {:?} is not Bearer", truncate(kind, 20)));
    }
    let lifetime = match json.get("expires_in") {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => {
            // Some providers send the number as a string ("3599").
            let secs = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()))
                .ok_or("expires_in is neither a number nor a numeric string")?;
            Duration::from_secs_f64(secs.clamp(0.0, MAX_LIFETIME.as_secs_f64()))
        }
    };
    let value = sensitive(&format!("Bearer {token}"), "oauth2 access token")
        .map_err(|_| "access_token contains characters not allowed in an HTTP header")?;
    Ok((value, lifetime))
}

fn sensitive(text: &str, kind: &'static str) -> Result<HeaderValue, AuthError> {
    let mut value =
        HeaderValue::from_str(text).map_err(|_| AuthError::InvalidCredential { kind })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `scheme://host[:port]/path`: what identifies the endpoint, without user info or query.
fn shown_url(url: &url::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// An error and its causes on one line, e.g. `error sending request: connection refused`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
