//! Reads the two facts the relay needs from a verified body: the event type and its id.
//!
//! Nothing else in the body is interpreted here, so a new field or an unusual shape can never
//! make the relay refuse an event. A body that is not a JSON object with a string `action` is
//! still kept, as a dead letter with the reason.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What ingress learned from a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope `id`, or `sha256:<hex>` of the raw body when it has none.
    pub key: String,
    /// The `action`, or why the body is not a usable event.
    pub kind: Result<String, String>,
}

/// Only the fields routing needs; every other field is ignored (and kept in the raw body).
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    action: Option<serde_json::Value>,
}

/// Reads `body`. Never fails: a malformed body yields `kind: Err(reason)`.
pub fn read(body: &[u8]) -> Envelope {
    let digest_key = || format!("sha256:{}", hex::encode(Sha256::digest(body)));
    let head: Head = match serde_json::from_slice(body) {
        Ok(head) => head,
        Err(e) => {
            return Envelope {
                key: digest_key(),
                kind: Err(format!("body is not a JSON object: {e}")),
            };
        }
    };
    let key = match head.id {
        Some(serde_json::Value::String(id)) if !id.trim().is_empty() => id,
        _ => digest_key(),
    };
    let kind = match head.action {
        Some(serde_json::Value::String(a)) if !a.trim().is_empty() => Ok(a),
        Some(serde_json::Value::String(_)) => Err("`action` is empty".to_string()),
        Some(_) => Err("`action` is not a string".to_string()),
        None => Err("no `action` field: the event type is unknown".to_string()),
    };
    Envelope { key, kind }
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
            let env = read(&body);
            assert_eq!(env.kind, Ok(name.to_string()));
            assert!(env.key.starts_with("/integrations/"), "{name}: {}", env.key);
        }
    }

    #[test]
    fn falls_back_to_the_body_digest_without_an_id() {
        let a = read(br#"{"action":"message.received","x":1}"#);
        let b = read(br#"{"action":"message.received","x":2}"#);
        assert!(a.key.starts_with("sha256:"));
        assert_ne!(a.key, b.key);
        assert_eq!(a.key, read(br#"{"action":"message.received","x":1}"#).key);
    }

    #[test]
    fn unusable_bodies_are_reported_not_refused() {
        assert!(read(b"not json").kind.is_err());
        assert!(read(b"[1,2]").kind.is_err());
        assert!(
            read(br#"{"id":"/x"}"#)
                .kind
                .unwrap_err()
                .contains("no `action`")
        );
        assert!(
            read(br#"{"action":7}"#)
                .kind
                .unwrap_err()
                .contains("not a string")
        );
        assert!(read(&[0xff, 0xfe]).kind.is_err());
        // An unknown action is still an event: routing decides what to do with it.
        assert_eq!(
            read(br#"{"action":"brand.new"}"#).kind,
            Ok("brand.new".into())
        );
    }
}
