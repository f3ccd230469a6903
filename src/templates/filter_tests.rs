//! The relay's filters, rendered through real templates over the fixtures.

use serde_json::{Value as Json, json};

use super::tests::{ctx, fixture, leaf, render, src};
use super::*;

#[test]
fn slack_escape_filter() {
    let mut event = fixture("message.received");
    event["message"]["body"] = json!("<!channel> & <@U123> \"hi\" <https://x|y>");
    let t_ctx = RenderContext::new(
        &event,
        Meta {
            event_type: String::new(),
            event_id: String::new(),
            received_at: String::new(),
            target: String::new(),
        },
    );
    let mut t = Templates::new();
    let id = t
        .text(&src("{{ event.message.body | slack_escape }}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        t.render_text(id, &t_ctx).ok().as_deref(),
        Some("&lt;!channel&gt; &amp; &lt;@U123&gt; \"hi\" &lt;https://x|y&gt;")
    );
    assert_eq!(
        render(
            "{{ event.message.body | slack_escape }}",
            "message.received"
        ),
        "Hi, yes I can start Monday. Is 7am ok? &lt;see pic&gt; &amp; thanks!"
    );
    assert_eq!(
        render(
            "{{ 3 | slack_escape }}[{{ event.nope | slack_escape }}]",
            "message.received"
        ),
        "3[]"
    );
}

#[test]
fn phone_filters() {
    assert_eq!(
        render(
            "{{ '(303) 555-1234' | e164 }} {{ '3035551234' | e164 }} {{ '+44 20 7946 0958' | e164 }}",
            "contact.created"
        ),
        "+13035551234 +13035551234 +442079460958"
    );
    assert_eq!(
        render("{{ 'x12' | e164 }}|{{ 5 | e164 }}", "contact.created"),
        "x12|5"
    );
    assert_eq!(
        render(
            "{{ event.conversation.phoneNumber | phone }}",
            "message.received"
        ),
        "(303) 555-1234"
    );
    assert_eq!(
        render(
            "{{ '+442079460958' | phone }} {{ '3035551234' | phone }} {{ '+1303555123' | phone }}",
            "contact.created"
        ),
        "+442079460958 3035551234 +1303555123"
    );
    assert_eq!(
        render("{{ '303.555.1234' | e164 | phone }}", "contact.created"),
        "(303) 555-1234"
    );
    assert_eq!(
        leaf(
            "{{ event.contact.phones.members[1].formattedPhoneNumber | e164 }}",
            "contact.created"
        ),
        json!("+13031234567")
    );
}

#[test]
fn truncate_filter() {
    let received = "message.received";
    assert_eq!(
        render("{{ event.message.body | truncate(10) }}", received),
        "Hi, yes I…"
    );
    assert_eq!(
        render(
            "{{ event.message.body | truncate(length=10, end='...') }}",
            received
        ),
        "Hi, yes..."
    );
    assert_eq!(
        render("{{ 'héllo wörld' | truncate(6, '') }}", received),
        "héllo "
    );
    assert_eq!(render("{{ 'short' | truncate }}", received), "short");
    let long = render("{{ 'ab' * 200 }}", received);
    assert_eq!(
        render("{{ ('é' * 300) | truncate }}", received)
            .chars()
            .count(),
        255
    );
    assert!(render("{{ ('ab' * 200) | truncate }}", received).ends_with('…'));
    assert_eq!(long.len(), 400);
    // Misuse is a render error naming the key, not a panic.
    let mut t = Templates::new();
    for bad in [
        "{{ 'x' | truncate(-1) }}",
        "{{ 'x' | truncate(wat=1) }}",
        "{{ 'x' | truncate(2, end='y', length=3) }}",
    ] {
        let id = t.text(&src(bad)).unwrap_or_else(|e| panic!("{e}"));
        let err = t.render_text(id, &ctx(received)).err();
        assert_eq!(
            err.map(|e| e.key),
            Some("targets.t.template".to_owned()),
            "{bad}"
        );
    }
}

#[test]
fn tojson_filter() {
    let out = render(
        "{{ event.message.attachments.members | tojson }}",
        "message.received",
    );
    let parsed: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert_eq!(
        parsed,
        fixture("message.received")["message"]["attachments"]["members"]
    );
    assert_eq!(
        render("{{ event.message.body | tojson }}", "message.received")
            .chars()
            .next(),
        Some('"')
    );
}

#[test]
fn date_and_timestamp_filters() {
    assert_eq!(
        render("{{ event.timestamp | date }}", "message.received"),
        "2024-05-14 16:02"
    );
    assert_eq!(
        render(
            "{{ event.timestamp | date('%d %b %Y %H:%M:%S %z') }}",
            "message.delivered"
        ),
        "17 Nov 2023 13:59:04 -0500"
    );
    assert_eq!(
        render(
            "{{ event.timestamp | date(format='%Y') }}",
            "contact.opted_out"
        ),
        "2021"
    );
    assert_eq!(
        render(
            "{{ 'soon' | date }}|{{ event.nope | date }}",
            "contact.created"
        ),
        "soon|"
    );
    assert_eq!(
        leaf("{{ event.timestamp | timestamp_ms }}", "message.received"),
        json!(1_715_702_531_482i64)
    );
    assert_eq!(
        leaf("{{ event.timestamp | timestamp_ms }}", "message.delivered"),
        json!(1_700_247_544_568i64)
    );
    assert_eq!(
        leaf("{{ 'soon' | timestamp_ms }}", "message.received"),
        json!("soon")
    );
    assert_eq!(
        leaf("{{ event.nope | timestamp_ms }}", "message.received"),
        json!("")
    );
}

// Regression: #5 (found with hostile seeds for the templates fuzz target: a huge indent wrote
// gigabytes of spaces before fuel was charged, hanging the render).
#[test]
fn tojson_refuses_huge_indents_and_still_costs_fuel() {
    let pretty = render(
        "{{ event.message.attachments | tojson(indent=2) }}",
        "message.received",
    );
    assert!(pretty.contains("\n  \""), "{pretty}");
    assert_eq!(
        render("{{ [1] | tojson(true) }}", "message.received"),
        "[\n  1\n]"
    );
    let mut t = Templates::new();
    for text in [
        "{{ event | tojson(indent=1000000000) }}",
        "{{ event | tojson(1000000000) }}",
        "{{ event | tojson(2, indent=2) }}",
    ] {
        let id = t.text(&src(text)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            t.render_text(id, &ctx("message.received")).is_err(),
            "{text}"
        );
    }
    // The fuel minijinja's own tojson charges per byte written is charged by ours too: 20,000
    // serialisations of a fixture cost ~12 million, over the budget.
    let id = t
        .text(&src(
            "{% for i in range(20000) %}{{ event | tojson }}{% endfor %}",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = t.render_text(id, &ctx("message.received")).err();
    assert!(err.is_some_and(|e| e.message.contains("fuel")));
}
