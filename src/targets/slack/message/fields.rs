//! Reading one field of an event for a message: display names, phone numbers, short ids and
//! single-line text, each `None` when the field is missing or has another shape.

use serde_json::Value;

use super::super::mrkdwn::truncate;
use super::{MAX_BODY_CHARS, MAX_FIELD_CHARS};

/// The last segment of a link's IRI (`/messages/QNDkpL` → `QNDkpL`), when it is a plain slug:
/// a slug cannot be a URL, so Slack has nothing to turn into a link.
pub(super) fn short_id(link: Option<&Value>) -> Option<String> {
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

/// A display number: NANP as `(303) 555-1234` (from the E.164 field first, §1.7), else the
/// formatted field, else the raw one.
pub(super) fn phone(object: Option<&Value>, e164_key: &str, formatted_key: &str) -> Option<String> {
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
pub(super) fn nanp(number: &str) -> Option<String> {
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
pub(super) fn person(value: Option<&Value>) -> Option<String> {
    let value = value?;
    field(value, &["name"]).or_else(|| {
        let parts: Vec<String> = [field(value, &["firstName"]), field(value, &["lastName"])]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

pub(super) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

pub(super) fn field(value: &Value, path: &[&str]) -> Option<String> {
    text(at(value, path))
}

/// A string or number as one display line; None for other shapes or when blank.
pub(super) fn text(value: Option<&Value>) -> Option<String> {
    let shown = match value? {
        Value::String(s) => one_line(s, MAX_FIELD_CHARS),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!shown.is_empty()).then_some(shown)
}

/// An SMS body keeps its line breaks; other control characters become spaces.
pub(super) fn body_text(value: &Value) -> Option<String> {
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
pub(super) fn one_line(raw: &str, max_chars: usize) -> String {
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
pub(super) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
