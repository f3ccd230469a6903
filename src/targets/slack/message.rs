//! The built-in Slack message for each TextUs event type: [`builtin`].
//!
//! Builders (one per event type, in `events`, reading fields through `fields`) collect raw
//! event text into a [`Draft`]; only [`render`] turns a draft into Slack
//! JSON, and it passes every draft string through [`escape`] before adding our own markup
//! (`*title*`, `>` quotes). So no SMS body, name or id can mention `@channel`, open a link or
//! break the layout, whichever builder it came through.
//!
//! Every field is optional, and a link may be an IRI string, an embedded object or null
//! (textus-webhooks.md §1.7): builders read only through [`Value::get`], which yields `None` on
//! any other shape, and a builder without its event's main object gives way to the generic
//! message. Nothing here emits a URL: ids are shown as the last segment of their IRI.

mod events;
mod fields;

use serde_json::{Value, json};

use super::mrkdwn::fit;
use crate::templates::mrkdwn::escape;
use events::{call_object, contact_created, generic, opt_change, phone_call, sms};
use fields::{field, one_line, short_id};

/// Longest name, description or id shown: enough for any real one, short enough that one odd
/// field cannot crowd out the rest of the message.
const MAX_FIELD_CHARS: usize = 120;
/// Longest SMS body quoted: §2's relay rule of about 2,900 characters per section.
const MAX_BODY_CHARS: usize = 2_900;
/// At most this many phones and tags are listed for a new contact.
const MAX_LISTED: usize = 5;

/// A message before escaping: raw event text mixed with our own words.
struct Draft {
    /// What happened, to whom; shown bold, and the start of the notification text.
    title: String,
    /// Lines under the title.
    details: Vec<String>,
    /// The SMS body, quoted in a section of its own.
    body: Option<String>,
}

/// The built-in Slack message for a TextUs event: `{"text", "blocks", "unfurl_links": false,
/// "unfurl_media": false}`, escaped and fitted. `event_type` is the routed `action`; an
/// unknown type, or an event without the object its type implies, gets the generic message.
pub fn builtin(event_type: &str, event: &Value) -> Value {
    let draft = match event_type {
        "message.received" | "message.delivered" | "message.failed" | "message.unknown" => {
            sms(event_type, event)
        }
        "phone_call.completed" => phone_call(event),
        "contact.opted_out" => opt_change(event, false),
        "contact.opted_in" => opt_change(event, true),
        "contact.created" => contact_created(event),
        _ => None,
    };
    let draft = draft.unwrap_or_else(|| generic(event_type, event));
    render(&draft, &context_line(event_type, event))
}

fn render(draft: &Draft, context: &str) -> Value {
    let mut head = format!("*{}*", escape(&draft.title));
    for line in &draft.details {
        head.push('\n');
        head.push_str(&escape(line));
    }
    let mut blocks = vec![section(head)];
    let mut notification = draft.title.clone();
    if let Some(body) = &draft.body {
        let quoted: Vec<String> = escape(body).lines().map(|l| format!(">{l}")).collect();
        blocks.push(section(quoted.join("\n")));
        // A dash, not a colon: titles such as "SMS to … failed: Message Failed" have one.
        notification = format!("{notification} — {}", one_line(body, MAX_FIELD_CHARS));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(context)}]}),
    );
    // Unfurling off: a URL inside an SMS must not pull a preview into the channel.
    fit(json!({
        "text": escape(&notification),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    }))
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// `TextUs · type · time · short ids`: what an operator needs to find the event, with no link.
fn context_line(event_type: &str, event: &Value) -> String {
    let mut parts = vec!["TextUs".to_owned(), one_line(event_type, MAX_FIELD_CHARS)];
    let time = field(event, &["timestamp"]).filter(|t| {
        t.chars()
            .all(|c| c.is_ascii_digit() || "-:.TZ+ ".contains(c))
    });
    parts.extend(time);
    let opt = ["optOut", "optIn", "opt_out", "opt_in"]
        .iter()
        .find_map(|k| event.get(*k));
    let ids = [
        ("delivery", event.get("id")),
        ("conversation", event.get("conversation")),
        ("message", event.get("message")),
        ("call", call_object(event)),
        ("opt-out", opt),
        ("contact", event.get("contact")),
    ];
    for (label, link) in ids {
        parts.extend(short_id(link).map(|id| format!("{label} {id}")));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" · ")
}

#[cfg(test)]
mod tests;
