//! Templates as written in relay.yaml: single texts ([`TemplateSource`]) and request
//! bodies whose string leaves are templates ([`BodyTemplate`]).
//!
//! The config only stores them, with where they were written; rendering (Jinja syntax,
//! design.md §4) belongs to the targets. `${VAR}` is expanded in the text first, like in
//! every string value. Values that came from the environment are never quoted in
//! messages, and the Debug output of targets hides the texts that may carry secrets.
//!
//! In a body, an unquoted YAML value stays typed only if its JSON meaning is obvious:
//! `true`, `false`, `null` and JSON numbers. Anything else YAML would type (`yes`, `NO`,
//! `+13035551234`, `02134`, `0x1F`, `1_000`, `.inf`) is a problem asking for quotes, since
//! the likely intent there is text and YAML 1.1 readers disagree on it.

use serde_json::Number;

use super::error::Pos;
use super::reader::{Ctx, Text, child, item};
use super::tree::{Node, Value};

/// A template as written in relay.yaml, with where it was written (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSource {
    /// The template, after `${VAR}` expansion.
    pub text: String,
    /// 1-based line of the YAML scalar. For a block scalar (`|`, `>`), the line of its
    /// first line of text, so line N of a template is on file line `line + N - 1`.
    pub line: usize,
    /// 1-based column of the scalar, counted in characters (the opening quote for a
    /// quoted scalar, the indentation for a block scalar).
    pub column: usize,
    /// Key path, as in problems, e.g. `targets.hubspot.body.properties.phone` or
    /// `targets.slack.templates["message.received"].text`.
    pub key: String,
}

/// A YAML tree whose string leaves are templates (a CRM request body, Slack blocks).
///
/// Unquoted `true`, `false`, `null` and JSON numbers are typed leaves; every other
/// scalar, quoted or not, is a template. Mapping keys are kept as written (not
/// templates, not expanded), in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyTemplate {
    /// `null`, `~` or nothing.
    Null,
    /// Unquoted `true` or `false`.
    Bool(bool),
    /// An unquoted JSON number.
    Number(Number),
    /// Any other scalar: a template.
    String(TemplateSource),
    /// A YAML list.
    List(Vec<BodyTemplate>),
    /// A YAML mapping, in file order.
    Map(Vec<(String, BodyTemplate)>),
}

/// A template text read from the file.
pub(super) struct Template {
    pub(super) source: TemplateSource,
    /// How to show the text in a message (hidden if it came from the environment).
    pub(super) quoted: String,
}

