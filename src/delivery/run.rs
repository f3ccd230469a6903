//! The dispatcher's loop, one step at a time: ask whether the target may send, claim what the
//! free slots (or the breaker's probe) allow, wait for rate limit tokens, and start each attempt
//! on its own task. Every wait is raced against shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use super::hold::Gate;
use super::rate::RateLimiter;
use super::{Inner, ShutdownWatch};
use crate::store::Job;

/// The longest a dispatcher sleeps without looking at its queue, as a safety net under the
/// wake-ups and the next-due timer.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Pause after the store failed to answer a claim.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Whether the loop goes on.
pub(super) enum Step {
    Next,
    Stop,
}

/// The state of one dispatcher run.
pub(super) struct Run {
    inner: Arc<Inner>,
    /// Notified when deliveries are added, an attempt finished, or the target was enabled.
    wake: Arc<Notify>,
    /// One permit per delivery in flight: this is what limits concurrency.
    slots: Arc<Semaphore>,
    /// One permit per attempt whose result is being written (see [`Inner::attempt`]).
    settling: Arc<Semaphore>,
    rate: Option<RateLimiter>,
    lease: Duration,
    /// Since when the target has sent nothing (breaker, disabled, paused), to credit to
    /// `max_age` once it sends again.
    held_since: Option<SystemTime>,
}

impl Run {
    pub(super) fn new(inner: Arc<Inner>, lease: Duration) -> Run {
        let config = &inner.config;
        Run {
            wake: inner.store.wakeup(&config.name),
            slots: Arc::new(Semaphore::new(config.concurrency)),
            settling: Arc::new(Semaphore::new(config.concurrency)),
            rate: config.rate_limit.as_ref().map(RateLimiter::new),
            lease,
            held_since: None,
            inner,
        }
    }

    pub(super) fn slots(&self) -> &Semaphore {
        &self.slots
    }

    pub(super) fn settling(&self) -> &Semaphore {
        &self.settling
    }

    /// One turn: claim and start what may go now, or wait until something may.
    pub(super) async fn step(&mut self, shutdown: &mut ShutdownWatch) -> Step {
        let probe = match self.inner.gate() {
            Gate::Hold { until, since } => {
                self.held_since = Some(self.held_since.map_or(since, |h| h.min(since)));
                let wait = until.map_or(MAX_IDLE, |at| {
                    at.saturating_duration_since(Instant::now()).min(MAX_IDLE)
                });
                return self.idle(wait, shutdown).await;
            }
            Gate::Probe => true,
            Gate::Send => false,
        };
        if !probe && let Some(since) = self.held_since.take() {
            self.inner.credit(since).await;
        }
        let first = tokio::select! {
            p = self.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Step::Stop,
            },
            _ = shutdown.changed() => return Step::Stop,
        };
        // A full concurrency's worth even when only some slots are free: the rest start as
        // slots free up (an attempt to a fast target takes well under a commit), and the
        // shared writer sees fewer, larger claims than one per freed slot. They are leased
        // while they wait, so `in_flight` (sending, waiting, or being recorded) can read up to
        // about three times `concurrency`.
        let limit = if probe {
            1
        } else {
            self.inner.config.concurrency.max(1)
        };
        let name = &self.inner.config.name;
        let claimed = match self.inner.store.claim(name, limit, self.lease).await {
            Ok(c) => c,
            Err(e) => {
                warn!(target = %name, error = %e, "claiming deliveries failed");
                drop(first);
                return self.idle(STORE_BACKOFF, shutdown).await;
            }
        };
        if claimed.jobs.is_empty() {
            drop(first);
            let wait = claimed.next_due.map_or(MAX_IDLE, |due| {
                due.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_IDLE)
            });
            return self.idle(wait, shutdown).await;
        }
        if probe {
            self.inner.update_breaker(|b| b.probe_started());
            info!(target = %name, "breaker half open: sending one probe delivery");
        }
        self.start_attempts(claimed.jobs, first, probe, shutdown)
            .await
    }

    /// Waits for a wake-up or `wait`, whichever comes first; stops on shutdown.
    async fn idle(&self, wait: Duration, shutdown: &mut ShutdownWatch) -> Step {
        tokio::select! {
            _ = self.wake.notified() => Step::Next,
            _ = tokio::time::sleep(wait) => Step::Next,
            _ = shutdown.changed() => Step::Stop,
        }
    }

    /// Starts one task per claimed job, each holding a slot, spaced by the rate limit.
    async fn start_attempts(
        &mut self,
        jobs: Vec<Job>,
        first: OwnedSemaphorePermit,
        probe: bool,
        shutdown: &mut ShutdownWatch,
    ) -> Step {
        let mut first = Some(first);
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            let turn = tokio::select! {
                slot = self.turn(first.take()) => slot,
                _ = shutdown.changed() => None,
            };
            let Some(slot) = turn else {
                self.release(std::iter::once(job).chain(jobs)).await;
                return Step::Stop;
            };
            let inner = self.inner.clone();
            let wake = self.wake.clone();
            let settling = self.settling.clone();
            tokio::spawn(async move {
                inner.attempt(job, slot, settling, probe).await;
                // A retry may now be due sooner than the dispatcher's current timer, or the
                // breaker may have changed.
                wake.notify_one();
            });
        }
        Step::Next
    }

    /// Waits for the next job's turn: a rate limit token, then a slot (`first`, while the one
    /// the claim was made with is unused). `None` only if the slots were closed.
    async fn turn(&mut self, first: Option<OwnedSemaphorePermit>) -> Option<OwnedSemaphorePermit> {
        if let Some(limiter) = self.rate.as_mut() {
            while let Err(wait) = limiter.try_take() {
                tokio::time::sleep(wait).await;
            }
        }
        match first {
            Some(slot) => Some(slot),
            None => self.slots.clone().acquire_owned().await.ok(),
        }
    }

    /// Gives claimed but unstarted jobs back at once, so a dispatcher that replaces this one
    /// (after a reload) need not wait for their leases to expire. One that fails to go back
    /// still comes back when its lease expires.
    async fn release(&self, jobs: impl Iterator<Item = Job>) {
        let name = &self.inner.config.name;
        for job in jobs {
            if let Err(e) = self.inner.store.release(job.id).await {
                warn!(target = %name, event_id = %job.event_key, error = %e, "releasing an unstarted delivery failed");
            }
        }
    }
}
