//! One draft per TextUs event type, from the fields that type carries: an SMS and its delivery
//! states, a phone call, an opt-out or opt-in, a new contact, and the generic message for
//! anything else. Drafts hold raw event text; [`super::render`] escapes it.

use serde_json::Value;

use super::fields::{at, body_text, field, one_line, person, phone, text};
use super::{Draft, MAX_FIELD_CHARS, MAX_LISTED};

pub(super) fn sms(kind: &str, event: &Value) -> Option<Draft> {
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

pub(super) fn phone_call(event: &Value) -> Option<Draft> {
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

pub(super) fn opt_change(event: &Value, opted_in: bool) -> Option<Draft> {
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

pub(super) fn contact_created(event: &Value) -> Option<Draft> {
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
pub(super) fn generic(event_type: &str, event: &Value) -> Draft {
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

/// Who a conversation is with, and on which TextUs line.
pub(super) struct Parties {
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
pub(super) fn route(from: Option<String>, to: Option<String>) -> Option<String> {
    match (from, to) {
        (Some(f), Some(t)) => Some(format!("from {f} to {t}")),
        (Some(f), None) => Some(format!("from {f}")),
        (None, Some(t)) => Some(format!("to {t}")),
        (None, None) => None,
    }
}

/// The known facts as one line, `·`-separated, capitalised.
pub(super) fn sentence(facts: Vec<Option<String>>) -> Option<String> {
    let joined = facts.into_iter().flatten().collect::<Vec<_>>().join(" · ");
    let mut chars = joined.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

pub(super) fn attachments(message: &Value) -> Option<String> {
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
pub(super) fn call_object(event: &Value) -> Option<&Value> {
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
pub(super) fn duration(seconds: &Value) -> Option<String> {
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
