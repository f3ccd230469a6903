//! The built-in Slack message for each TextUs event type: [`builtin`].
//!
//! Builders collect raw event text into a [`Draft`]; only [`render`] turns a draft into Slack
//! JSON, and it passes every draft string through [`escape`] before adding our own markup
//! (`*title*`, `>` quotes). So no SMS body, name or id can mention `@channel`, open a link or
//! break the layout, whichever builder it came through.
//!
//! Every field is optional, and a link may be an IRI string, an embedded object or null
//! (textus-webhooks.md §1.7): builders read only through [`Value::get`], which yields `None` on
//! any other shape, and a builder without its event's main object gives way to the generic
//! message. Nothing here emits a URL: ids are shown as the last segment of their IRI.

use serde_json::{Value, json};

use super::mrkdwn::{fit, truncate};
use crate::templates::mrkdwn::escape;

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

fn sms(kind: &str, event: &Value) -> Option<Draft> {
    let message = event.get("message").filter(|m| m.is_object())?;
    let who = Parties::of(event);
    let name = who.label();
    let title = match (kind, field(message, &["friendlyStateDescription"])) {
        ("message.received", _) => format!("New SMS from {name}"),
        ("message.delivered", _) => format!("SMS delivered to {name}"),
        ("message.failed", Some(why)) => format!("SMS to {name} failed: {why}"),
        ("message.failed", None) => format!("SMS to {name} failed"),
        _ => format!("Delivery status unknown for SMS to {name}"),
    };
    let line = who.line.map(|l| format!("TextUs line {l}"));
    let mut facts = if kind == "message.received" {
        vec![route(who.number, line)]
    } else {
        let sender = person(message.get("sender")).map(|s| format!("sent by {s}"));
        vec![route(line, who.number), sender]
    };
    facts.push(attachments(message));
    if let Some(Value::Array(flags)) = message.get("flags") {
        facts.extend(flags.iter().take(MAX_LISTED).map(|f| text(Some(f))));
    }
    if field(message, &["deliveryState"]).as_deref() == Some("failed_transient") {
        facts.push(Some("temporary failure, TextUs may retry".into()));
    }
    if kind == "message.unknown" && message.get("retryAllowed") == Some(&Value::Bool(true)) {
        facts.push(Some("TextUs allows a retry".into()));
    }
    let body = message.get("body").and_then(body_text);
    if body.is_none() {
        facts.push(Some("no text".into()));
    }
    Some(Draft {
        title,
        details: sentence(facts).into_iter().collect(),
        body,
    })
}

fn phone_call(event: &Value) -> Option<Draft> {
    let call = call_object(event);
    if call.is_none() && !event.get("conversation").is_some_and(Value::is_object) {
        return None;
    }
    let who = Parties::of(event);
    let title = match call.and_then(|c| c.get("duration")).and_then(duration) {
        Some(took) => format!("Call with {} completed ({took})", who.label()),
        None => format!("Call with {} completed", who.label()),
    };
    let line = who.line.map(|l| format!("TextUs line {l}"));
    let direction = call
        .and_then(|c| field(c, &["direction"]))
        .unwrap_or_default();
    let way = match direction.to_ascii_lowercase().as_str() {
        "in" | "incoming" | "inbound" => {
            route(who.number, line).map(|r| format!("incoming call {r}"))
        }
        "out" | "outgoing" | "outbound" => {
            route(line, who.number).map(|r| format!("outgoing call {r}"))
        }
        _ => match (who.number, line) {
            (Some(n), Some(l)) => Some(format!("call between {n} and {l}")),
            (n, l) => n.or(l).map(|one| format!("call with {one}")),
        },
    };
    let caller = call
        .and_then(|c| person(c.get("caller")))
        .map(|c| format!("by {c}"));
    Some(Draft {
        title,
        details: sentence(vec![way, caller]).into_iter().collect(),
        body: None,
    })
}

fn opt_change(event: &Value, opted_in: bool) -> Option<Draft> {
    // §1.5.4: seen under `optOut` for both directions; the other spellings are guesses.
    let opt = ["optOut", "optIn", "opt_out", "opt_in"]
        .iter()
        .find_map(|key| event.get(*key).filter(|v| v.is_object()))?;
    let number = phone(Some(opt), "phoneNumber", "formattedPhoneNumber");
    let name = person(opt.get("contact"));
    let who = name.clone().or_else(|| number.clone());
    let title = match (who, opted_in) {
        (Some(w), false) => format!("{w} opted out of SMS"),
        (Some(w), true) => format!("{w} opted back in to SMS"),
        (None, false) => "A contact opted out of SMS".to_owned(),
        (None, true) => "A contact opted back in to SMS".to_owned(),
    };
    let by = person(opt.get("user"))
        .map(|u| format!("recorded by {u}"))
        .or_else(|| match field(opt, &["createdVia"]).as_deref() {
            Some("Contact") => Some("requested by the contact".to_owned()),
            Some(via) => Some(format!("via {via}")),
            None => None,
        });
    let facts = vec![
        name.and(number).map(|n| format!("number {n}")),
        by,
        field(opt, &["originatingAccount", "name"]).map(|a| format!("account {a}")),
    ];
    // T9: opt-outs apply to the whole organisation, not just the account that recorded them.
    let effect = if opted_in {
        "TextUs can text this number again"
    } else {
        "TextUs will not text this number from any account in the organization"
    };
    let mut details: Vec<String> = sentence(facts).into_iter().collect();
    details.push(effect.to_owned());
    Some(Draft {
        title,
        details,
        body: None,
    })
}

