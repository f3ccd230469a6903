//! `kind: slack` as validated: the webhook URL and the per-event-type message templates. The
//! config builds it; [`super::SlackTarget`] runs it.

use std::fmt;

use crate::config::{BodyTemplate, TemplateSource};

/// `kind: slack`: a Slack incoming webhook.
///
/// Its default rate limit is Slack's, 1 message per second per webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackSettings {
    /// `http` or `https`, with a host. The URL is the credential (anyone holding it can
    /// post), so `Debug` shows only its scheme and host.
    pub url: url::Url,
    /// Per event type, in file order: an exact event type (`message.received`) or `*`,
    /// the fallback for every type without its own entry. Keys are unique. Types with
    /// neither use the built-in message.
    pub templates: Vec<(String, SlackTemplate)>,
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = format!(
            "{}://{}/<redacted>",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default()
        );
        f.debug_struct("SlackSettings")
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
