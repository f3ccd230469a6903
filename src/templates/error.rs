//! The two template errors: a config error located in relay.yaml, and a
//! render failure named by its key.
//!
//! Messages are minijinja's (`syntax error: unexpected end of input`),
//! without the `(in name:line)` suffix it appends: the location is given in
//! relay.yaml terms instead.

use crate::config::TemplateSource;

/// A template that does not compile, located in relay.yaml.
///
/// `line` is `src.line + (template line - 1)`. `column` is `src.column` plus
/// the character offset within the template line: exact for plain and block
/// scalars (whose `column` is the text's indentation), one to the left for a
/// quoted scalar (whose `column` is its opening quote).
#[derive(Debug, thiserror::Error)]
#[error("{key}: line {line}, column {column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    /// Dotted relay.yaml path, e.g. `targets.hubspot.body.properties.phone`.
    pub key: String,
    pub message: String,
}

/// A render-time failure: a type error, exhausted fuel, a filter called
/// wrongly. A missing field is never one.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RenderError {
    pub key: String,
    pub message: String,
}

/// minijinja's message without its location suffix: `kind: detail`.
fn message_of(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

pub(super) fn compile_error(
    src: &TemplateSource,
    offset: usize,
    err: &minijinja::Error,
) -> TemplateError {
    match err.range() {
        Some(range) => locate(src, offset + range.start, message_of(err)),
        None => {
            // No span: fall back to minijinja's line, counted from where
            // `offset` sits in the source.
            let base = locate(src, offset, String::new());
            let extra = err.line().unwrap_or(1).saturating_sub(1);
            TemplateError {
                line: base.line.saturating_add(extra),
                column: if extra == 0 { base.column } else { src.column },
                key: src.key.clone(),
                message: message_of(err),
            }
        }
    }
}

/// Locates byte `offset` of `src.text` in relay.yaml.
pub(super) fn locate(src: &TemplateSource, offset: usize, message: String) -> TemplateError {
    let bytes = src.text.as_bytes();
    let before = bytes.get(..offset).unwrap_or(bytes);
    let newlines = before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let col = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count();
    TemplateError {
        line: src.line.saturating_add(newlines),
        column: src.column.saturating_add(col),
        key: src.key.clone(),
        message,
    }
}

pub(super) fn render_error(key: &str, err: &minijinja::Error) -> RenderError {
    RenderError {
        key: key.to_owned(),
        message: message_of(err),
    }
}

/// A handle from another `Templates`: a bug in the caller, reported rather
/// than panicking a dispatcher.
pub(super) fn unknown_handle(what: &str) -> RenderError {
    RenderError {
        key: String::new(),
        message: format!("unknown {what} handle"),
    }
}