fn contact_created(event: &Value) -> Option<Draft> {
    let contact = event.get("contact").filter(|c| c.is_object())?;
    let mut phones = Vec::new();
    let members = at(contact, &["phones", "members"]).and_then(Value::as_array);
    for member in members.into_iter().flatten().take(MAX_LISTED) {
        let Some(number) = phone(Some(member), "phoneNumber", "formattedPhoneNumber") else {
            continue;
        };
        let kind = field(member, &["type"])
            .map(|k| format!("{k} "))
            .unwrap_or_default();
        let ext = field(member, &["extension"])
            .map(|e| format!(" ext. {e}"))
            .unwrap_or_default();
        phones.push(format!("{kind}{number}{ext}"));
    }
    let listed = members.map_or(0, Vec::len);
    if listed > MAX_LISTED {
        phones.push(format!("and {} more", listed - MAX_LISTED));
    }
    if phones.is_empty() {
        phones.extend(phone(Some(contact), "phoneNumber", "formattedPhoneNumber"));
    }
    let title = match person(Some(contact)).or_else(|| phones.first().cloned()) {
        Some(who) => format!("New contact: {who}"),
        None => "New contact created".to_owned(),
    };
    let mut details = Vec::new();
    if !phones.is_empty() {
        details.push(format!("Phones: {}", phones.join(", ")));
    }
    // `data` is free-form CRM data; only its documented keys are shown (no emails in Slack).
    if let Some(business) = field(contact, &["data", "businessName"]) {
        details.push(format!("Business: {business}"));
    }
    if let Some(Value::Array(tags)) = at(contact, &["data", "tags"]) {
        let tags: Vec<String> = tags
            .iter()
            .take(MAX_LISTED * 2)
            .filter_map(|t| text(Some(t)))
            .collect();
        if !tags.is_empty() {
            details.push(format!("Tags: {}", tags.join(", ")));
        }
    }
    Some(Draft {
        title,
        details,
        body: None,
    })
}