/// Reads a scalar as a template, expanding `${VAR}`.
pub(super) fn template(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Template> {
    if unquoted_template(node) {
        report_unquoted(ctx, node, path);
        return None;
    }
    let Text { value, quoted } = ctx.text(node, path)?;
    Some(Template {
        source: source(node, path, value),
        quoted,
    })
}

/// [`template`] that must not be empty (or only spaces) once expanded.
pub(super) fn non_empty_template(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
    empty: &str,
) -> Option<TemplateSource> {
    let template = template(ctx, node, path)?;
    if template.source.text.trim().is_empty() {
        ctx.report(node.at, path, empty);
        return None;
    }
    Some(template.source)
}

fn source(node: &Node, path: &str, text: String) -> TemplateSource {
    let Pos { line, column } = node.text_at;
    TemplateSource {
        text,
        line,
        column,
        key: path.to_owned(),
    }
}

/// Reads any YAML value as a body template; every problem in it is reported.
pub(super) fn body(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<BodyTemplate> {
    match &node.value {
        Value::Null => Some(BodyTemplate::Null),
        Value::Scalar(text) if node.typed => match typed(text) {
            Ok(leaf) => Some(leaf),
            Err(reason) => {
                let message = format!(
                    "ambiguous value {text:?} ({reason}; quote it to send it as text, \
                     or write true, false, null or a JSON number such as 42 or 1.5)"
                );
                ctx.report(node.at, path, message);
                None
            }
        },
        Value::Scalar(_) => template(ctx, node, path).map(|t| BodyTemplate::String(t.source)),
        Value::Seq(items) => {
            let items: Vec<Option<BodyTemplate>> = items
                .iter()
                .enumerate()
                .map(|(i, node)| body(ctx, node, &item(path, i)))
                .collect();
            items
                .into_iter()
                .collect::<Option<_>>()
                .map(BodyTemplate::List)
        }
        Value::Map(_) if unquoted_template(node) => {
            report_unquoted(ctx, node, path);
            None
        }
        Value::Map(_) => {
            let m = ctx.mapping(node, path.to_owned())?;
            let entries: Vec<Option<(String, BodyTemplate)>> = m
                .entries
                .iter()
                .map(|e| {
                    let value = body(ctx, e.value, &child(&m.path, e.key))?;
                    Some((e.key.to_owned(), value))
                })
                .collect();
            entries
                .into_iter()
                .collect::<Option<_>>()
                .map(BodyTemplate::Map)
        }
    }
}

/// The typed leaf for an unquoted scalar YAML reads as a boolean or number, or why it
/// is refused.
fn typed(text: &str) -> Result<BodyTemplate, String> {
    match text {
        "true" | "True" | "TRUE" => return Ok(BodyTemplate::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(BodyTemplate::Bool(false)),
        _ => {}
    }
    json_number(text).map(BodyTemplate::Number)
}

/// A number written in JSON's syntax; integers must fit 64 bits (rather than silently
/// becoming floats).
fn json_number(text: &str) -> Result<Number, String> {
    let not_json = || "YAML reads it as a boolean or number, but not in JSON's spelling".to_owned();
    let number: Number = serde_json::from_str(text).map_err(|_| not_json())?;
    // serde_json accepts surrounding whitespace; the tree trims it anyway.
    let integer = !text.contains(['.', 'e', 'E']);
    if integer && !(number.is_i64() || number.is_u64()) {
        return Err("too large for a 64-bit integer".to_owned());
    }
    Ok(number)
}

/// `{{ expr }}` written without quotes: YAML reads it as a mapping whose one key is a
/// mapping, with no value.
pub(super) fn unquoted_template(node: &Node) -> bool {
    match &node.value {
        Value::Map(pairs) => match pairs.as_slice() {
            [(key, value)] => {
                matches!(key.value, Value::Map(_)) && matches!(value.value, Value::Null)
            }
            _ => false,
        },
        _ => false,
    }
}

fn report_unquoted(ctx: &mut Ctx<'_>, node: &Node, path: &str) {
    ctx.report(
        node.at,
        path,
        "a template starting with `{{` must be quoted, e.g. \"{{ event.id }}\" \
         (unquoted, YAML reads it as a mapping)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> BodyTemplate {
        BodyTemplate::Number(serde_json::from_str(text).expect("a number"))
    }

    #[test]
    fn json_spellings_stay_typed() {
        assert_eq!(typed("true"), Ok(BodyTemplate::Bool(true)));
        assert_eq!(typed("FALSE"), Ok(BodyTemplate::Bool(false)));
        assert_eq!(typed("42"), Ok(number("42")));
        assert_eq!(typed("-7"), Ok(number("-7")));
        assert_eq!(typed("1.50"), Ok(number("1.5")));
        assert_eq!(typed("1e3"), Ok(number("1000.0")));
        assert_eq!(
            typed("18446744073709551615"),
            Ok(number("18446744073709551615"))
        );
    }

    #[test]
    fn yaml_only_spellings_are_refused() {
        for bad in [
            "yes",
            "NO",
            "on",
            "+13035551234",
            "02134",
            "0x1F",
            "0o17",
            "1_000",
            ".inf",
            ".nan",
            ".5",
            "1.",
            "18446744073709551616",
            "1e400",
        ] {
            assert!(typed(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
