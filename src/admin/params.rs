//! What the dead-letter endpoints accept: list queries, replay/purge filter bodies, and times.
//!
//! Times (`since`, `until`) are Unix milliseconds or RFC 3339 (`2025-01-31T14:00:00Z`, any
//! offset); both compare against when a letter died, `since` inclusive and `until` exclusive.
//! Unknown parameters and fields are refused rather than ignored: a misspelt `tpye` on a purge
//! must not widen it to every letter of the target. Every rejection is a message for a person,
//! quoting what was sent.

use std::collections::HashMap;
use std::time::SystemTime;

use jiff::SignedDuration;
use jiff::civil::DateTime;
use serde_json::Value;

use crate::store::{DeadLetterFilter, DeadLetterQuery, DeliveryId, from_unix_ms};

/// Dead letters one list call returns unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The most dead letters one list call returns.
pub const MAX_LIMIT: usize = 1000;
/// The most ids one replay or purge body may name.
pub const MAX_IDS: usize = 10_000;

/// A time given as Unix milliseconds (`1735689600000`) or RFC 3339 (`2025-01-01T00:00:00Z`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    let ms = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().ok()
    } else {
        crate::templates::rfc3339_unix_ms(text)
    };
    match ms {
        Some(ms) if ms >= 0 => Ok(from_unix_ms(ms)),
        _ => Err(format!(
            "{text:?} is not a time: use Unix milliseconds (1735689600000) or RFC 3339 \
             (2025-01-01T00:00:00Z)"
        )),
    }
}

/// `2025-01-31T14:00:05Z`: Unix milliseconds in UTC, to the second, for people. A time
/// outside the years 0000 to 9999 (which the relay never records) prints as its milliseconds.
pub fn format_time(ms: i64) -> String {
    const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
    EPOCH
        .checked_add(SignedDuration::from_millis(ms))
        .ok()
        .filter(|t| t.year() >= 0)
        .and_then(|t| jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `?target=&type=&since=&until=&limit=` of `GET /api/v1/dead-letters`.
pub fn list_query(params: &HashMap<String, String>) -> Result<DeadLetterQuery, String> {
    const KNOWN: [&str; 5] = ["target", "type", "since", "until", "limit"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown query parameter {unknown:?} (expected: {})",
            KNOWN.join(", ")
        ));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => return Err(format!("limit {l:?} must be a whole number from 1")),
        },
    };
    let time = |key: &str| {
        params
            .get(key)
            .map(|t| parse_time(t).map_err(|e| format!("{key}: {e}")))
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    check_range(since, until)?;
    Ok(DeadLetterQuery {
        target: non_empty(params.get("target")),
        event_type: non_empty(params.get("type")),
        since,
        until,
        limit,
    })
}

/// The JSON body of replay and purge: `{"ids": [...]}` and/or `target`, `type`, `since`,
/// `until`. At least one of them is required, so an empty body never means "all".
pub fn filter_body(body: &[u8]) -> Result<DeadLetterFilter, String> {
    const KNOWN: [&str; 5] = ["ids", "target", "type", "since", "until"];
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if body.iter().all(u8::is_ascii_whitespace) {
            "the body is empty: send a JSON object such as {\"ids\": [12]} or {\"target\": \"crm\"}"
                .to_owned()
        } else {
            format!("the body is not JSON: {e}")
        }
    })?;
    let Value::Object(fields) = value else {
        return Err(format!("expected a JSON object, got {value}"));
    };
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (expected: {})",
            KNOWN.join(", ")
        ));
    }
    let text = |key: &str| match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s))),
        Some(other) => Err(format!("{key}: expected a string, got {other}")),
    };
    let time = |key: &str| {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s).map(Some),
            Some(Value::Number(n)) => parse_time(&n.to_string()).map(Some),
            Some(other) => Err(format!("{other} is not a time")),
        }
        .map_err(|e| format!("{key}: {e}"))
    };
    let filter = DeadLetterFilter {
        ids: ids(fields.get("ids"))?,
        target: text("target")?,
        event_type: text("type")?,
        since: time("since")?,
        until: time("until")?,
    };
    check_range(filter.since, filter.until)?;
    if filter.is_empty() {
        return Err(
            "say which dead letters: give \"ids\" or at least one of \"target\", \"type\", \
             \"since\", \"until\""
                .to_owned(),
        );
    }
    Ok(filter)
}

