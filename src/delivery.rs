//! One dispatcher per target: claims due deliveries from the store and attempts them.
//!
//! Each dispatcher is its own pingora `BackgroundService` (its own runtime), with its own
//! concurrency, rate limit and retry schedule, and reads only its own target's queue: a target
//! that is down, slow or rate limited cannot delay another. Nothing is held only in memory: a
//! claimed delivery is leased in the store, and a lease that is never settled (crash, failed
//! write) expires and the delivery is attempted again.

pub mod health;
pub mod rate;
pub mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::config::{Target as TargetConfig, TargetId};
use crate::metrics::Metrics;
use crate::store::{AttemptRecord, Job, Store};
use crate::targets::{Outcome, Target, standard_webhooks};
use health::TargetHealth;
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
        Dispatcher {
            inner: Arc::new(Inner {
                config,
                target,
                health,
                store,
                metrics,
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
        self.running.fetch_add(1, Ordering::SeqCst);
        let name = self.name().clone();
        let config = &self.inner.config;
        let wake = self.inner.store.wakeup(&name);
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let mut rate = config.rate_limit.as_ref().map(RateLimiter::new);
        let lease = self.lease();
        info!(target = %name, concurrency = config.concurrency, "dispatcher started");
        'run: while !*shutdown.borrow() {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p,
                _ = shutdown.changed() => break,
            };
            let Ok(first) = permit else { break };
            let free = 1 + slots.available_permits();
            let claimed = match self.inner.store.claim(&name, free, lease).await {
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
                    inner.attempt(job, slot).await;
                    // A retry may now be due sooner than the dispatcher's current timer.
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
    /// One attempt and its durable result. Holding `_slot` is what limits concurrency.
    async fn attempt(&self, job: Job, _slot: OwnedSemaphorePermit) {
        let name = self.config.name.as_str();
        let webhook_id = standard_webhooks::webhook_id(&job.event_key, name);
        let attempt = job.attempts + 1;
        let event_type = job.event_type.as_deref().unwrap_or("");
        let started = std::time::Instant::now();
        let outcome = self.target.deliver(&job, &webhook_id).await;
        self.metrics.delivery_duration(name, started.elapsed());
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
            Outcome::Dead { status, reason } => self.bury(&job, attempt, status, reason).await,
        };
        if let Err(e) = written {
            // The lease will expire and the delivery will be attempted again: at-least-once.
            warn!(target = name, event_id = %job.event_key, error = %e, "recording the attempt failed");
        }
    }

    async fn bury(
        &self,
        job: &Job,
        attempt: u32,
        status: Option<u16>,
        reason: String,
    ) -> Result<(), crate::store::StoreError> {
        let name = self.config.name.as_str();
        self.health.record_error(&reason);
        warn!(target = name, event_id = %job.event_key, attempt, status, reason = %reason, "delivery is a dead letter");
        self.metrics.delivery(name, "dead");
        self.store
            .bury(job.id, AttemptRecord { status, reason })
            .await
    }
}
