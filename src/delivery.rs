//! One dispatcher per target: claims due deliveries from the store and attempts them.
//!
//! Each dispatcher is its own pingora `BackgroundService` (its own runtime), with its own
//! concurrency, rate limit, retry schedule and circuit breaker, and reads only its own target's
//! queue: a target that is down, slow or rate limited cannot delay another. Nothing is held only
//! in memory: a claimed delivery is leased in the store, and a lease that is never settled
//! (crash, failed write) expires and the delivery is attempted again.
//!
//! Before each claim the dispatcher asks whether the target may send: not while it is disabled
//! (a `410 Gone`) or paused (an operator), and only a single probe while its breaker is open. A
//! delivery claimed before the target stopped sending is released unattempted, so waiting
//! never spends attempts, and when sending resumes the time held back is credited to the
//! `max_age` clock of every waiting delivery (`Store::credit_wait`).

pub mod breaker;
pub mod health;
pub mod rate;
pub mod retry;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::{Target as TargetConfig, TargetId};
use crate::metrics::Metrics;
use crate::store::{
    AttemptRecord, ControlChange, Disabled, Job, Store, StoreError, from_unix_ms, unix_ms,
};
use crate::targets::{Outcome, Target, standard_webhooks};
use breaker::{Breaker, Change, Permit, Signal};
use health::{BreakerState, TargetHealth};
use rate::RateLimiter;
use retry::Next;

/// The longest a dispatcher sleeps without looking at its queue, as a safety net under the
/// wake-ups and the next-due timer.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Pause after the store failed to answer a claim.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Delivers one target's queue.
pub struct Dispatcher {
    inner: Arc<Inner>,
    /// Counts running dispatchers, for `/readyz`.
    running: Arc<AtomicUsize>,
}

struct Inner {
    config: TargetConfig,
    target: Arc<dyn Target>,
    health: Arc<TargetHealth>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Locked only briefly, never across an await.
    breaker: Mutex<Breaker>,
}

/// Whether the target may send now.
enum Gate {
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

impl Dispatcher {
    pub fn new(
        config: TargetConfig,
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

    /// How long a claim is leased: long enough for every claimed job to wait for its rate
    /// limit token and then run to its timeout, with room to record the result.
    fn lease(&self) -> Duration {
        let c = &self.inner.config;
        let rate_wait = c.rate_limit.as_ref().map_or(Duration::ZERO, |r| {
            r.per / r.count.max(1) * c.concurrency as u32
        });
        c.timeout * 2 + rate_wait + Duration::from_secs(60)
    }
}

#[async_trait]
impl BackgroundService for Dispatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let name = self.name().clone();
        self.inner.load_control().await;
        self.running.fetch_add(1, Ordering::SeqCst);
        let config = &self.inner.config;
        let wake = self.inner.store.wakeup(&name);
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let mut rate = config.rate_limit.as_ref().map(RateLimiter::new);
        let lease = self.lease();
        // Since when the target has sent nothing (breaker, disabled, paused), to credit.
        let mut held_since: Option<SystemTime> = None;
        info!(target = %name, concurrency = config.concurrency, "dispatcher started");
        'run: while !*shutdown.borrow() {
            let probe = match self.inner.gate() {
                Gate::Hold { until, since } => {
                    held_since = Some(held_since.map_or(since, |h| h.min(since)));
                    let wait = until.map_or(MAX_IDLE, |at| {
                        at.saturating_duration_since(Instant::now()).min(MAX_IDLE)
                    });
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
                Gate::Probe => true,
                Gate::Send => false,
            };
            if !probe && let Some(since) = held_since.take() {
                self.inner.credit(since).await;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.changed() => break,
            };
            let Ok(first) = permit else { break };
            let limit = if probe {
                1
            } else {
                1 + slots.available_permits()
            };
            let claimed = match self.inner.store.claim(&name, limit, lease).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(target = %name, error = %e, "claiming deliveries failed");
                    drop(first);
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_BACKOFF) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            if claimed.jobs.is_empty() {
                drop(first);
                let wait = claimed.next_due.map_or(MAX_IDLE, |due| {
                    due.duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_IDLE)
                });
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
                continue;
            }
            if probe {
                self.inner.update_breaker(|b| b.probe_started());
                info!(target = %name, "breaker half open: sending one probe delivery");
            }
            let mut permit = Some(first);
            for job in claimed.jobs {
                if let Some(limiter) = rate.as_mut() {
                    while let Err(wait) = limiter.try_take() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            // Claimed but unstarted jobs come back when their lease expires.
                            _ = shutdown.changed() => break 'run,
                        }
                    }
                }
                let slot = match permit.take() {
                    Some(p) => p,
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break 'run,
                    },
                };
                let inner = self.inner.clone();
                let wake = wake.clone();
                tokio::spawn(async move {
                    inner.attempt(job, slot, probe).await;
                    // A retry may now be due sooner than the dispatcher's current timer, or
                    // the breaker may have changed.
                    wake.notify_one();
                });
            }
        }
        // Let attempts already in flight finish (each is bounded by the target's timeout).
        let all = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            config.timeout + Duration::from_secs(1),
            slots.acquire_many(all),
        )
        .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        info!(target = %name, "dispatcher stopped");
    }
}

