//! What a target's recent attempts say about it, for operators: the last error, and whether
//! the receiver itself needs a person (e.g. Slack says the webhook's channel was archived).
//!
//! Written by dispatchers and target kinds, read by the admin API. Kept in memory: it is a
//! view of recent behaviour, not state that must survive a restart.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// One observation with its time.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Note {
    pub message: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// The health view of one target.
#[derive(Debug, Default)]
pub struct TargetHealth {
    state: Mutex<State>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct State {
    pub last_error: Option<Note>,
    /// Set when the receiver answered in a way only an operator can fix.
    pub needs_attention: Option<Note>,
}

impl TargetHealth {
    pub fn record_error(&self, message: &str) {
        self.update(|s| s.last_error = Some(note(message)));
    }

    pub fn flag_attention(&self, message: &str) {
        self.update(|s| s.needs_attention = Some(note(message)));
    }

    /// A delivery succeeded: whatever needed attention has evidently been fixed.
    pub fn record_success(&self) {
        self.update(|s| s.needs_attention = None);
    }

    pub fn snapshot(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn note(message: &str) -> Note {
    Note {
        message: message.to_string(),
        at: crate::store::unix_ms(SystemTime::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_is_cleared_by_a_success_but_the_last_error_stays() {
        let h = TargetHealth::default();
        h.record_error("HTTP 404: channel_not_found");
        h.flag_attention("channel_not_found");
        assert!(h.snapshot().needs_attention.is_some());
        h.record_success();
        let s = h.snapshot();
        assert!(s.needs_attention.is_none());
        assert_eq!(
            s.last_error.map(|n| n.message).as_deref(),
            Some("HTTP 404: channel_not_found")
        );
    }
}
