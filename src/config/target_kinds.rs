//! What each kind of target does with a delivery, as validated: the `kind: http`, `slack` and
//! `crm` settings of [`super::Target`]. Credentials in them are secret types; the types that
//! hold a credential inside a URL or header values write their own `Debug`.

use std::fmt;

use super::{BodyTemplate, Secret, TemplateSource};

/// What a target does with a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `kind: http`.
    Http(HttpTarget),
    /// `kind: slack`.
    Slack(SlackTarget),
    /// `kind: crm`.
    Crm(CrmTarget),
}

/// Forwards the original body unchanged, optionally re-signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// `http` or `https`, with a host.
    pub url: url::Url,
    /// Extra request headers, in file order. Values are marked sensitive (they often
    /// carry credentials), so their `Debug` output is redacted.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Standard Webhooks signing of each request; `None` for no signature.
    pub signing: Option<Signing>,
    /// Also send TextUs's original `X-TextUs-Signature`. Default false.
    pub forward_textus_signature: bool,
}

/// A Standard Webhooks signing key: the bytes encoded in a `whsec_...` secret.
#[derive(Clone, Debug)]
pub struct Signing {
    /// 24 to 64 bytes; `Debug` shows none of them.
    pub key: secrecy::SecretSlice<u8>,
}

/// Compares the keys, for reload's "did this target change" (not a request credential).
impl PartialEq for Signing {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.key.expose_secret() == other.key.expose_secret()
    }
}

impl Eq for Signing {}

/// `kind: slack`: a Slack incoming webhook.
///
/// Its default rate limit is Slack's, 1 message per second per webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackTarget {
    /// `http` or `https`, with a host. The URL is the credential (anyone holding it can
    /// post), so `Debug` shows only its scheme and host.
    pub url: url::Url,
    /// Per event type, in file order: an exact event type (`message.received`) or `*`,
    /// the fallback for every type without its own entry. Keys are unique. Types with
    /// neither use the built-in message.
    pub templates: Vec<(String, SlackTemplate)>,
}

impl fmt::Debug for SlackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = format!(
            "{}://{}/<redacted>",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default()
        );
        f.debug_struct("SlackTarget")
            .field("url", &url)
            .field("templates", &self.templates)
            .finish()
    }
}

/// The message for one event type; at least one of the two is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackTemplate {
    /// The top-level `text` (the notification fallback when there are blocks).
    pub text: Option<TemplateSource>,
    /// Block Kit `blocks`: a list, or a string template that renders to one.
    pub blocks: Option<BodyTemplate>,
}

/// `kind: crm`: one templated request to any JSON API per event.
#[derive(Clone, PartialEq, Eq)]
pub struct CrmTarget {
    /// GET, POST, PUT, PATCH or DELETE. Default POST.
    pub method: http::Method,
    /// A template; its text outside `{{ }}` and `{% %}` starts with `http://` or
    /// `https://`.
    pub url: TemplateSource,
    /// Extra request headers, in file order; the values are templates. Names are
    /// unique and none is set by the relay (nor `authorization` when `auth` is set).
    /// `Debug` hides the values: they often carry credentials.
    pub headers: Vec<(http::HeaderName, TemplateSource)>,
    /// The JSON body; `None` for no body.
    pub body: Option<BodyTemplate>,
    /// How requests authenticate; `None` for none (or headers only).
    pub auth: Option<CrmAuth>,
}

impl fmt::Debug for CrmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("CrmTarget")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("auth", &self.auth)
            .finish()
    }
}

/// `auth:` of a CRM target: exactly one scheme. Secrets are never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrmAuth {
    /// `bearer: TOKEN`: `Authorization: Bearer TOKEN`.
    Bearer(Secret),
    /// `basic: { username, password }`: `Authorization: Basic ...`. The username has no
    /// `:`.
    Basic {
        /// Not empty.
        username: String,
        /// Not empty.
        password: Secret,
    },
    /// `oauth2: { token_url, client_id, client_secret, scope }`: the client credentials
    /// flow; the token is sent as a bearer token.
    OAuth2 {
        /// `http` or `https`, with a host.
        token_url: url::Url,
        /// Not empty.
        client_id: String,
        /// Not empty.
        client_secret: Secret,
        /// `None` when absent or empty.
        scope: Option<String>,
    },
}
