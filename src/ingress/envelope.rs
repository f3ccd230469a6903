//! Reads the two facts the relay needs from a verified body: the event type and its id.
//!
//! Nothing else in the body is interpreted here, so a new field or an unusual shape can never
//! make the relay refuse an event. A body that is not a JSON object with a string `action` is
//! still kept, as a dead letter with the reason.
//!
//! When routing or a target will read the event, this is also where the body is parsed in
//! full, once ([`crate::event`]); otherwise only `id` and `action` are read, which costs less
//! than building the whole value.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{self, ParsedBody};

/// What ingress learned from a body.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The envelope `id`, or `sha256:<hex>` of the raw body when it has none.
    pub event_id: String,
    /// The `action`, or why the body is not a usable event.
    pub kind: Result<String, String>,
    /// The whole body as JSON when [`read`] was asked for it and the body is a JSON object;
    /// otherwise empty, for a reader to fill.
    pub parsed: ParsedBody,
}

/// Only the fields routing needs; every other field is ignored (and kept in the raw body).
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    action: Option<Value>,
}

/// Reads `body`. Never fails: a malformed body yields `kind: Err(reason)`. With `whole`, the
/// body is parsed in full and the value kept in [`Envelope::parsed`], in the same single
/// parse that finds `id` and `action`.
pub fn read(body: &[u8], whole: bool) -> Envelope {
    if whole && let Ok(Object(map)) = event::parse(|| serde_json::from_slice::<Object>(body)) {
        let null = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
        let (id, action) = (null(map.get("id")), null(map.get("action")));
        let mut envelope = classify(body, id, action);
        envelope.parsed = ParsedBody::parsed(Arc::new(Value::Object(map)));
        return envelope;
    }
    // Not a JSON object, or one with `id` or `action` twice: read only the head, as when
    // nothing needs the value, so such a body gets the same id and reason either way (a
    // reader that wants its value parses it itself: such bodies are not TextUs events).
    match event::parse(|| serde_json::from_slice::<Head>(body)) {
        Ok(head) => classify(body, head.id, head.action),
        Err(e) => Envelope {
            event_id: digest_id(body),
            kind: Err(format!("body is not a JSON object: {e}")),
            parsed: ParsedBody::default(),
        },
    }
}

/// The envelope of a body whose `id` and `action` are these (`None`: missing or `null`).
fn classify(body: &[u8], id: Option<Value>, action: Option<Value>) -> Envelope {
    let event_id = match id {
        Some(Value::String(id)) if !id.trim().is_empty() => id,
        _ => digest_id(body),
    };
    let kind = match action {
        Some(Value::String(a)) if !a.trim().is_empty() => Ok(a),
        Some(Value::String(_)) => Err("`action` is empty".to_string()),
        Some(_) => Err("`action` is not a string".to_string()),
        None => Err("no `action` field: the event type is unknown".to_string()),
    };
    Envelope {
        event_id,
        kind,
        parsed: ParsedBody::default(),
    }
}

/// The id of an event without one: the SHA-256 of its body.
fn digest_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// A JSON object, refused (so that [`read`] falls back to [`Head`]) where [`Head`] would be
/// refused too: when `id` or `action` appears twice. Every other key is kept as `Value` keeps
/// it, the last of duplicates winning.
struct Object(Map<String, Value>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Object, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if let field @ ("id" | "action") = key.as_str()
                && map.contains_key(field)
            {
                return Err(de::Error::custom(format_args!("duplicate field `{field}`")));
            }
            let value = access.next_value::<Value>()?;
            map.insert(key, value);
        }
        Ok(Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_action_and_id_from_every_fixture() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        for name in [
            "message.received",
            "message.delivered",
            "message.failed",
            "message.unknown",
            "phone_call.completed",
            "contact.opted_out",
            "contact.opted_in",
            "contact.created",
        ] {
            let body = std::fs::read(format!("{dir}/{name}.json")).expect("fixture");
            for whole in [false, true] {
                let env = read(&body, whole);
                assert_eq!(env.kind, Ok(name.to_string()));
                assert!(
                    env.event_id.starts_with("/integrations/"),
                    "{name}: {}",
                    env.event_id
                );
                assert_eq!(env.parsed.get().is_some(), whole);
            }
        }
    }

    /// The id and reason of a body, the same whether or not it is parsed in full.
    fn read_both(body: &[u8]) -> (String, Result<String, String>) {
        let (head, whole) = (read(body, false), read(body, true));
        assert_eq!(
            head.event_id,
            whole.event_id,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(head.kind, whole.kind, "{}", String::from_utf8_lossy(body));
        assert!(head.parsed.get().is_none());
        (whole.event_id, whole.kind)
    }

    #[test]
    fn falls_back_to_the_body_digest_without_an_id() {
        let (a, _) = read_both(br#"{"action":"message.received","x":1}"#);
        let (b, _) = read_both(br#"{"action":"message.received","x":2}"#);
        assert!(a.starts_with("sha256:"));
        assert_ne!(a, b);
        assert_eq!(a, read_both(br#"{"action":"message.received","x":1}"#).0);
        assert!(
            read_both(br#"{"id":null,"action":"a"}"#)
                .0
                .starts_with("sha256:")
        );
        assert!(
            read_both(br#"{"id":" ","action":"a"}"#)
                .0
                .starts_with("sha256:")
        );
    }

    #[test]
    fn unusable_bodies_are_reported_not_refused() {
        let reason = |body: &[u8]| read_both(body).1.unwrap_err();
        assert!(reason(b"not json").contains("not a JSON object"));
        assert!(reason(br#""text""#).contains("not a JSON object"));
        assert!(reason(br#"{"action":"a"} trailing"#).contains("not a JSON object"));
        assert!(reason(b"[1,2]").contains("not a string"));
        assert!(reason(br#"{"id":"/x"}"#).contains("no `action`"));
        assert!(reason(br#"{"action":null}"#).contains("no `action`"));
        assert!(reason(br#"{"action":7}"#).contains("not a string"));
        assert!(reason(br#"{"action":" "}"#).contains("is empty"));
        assert!(reason(&[0xff, 0xfe]).contains("not a JSON object"));
        // Kept as before the body was parsed in full: a repeated `action` is refused.
        assert!(reason(br#"{"action":"a","action":"b"}"#).contains("duplicate field `action`"));
        assert!(reason(br#"{"id":"1","action":"a","id":"2"}"#).contains("duplicate field `id`"));
        // An unknown action is still an event: routing decides what to do with it.
        assert_eq!(
            read_both(br#"{"action":"brand.new"}"#).1,
            Ok("brand.new".into())
        );
        // Other repeated keys, and numbers no f64 holds, do not stop the event.
        assert_eq!(
            read_both(br#"{"action":"a","x":1,"x":2}"#).1,
            Ok("a".into())
        );
        assert_eq!(read_both(br#"{"action":"a","n":1e400}"#).1, Ok("a".into()));
    }

    #[test]
    fn the_whole_body_is_parsed_once() {
        let body = br#"{"id":"/e/1","action":"message.received","message":{"body":"hi"}}"#;
        let before = crate::event::parses();
        let env = read(body, true);
        assert_eq!(crate::event::parses() - before, 1);
        assert_eq!(env.parsed.value(body)["message"]["body"], "hi");
        assert_eq!(crate::event::parses() - before, 1);
        let before = crate::event::parses();
        read(body, false);
        assert_eq!(crate::event::parses() - before, 1);
    }
}
