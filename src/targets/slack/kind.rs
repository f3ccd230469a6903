//! `kind: slack` as a [`Kind`]: its per-event-type templates compiled, and what `check` shows
//! of the message each sample event would post.

use std::sync::Arc;

use serde_json::Value;

use super::{CompiledMessage, SlackSettings, SlackTarget};
use crate::store::Job;
use crate::targets::Target;
use crate::targets::kind::{Kind, Preview, Start, keep, shorten};
use crate::templates::{TemplateError, Templates};

impl Kind for SlackSettings {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn renders_event(&self) -> bool {
        true
    }

    /// The webhook URL is a credential: only its host is shown.
    fn summary(&self) -> String {
        format!(
            "{}://{}/…",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        )
    }

    fn compile(&self, templates: &mut Templates, errors: &mut Vec<TemplateError>) -> Option<Start> {
        let mut messages = Vec::new();
        for (event_type, template) in &self.templates {
            let text = template
                .text
                .as_ref()
                .and_then(|t| keep(errors, templates.slack_text(t)));
            let blocks = template
                .blocks
                .as_ref()
                .and_then(|b| keep(errors, templates.slack_body(b)));
            messages.push((event_type.clone(), CompiledMessage { text, blocks }));
        }
        let url = self.url.clone();
        Some(Box::new(move |setup| {
            let target: Arc<dyn Target> = Arc::new(SlackTarget::try_new(
                &setup.name,
                url,
                setup.timeout,
                setup.templates.clone(),
                messages,
                setup.health.clone(),
            )?);
            Ok(target)
        }))
    }
}

impl Preview for SlackTarget {
    fn preview(&self, job: &Job) -> Result<String, String> {
        let payload = self.payload(job)?;
        if is_empty(&payload) {
            return Err("the message renders empty (no text and no blocks)".to_string());
        }
        let text = payload
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("(blocks only)");
        Ok(format!("ok, text: {}", shorten(text)))
    }
}

fn is_empty(payload: &Value) -> bool {
    let text = payload
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .is_empty();
    let blocks = payload
        .get("blocks")
        .and_then(Value::as_array)
        .is_none_or(|b| b.is_empty());
    text && blocks
}