impl Inner {
    /// Whether the target may send now, and how much.
    fn gate(&self) -> Gate {
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
    fn may_attempt(&self, probe: bool) -> bool {
        let breaker = self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state();
        self.health.control().held_since().is_none() && (probe || breaker == BreakerState::Closed)
    }

    /// Applies `f` to the breaker and publishes the resulting state.
    fn update_breaker<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        let result = f(&mut breaker);
        self.health.set_breaker(breaker.state());
        result
    }

    /// Counts an attempt's outcome in the breaker, and says so when it changes state.
    fn observe(&self, outcome: &Outcome) {
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
    async fn load_control(&self) {
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

    /// Sending resumes: the time since `since` does not age the waiting deliveries.
    async fn credit(&self, since: SystemTime) {
        let name = &self.config.name;
        if let Err(e) = self.store.credit_wait(name, since, SystemTime::now()).await {
            warn!(target = %name, error = %e, "crediting the wait to max_age failed");
        }
    }

    /// One attempt and its durable result. Holding `_slot` is what limits concurrency.
    async fn attempt(&self, job: Job, _slot: OwnedSemaphorePermit, probe: bool) {
        let name = self.config.name.as_str();
        if !self.may_attempt(probe) {
            if probe {
                self.update_breaker(|b| b.probe_dropped(Instant::now()));
            }
            if let Err(e) = self.store.release(job.id).await {
                warn!(target = name, event_id = %job.event_key, error = %e, "releasing an unattempted delivery failed");
            }
            return;
        }
        let webhook_id = standard_webhooks::webhook_id(&job.event_key, name);
        let attempt = job.attempts + 1;
        let event_type = job.event_type.as_deref().unwrap_or("");
        let outcome = self.target.deliver(&job, &webhook_id).await;
        self.observe(&outcome);
        let written = match outcome {
            Outcome::Delivered { status } => {
                info!(target = name, event_id = %job.event_key, event_type, attempt, status, "delivered");
                self.metrics.delivery(name, "delivered");
                self.health.record_success();
                self.store.ack(job.id).await
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
                        warn!(target = name, event_id = %job.event_key, event_type, attempt, status, reason = %reason,
                            retry_in_ms = in_secs.as_millis() as u64, "delivery failed; will retry");
                        self.metrics.delivery(name, "retry");
                        self.store
                            .retry_at(job.id, at, AttemptRecord { status, reason })
                            .await
                    }
                    Next::GiveUp => {
                        let reason = format!("gave up after {attempt} attempts: {reason}");
                        self.bury(&job, attempt, status, reason).await
                    }
                }
            }
            Outcome::Dead {
                status: Some(410),
                reason,
            } => self.gone(&job, reason).await,
            Outcome::Dead { status, reason } => self.bury(&job, attempt, status, reason).await,
        };
        if let Err(e) = written {
            // The lease will expire and the delivery will be attempted again: at-least-once.
            warn!(target = name, event_id = %job.event_key, error = %e, "recording the attempt failed");
        }
    }

    /// `410 Gone`: the endpoint is gone for every delivery, not just this one. Disable the
    /// target (persisted) and put the delivery back, due at once, so nothing is lost when an
    /// operator points the target somewhere that exists and enables it. The attempt counts,
    /// but retry limits do not apply: only the operator decides.
    async fn gone(&self, job: &Job, reason: String) -> Result<(), StoreError> {
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
        error!(target = %name, event_id = %job.event_key, reason = %reason,
            "receiver answered 410 Gone: target disabled, deliveries wait until it is enabled");
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
        reason: String,
    ) -> Result<(), StoreError> {
        let name = self.config.name.as_str();
        self.health.record_error(&reason);
        warn!(target = name, event_id = %job.event_key, attempt, status, reason = %reason, "delivery is a dead letter");
        self.metrics.delivery(name, "dead");
        self.store
            .bury(job.id, AttemptRecord { status, reason })
            .await
    }
}
