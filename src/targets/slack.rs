//! `kind: slack`: posts one message per event to a Slack incoming webhook.
//!
//! Each event type has a built-in, readable message ([`message::builtin`]); `templates:` in the
//! config replaces it per event type (`*` for every type without its own). Event-derived text
//! is escaped for mrkdwn, so an SMS saying `<!channel>` cannot ping a channel, and payloads are
//! cut to Slack's size limits instead of being refused. A webhook that Slack says is revoked,
//! archived or gone flags the target for an operator.

mod kind;
pub mod message;
pub mod mrkdwn;
pub mod settings;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::health::TargetHealth;
use super::http::{client, transport_failure};
use super::kind::Preview;
use super::{Outcome, REASON_BYTES, Target};
use crate::store::Job;
use crate::templates::{CompiledBody, RenderContext, Templates, TextId};
pub use settings::{SlackSettings, SlackTemplate};

/// A `templates:` entry, compiled.
#[derive(Clone, Debug)]
pub struct CompiledMessage {
    pub text: Option<TextId>,
    pub blocks: Option<CompiledBody>,
}

/// A Slack incoming webhook.
pub struct SlackTarget {
    name: String,
    url: url::Url,
    client: reqwest::Client,
    timeout: Duration,
    templates: Arc<Templates>,
    /// `(event type or "*", message)`, in config order.
    overrides: Vec<(String, CompiledMessage)>,
    health: Arc<TargetHealth>,
}

impl SlackTarget {
    pub fn try_new(
        name: &str,
        url: url::Url,
        timeout: Duration,
        templates: Arc<Templates>,
        overrides: Vec<(String, CompiledMessage)>,
        health: Arc<TargetHealth>,
    ) -> Result<SlackTarget, reqwest::Error> {
        Ok(SlackTarget {
            name: name.to_string(),
            url,
            client: client(timeout)?,
            timeout,
            templates,
            overrides,
            health,
        })
    }

    /// The message this target sends for `job`: its template, or the built-in one.
    pub fn payload(&self, job: &Job) -> Result<Value, String> {
        let event = job.event();
        let event_type = job.event_type.as_deref().unwrap_or("");
        let Some(message) = self.template_for(event_type) else {
            return Ok(message::builtin(event_type, event));
        };
        let ctx = RenderContext::new(event, super::meta(job, &self.name));
        let mut payload = serde_json::Map::new();
        if let Some(text) = message.text {
            let rendered = self
                .templates
                .render_text(text, &ctx)
                .map_err(|e| e.to_string())?;
            payload.insert("text".into(), Value::String(rendered));
        }
        if let Some(blocks) = &message.blocks {
            let rendered = self
                .templates
                .render_body(blocks, &ctx)
                .map_err(|e| e.to_string())?;
            payload.insert("blocks".into(), rendered);
        }
        // As in the built-in messages: a link inside an SMS must not pull a preview into the
        // channel. A template cannot set these keys, so they are always added.
        payload.insert("unfurl_links".into(), Value::Bool(false));
        payload.insert("unfurl_media".into(), Value::Bool(false));
        Ok(mrkdwn::fit(Value::Object(payload)))
    }

    fn template_for(&self, event_type: &str) -> Option<&CompiledMessage> {
        let find = |key: &str| {
            self.overrides
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, m)| m)
        };
        find(event_type).or_else(|| find("*"))
    }
}

#[async_trait]
impl Target for SlackTarget {
    async fn deliver(&self, job: &Job, _webhook_id: &str) -> Outcome {
        let payload = match self.payload(job) {
            Ok(p) => p,
            Err(reason) => return super::template_failure(reason),
        };
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(payload.to_string());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport_failure(&e, self.timeout),
        };
        let response = super::read_response(response, |_| REASON_BYTES).await;
        let verdict = verdict::classify(
            response.status,
            response.retry_after.as_deref(),
            &response.body,
        );
        if let Some(reason) = &verdict.attention {
            tracing::error!(target = %self.name, reason = %reason, "slack webhook needs attention");
            self.health.flag_attention(reason);
        }
        verdict.outcome
    }

    fn previewer(&self) -> Option<&dyn Preview> {
        Some(self)
    }
}
