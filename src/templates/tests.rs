//! Templates rendered over the real TextUs fixtures: missing fields, typed
//! leaves, conditions and errors. Filters are in `filter_tests.rs`, limits in `limit_tests.rs`.

use serde_json::{Value as Json, json};

use super::*;
use crate::config::{BodyTemplate, TemplateSource};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/");

pub(super) fn fixture(name: &str) -> Json {
    let path = format!("{FIXTURES}{name}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

pub(super) fn ctx(name: &str) -> RenderContext {
    let event = fixture(name);
    let meta = Meta {
        event_type: name.to_owned(),
        event_id: event["id"].as_str().unwrap_or_default().to_owned(),
        received_at: "2024-05-14T16:02:12.001Z".to_owned(),
        target: "support-slack".to_owned(),
    };
    RenderContext::new(&event, meta)
}

pub(super) fn src_at(text: &str, line: usize, column: usize, key: &str) -> TemplateSource {
    TemplateSource {
        text: text.to_owned(),
        line,
        column,
        key: key.to_owned(),
    }
}

pub(super) fn src(text: &str) -> TemplateSource {
    src_at(text, 1, 1, "targets.t.template")
}

/// Renders one text template over fixture `event`.
pub(super) fn render(text: &str, event: &str) -> String {
    let mut t = Templates::new();
    let id = t
        .text(&src(text))
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    t.render_text(id, &ctx(event))
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Renders one body leaf over fixture `event`.
pub(super) fn leaf(text: &str, event: &str) -> Json {
    let mut t = Templates::new();
    let body = t
        .body(&BodyTemplate::String(src(text)))
        .unwrap_or_else(|e| panic!("{e}"));
    t.render_body(&body, &ctx(event))
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn condition(expr: &str, event: &str) -> bool {
    let mut t = Templates::new();
    let id = t
        .condition(&src(expr))
        .unwrap_or_else(|e| panic!("{expr:?}: {e}"));
    t.test(id, &ctx(event))
        .unwrap_or_else(|e| panic!("{expr:?}: {e}"))
}

fn compile_error(text: &str) -> TemplateError {
    match Templates::new().text(&src_at(text, 12, 7, "targets.t.text")) {
        Ok(_) => panic!("{text:?} compiled"),
        Err(e) => e,
    }
}

#[test]
fn renders_fields_and_meta() {
    assert_eq!(
        render(
            "{{ event.conversation.assignedContact.name }}: {{ event.message.body }}",
            "message.received"
        ),
        "Jamel Hirthe: Hi, yes I can start Monday. Is 7am ok? <see pic> & thanks!"
    );
    assert_eq!(
        render(
            "{{ meta.type }} {{ meta.id }} {{ meta.received_at }} {{ meta.target }}",
            "contact.created"
        ),
        "contact.created /integrations/h13Jc5/deliveries/Qs5dV1e 2024-05-14T16:02:12.001Z support-slack"
    );
}

#[test]
fn missing_fields_render_empty_in_text() {
    assert_eq!(
        render("Hi {{ event.contact.firstName }}!", "message.received"),
        "Hi !"
    );
    assert_eq!(
        render(
            "[{{ event.conversation.assignedContact.data.email }}]",
            "contact.created"
        ),
        "[]"
    );
    assert_eq!(
        render(
            "[{{ event.nope[0].x | upper | e164 | date }}]",
            "message.failed"
        ),
        "[]"
    );
    // JSON null is "absent" too: an inbound message has no sender.
    assert_eq!(
        render("[{{ event.message.sender }}]", "message.received"),
        "[]"
    );
    assert_eq!(
        render(
            "{{ event.conversation.unanswered }}/{{ event.conversation.blocked }}",
            "message.received"
        ),
        "true/false"
    );
}

#[test]
fn missing_fields_render_empty_string_in_typed_leaves() {
    assert_eq!(
        leaf("{{ event.contact.firstName }}", "message.received"),
        json!("")
    );
    assert_eq!(
        leaf(
            "{{ event.conversation.assignedContact.firstName }}",
            "message.failed"
        ),
        json!("")
    );
}

#[test]
fn typed_leaves_keep_json_types() {
    let received = "message.received";
    assert_eq!(
        leaf("{{ event.conversation.unanswered }}", received),
        json!(true)
    );
    assert_eq!(
        leaf("{{ event.message.attachments.totalItems }}", received),
        json!(1)
    );
    assert_eq!(leaf("{{ event.message.sender }}", received), Json::Null);
    assert_eq!(
        leaf("{{ event.conversation.phoneNumber }}", received),
        json!("+13035551234")
    );
    let members = leaf("{{ event.message.attachments.members }}", received);
    assert_eq!(
        members,
        fixture(received)["message"]["attachments"]["members"]
    );
    let data = leaf("{{ event.conversation.assignedContact.data }}", received);
    assert_eq!(
        data,
        json!({"businessName": "Hirthe Logistics", "tags": ["candidate", "forklift"]})
    );
    assert_eq!(
        leaf(
            "{{ event.phoneCall.duration * 1000 }}",
            "phone_call.completed"
        ),
        json!(184_000)
    );
    // Whitespace around the block and whitespace control do not make it text.
    assert_eq!(
        leaf("  {{- event.conversation.blocked -}}\n", received),
        json!(false)
    );
}

#[test]
fn other_leaves_render_to_strings() {
    let received = "message.received";
    assert_eq!(
        leaf("unanswered: {{ event.conversation.unanswered }}", received),
        json!("unanswered: true")
    );
    assert_eq!(
        leaf(
            "{{ event.message.attachments.totalItems }}{{ 1 }}",
            received
        ),
        json!("11")
    );
    assert_eq!(leaf("{{ 1 }} {{ 2 }}", received), json!("1 2"));
    assert_eq!(
        leaf("{% if event.message %}{{ 5 }}{% endif %}", received),
        json!("5")
    );
    assert_eq!(
        leaf("{{ event.conversation | tojson }}", received)["x"],
        Json::Null
    );
    assert!(leaf("{{ event.conversation | tojson }}", received).is_string());
}

#[test]
fn body_trees_keep_structure_and_pass_non_strings_through() {
    let tree = BodyTemplate::Map(vec![
        (
            "properties".to_owned(),
            BodyTemplate::Map(vec![
                (
                    "phone".to_owned(),
                    BodyTemplate::String(src("{{ event.conversation.phoneNumber }}")),
                ),
                (
                    "firstname".to_owned(),
                    BodyTemplate::String(src("{{ event.conversation.assignedContact.firstName }}")),
                ),
                (
                    "note".to_owned(),
                    BodyTemplate::String(src("SMS: {{ event.message.body | truncate(12) }}")),
                ),
            ]),
        ),
        (
            "flags".to_owned(),
            BodyTemplate::List(vec![
                BodyTemplate::Null,
                BodyTemplate::Bool(false),
                BodyTemplate::Number(serde_json::Number::from(42)),
                BodyTemplate::String(src("plain")),
            ]),
        ),
    ]);
    let mut t = Templates::new();
    let body = t.body(&tree).unwrap_or_else(|e| panic!("{e}"));
    let rendered = t
        .render_body(&body, &ctx("message.received"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rendered,
        json!({
            "properties": {"phone": "+13035551234", "firstname": "Jamel", "note": "SMS: Hi, yes I c…"},
            "flags": [null, false, 42, "plain"],
        })
    );
}

#[test]
fn conditions_are_expressions_over_the_event() {
    assert!(condition("event.contact is defined", "contact.created"));
    assert!(!condition("event.contact is defined", "message.received"));
    assert!(condition(
        "event.message.direction == \"in\"",
        "message.received"
    ));
    assert!(!condition(
        "event.message.direction == \"in\"",
        "message.delivered"
    ));
    // Over missing fields: false, not an error.
    assert!(!condition(
        "event.message.direction == \"in\"",
        "contact.created"
    ));
    assert!(!condition("event.nope", "contact.created"));
    assert!(!condition("event.nope.deeper > 3", "contact.created"));
    assert!(condition(
        "meta.type is startingwith('message.') and event.message.attachments.totalItems > 0",
        "message.received"
    ));
    // Written as `{{ expr }}` by habit: still the expression.
    assert!(condition(
        "{{ event.contact is defined }}",
        "contact.created"
    ));
    assert!(!condition(
        "{{ event.contact is defined }}",
        "message.failed"
    ));
}

#[test]
fn syntax_errors_point_into_relay_yaml() {
    let e = compile_error("Hello {{ event.x }}\n{{ event.y | }}");
    assert_eq!((e.line, e.key.as_str()), (13, "targets.t.text"));
    // Source column 7 plus `{{ event.y | ` (13 characters) before the `}}`.
    assert_eq!(e.column, 20, "{e}");
    assert!(e.message.starts_with("syntax error: "), "{e}");
    assert!(
        !e.message.contains("targets.t.text#"),
        "location noise in {:?}",
        e.message
    );
    // On the first line the column is the source column plus the offset.
    let e = compile_error("{{ a b }}");
    assert_eq!((e.line, e.column), (12, 7 + 5));
    assert_eq!(
        e.to_string(),
        format!("targets.t.text: line 12, column 12: {}", e.message)
    );
    // Condition and body-leaf errors carry their own key and line.
    let mut t = Templates::new();
    let when = t.condition(&src_at("event.contact is", 30, 11, "routes.1.when"));
    let Err(e) = when else {
        panic!("condition compiled")
    };
    assert_eq!((e.line, e.key.as_str()), (30, "routes.1.when"));
    let leaf = BodyTemplate::Map(vec![(
        "phone".to_owned(),
        BodyTemplate::String(src_at("x\n\n{% if %}", 40, 3, "targets.h.body.phone")),
    )]);
    let Err(e) = t.body(&leaf) else {
        panic!("body compiled")
    };
    assert_eq!((e.line, e.key.as_str()), (42, "targets.h.body.phone"));
}

#[test]
fn unknown_filters_and_tests_fail_at_compile_time() {
    let e = compile_error("ok\n{{ event.message.body | slack_escpe }}");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (13, 7 + 24, "unknown filter: slack_escpe")
    );
    let e = compile_error("{% filter shout %}x{% endfilter %}");
    assert_eq!(e.message, "unknown filter: shout");
    let mut t = Templates::new();
    let Err(e) = t.condition(&src("event.contact is present")) else {
        panic!("compiled")
    };
    assert_eq!(e.message, "unknown test: present");
    let Err(e) = t.body(&BodyTemplate::String(src("{{ event.x | nope }}"))) else {
        panic!("compiled")
    };
    assert_eq!(e.message, "unknown filter: nope");
    // Builtins and ours are known.
    for ok in [
        "{{ x | upper | default('-') | tojson | truncate(3) }}",
        "{{ x is odd or x is not none }}",
    ] {
        assert!(t.text(&src(ok)).is_ok(), "{ok}");
    }
}

#[test]
fn output_is_never_html_escaped() {
    let mut t = Templates::new();
    let id = t.text(&src_at(
        "{{ event.message.body }}",
        1,
        1,
        "targets.mail.body.html",
    ));
    let id = id.unwrap_or_else(|e| panic!("{e}"));
    let out = t
        .render_text(id, &ctx("message.received"))
        .unwrap_or_default();
    assert!(out.ends_with("<see pic> & thanks!"), "{out}");
}

#[test]
fn slack_templates_escape_interpolated_event_text() {
    let mut t = Templates::new();
    let src = |text: &str| crate::config::TemplateSource {
        text: text.to_string(),
        line: 1,
        column: 1,
        key: "targets.s.templates[\"*\"].text".to_string(),
    };
    let auto = t
        .slack_text(&src("*New:* {{ event.body }}"))
        .expect("compiles");
    let filtered = t
        .slack_text(&src("{{ event.body | slack_escape }}"))
        .expect("compiles");
    let opted_out = t
        .slack_text(&src("{{ event.body | safe }}"))
        .expect("compiles");
    let plain = t.text(&src("{{ event.body }}")).expect("compiles");
    let event = serde_json::json!({"body": "<!channel> & <https://evil|click>"});
    let meta = Meta {
        event_type: "message.received".into(),
        event_id: "x".into(),
        received_at: "2024-05-14T16:02:11Z".into(),
        target: "s".into(),
    };
    let ctx = RenderContext::new(&event, meta);
    let escaped = "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;";
    assert_eq!(
        t.render_text(auto, &ctx).expect("renders"),
        format!("*New:* {escaped}")
    );
    assert_eq!(
        t.render_text(filtered, &ctx).expect("renders"),
        escaped,
        "not escaped twice"
    );
    assert_eq!(
        t.render_text(opted_out, &ctx).expect("renders"),
        "<!channel> & <https://evil|click>"
    );
    assert_eq!(
        t.render_text(plain, &ctx).expect("renders"),
        "<!channel> & <https://evil|click>"
    );
}
