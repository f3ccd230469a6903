//! Fuzz entry points: plain functions over arbitrary bytes, one per attack surface.
//!
//! The `fuzz/` crate (cargo-fuzz, libFuzzer, nightly flags) only wraps these, so every input it
//! ever found interesting or crashing can be replayed by an ordinary `cargo test` on stable:
//! the test at the bottom runs each file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the function of the same name. Each function must
//! return normally for every input; a panic (or a hang, which libFuzzer reports as a timeout)
//! is a bug in the library, never in the input.

use std::path::Path;

use crate::config::{BodyTemplate, Config, TemplateSource};
use crate::ingress::{envelope, signature};
use crate::templates::{Meta, RenderContext, Templates};

/// Config parsing and validation: any UTF-8 text is either a [`Config`] or a `ConfigError`.
pub fn config(data: &[u8]) {
    // Config files are read as UTF-8 text (`read_to_string`), so other bytes never reach the
    // parser; non-UTF-8 input has nothing to test.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every `${VAR}` is set except those whose name says otherwise, so both the expansion and
    // the "not set" paths are reached. Values contain YAML-significant characters on purpose.
    let env =
        |name: &str| (!name.starts_with("UNSET")).then(|| format!("v-{name}: '\"{{{{ x }}}}"));
    let _ = Config::from_yaml_str(text, Path::new("fuzz.yaml"), &env);
}

/// Signature verification and envelope parsing on the raw bytes of a request.
///
/// Input layout: the first line is the webhook secret, the second the `X-TextUs-Signature`
/// header value (absent when there is no second line), the rest the body.
pub fn ingress(data: &[u8]) {
    let (secret, rest) = split_line(data);
    let (header, body) = match rest {
        Some(rest) => {
            let (header, body) = split_line(rest);
            (Some(header), body.unwrap_or_default())
        }
        None => (None, &[][..]),
    };
    let secret = String::from_utf8_lossy(secret).into_owned();
    let secrets = vec![crate::config::Secret::from(secret.as_str())];
    let _ = signature::verify(&secrets, header, body);
    // The right signature always verifies, whatever the secret and body.
    let good = signature::sign(&secret, body);
    assert_eq!(
        signature::verify(&secrets, Some(good.as_bytes()), body),
        Ok(()),
        "a correct signature was refused"
    );
    let env = envelope::read(body, false);
    assert!(!env.event_id.is_empty(), "an event id is never empty");
    // Parsed in full or not, a body gets the same id and the same type or reason.
    let whole = envelope::read(body, true);
    assert_eq!((&env.event_id, &env.kind), (&whole.event_id, &whole.kind));
}

/// Template compilation and rendering as a text, a body leaf, a Slack text and a condition.
///
/// Input layout: the template source, a NUL byte, then the event JSON. Without a NUL, or when
/// the rest is not JSON, the event is a real `message.received` fixture, so templates that
/// reach into `event.*` find something.
pub fn templates(data: &[u8]) {
    let (template, event) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(template) = std::str::from_utf8(template) else {
        return;
    };
    let event: serde_json::Value = serde_json::from_slice(event).unwrap_or_else(|_| {
        serde_json::from_str(include_str!("../../fixtures/message.received.json"))
            .unwrap_or(serde_json::Value::Null)
    });
    let ctx = RenderContext::new(
        &event,
        Meta {
            event_type: "message.received".into(),
            event_id: "fuzz-1".into(),
            received_at: "2024-05-14T16:02:11.482Z".into(),
            target: "fuzz".into(),
        },
    );
    let src = TemplateSource {
        text: template.to_owned(),
        line: 1,
        column: 1,
        key: "fuzz".into(),
    };
    let mut templates = Templates::new();
    if let Ok(id) = templates.text(&src) {
        let _ = templates.render_text(id, &ctx);
    }
    if let Ok(id) = templates.slack_text(&src) {
        let _ = templates.render_text(id, &ctx);
    }
    let tree = BodyTemplate::Map(vec![("leaf".into(), BodyTemplate::String(src.clone()))]);
    if let Ok(body) = templates.body(&tree) {
        let _ = templates.render_body(&body, &ctx);
    }
    if let Ok(id) = templates.condition(&src) {
        let _ = templates.test(id, &ctx);
    }
}

/// `data` up to its first `\n`, and what follows it (`None` without a newline).
fn split_line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every corpus seed and every crasher the fuzzer ever found, replayed on stable. A file
    /// that panics here names itself in the failure.
    // Regression: #5
    #[test]
    fn every_corpus_and_regression_input_is_handled() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for kind in ["corpus", "regressions"] {
            for (target, run) in [
                ("config", super::config as fn(&[u8])),
                ("ingress", super::ingress),
                ("templates", super::templates),
            ] {
                let dir = root.join(kind).join(target);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("corpus entry").path();
                    let data = std::fs::read(&path).expect("corpus file");
                    let outcome = std::panic::catch_unwind(|| run(&data));
                    assert!(outcome.is_ok(), "{} panicked", path.display());
                    ran += 1;
                }
            }
        }
        // The checked-in seeds: 4 configs, 8 signed events, 6 templates.
        assert!(
            ran >= 18,
            "only {ran} corpus files under {}",
            root.display()
        );
    }
}
