//! `kind: crm`: one templated JSON request per event to any API (HubSpot, Salesforce, ...).
//!
//! The method is fixed, the URL, headers and body are templates over the event. A body leaf
//! that is exactly one `{{ expr }}` keeps its JSON type. With OAuth2 a 401 gets exactly one
//! retry with a fresh token; with a static credential a 401 is permanent.

pub mod auth;
mod kind;
pub mod settings;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::http::{client, transport_failure};
use super::kind::Preview;
use super::{Outcome, Target};
use crate::store::Job;
use crate::templates::{CompiledBody, RenderContext, Templates, TextId};
use auth::Authorizer;
pub use settings::{CrmAuth, CrmSettings};

/// How much of an answer is read to classify it (batch answers list every item).
const SUCCESS_BODY_BYTES: usize = 256 * 1024;

/// A CRM request, compiled from `targets.NAME` of the config.
pub struct CompiledRequest {
    pub method: http::Method,
    pub url: TextId,
    pub headers: Vec<(HeaderName, TextId)>,
    pub body: Option<CompiledBody>,
}

/// A rendered request, ready to send (also what `check` shows).
#[derive(Debug)]
pub struct Rendered {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<serde_json::Value>,
}

/// Any JSON API.
pub struct CrmTarget {
    name: String,
    request: CompiledRequest,
    templates: Arc<Templates>,
    client: reqwest::Client,
    timeout: Duration,
    auth: Authorizer,
}

impl CrmTarget {
    pub fn try_new(
        name: &str,
        request: CompiledRequest,
        templates: Arc<Templates>,
        auth: Option<CrmAuth>,
        timeout: Duration,
    ) -> Result<CrmTarget, reqwest::Error> {
        let client = client(timeout)?;
        Ok(CrmTarget {
            name: name.to_string(),
            auth: Authorizer::new(auth, client.clone()),
            request,
            templates,
            client,
            timeout,
        })
    }

    /// Renders the request for `job`. A template error is permanent: retrying cannot fix it.
    pub fn render(&self, job: &Job) -> Result<Rendered, String> {
        let ctx = RenderContext::new(job.event(), super::meta(job, &self.name));
        let url = self
            .templates
            .render_text(self.request.url, &ctx)
            .map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.request.headers {
            let text = self
                .templates
                .render_text(*value, &ctx)
                .map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                format!("header {name} rendered to a value that is not a valid header")
            })?;
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
        let body = match &self.request.body {
            Some(b) => Some(
                self.templates
                    .render_body(b, &ctx)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Ok(Rendered { url, headers, body })
    }

    /// Sends once; also returns the credential used, so a 401 can invalidate exactly that one.
    async fn send(
        &self,
        rendered: &Rendered,
        webhook_id: &str,
    ) -> Result<(reqwest::Response, Option<HeaderValue>), Outcome> {
        let url = url::Url::parse(rendered.url.trim()).map_err(|e| Outcome::Dead {
            status: None,
            reason: format!(
                "the url template rendered {:?}, which is not a URL: {e}",
                rendered.url
            ),
        })?;
        let mut request = self
            .client
            .request(self.request.method.clone(), url)
            .headers(rendered.headers.clone())
            .header("webhook-id", webhook_id);
        if let Some(body) = &rendered.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        // Even a token endpoint that refuses our client is retried, not buried: fixing the
        // credentials in the config must be enough to get the queued events delivered.
        let credential = self.auth.header().await.map_err(|e| Outcome::Retry {
            status: None,
            reason: format!("getting an access token failed: {e}"),
            retry_after: None,
        })?;
        if let Some(value) = &credential {
            request = request.header(reqwest::header::AUTHORIZATION, value.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(&e, self.timeout))?;
        Ok((response, credential))
    }
}

#[async_trait]
impl Target for CrmTarget {
    async fn deliver(&self, job: &Job, webhook_id: &str) -> Outcome {
        let rendered = match self.render(job) {
            Ok(r) => r,
            Err(reason) => return super::template_failure(reason),
        };
        let (mut response, credential) = match self.send(&rendered, webhook_id).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        // An expired or revoked OAuth2 token: fetch a new one and try once more, now.
        if response.status().as_u16() == 401
            && credential.is_some_and(|used| self.auth.invalidate_token(&used))
        {
            response = match self.send(&rendered, webhook_id).await {
                Ok((r, _)) => r,
                Err(outcome) => return outcome,
            };
        }
        // Successful answers are read too: HubSpot 207 and Salesforce composite answers carry
        // per-item failures in the body.
        let response = super::read_response(response, |_| SUCCESS_BODY_BYTES).await;
        verdict::classify(
            response.status,
            response.retry_after.as_deref(),
            &response.body,
        )
    }

    fn previewer(&self) -> Option<&dyn Preview> {
        Some(self)
    }
}