/// Any event the relay has no message for, or whose shape it cannot read.
fn generic(event_type: &str, event: &Value) -> Draft {
    let kind = one_line(event_type, MAX_FIELD_CHARS);
    let title = if kind.is_empty() {
        "TextUs event".to_owned()
    } else {
        format!("TextUs event: {kind}")
    };
    let who = Parties::of(event);
    let facts = vec![
        who.name.map(|n| format!("contact {n}")),
        who.number.map(|n| format!("number {n}")),
        who.line.map(|l| format!("TextUs line {l}")),
    ];
    let mut details: Vec<String> = sentence(facts).into_iter().collect();
    if !event.is_object() {
        details.push("The event body is not a JSON object".to_owned());
    } else if details.is_empty() {
        details.push("No contact details in this event".to_owned());
    }
    let body = at(event, &["message", "body"]).and_then(body_text);
    Draft {
        title,
        details,
        body,
    }
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

/// The last segment of a link's IRI (`/messages/QNDkpL` → `QNDkpL`), when it is a plain slug:
/// a slug cannot be a URL, so Slack has nothing to turn into a link.
fn short_id(link: Option<&Value>) -> Option<String> {
    let iri = match link? {
        Value::String(s) => s.as_str(),
        object => object.get("id")?.as_str()?,
    };
    let slug = iri.rsplit('/').find(|s| !s.is_empty())?;
    let plain = slug.len() <= 64
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then(|| slug.to_owned())
}

/// Who a conversation is with, and on which TextUs line.
struct Parties {
    name: Option<String>,
    number: Option<String>,
    line: Option<String>,
}

impl Parties {
    fn of(event: &Value) -> Self {
        let conversation = event.get("conversation");
        let single_associate = conversation
            .and_then(|c| at(c, &["associatedContacts", "members"]))
            .and_then(Value::as_array)
            .filter(|members| members.len() == 1)
            .and_then(|members| person(members.first()));
        Parties {
            name: conversation
                .and_then(|c| person(c.get("assignedContact")))
                .or(single_associate),
            number: phone(conversation, "phoneNumber", "formattedPhoneNumber"),
            line: phone(
                conversation,
                "accountPhoneNumber",
                "formattedAccountPhoneNumber",
            ),
        }
    }

    /// The contact's name, else number, for a title.
    fn label(&self) -> String {
        let known = self.name.as_ref().or(self.number.as_ref());
        known
            .cloned()
            .unwrap_or_else(|| "an unknown number".to_owned())
    }
}

/// "from A to B", or whichever end is known.
fn route(from: Option<String>, to: Option<String>) -> Option<String> {
    match (from, to) {
        (Some(f), Some(t)) => Some(format!("from {f} to {t}")),
        (Some(f), None) => Some(format!("from {f}")),
        (None, Some(t)) => Some(format!("to {t}")),
        (None, None) => None,
    }
}

/// The known facts as one line, `·`-separated, capitalised.
fn sentence(facts: Vec<Option<String>>) -> Option<String> {
    let joined = facts.into_iter().flatten().collect::<Vec<_>>().join(" · ");
    let mut chars = joined.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

fn attachments(message: &Value) -> Option<String> {
    let collection = message.get("attachments")?;
    let count = match collection.get("totalItems").and_then(Value::as_u64) {
        Some(n) => n,
        None => collection.get("members")?.as_array()?.len() as u64,
    };
    match count {
        0 => None,
        1 => Some("1 attachment".to_owned()),
        n => Some(format!("{n} attachments")),
    }
}

/// §1.5.5: the call object's key is a guess, so any object whose `@type` names a call will do.
fn call_object(event: &Value) -> Option<&Value> {
    if let Some(call) = event.get("phoneCall").filter(|c| c.is_object()) {
        return Some(call);
    }
    let is_call = |v: &&Value| {
        v.get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("Call"))
    };
    event.as_object()?.values().find(is_call)
}

/// Seconds as `45s`, `3m 04s` or `1h 02m 05s`.
fn duration(seconds: &Value) -> Option<String> {
    let secs = match seconds {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    // Guarded so the cast below cannot saturate; a call over ~115 days is not a real value.
    if !secs.is_finite() || !(0.0..1e7).contains(&secs) {
        return None;
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    Some(match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    })
}

/// A display number: NANP as `(303) 555-1234` (from the E.164 field first, §1.7), else the
/// formatted field, else the raw one.
fn phone(object: Option<&Value>, e164_key: &str, formatted_key: &str) -> Option<String> {
    let object = object?;
    let e164 = field(object, &[e164_key]);
    let formatted = field(object, &[formatted_key]);
    let nanp_form = e164
        .as_deref()
        .and_then(nanp)
        .or_else(|| formatted.as_deref().and_then(nanp));
    nanp_form.or(formatted).or(e164)
}

/// `+13035551234`, `13035551234`, `3035551234` or `(303) 555-1234` as `(303) 555-1234`; None
/// for anything that is not a North American number.
fn nanp(number: &str) -> Option<String> {
    if !number
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return None;
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let international = number.trim_start().starts_with('+');
    let national = match digits.len() {
        11 if digits.starts_with('1') => &digits[1..],
        // `+` and ten digits is another country's number, not a NANP one without its 1.
        10 if !international => &digits[..],
        _ => return None,
    };
    // Area codes never start with 0 or 1.
    if national.starts_with(['0', '1']) {
        return None;
    }
    Some(format!(
        "({}) {}-{}",
        &national[..3],
        &national[3..6],
        &national[6..]
    ))
}

/// A person's display name: `name`, else `firstName lastName`. None for an IRI or null.
fn person(value: Option<&Value>) -> Option<String> {
    let value = value?;
    field(value, &["name"]).or_else(|| {
        let parts: Vec<String> = [field(value, &["firstName"]), field(value, &["lastName"])]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn field(value: &Value, path: &[&str]) -> Option<String> {
    text(at(value, path))
}

/// A string or number as one display line; None for other shapes or when blank.
fn text(value: Option<&Value>) -> Option<String> {
    let shown = match value? {
        Value::String(s) => one_line(s, MAX_FIELD_CHARS),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!shown.is_empty()).then_some(shown)
}

/// An SMS body keeps its line breaks; other control characters become spaces.
fn body_text(value: &Value) -> Option<String> {
    let raw = match value {
        Value::String(s) => s.replace("\r\n", "\n"),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let cleaned: String = raw
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .map(|c| if c != '\n' && c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| truncate(trimmed, MAX_BODY_CHARS))
}

/// `raw` on one line: a name with a line break must not start a quote or split the title.
fn one_line(raw: &str, max_chars: usize) -> String {
    let visible: String = raw.chars().filter(|c| !is_bidi_control(*c)).collect();
    let words: Vec<&str> = visible
        .split(|c: char| c.is_whitespace() || c.is_control())
        .collect();
    let joined = words
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    truncate(&joined, max_chars)
}

/// Bidi overrides and marks would let a name visually reorder the text around it.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests;
