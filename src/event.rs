//! An event's body as JSON, parsed at most once however many readers it has.
//!
//! A body is read as JSON by up to three readers: the envelope (`action`, `id`), routing
//! (`when` conditions, order keys) and every templated target (Slack messages, CRM requests).
//! Ingress parses it once and hands the value to all of them: routing reads it, and deliveries
//! handed to a dispatcher as they are stored (`store::handoff`) carry it. A delivery claimed
//! from the store comes without it, and its first reader parses it, once for that claim;
//! a plain http target sends the bytes and never parses them.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// The JSON value of one body, filled by whoever parses it first. A clone made once it is
/// filled shares the value.
#[derive(Clone, Debug, Default)]
pub struct ParsedBody(OnceLock<Arc<Value>>);

impl ParsedBody {
    /// A body already parsed (by ingress).
    pub fn parsed(value: Arc<Value>) -> ParsedBody {
        ParsedBody(OnceLock::from(value))
    }

    /// The value of `body`, which must be the body this was made for: parsed now if no reader
    /// parsed it yet. A body that is not JSON is `null`, so templates see every field as
    /// missing (such a body reaches a target only by `replay` of a dead letter).
    pub fn value(&self, body: &[u8]) -> &Value {
        self.0
            .get_or_init(|| Arc::new(parse(|| serde_json::from_slice(body)).unwrap_or_default()))
    }

    /// The value, if some reader parsed it already.
    pub fn get(&self) -> Option<&Arc<Value>> {
        self.0.get()
    }
}

/// Runs one parse of a body. Every parse of a body goes through here, so tests can count
/// them ([`parses`]).
pub(crate) fn parse<T>(run: impl FnOnce() -> T) -> T {
    #[cfg(test)]
    PARSES.with(|n| n.set(n.get() + 1));
    run()
}

#[cfg(test)]
thread_local! {
    static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many bodies this thread has parsed so far (tests run ingress and dispatch on one
/// thread, the store's writer on its own, so the count is the test's own).
#[cfg(test)]
pub(crate) fn parses() -> usize {
    PARSES.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_however_often_read() {
        let body = br#"{"action":"message.received","message":{"body":"hi"}}"#;
        let parsed = ParsedBody::default();
        let before = parses();
        assert!(parsed.get().is_none());
        assert_eq!(parsed.value(body)["message"]["body"], "hi");
        assert_eq!(parsed.value(body)["action"], "message.received");
        assert_eq!(parses() - before, 1);
        // A clone made after the parse shares it.
        let clone = parsed.clone();
        assert_eq!(clone.value(body)["message"]["body"], "hi");
        assert_eq!(parses() - before, 1);
    }

    #[test]
    fn a_body_that_is_not_json_is_null() {
        let parsed = ParsedBody::default();
        assert_eq!(parsed.value(b"not json"), &Value::Null);
        let given = ParsedBody::parsed(Arc::new(serde_json::json!({"a": 1})));
        let before = parses();
        assert_eq!(given.value(b"ignored")["a"], 1);
        assert_eq!(parses(), before);
    }
}
