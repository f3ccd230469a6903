//! The circuit breaker of one target (design.md §5): after `breaker.failures` consecutive
//! failed attempts the target is open and nothing is sent; every `breaker.probe` one delivery
//! is tried as a probe (half open), and its result closes or reopens the breaker.
//!
//! What counts: an attempt that got no usable answer (connection error, timeout) or a
//! retryable one (408, 425, 429, 5xx, 3xx) is a failure. A permanent answer (a 4xx that
//! dead-letters the delivery, or 410 which disables the target) is the receiver answering,
//! not an outage, so it counts as a success: it resets the count and closes an open breaker.
//! Otherwise a target that rejects one malformed event would stop everything else.
//!
//! Pure state, no I/O: the dispatcher asks [`Breaker::permit`] before claiming and reports
//! each attempt to [`Breaker::record`]. Time is tokio's, so tests run on paused time. Kept in
//! memory: a restart starts closed.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::BreakerPolicy;
use crate::targets::health::BreakerState;

/// The breaker of one target.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        /// Consecutive failed attempts so far.
        failures: u32,
    },
    Open {
        /// When the next probe may go.
        probe_at: Instant,
        /// When it opened (the wait is credited to `max_age` from here).
        since: SystemTime,
    },
    HalfOpen {
        since: SystemTime,
    },
}

/// What the dispatcher may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Claim as many deliveries as there are free slots.
    Send,
    /// Claim exactly one delivery, as the probe.
    Probe,
    /// Send nothing before this time.
    WaitUntil(Instant),
    /// The probe is in flight: send nothing until it reports.
    WaitForProbe,
}

/// What one attempt says about the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// It answered, whether or not the delivery succeeded.
    Answered,
    /// No answer, or one that asks to try again.
    Failed,
}

/// A transition worth logging (and acting on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// Closed → open.
    Opened,
    /// The probe failed: open again for another interval.
    Reopened,
    /// Back to sending; it had been open since `since`.
    Closed {
        since: SystemTime,
    },
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: State::Closed { failures: 0 },
        }
    }

    /// The state as operators see it.
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Since when the breaker has kept the target from sending, if it has.
    pub fn held_since(&self) -> Option<SystemTime> {
        match self.state {
            State::Closed { .. } => None,
            State::Open { since, .. } | State::HalfOpen { since } => Some(since),
        }
    }

    pub fn permit(&self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Send,
            State::Open { probe_at, .. } if now >= probe_at => Permit::Probe,
            State::Open { probe_at, .. } => Permit::WaitUntil(probe_at),
            State::HalfOpen { .. } => Permit::WaitForProbe,
        }
    }

    /// The dispatcher claimed the probe delivery.
    pub fn probe_started(&mut self) {
        if let State::Open { since, .. } = self.state {
            self.state = State::HalfOpen { since };
        }
    }

    /// The probe was claimed but not attempted (the target was paused meanwhile): the next
    /// probe may go at once.
    pub fn probe_dropped(&mut self, now: Instant) {
        if let State::HalfOpen { since } = self.state {
            self.state = State::Open {
                probe_at: now,
                since,
            };
        }
    }

    /// Counts one attempt's result.
    pub fn record(&mut self, signal: Signal, now: Instant) -> Change {
        let open = |since| State::Open {
            probe_at: now + self.probe_interval(),
            since,
        };
        match (self.state, signal) {
            (State::Closed { .. }, Signal::Answered) => {
                self.state = State::Closed { failures: 0 };
                Change::None
            }
            (State::Open { since, .. } | State::HalfOpen { since }, Signal::Answered) => {
                self.state = State::Closed { failures: 0 };
                Change::Closed { since }
            }
            (State::Closed { failures }, Signal::Failed) => {
                let failures = failures.saturating_add(1);
                if failures >= self.policy.failures {
                    self.state = open(SystemTime::now());
                    Change::Opened
                } else {
                    self.state = State::Closed { failures };
                    Change::None
                }
            }
            (State::HalfOpen { since }, Signal::Failed) => {
                self.state = open(since);
                Change::Reopened
            }
            // An attempt that started before the breaker opened: the schedule stands.
            (State::Open { .. }, Signal::Failed) => Change::None,
        }
    }

    fn probe_interval(&self) -> Duration {
        self.policy.probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, probe_secs: u64) -> Breaker {
        Breaker::new(BreakerPolicy {
            failures,
            probe: Duration::from_secs(probe_secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_probes_on_schedule() {
        let mut b = breaker(3, 30);
        let now = Instant::now();
        assert_eq!(b.record(Signal::Failed, now), Change::None);
        assert_eq!(b.record(Signal::Failed, now), Change::None);
        assert_eq!(b.permit(Instant::now()), Permit::Send);
        assert_eq!(b.record(Signal::Failed, Instant::now()), Change::Opened);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.held_since().is_some());
        let probe_at = Instant::now() + Duration::from_secs(30);
        assert_eq!(b.permit(Instant::now()), Permit::WaitUntil(probe_at));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.permit(Instant::now()), Permit::WaitUntil(probe_at));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Probe);
        b.probe_started();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.permit(Instant::now()), Permit::WaitForProbe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_interval_and_a_good_one_closes() {
        let mut b = breaker(1, 10);
        assert_eq!(b.record(Signal::Failed, Instant::now()), Change::Opened);
        let since = b.held_since().expect("open");
        tokio::time::advance(Duration::from_secs(10)).await;
        b.probe_started();
        assert_eq!(b.record(Signal::Failed, Instant::now()), Change::Reopened);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.held_since(),
            Some(since),
            "still held since the first opening"
        );
        assert_eq!(
            b.permit(Instant::now()),
            Permit::WaitUntil(Instant::now() + Duration::from_secs(10))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.permit(Instant::now()), Permit::Probe);
        b.probe_started();
        assert_eq!(
            b.record(Signal::Answered, Instant::now()),
            Change::Closed { since }
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.permit(Instant::now()), Permit::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_resets_the_count_of_consecutive_failures() {
        let mut b = breaker(3, 30);
        b.record(Signal::Failed, Instant::now());
        b.record(Signal::Failed, Instant::now());
        // A 4xx: the receiver is there, it just refused this event.
        assert_eq!(b.record(Signal::Answered, Instant::now()), Change::None);
        b.record(Signal::Failed, Instant::now());
        b.record(Signal::Failed, Instant::now());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.record(Signal::Failed, Instant::now()), Change::Opened);
    }

    #[tokio::test(start_paused = true)]
    async fn late_failures_do_not_push_the_probe_back_and_a_dropped_probe_goes_again() {
        let mut b = breaker(1, 30);
        b.record(Signal::Failed, Instant::now());
        let probe_at = Instant::now() + Duration::from_secs(30);
        tokio::time::advance(Duration::from_secs(5)).await;
        // An attempt that was already in flight when the breaker opened.
        assert_eq!(b.record(Signal::Failed, Instant::now()), Change::None);
        assert_eq!(b.permit(Instant::now()), Permit::WaitUntil(probe_at));
        tokio::time::advance(Duration::from_secs(25)).await;
        b.probe_started();
        b.probe_dropped(Instant::now());
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.permit(Instant::now()), Permit::Probe);
    }
}
