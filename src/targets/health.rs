//! What a target's recent attempts say about it, for operators: the last error, whether the
//! receiver itself needs a person (e.g. Slack says the webhook's channel was archived), the
//! breaker state and whether the target is disabled or paused.
//!
//! Written by dispatchers, target kinds and the admin API, read by the admin API and metrics
//! (`relay_breaker_open{target}` reads [`TargetHealth::breaker_open`]). Kept in memory: the
//! breaker is a view of recent behaviour (a restart starts closed), and the control state is a
//! copy of what the store persists, written after the store has it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::store::TargetControl;

/// A target's circuit breaker as operators see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Sending normally.
    #[default]
    Closed,
    /// Too many consecutive failures: nothing is sent until the next probe.
    Open,
    /// One probe delivery is in flight; its result closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// As shown by the admin API: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    fn from_u8(n: u8) -> BreakerState {
        match n {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

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
    /// A [`BreakerState`], published by the dispatcher on every transition.
    breaker: AtomicU8,
    control: Mutex<TargetControl>,
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

    /// The breaker's current state.
    pub fn breaker(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }

    /// The value of `relay_breaker_open{target}`: true while open or half open (nothing but
    /// probes is being sent).
    pub fn breaker_open(&self) -> bool {
        self.breaker() != BreakerState::Closed
    }

    pub fn set_breaker(&self, state: BreakerState) {
        self.breaker.store(state.to_u8(), Ordering::Relaxed);
    }

    /// Whether the target is disabled or paused (a copy of the store's state).
    pub fn control(&self) -> TargetControl {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Call after the store has persisted `control`.
    pub fn set_control(&self, control: TargetControl) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = control;
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

    #[test]
    fn breaker_state_round_trips_and_half_open_counts_as_open() {
        let h = TargetHealth::default();
        assert_eq!(h.breaker(), BreakerState::Closed);
        assert!(!h.breaker_open());
        for state in [BreakerState::Open, BreakerState::HalfOpen] {
            h.set_breaker(state);
            assert_eq!(h.breaker(), state);
            assert!(h.breaker_open());
        }
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }
}