fn ids(value: Option<&Value>) -> Result<Option<Vec<DeliveryId>>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("ids: expected a list of numbers, got {other}")),
    };
    if items.len() > MAX_IDS {
        return Err(format!(
            "ids: {} ids in one call, at most {MAX_IDS} (use a filter for more)",
            items.len()
        ));
    }
    items
        .iter()
        .map(|v| {
            v.as_i64()
                .map(DeliveryId)
                .ok_or_else(|| format!("ids: {v} is not a dead letter id (a whole number)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn check_range(since: Option<SystemTime>, until: Option<SystemTime>) -> Result<(), String> {
    match (since, until) {
        (Some(s), Some(u)) if s >= u => {
            Err("since must be earlier than until (since is inclusive, until exclusive)".into())
        }
        _ => Ok(()),
    }
}

/// An empty parameter (`?target=`) means no filter, as if it were left out.
fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::unix_ms;

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        let ms = |t: &str| parse_time(t).map(unix_ms);
        assert_eq!(ms("1735689600000"), Ok(1_735_689_600_000));
        assert_eq!(ms("2025-01-01T00:00:00Z"), Ok(1_735_689_600_000));
        assert_eq!(ms("2025-01-01T01:00:00.250+01:00"), Ok(1_735_689_600_250));
        for bad in ["", "yesterday", "2025-01-01", "-5", "1.5"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_time(1_735_689_600_999), "2025-01-01T00:00:00Z");
        assert_eq!(format_time(951_827_696_000), "2000-02-29T12:34:56Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
    }

    // Written over the hand-written calendar code before dates moved to jiff; the values were
    // computed independently (Python's `datetime`).
    #[test]
    fn since_and_until_accept_what_they_always_did() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("1735689600000", 1_735_689_600_000),
            (" 1735689600000\n", 1_735_689_600_000),
            ("0001735689600000", 1_735_689_600_000),
            ("9223372036854775807", i64::MAX),
            ("1970-01-01T00:00:00Z", 0),
            ("2025-01-01T00:00:00Z", 1_735_689_600_000),
            ("2025-01-01t01:00:00.250999+01:00", 1_735_689_600_250),
            ("2025-01-01 00:00:00z", 1_735_689_600_000),
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),
            ("1969-12-31T23:59:60Z", 0),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ];
        for (text, want) in ok {
            assert_eq!(parse_time(text).map(unix_ms), Ok(*want), "{text:?}");
        }
        let refused = [
            ("", r#""""#),
            ("  ", r#""""#),
            ("-5", r#""-5""#),
            ("+5", r#""+5""#),
            ("1.5", r#""1.5""#),
            ("1e3", r#""1e3""#),
            ("9223372036854775808", r#""9223372036854775808""#),
            ("1969-12-31T23:59:59.999Z", r#""1969-12-31T23:59:59.999Z""#),
            ("2025-01-01", r#""2025-01-01""#),
            (" 2025-01-01T00:00:00 ", r#""2025-01-01T00:00:00""#),
            ("2025-02-29T00:00:00Z", r#""2025-02-29T00:00:00Z""#),
        ];
        for (text, quoted) in refused {
            assert_eq!(
                parse_time(text),
                Err(format!(
                    "{quoted} is not a time: use Unix milliseconds (1735689600000) or RFC 3339 \
                     (2025-01-01T00:00:00Z)"
                )),
                "{text:?}"
            );
        }
    }

    #[test]
    fn times_print_in_utc_to_the_second() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (999, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (-1000, "1969-12-31T23:59:59Z"),
            (-1001, "1969-12-31T23:59:58Z"),
            (951_827_696_000, "2000-02-29T12:34:56Z"),
            (1_483_228_800_000, "2017-01-01T00:00:00Z"),
            (1_735_689_599_999, "2024-12-31T23:59:59Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00Z"),
            (-2_203_934_400_000, "1900-02-28T12:00:00Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59Z"),
            // Beyond the four-digit years (the hand-written code printed "10000-01-01T00:00:00Z").
            (253_402_300_800_000, "253402300800000"),
            (-62_167_219_200_001, "-62167219200001"),
            (i64::MIN, "-9223372036854775808"),
            (i64::MAX, "9223372036854775807"),
        ] {
            assert_eq!(format_time(ms), want, "{ms}");
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Result<DeadLetterQuery, String> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        list_query(&map)
    }

    #[test]
    fn list_queries_are_checked() {
        let q = query(&[("type", "contact.created"), ("limit", "5000")]).expect("valid");
        assert_eq!(q.event_type.as_deref(), Some("contact.created"));
        assert_eq!(q.limit, MAX_LIMIT);
        assert_eq!(query(&[("target", "")]).expect("valid").target, None);
        let err = |pairs: &[(&str, &str)]| query(pairs).expect_err("invalid");
        assert!(err(&[("targt", "a")]).contains("unknown query parameter \"targt\""));
        assert!(err(&[("limit", "ten")]).contains("limit \"ten\""));
        assert!(err(&[("limit", "0")]).contains("from 1"));
        assert!(err(&[("since", "soon")]).starts_with("since: \"soon\" is not a time"));
        assert!(err(&[("since", "2000"), ("until", "1000")]).contains("earlier than until"));
    }

    #[test]
    fn filter_bodies_name_at_least_one_criterion() {
        let f = filter_body(br#"{"ids": [3, 4]}"#).expect("ids");
        assert_eq!(f.ids, Some(vec![DeliveryId(3), DeliveryId(4)]));
        let f = filter_body(br#"{"target": "crm", "type": "contact.created", "since": 5, "until": "2030-01-01T00:00:00Z"}"#)
            .expect("filters");
        assert_eq!(f.target.as_deref(), Some("crm"));
        assert_eq!(f.since.map(unix_ms), Some(5));
        let err = |body: &[u8]| filter_body(body).expect_err("invalid");
        assert!(err(b"").contains("the body is empty"));
        assert!(err(b"{}").contains("say which dead letters"));
        assert!(err(br#"{"target": ""}"#).contains("say which dead letters"));
        assert!(err(b"[1]").contains("expected a JSON object"));
        assert!(err(b"{nope").contains("not JSON"));
        assert!(err(br#"{"tpye": "x", "target": "a"}"#).contains("unknown field \"tpye\""));
        assert!(err(br#"{"ids": ["a"]}"#).contains("\"a\" is not a dead letter id"));
        assert!(err(br#"{"ids": 3}"#).contains("expected a list"));
        assert!(err(br#"{"target": 3}"#).contains("target: expected a string"));
        assert!(err(br#"{"since": true}"#).contains("since: true is not a time"));
    }
}
