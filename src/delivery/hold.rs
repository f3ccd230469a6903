//! Whether a target may send: its control state (disabled by a `410 Gone`, paused by an
//! operator) and its circuit breaker, as the dispatcher consults them before each claim and
//! each attempt, and the bookkeeping when sending stops and resumes.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Inner;
use super::breaker::{Breaker, Change, Permit, Signal};
use crate::store::{TargetControl, from_unix_ms};
use crate::targets::Outcome;
use crate::targets::health::BreakerState;

/// Whether the target may send now.
pub(super) enum Gate {
    /// Claim up to the free slots.
    Send,
    /// Claim exactly one delivery, as the breaker's probe.
    Probe,
    /// Claim nothing until woken (or until `until`); held back since `since`.
    Hold {
        until: Option<Instant>,
        since: SystemTime,
    },
}

impl Inner {
    /// Whether the target may send now, and how much.
    pub(super) fn gate(&self) -> Gate {
        if let Some(ms) = self.health.control().held_since() {
            return Gate::Hold {
                until: None,
                since: from_unix_ms(ms),
            };
        }
        let breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let since = breaker.held_since().unwrap_or_else(SystemTime::now);
        match breaker.permit(Instant::now()) {
            Permit::Send => Gate::Send,
            Permit::Probe => Gate::Probe,
            Permit::WaitUntil(at) => Gate::Hold {
                until: Some(at),
                since,
            },
            Permit::WaitForProbe => Gate::Hold { until: None, since },
        }
    }

    /// Whether a claimed delivery may still be attempted: the target may have been paused, or
    /// its breaker opened, since the claim.
    pub(super) fn may_attempt(&self, probe: bool) -> bool {
        let breaker = self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state();
        self.health.control().held_since().is_none() && (probe || breaker == BreakerState::Closed)
    }

    /// Applies `f` to the breaker and publishes the resulting state.
    pub(super) fn update_breaker<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut breaker);
        self.health.set_breaker(breaker.state());
        result
    }

    /// Counts an attempt's outcome in the breaker, and says so when it changes state.
    pub(super) fn observe(&self, outcome: &Outcome) {
        let signal = match outcome {
            Outcome::Retry { .. } => Signal::Failed,
            Outcome::Delivered { .. } | Outcome::Dead { .. } => Signal::Answered,
        };
        let name = self.config.name.as_str();
        let policy = self.config.breaker;
        match self.update_breaker(|b| b.record(signal, Instant::now())) {
            Change::None => {}
            Change::Opened => warn!(
                target = name,
                failures = policy.failures,
                probe_in_ms = policy.probe.as_millis() as u64,
                "breaker open: sending nothing but a probe per interval"
            ),
            Change::Reopened => warn!(
                target = name,
                probe_in_ms = policy.probe.as_millis() as u64,
                "probe failed; breaker open again"
            ),
            Change::Closed { since } => info!(
                target = name,
                open_for_ms = since.elapsed().unwrap_or_default().as_millis() as u64,
                "breaker closed: sending again"
            ),
        }
    }

    /// Reads the persisted control state (a target disabled by a 410 stays disabled across
    /// restarts).
    pub(super) async fn load_control(&self) {
        let name = &self.config.name;
        match self.store.control(name).await {
            Ok(control) => {
                if let Some(disabled) = &control.disabled {
                    warn!(target = %name, reason = %disabled.reason, "target is disabled; enable it through the admin API");
                } else if control.paused_at.is_some() {
                    warn!(target = %name, "target is paused; enable it through the admin API");
                }
                self.health.set_control(control);
            }
            Err(e) => {
                warn!(target = %name, error = %e, "reading the target's control state failed")
            }
        }
    }

    /// Follows changes to the target's control made anywhere, until the feed ends: the
    /// dispatcher wakes to stop or resume at once.
    pub(super) async fn follow_control(
        self: std::sync::Arc<Self>,
        mut feed: tokio::sync::watch::Receiver<TargetControl>,
    ) {
        let wake = self.store.wakeup(&self.config.name);
        while feed.changed().await.is_ok() {
            let control = feed.borrow_and_update().clone();
            if control != self.health.control() {
                info!(target = %self.config.name, paused = control.paused_at.is_some(), disabled = control.disabled.is_some(), "target control changed (by another relay)");
                self.health.set_control(control);
                wake.notify_one();
            }
        }
    }

    /// Sending resumes: the time since `since` does not age the waiting deliveries.
    pub(super) async fn credit(&self, since: SystemTime) {
        let name = &self.config.name;
        if let Err(e) = self.store.credit_wait(name, since, SystemTime::now()).await {
            warn!(target = %name, error = %e, "crediting the wait to max_age failed");
        }
    }
}
