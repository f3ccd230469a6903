//! The relay's own template filters: Slack escaping, phone numbers, truncation
//! and timestamps.
//!
//! Every filter hands back an undefined or `none` input unchanged, so a
//! missing field stays "missing" (and renders `""`) however many filters it
//! goes through. Filters that recognise a format (`e164`, `phone`, `date`,
//! `timestamp_ms`) return input they cannot make sense of unchanged rather
//! than failing: a delivery with an odd phone number is better than no
//! delivery.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use super::datetime;

/// Registers the filters on `env`. minijinja 3 has no builtin `truncate`
/// (Jinja's, with `killwords` and `leeway`, lives in minijinja-contrib), so
/// ours is the only one and its semantics are the ones documented below.
pub(super) fn register(env: &mut Environment<'static>) {
    env.add_filter("slack_escape", slack_escape);
    env.add_filter("e164", e164);
    env.add_filter("phone", phone);
    env.add_filter("truncate", truncate);
    env.add_filter("date", date);
    env.add_filter("timestamp_ms", timestamp_ms);
    env.add_filter("tojson", tojson);
}

/// Largest `tojson` indent. minijinja writes the whole JSON text before it charges fuel for
/// it, so one `tojson(indent=1000000000)` would write gigabytes of spaces (found by running
/// hostile seeds through the templates fuzz target). Real templates use 2 or 4.
pub(super) const MAX_JSON_INDENT: usize = 16;

/// minijinja's `tojson` (same output, same fuel charge) with the indent capped at
/// [`MAX_JSON_INDENT`].
fn tojson(
    state: &State<'_, '_>,
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let indent = pick("indent", indent, kwargs.get("indent")?)?;
    if let Some(n) = indent.as_ref().filter(|v| v.kind() == ValueKind::Number)
        && usize::try_from(n.clone()).is_ok_and(|n| n > MAX_JSON_INDENT)
    {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson indent {n} is over the limit of {MAX_JSON_INDENT}"),
        ));
    }
    let json = minijinja::filters::tojson(value, indent, kwargs)?;
    // minijinja's own tojson charges 15/64 fuel per byte written on top of the byte cost
    // every returned value pays; the public API counts whole fuel units.
    let written = json.as_str().map_or(0, str::len) as u64;
    state.consume_fuel(written.saturating_mul(15) / 64)?;
    Ok(json)
}

/// True for values a filter must pass through untouched.
fn is_absent(value: &Value) -> bool {
    value.is_undefined() || value.is_none()
}

/// The text of a value: strings as they are, anything else as it renders.
fn text_of(value: &Value) -> String {
    match value.as_str() {
        Some(s) => s.to_owned(),
        None => value.to_string(),
    }
}

/// Escapes `&`, `<` and `>` for Slack mrkdwn, so an SMS saying `<!channel>`
/// is shown rather than pinging the channel. Slack documents exactly these
/// three; quotes need no escaping.
fn slack_escape(value: Value) -> Value {
    if is_absent(&value) {
        return value;
    }
    // Marked safe so a Slack template's own auto-escaping does not escape it twice.
    Value::from_safe_string(super::mrkdwn::escape(&text_of(&value)))
}

/// Normalises a phone number to E.164, or returns it unchanged.
fn e164(value: Value) -> Value {
    match value.as_str().and_then(to_e164) {
        Some(normalised) => Value::from(normalised),
        None => value,
    }
}

/// The E.164 form of `text`, if it is recognisably a phone number.
///
/// With a leading `+` the digits are taken as country code plus number
/// (7 to 15 digits, per E.164). Without one, only NANP numbers are
/// recognised: 10 digits, or 11 starting with `1`, with an area code that
/// starts with 2-9. Spaces, dots, dashes and parentheses are separators; any
/// other character (an extension such as `x12`, letters) makes the number
/// unrecognisable, because guessing which digits to keep could text the
/// wrong person.
pub(super) fn to_e164(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let mut digits = String::with_capacity(15);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\u{a0}' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
        if digits.len() > 15 {
            return None;
        }
    }
    let nanp_area = |d: &str| matches!(d.as_bytes().first(), Some(b'2'..=b'9'));
    if plus {
        let valid = (7..=15).contains(&digits.len()) && !digits.starts_with('0');
        return valid.then(|| format!("+{digits}"));
    }
    match digits.len() {
        10 if nanp_area(&digits) => Some(format!("+1{digits}")),
        11 if digits.starts_with('1') && nanp_area(&digits[1..]) => Some(format!("+{digits}")),
        _ => None,
    }
}

