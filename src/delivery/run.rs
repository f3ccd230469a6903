//! The dispatcher's loop, one step at a time: ask whether the target may send, claim what the
//! free slots (or the breaker's probe) allow, or take what the store handed over, wait for rate
//! limit tokens, and start each attempt on its own task. Every wait is raced against shutdown.
//!
//! A claim is made when something only a claim finds may be due: at start, after a wake-up
//! (deliveries were queued, an attempt failed or changed the target's state), when the
//! earliest queued delivery falls due, after a claim that came back full, and at least every
//! [`MAX_IDLE`]. Between claims a caught-up dispatcher offers room to the store, which then
//! hands it new deliveries leased as they are stored (see [`crate::store::handoff`]), so the
//! steady state costs no claim at all. The offer is withdrawn while the queue has a backlog
//! (claims keep its order) and while the target may not send.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use super::hold::Gate;
use super::rate::RateLimiter;
use super::{Inner, Settled, ShutdownWatch};
use crate::store::Job;
use crate::store::handoff::Handoff;

/// The longest a dispatcher sleeps without looking at its queue, as a safety net under the
/// wake-ups and the next-due timer.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How many concurrencies' worth of deliveries may wait in the handoff mailbox.
pub(super) const HANDOFF_ROOM: usize = 2;
/// How many concurrencies' worth of leased jobs can be ahead of any one job: a batch taken
/// from the mailbox and waiting for slots, those in flight, and the mailbox. Leases allow for
/// it (see [`super::Dispatcher::lease`]).
pub(super) const WAVES_AHEAD: usize = 2 * HANDOFF_ROOM + 1;
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
    /// Notified when deliveries are queued, an attempt changed what is due or the target's
    /// state, or the target was enabled.
    wake: Arc<Notify>,
    /// Where the store hands over deliveries leased at birth.
    handoff: Arc<Handoff>,
    /// A claim may find something: set by wake-ups and by a claim that came back full.
    claim_due: bool,
    /// When to claim even if nothing woke the dispatcher: the earliest queued delivery's due
    /// time, or [`MAX_IDLE`] after the last claim.
    next_claim: Instant,
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
            handoff: inner.store.handoff(&config.name),
            claim_due: true,
            next_claim: Instant::now(),
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

    /// One turn: claim or take and start what may go now, or wait until something may.
    pub(super) async fn step(&mut self, shutdown: &mut ShutdownWatch) -> Step {
        let probe = match self.inner.gate() {
            Gate::Hold { until, since } => {
                self.held_since = Some(self.held_since.map_or(since, |h| h.min(since)));
                self.withdraw().await;
                let wait = until.map_or(MAX_IDLE, |at| {
                    at.saturating_duration_since(Instant::now()).min(MAX_IDLE)
                });
                return self.idle(wait, shutdown).await;
            }
            Gate::Probe => {
                self.withdraw().await;
                true
            }
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
        if probe || self.claim_needed().await {
            match self.claim(probe).await {
                Ok(jobs) if !jobs.is_empty() => {
                    if probe {
                        self.inner.update_breaker(|b| b.probe_started());
                        let name = &self.inner.config.name;
                        info!(target = %name, "breaker half open: sending one probe delivery");
                    }
                    return self.start_attempts(jobs, first, probe, shutdown).await;
                }
                Ok(_) if !probe => {}
                Ok(_) => {
                    drop(first);
                    return self.idle(self.until_next_claim(), shutdown).await;
                }
                Err(()) => {
                    drop(first);
                    return self.idle(STORE_BACKOFF, shutdown).await;
                }
            }
        }
        let handed = self.handoff.take();
        if handed.is_empty() {
            drop(first);
            return self.idle(self.until_next_claim(), shutdown).await;
        }
        self.start_attempts(handed, first, false, shutdown).await
    }

    /// Whether a claim may find something (see the module docs).
    async fn claim_needed(&mut self) -> bool {
        if !self.claim_due {
            // A wake-up that came while the dispatcher was busy is still waiting here.
            self.claim_due = tokio::select! {
                biased;
                _ = self.wake.notified() => true,
                _ = std::future::ready(()) => false,
            };
        }
        self.claim_due || Instant::now() >= self.next_claim
    }

    /// Claims a full concurrency's worth (one, for a probe), and from what came back decides
    /// whether to offer room to the store. `Err` when the store failed (already logged).
    async fn claim(&mut self, probe: bool) -> Result<Vec<Job>, ()> {
        // A full concurrency's worth even when only some slots are free: the rest start as
        // slots free up (an attempt to a fast target takes well under a commit), and the
        // shared writer sees fewer, larger claims than one per freed slot. They are leased
        // while they wait, so `in_flight` (sending, waiting, or being recorded, and with the
        // handoff mailbox) can read several times `concurrency` (see [`WAVES_AHEAD`]).
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
                return Err(());
            }
        };
        let now = Instant::now();
        let due_in = claimed.next_due.map_or(MAX_IDLE, |due| {
            due.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(MAX_IDLE)
        });
        self.next_claim = now + due_in;
        // A full claim may have left more behind; a probe decides nothing about the queue.
        self.claim_due = probe || claimed.jobs.len() >= limit;
        if self.claim_due {
            self.handoff.offer(0, self.lease);
        } else {
            self.offer();
        }
        Ok(claimed.jobs)
    }

    /// Offers the store room for [`HANDOFF_ROOM`] concurrencies' worth of deliveries: at full
    /// speed one group commit often carries more new deliveries than one concurrency.
    fn offer(&self) {
        let room = self.inner.config.concurrency.max(1) * HANDOFF_ROOM;
        self.handoff.offer(room, self.lease);
    }

    /// Stops deliveries from being handed over and puts back those already handed.
    pub(super) async fn withdraw(&mut self) {
        self.claim_due = true;
        let handed = self.handoff.withdraw();
        self.release(handed.into_iter()).await;
    }

    fn until_next_claim(&self) -> Duration {
        self.next_claim
            .saturating_duration_since(Instant::now())
            .min(MAX_IDLE)
    }

    /// Waits for a wake-up, handed deliveries or `wait`, whichever comes first; stops on
    /// shutdown.
    async fn idle(&mut self, wait: Duration, shutdown: &mut ShutdownWatch) -> Step {
        tokio::select! {
            _ = self.wake.notified() => {
                self.claim_due = true;
                Step::Next
            }
            _ = self.handoff.arrived() => Step::Next,
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
                // A retry may now be due sooner than the dispatcher's next claim, an ordering
                // head may have moved, or the breaker may have changed: only a claim sees those.
                if inner.attempt(job, slot, settling, probe).await == Settled::Changed {
                    wake.notify_one();
                }
            });
        }
        Step::Next
    }

    /// Waits for the next job's turn: a rate limit token, then a slot (`first`, while the one
    /// the claim was made with is unused). `None` only if the slots were closed.
    async fn turn(&mut self, first: Option<OwnedSemaphorePermit>) -> Option<OwnedSemaphorePermit> {
        if let Some(limiter) = self.rate.as_mut() {
            limiter.share(self.inner.store.relays());
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
                warn!(target = %name, event_id = %job.event_id, error = %e, "releasing an unstarted delivery failed");
            }
        }
    }
}
