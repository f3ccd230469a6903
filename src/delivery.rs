//! One dispatcher per target: claims due deliveries from the store (or, once caught up, is
//! handed new ones as they are stored: see [`crate::store::handoff`]) and attempts them.
//!
//! Each dispatcher is its own pingora `BackgroundService` (its own runtime), with its own
//! concurrency, rate limit, retry schedule and circuit breaker, and reads only its own target's
//! queue: a target that is down, slow or rate limited cannot delay another. Nothing is held only
//! in memory: a claimed or handed delivery is leased in the store, and a lease that is never settled
//! (crash, failed write) expires and the delivery is attempted again.
//!
//! Before each claim the dispatcher asks whether the target may send: not while it is disabled
//! (a `410 Gone`) or paused (an operator), and only a single probe while its breaker is open. A
//! delivery claimed before the target stopped sending is released unattempted, so waiting
//! never spends attempts, and when sending resumes the time held back is credited to the
//! `max_age` clock of every waiting delivery (`Store::credit_wait`).

pub mod breaker;
pub mod fleet;
mod hold;
pub mod rate;
pub mod retry;
mod run;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Turns true when the dispatcher is to stop.
type ShutdownWatch = watch::Receiver<bool>;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{DeliveryOrder, TargetId, TargetSettings};
use crate::metrics::Metrics;
use crate::store::{AttemptRecord, ControlChange, Disabled, Job, Store, StoreError, unix_ms};
use crate::targets::health::TargetHealth;
use crate::targets::{Outcome, Target, standard_webhooks};
use breaker::Breaker;
use retry::Next;
use run::{Run, Step};

/// How long a stopping dispatcher waits for the results of its last attempts to be written.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// What the end of an attempt means for the dispatcher's next claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    /// Delivered and acked: nothing new is due that a claim would find.
    Done,
    /// A retry was scheduled, a head moved, the breaker or the target's state may have
    /// changed, or the result was not written (the lease will run out): claim again.
    Changed,
}

/// Delivers one target's queue.
pub struct Dispatcher {
    inner: Arc<Inner>,
    /// Counts running dispatchers, for `/readyz`.
    running: Arc<AtomicUsize>,
}

struct Inner {
    config: TargetSettings,
    target: Arc<dyn Target>,
    health: Arc<TargetHealth>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Locked only briefly, never across an await.
    breaker: Mutex<Breaker>,
}

impl Dispatcher {
    pub fn new(
        config: TargetSettings,
        target: Arc<dyn Target>,
        health: Arc<TargetHealth>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        running: Arc<AtomicUsize>,
    ) -> Dispatcher {
        let breaker = Mutex::new(Breaker::new(config.breaker));
        Dispatcher {
            inner: Arc::new(Inner {
                config,
                target,
                health,
                store,
                metrics,
                breaker,
            }),
            running,
        }
    }

    fn name(&self) -> &TargetId {
        &self.inner.config.name
    }

    /// How long a delivery is leased, claimed or handed over: long enough for every leased
    /// job ahead of it to take its rate limit token and run to its timeout, and then for it to
    /// do the same, with room to record the result. Only a result that could not be recorded
    /// ever waits for a lease to run out (a restart releases them all).
    fn lease(&self) -> Duration {
        let c = &self.inner.config;
        let waves = u32::try_from(run::WAVES_AHEAD + 1).unwrap_or(u32::MAX);
        let jobs = u32::try_from(c.concurrency)
            .unwrap_or(u32::MAX)
            .saturating_mul(waves);
        let rate_wait = c
            .rate_limit
            .as_ref()
            .map_or(Duration::ZERO, |r| r.per / r.count.max(1) * jobs);
        c.timeout * waves + rate_wait + Duration::from_secs(60)
    }
}

impl Dispatcher {
    /// Delivers until `stop` turns true (or its sender is dropped), then lets the attempts in
    /// flight finish.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let name = self.name().clone();
        let ordered = !matches!(
            self.inner.config.ordering,
            crate::config::DeliveryOrder::Unordered
        );
        self.inner.store.layout(&name, ordered);
        self.inner.load_control().await;
        // A store shared by several relays tells of pauses and enables made through another.
        let follow = self
            .inner
            .store
            .control_feed(&name)
            .map(|feed| tokio::spawn(self.inner.clone().follow_control(feed)));
        self.running.fetch_add(1, Ordering::SeqCst);
        let config = &self.inner.config;
        let mut run = Run::new(self.inner.clone(), self.lease());
        info!(target = %name, concurrency = config.concurrency, "dispatcher started");
        while !*shutdown.borrow() {
            if let Step::Stop = run.step(&mut shutdown).await {
                break;
            }
        }
        // Nothing more is handed over, and what was goes back to the queue at once.
        run.withdraw().await;
        // Let attempts already in flight finish (each is bounded by the target's timeout), and
        // then their results be written, so none is left to a lease's expiry.
        let all = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            config.timeout + Duration::from_secs(1),
            run.slots().acquire_many(all),
        )
        .await;
        let _ = tokio::time::timeout(SETTLE_WAIT, run.settling().acquire_many(all)).await;
        if let Some(follow) = follow {
            follow.abort();
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        info!(target = %name, "dispatcher stopped");
    }
}