/// Formats an E.164 NANP number for display: `+13035551234` →
/// `(303) 555-1234`. Anything else is returned unchanged.
fn phone(value: Value) -> Value {
    let formatted = value.as_str().and_then(|s| {
        let d = s.strip_prefix("+1")?;
        (d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..]))
    });
    match formatted {
        Some(f) => Value::from(f),
        None => value,
    }
}

/// `truncate(length=255, end="…")`: at most `length` characters in total,
/// the `end` marker included, so the result fits a field limit such as a
/// CRM's 255. Counts characters, never bytes, so a UTF-8 character is never
/// split. When `end` alone is longer than `length`, the text is cut without it.
fn truncate(
    value: Value,
    length: Option<usize>,
    end: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let length = pick("length", length, kwargs.get("length")?)?.unwrap_or(255);
    let end = pick("end", end, kwargs.get("end")?)?.unwrap_or_else(|| "…".to_owned());
    kwargs.assert_all_used()?;
    if is_absent(&value) {
        return Ok(value);
    }
    Ok(Value::from(truncate_chars(&text_of(&value), length, &end)))
}

pub(super) fn truncate_chars(text: &str, length: usize, end: &str) -> String {
    if text.chars().count() <= length {
        return text.to_owned();
    }
    let end_len = end.chars().count();
    if end_len > length {
        return text.chars().take(length).collect();
    }
    let mut out: String = text.chars().take(length - end_len).collect();
    out.push_str(end);
    out
}

/// One argument that may be given by position or by keyword, but not both.
fn pick<T>(name: &str, positional: Option<T>, keyword: Option<T>) -> Result<Option<T>, Error> {
    match (positional, keyword) {
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("argument {name} given twice"),
        )),
        (p, k) => Ok(p.or(k)),
    }
}

/// `date(format="%Y-%m-%d %H:%M")`: formats an RFC 3339 timestamp in the
/// offset it was written in. Unparseable input is returned unchanged.
fn date(value: Value, format: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let format = pick("format", format, kwargs.get("format")?)?;
    kwargs.assert_all_used()?;
    let Some(ts) = value.as_str().and_then(datetime::parse) else {
        return Ok(value);
    };
    Ok(Value::from(
        ts.format(format.as_deref().unwrap_or("%Y-%m-%d %H:%M")),
    ))
}

/// Turns an RFC 3339 timestamp into Unix milliseconds (a number), as
/// HubSpot's `hs_timestamp` wants. Unparseable input is returned unchanged.
fn timestamp_ms(value: Value) -> Value {
    match value.as_str().and_then(datetime::parse) {
        Some(ts) => Value::from(ts.unix_millis()),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_normalises_nanp_and_international() {
        let cases = [
            ("(303) 555-1234", Some("+13035551234")),
            ("3035551234", Some("+13035551234")),
            ("303.555.1234", Some("+13035551234")),
            ("1 303 555 1234", Some("+13035551234")),
            ("+1 (303) 555-1234", Some("+13035551234")),
            ("+13035551234", Some("+13035551234")),
            ("+44 20 7946 0958", Some("+442079460958")),
            ("  +44 20 7946 0958 ", Some("+442079460958")),
            // Not recognisable: left alone.
            ("", None),
            ("+", None),
            ("555-1234", None),         // 7 digits, no country
            ("0035551234", None),       // area code starting 0
            ("1035551234", None),       // area code starting 1
            ("23035551234", None),      // 11 digits not starting with 1
            ("303-555-1234 x12", None), // extension
            ("+0 303 555 1234", None),  // country code 0
            ("+1234567890123456", None),
            ("call me", None),
            ("３０３５５５１２３４", None), // full-width digits
        ];
        for (input, want) in cases {
            assert_eq!(to_e164(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn truncate_counts_characters_with_the_marker() {
        assert_eq!(truncate_chars("hello", 5, "…"), "hello");
        assert_eq!(truncate_chars("hello world", 5, "…"), "hell…");
        assert_eq!(truncate_chars("hello world", 8, "..."), "hello...");
        assert_eq!(truncate_chars("héllo wörld", 6, "…"), "héllo…");
        assert_eq!(truncate_chars("😀😀😀😀", 3, "…"), "😀😀…");
        assert_eq!(truncate_chars("😀😀😀😀", 2, "..."), "😀😀");
        assert_eq!(truncate_chars("abc", 0, "…"), "");
        assert_eq!(truncate_chars("abcdef", 3, ""), "abc");
    }
}
