//! Templates under hostile input: runaway loops and huge events against the fuel budget,
//! handles from another `Templates`, glued fragments and deep unary minus (fuzz regressions).

use serde_json::json;

use super::tests::{ctx, fixture, render, src};
use super::*;
use crate::config::BodyTemplate;

#[test]
fn runaway_templates_run_out_of_fuel() {
    let mut t = Templates::new();
    let forever =
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}";
    let id = t.text(&src(forever)).unwrap_or_else(|e| panic!("{e}"));
    let err = t.render_text(id, &ctx("message.received")).err();
    assert!(err.is_some_and(|e| e.message.contains("fuel")));
    let id = t
        .condition(&src("('x' * 1000000000) != ''"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(t.test(id, &ctx("message.received")).is_err());
    // Statements that could recurse into other templates are not compiled in.
    for stmt in [
        "{% include 'x' %}",
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    ] {
        assert!(t.text(&src(stmt)).is_err(), "{stmt}");
    }
}

#[test]
fn large_events_fit_the_fuel_budget() {
    // `source.max_body` defaults to 1 MiB. A body of `<&>` is the worst case
    // for `tojson`, which writes each as a six-byte `\u003c` escape.
    let mut event = fixture("message.received");
    event["message"]["body"] = json!("<&>".repeat(349_525));
    let meta = Meta {
        event_type: "message.received".to_owned(),
        event_id: String::new(),
        received_at: String::new(),
        target: String::new(),
    };
    let big = RenderContext::new(&event, meta);
    let mut t = Templates::new();
    let id = t
        .text(&src(
            "{{ event | tojson }}{{ event.message.body | slack_escape }}",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = t.render_text(id, &big).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.len() > 6 * 1_048_575 + 4 * 1_048_575, "{}", out.len());
}

#[test]
fn foreign_handles_are_errors_not_panics() {
    let t = Templates::new();
    let c = ctx("message.received");
    assert!(t.render_text(TextId(3), &c).is_err());
    assert!(t.test(ConditionId(0), &c).is_err());
    assert!(t.render_body(&CompiledBody::Typed(ExprId(9)), &c).is_err());
}

#[test]
fn shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Templates>();
    send_sync::<RenderContext>();
    send_sync::<CompiledBody>();
}

/// A cheap fuzz pass: templates glued from fragments must compile or fail
/// cleanly, and render or fail cleanly, over every fixture.
#[test]
fn arbitrary_fragments_never_panic() {
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "-",
        "+",
        "|",
        " is ",
        " not ",
        "event",
        ".",
        "message",
        "body",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "'",
        "\"",
        "\\",
        "é",
        "😀",
        "\n",
        "filter",
        "raw",
        "endraw",
        "e164",
        "date",
        "truncate",
        "timestamp_ms",
        "phone",
        "slack_escape",
        "0",
        "1e5",
        " if ",
        " for ",
        " in ",
        "endif",
        "endfor",
        "none",
        "x",
        ",",
        ":",
        "=",
        "*",
        "~",
        " ",
    ];
    let names = [
        "message.received",
        "contact.created",
        "phone_call.completed",
    ];
    let contexts: Vec<_> = names.iter().map(|n| ctx(n)).collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut t = Templates::new();
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
        }
        let s = src(&text);
        let text_id = t.text(&s).ok();
        let body = t.body(&BodyTemplate::String(s.clone())).ok();
        let cond = t.condition(&s).ok();
        for c in &contexts {
            if let Some(id) = text_id {
                let _ = t.render_text(id, c);
            }
            if let Some(b) = &body {
                let _ = t.render_body(b, c);
            }
            if let Some(id) = cond {
                let _ = t.test(id, c);
            }
        }
    }
}

// Regression: #5 (the templates fuzz target found `2>----…` with 1,600 `-`: minijinja nests a
// unary minus per sign without a depth limit and overflowed a 2 MiB test thread's stack).
#[test]
fn long_runs_of_minus_signs_are_refused_not_a_stack_overflow() {
    let mut t = Templates::new();
    let deep = format!("2>{}1", "-".repeat(1600));
    assert!(t.condition(&src(&deep)).is_err());
    assert!(t.text(&src(&format!("{{{{ {deep} }}}}"))).is_err());
    let body = BodyTemplate::String(src(&format!("{{{{ {deep} }}}}")));
    assert!(t.body(&body).is_err());
    let spaced = format!("{{{{ {}1 }}}}", "- ".repeat(100));
    let err = t.text(&src(&spaced)).err().map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("`-` in a row")),
        "{err:?}"
    );
    // A divider of dashes in plain text still renders.
    assert_eq!(render(&"-".repeat(64), "message.received"), "-".repeat(64));
}