impl Inner {
    /// One attempt and its durable result. Holding `slot` is what limits concurrency.
    async fn attempt(
        &self,
        job: Job,
        slot: OwnedSemaphorePermit,
        settling: Arc<Semaphore>,
        probe: bool,
    ) -> Settled {
        let name = self.config.name.as_str();
        if !self.may_attempt(probe) {
            if probe {
                self.update_breaker(|b| b.probe_dropped(Instant::now()));
            }
            if let Err(e) = self.store.release(job.id).await {
                warn!(target = name, event_id = %job.event_id, error = %e, "releasing an unattempted delivery failed");
            }
            return Settled::Changed;
        }
        let webhook_id = standard_webhooks::webhook_id(&job.event_id, name);
        let attempt = job.attempts + 1;
        let event_type = job.event_type.as_deref().unwrap_or("");
        let started = std::time::Instant::now();
        let outcome = self.target.deliver(&job, &webhook_id).await;
        let took = started.elapsed();
        // The target is done with this attempt: its slot goes to the next delivery now rather
        // than after the result's group commit, which is most of a fast target's round trip.
        // The settling permit is taken first, so a stopping dispatcher that has every slot
        // still sees this result being written.
        let _settling = settling.acquire_owned().await.ok();
        drop(slot);
        let duration_ms = took.as_millis() as u64;
        self.metrics.delivery_duration(name, took);
        self.observe(&outcome);
        // An ack of an unordered delivery outside a probe is the one result no claim needs
        // to follow up.
        let mut settled = Settled::Changed;
        let written = match outcome {
            Outcome::Delivered { status } => {
                info!(target = name, event_id = %job.event_id, event_type, attempt, status, duration_ms, "delivered");
                self.metrics.delivery(name, "delivered");
                self.health.record_success();
                if !probe && self.config.ordering == DeliveryOrder::Unordered {
                    settled = Settled::Done;
                    self.store.ack_unhurried(job.id).await
                } else {
                    self.store.ack(job.id).await
                }
            }
            Outcome::Retry {
                status,
                reason,
                retry_after,
            } => {
                self.health.record_error(&reason);
                let next = retry::next_attempt(
                    &self.config.retry,
                    attempt,
                    job.created_at,
                    retry_after,
                    SystemTime::now(),
                    &mut rand::rng(),
                );
                match next {
                    Next::At(at) => {
                        let in_secs = at.duration_since(SystemTime::now()).unwrap_or_default();
                        warn!(target = name, event_id = %job.event_id, event_type, attempt, status, duration_ms,
                            reason = %reason, retry_in_ms = in_secs.as_millis() as u64, "delivery failed; will retry");
                        self.metrics.delivery(name, "retry");
                        self.store
                            .retry_at(job.id, at, AttemptRecord { status, reason })
                            .await
                    }
                    Next::GiveUp => {
                        let reason = format!("gave up after {attempt} attempts: {reason}");
                        self.bury(&job, attempt, status, duration_ms, reason).await
                    }
                }
            }
            Outcome::Dead {
                status: Some(410),
                reason,
            } => self.gone(&job, attempt, duration_ms, reason).await,
            Outcome::Dead { status, reason } => {
                self.bury(&job, attempt, status, duration_ms, reason).await
            }
        };
        if let Err(e) = written {
            // The lease will expire and the delivery will be attempted again: at-least-once.
            warn!(target = name, event_id = %job.event_id, error = %e, "recording the attempt failed");
            return Settled::Changed;
        }
        settled
    }

    /// `410 Gone`: the endpoint is gone for every delivery, not just this one. Disable the
    /// target (persisted) and put the delivery back, due at once, so nothing is lost when an
    /// operator points the target somewhere that exists and enables it. The attempt counts,
    /// but retry limits do not apply: only the operator decides.
    async fn gone(
        &self,
        job: &Job,
        attempt: u32,
        duration_ms: u64,
        reason: String,
    ) -> Result<(), StoreError> {
        let name = &self.config.name;
        self.health.record_error(&reason);
        self.metrics.delivery(name.as_str(), "gone");
        let change = ControlChange::Disable {
            reason: reason.clone(),
        };
        match self.store.set_control(name, change).await {
            Ok(control) => self.health.set_control(control),
            Err(e) => {
                // Stop sending anyway (until a restart): hammering a gone endpoint helps nobody.
                warn!(target = %name, error = %e, "persisting the disabled state failed");
                let mut control = self.health.control();
                control.disabled.get_or_insert(Disabled {
                    reason: reason.clone(),
                    at: unix_ms(SystemTime::now()),
                });
                self.health.set_control(control);
            }
        }
        let event_type = job.event_type.as_deref().unwrap_or("");
        error!(target = %name, event_id = %job.event_id, event_type, attempt, status = 410u16, duration_ms,
            reason = %reason, "receiver answered 410 Gone: target disabled, deliveries wait until it is enabled");
        let last = AttemptRecord {
            status: Some(410),
            reason,
        };
        self.store.retry_at(job.id, SystemTime::now(), last).await
    }

    async fn bury(
        &self,
        job: &Job,
        attempt: u32,
        status: Option<u16>,
        duration_ms: u64,
        reason: String,
    ) -> Result<(), StoreError> {
        let name = self.config.name.as_str();
        let event_type = job.event_type.as_deref().unwrap_or("");
        self.health.record_error(&reason);
        warn!(target = name, event_id = %job.event_id, event_type, attempt, status, duration_ms,
            reason = %reason, "delivery is a dead letter");
        self.metrics.delivery(name, "dead");
        self.store
            .bury(job.id, AttemptRecord { status, reason })
            .await
    }
}
