//! `kind: crm` as validated: the method, the URL, header and body templates, and how requests
//! authenticate. The config builds it; [`super::CrmTarget`] runs it. Credentials are
//! [`Secret`]s, and `Debug` hides header values.

use std::fmt;

use crate::config::{BodyTemplate, Secret, TemplateSource};

/// `kind: crm`: one templated request to any JSON API per event.
#[derive(Clone, PartialEq, Eq)]
pub struct CrmSettings {
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

impl fmt::Debug for CrmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("CrmSettings")
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
