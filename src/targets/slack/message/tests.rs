//! Tests for the built-in messages, over the eight fixtures and hostile or odd events.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::events::duration;
use super::fields::{nanp, phone};
use super::*;
use crate::targets::slack::mrkdwn::{
    MAX_BLOCKS_TEXT_CHARS, MAX_SECTION_TEXT_CHARS, MAX_TEXT_CHARS,
};

const TYPES: [&str; 8] = [
    "message.received",
    "message.delivered",
    "message.failed",
    "message.unknown",
    "phone_call.completed",
    "contact.opted_out",
    "contact.opted_in",
    "contact.created",
];

const HOSTILE: &str = "<!channel> <@U123> <https://evil|click> & more";

fn fixture(event_type: &str) -> Value {
    let path = format!("{}/fixtures/{event_type}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every string leaf of `value` (keys excluded).
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The notification text and every block text, as one string to search.
fn all_text(message: &Value) -> String {
    strings(message).join("\n")
}

fn with_every_string(value: &Value, replacement: &str) -> Value {
    match value {
        Value::String(_) => Value::String(replacement.to_owned()),
        Value::Array(items) => items
            .iter()
            .map(|v| with_every_string(v, replacement))
            .collect(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_every_string(v, replacement)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The message has a non-empty text and a non-empty list of blocks with non-empty texts.
fn assert_well_formed(message: &Value) {
    let text = message["text"].as_str().unwrap_or_default();
    assert!(!text.trim().is_empty(), "{message}");
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    assert!(!blocks.is_empty(), "{message}");
    for block in &blocks {
        let inner = strings(block);
        assert!(inner.iter().all(|s| !s.trim().is_empty()), "{block}");
    }
}

/// No Slack control sequence can come out of `message`: no `<` at all, `>` only as our quote
/// marker at the start of a line, and every `&` the start of an entity.
fn assert_inert(message: &Value) {
    for text in strings(message) {
        assert!(!text.contains('<'), "{text}");
        for line in text.lines() {
            assert!(!line.get(1..).unwrap_or_default().contains('>'), "{line}");
        }
        for (i, _) in text.match_indices('&') {
            assert!(
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| text[i..].starts_with(e)),
                "{text}"
            );
        }
    }
}

#[test]
fn fixtures_give_eight_distinct_messages() {
    let mut texts = HashSet::new();
    let mut blocks = HashSet::new();
    for event_type in TYPES {
        let message = builtin(event_type, &fixture(event_type));
        assert_well_formed(&message);
        assert_inert(&message);
        texts.insert(message["text"].to_string());
        blocks.insert(message["blocks"].to_string());
    }
    assert_eq!(texts.len(), 8, "{texts:?}");
    assert_eq!(blocks.len(), 8);
}

#[test]
fn each_fixture_says_who_which_number_and_what_happened() {
    let expected: [(&str, &str, &[&str]); 8] = [
        (
            "message.received",
            "New SMS from Jamel Hirthe",
            &["From (303) 555-1234 to TextUs line (303) 555-0100 · 1 attachment"],
        ),
        (
            "message.delivered",
            "SMS delivered to Jamel Hirthe",
            &[
                "to (303) 555-1234",
                "TextUs line (303) 555-0100",
                "sent by Chuck Norris",
            ],
        ),
        (
            "message.failed",
            "SMS to (303) 555-9876 failed: Message Failed",
            &[
                "From TextUs line (303) 555-0100 to (303) 555-9876",
                "scheduled",
            ],
        ),
        (
            "message.unknown",
            "Delivery status unknown for SMS to Jamel Hirthe",
            &["(303) 555-1234", "TextUs allows a retry"],
        ),
        (
            "phone_call.completed",
            "Call with Jamel Hirthe completed (3m 04s)",
            &[
                "Outgoing call from TextUs line (303) 555-0100 to (303) 555-1234",
                "by Chuck Norris",
            ],
        ),
        (
            "contact.opted_out",
            "(303) 555-1234 opted out of SMS",
            &[
                "Requested by the contact",
                "Acme Staffing - Denver",
                "any account",
            ],
        ),
        (
            "contact.opted_in",
            "(303) 555-1234 opted back in to SMS",
            &["Recorded by Chuck Norris", "can text this number again"],
        ),
        (
            "contact.created",
            "New contact: Cordell Walker",
            &[
                "Mobile (720) 333-1234",
                "Work (303) 123-4567 ext. 2921",
                "Walker Ranch Supply",
                "Tags: lead, webform",
            ],
        ),
    ];
    for (event_type, title, details) in expected {
        let message = builtin(event_type, &fixture(event_type));
        let text = message["text"].as_str().unwrap_or_default();
        assert!(text.starts_with(title), "{event_type}: {text}");
        let head = message
            .pointer("/blocks/0/text/text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            head.starts_with(&format!("*{title}*\n")),
            "{event_type}: {head}"
        );
        for detail in details {
            assert!(
                head.contains(detail),
                "{event_type}: {detail:?} not in {head}"
            );
        }
    }
}

#[test]
fn received_body_is_quoted_and_escaped() {
    let message = builtin("message.received", &fixture("message.received"));
    let quote = message
        .pointer("/blocks/1/text/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert_eq!(
        quote,
        ">Hi, yes I can start Monday. Is 7am ok? &lt;see pic&gt; &amp; thanks!"
    );
    let text = message["text"].as_str().unwrap_or_default();
    assert!(text.contains("&lt;see pic&gt; &amp; thanks"), "{text}");
    assert!(!all_text(&message).contains("<see pic>"));
}

#[test]
fn every_sms_event_quotes_its_body() {
    for event_type in &TYPES[..4] {
        let event = fixture(event_type);
        let body = event["message"]["body"].as_str().unwrap_or_default();
        let message = builtin(event_type, &event);
        let quote = message
            .pointer("/blocks/1/text/text")
            .and_then(Value::as_str);
        assert_eq!(
            quote,
            Some(format!(">{}", escape(body)).as_str()),
            "{event_type}"
        );
    }
}

#[test]
fn multi_line_bodies_quote_every_line() {
    let event = json!({"message": {"body": "one\r\ntwo\n\nthree"}});
    let message = builtin("message.received", &event);
    let quote = message
        .pointer("/blocks/1/text/text")
        .and_then(Value::as_str);
    assert_eq!(quote, Some(">one\n>two\n>\n>three"));
}

#[test]
fn context_line_has_type_time_and_ids_but_no_links() {
    let message = builtin("message.received", &fixture("message.received"));
    let blocks = message["blocks"].as_array().cloned().unwrap_or_default();
    let context = blocks
        .last()
        .and_then(|b| b.pointer("/elements/0/text"))
        .and_then(Value::as_str);
    assert_eq!(
        context,
        Some(
            "TextUs · message.received · 2024-05-14T16:02:11.482Z · delivery 7bq2Lk9 · conversation JYnJBY · message 06oyogE"
        )
    );
    for event_type in TYPES {
        let text = all_text(&builtin(event_type, &fixture(event_type)));
        for link in [
            "http",
            "/conversations/",
            "/messages/",
            "/integrations/",
            "textus.example",
            "@example.com",
        ] {
            assert!(!text.contains(link), "{event_type}: {link} in {text}");
        }
    }
}

#[test]
fn hostile_text_in_every_string_field_stays_inert() {
    for event_type in TYPES {
        let event = with_every_string(&fixture(event_type), HOSTILE);
        let message = builtin(event_type, &event);
        assert_well_formed(&message);
        assert_inert(&message);
        assert!(
            all_text(&message).contains("&lt;!channel&gt;"),
            "{event_type}: {message}"
        );
    }
    let message = builtin(
        "<!here|x>",
        &json!({"conversation": {"phoneNumber": HOSTILE}}),
    );
    assert_inert(&message);
    assert!(
        message["text"]
            .as_str()
            .is_some_and(|t| t.contains("&lt;!here|x&gt;"))
    );
}

#[test]
fn odd_shapes_give_a_generic_message_without_panicking() {
    let odd = [
        json!(null),
        json!([]),
        json!([1, {"message": {}}]),
        json!(42),
        json!("message.received"),
        json!(true),
        json!({}),
        json!({"conversation": 5, "message": [1], "optOut": "x", "contact": null, "phoneCall": 3}),
        json!({"message": {"body": null, "attachments": "iri", "flags": "x"}, "conversation": "/conversations/a"}),
    ];
    for event in &odd {
        for event_type in TYPES.iter().chain(&["", "future.event"]) {
            let message = builtin(event_type, event);
            assert_well_formed(&message);
            assert_inert(&message);
        }
        let message = builtin("message.received", event);
        if !event.get("message").is_some_and(Value::is_object) {
            let text = message["text"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("TextUs event: message.received"),
                "{event}: {text}"
            );
        }
    }
    let generic = builtin("", &json!(null));
    assert_eq!(generic["text"], "TextUs event");
    assert!(all_text(&generic).contains("not a JSON object"));
}

#[test]
fn numbers_where_strings_are_expected_still_read() {
    let event = json!({
        "conversation": {"phoneNumber": 13035551234_u64, "assignedContact": {"name": 7}},
        "message": {"body": 12, "attachments": {"totalItems": "x", "members": [{}, {}]}},
        "phoneCall": {"duration": "65"},
    });
    let received = builtin("message.received", &event);
    assert!(
        received["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("New SMS from 7 — 12")),
        "{received}"
    );
    assert!(all_text(&received).contains("From (303) 555-1234 · 2 attachments"));
    let call = builtin("phone_call.completed", &event);
    assert!(
        call["text"]
            .as_str()
            .is_some_and(|t| t.contains("completed (1m 05s)")),
        "{call}"
    );
}

#[test]
fn unknown_event_types_get_a_generic_message_with_what_is_known() {
    let message = builtin("message.scheduled", &fixture("message.received"));
    let text = all_text(&message);
    assert!(
        message["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("TextUs event: message.scheduled"))
    );
    assert!(
        text.contains("Contact Jamel Hirthe · number (303) 555-1234 · TextUs line (303) 555-0100"),
        "{text}"
    );
    assert!(text.contains(">Hi, yes I can start Monday"));
}

#[test]
fn huge_bodies_are_fitted_without_breaking_escapes() {
    let mut event = fixture("message.received");
    event["message"]["body"] = json!("<&>é😀\n".repeat(20_000));
    event["conversation"]["assignedContact"]["name"] = json!("&".repeat(5_000));
    let message = builtin("message.received", &event);
    assert_inert(&message);
    assert!(
        message["text"]
            .as_str()
            .is_some_and(|t| t.chars().count() <= MAX_TEXT_CHARS)
    );
    let mut total = 0;
    for block in message["blocks"].as_array().into_iter().flatten() {
        for text in strings(block)
            .iter()
            .filter(|t| !["section", "mrkdwn", "context"].contains(&t.as_str()))
        {
            assert!(
                text.chars().count() <= MAX_SECTION_TEXT_CHARS,
                "{}",
                text.len()
            );
            total += text.chars().count();
        }
    }
    assert!(total <= MAX_BLOCKS_TEXT_CHARS);
    let quote = message
        .pointer("/blocks/1/text/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        quote.starts_with(">&lt;&amp;&gt;é😀\n>") && quote.ends_with('…'),
        "{}",
        &quote[..40]
    );
}

#[test]
fn opt_changes_read_other_keys_and_contact_names() {
    let event = json!({"optIn": {"phoneNumber": "5558765559", "contact": {"firstName": "Ana", "lastName": "Ruiz"}, "createdVia": "Api"}});
    let message = builtin("contact.opted_in", &event);
    let head = message
        .pointer("/blocks/0/text/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        head.starts_with("*Ana Ruiz opted back in to SMS*\nNumber (555) 876-5559 · via Api"),
        "{head}"
    );
}

#[test]
fn a_single_associated_contact_names_the_conversation() {
    let event = json!({
        "conversation": {"phoneNumber": "+13035551234", "assignedContact": null,
                         "associatedContacts": {"members": [{"name": "Pat Lee"}], "totalItems": 1}},
        "message": {"body": "hi"},
    });
    assert!(
        builtin("message.received", &event)["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("New SMS from Pat Lee"))
    );
}

#[test]
fn nanp_numbers_are_formatted_and_others_kept() {
    assert_eq!(nanp("+13035551234").as_deref(), Some("(303) 555-1234"));
    assert_eq!(nanp("1-303-555-1234").as_deref(), Some("(303) 555-1234"));
    assert_eq!(nanp("5558765559").as_deref(), Some("(555) 876-5559"));
    assert_eq!(nanp("(303) 555-1234").as_deref(), Some("(303) 555-1234"));
    for other in [
        "+447700900123",
        "+4930355512",
        "12345",
        "0035551234",
        "+1 303 555 12345",
        "303-555-1234 x2",
    ] {
        assert_eq!(nanp(other), None, "{other}");
    }
    let uk = json!({"phoneNumber": "+447700900123", "formattedPhoneNumber": "07700 900123"});
    assert_eq!(
        phone(Some(&uk), "phoneNumber", "formattedPhoneNumber").as_deref(),
        Some("07700 900123")
    );
}

#[test]
fn durations_read_as_people_say_them() {
    let cases = [
        (json!(0), Some("0s")),
        (json!(59.6), Some("1m 00s")),
        (json!(184), Some("3m 04s")),
        (json!(3725), Some("1h 02m 05s")),
        (json!(-1), None),
        (json!("abc"), None),
        (json!(null), None),
    ];
    for (value, expected) in cases {
        assert_eq!(duration(&value).as_deref(), expected, "{value}");
    }
}

#[test]
fn names_cannot_break_lines_or_reorder_text() {
    let event = json!({"contact": {"name": "Evil\n>quoted\u{202E}txet", "phones": []}});
    let head = builtin("contact.created", &event)
        .pointer("/blocks/0/text/text")
        .and_then(Value::as_str)
        .map(str::to_owned);
    assert_eq!(head.as_deref(), Some("*New contact: Evil &gt;quotedtxet*"));
}
