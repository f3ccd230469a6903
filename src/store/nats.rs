//! The durable queue on NATS JetStream (`storage.kind: nats`): every relay that points at
//! the same servers and prefix shares it, so any relay takes any event, delivers any queued
//! delivery and serves any admin call, and a relay keeps nothing of its own on disk.
//!
//! The shape (see [`layout`]) is one message per (event, target) in a work-queue stream,
//! published with `Nats-Msg-Id` = `ev:<key>:<target>`: the stream's duplicate window is the
//! de-duplication, atomic with storing, and a retry after a partial publish stores exactly the
//! deliveries that are missing. An event is acknowledged only after every PubAck, which
//! JetStream sends once a quorum of the stream's replicas has it.

mod control;
mod dead;
mod heartbeat;
mod import;
mod ingest;
mod layout;
mod meta;
mod query;
mod queue;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer, kv};
use async_trait::async_trait;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use self::layout::Names;
pub use self::settings::{NatsSettings, TargetLayout};
use super::handoff::Handoff;
use super::{
    AttemptRecord, Claimed, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter,
    DeadLetterQuery, DeliveryId, EventWhereabouts, Ingested, NewEvent, Operations, Queue, Replayed,
    StoreError, TargetControl, TargetCounts,
};
use crate::config::{NatsAuth, TargetId};

/// `ack_wait` of every consumer: how soon the deliveries of a relay that died go to another.
/// A live relay keeps its leases for as long as it holds them by telling the server every
/// [`KEEPALIVE`] that it is still working on them, so a slow attempt is never sent twice.
const ACK_WAIT: Duration = Duration::from_secs(15);
const KEEPALIVE: Duration = Duration::from_secs(5);

/// How long a relay trusts its count of a target's pending deliveries for `max_queue`.
const PENDING_TTL: Duration = Duration::from_secs(1);

/// How long an idle dispatcher waits before it looks again: retries scheduled by another
/// relay, or deliveries it stored, wake nobody here.
const POLL: Duration = Duration::from_millis(500);

/// A JetStream store shared by every relay on the same servers and prefix.
pub struct NatsStore {
    /// Runs the client's connection and the control watch; the relay's other runtimes only
    /// talk to it through channels.
    runtime: Option<tokio::runtime::Runtime>,
    js: jetstream::Context,
    names: Names,
    settings: NatsSettings,
    attempts: kv::Store,
    control: control::Controls,
    /// Deliveries this relay holds under a lease, with the message to settle them by.
    leased: Arc<Mutex<HashMap<DeliveryId, Leased>>>,
    consumers: tokio::sync::Mutex<HashMap<String, consumer::PullConsumer>>,
    /// Targets whose deliveries go to ordered lanes: from the config at open, and every
    /// target this relay has stored an ordered delivery for since.
    ordered: Mutex<HashSet<TargetId>>,
    wakeups: Mutex<HashMap<TargetId, Arc<Notify>>>,
    handoffs: Mutex<HashMap<TargetId, Arc<Handoff>>>,
    pending: Mutex<HashMap<TargetId, Pending>>,
    /// Relays alive on this store, this one included (see [`heartbeat`]).
    relays: Arc<AtomicUsize>,
    /// Retries this relay scheduled, per target, so its dispatcher looks again on time.
    due: Mutex<HashMap<TargetId, Vec<SystemTime>>>,
}

/// A delivery under this relay's lease.
struct Leased {
    target: TargetId,
    lane: layout::Lane,
    message: jetstream::Message,
    /// Whether it has an attempt history to remove once settled.
    has_history: bool,
}

/// A target's pending count as last read, plus what this relay stored since.
struct Pending {
    read_at: Instant,
    count: u64,
}

pub(super) fn nats_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Nats(format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these; if something did, the maps are still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NatsStore {
    /// Connects, creates or updates the streams, buckets and consumers, and starts watching
    /// the control bucket. Call it outside any async runtime: the store runs its own.
    pub fn open(settings: NatsSettings) -> Result<NatsStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats store")
            .enable_all()
            .build()
            .map_err(|e| nats_err("starting the NATS client's runtime", e))?;
        let (js, attempts, control, beats) = runtime.block_on(async {
            let client = connect(&settings).await?;
            let js = jetstream::new(client.clone());
            let names = Names::new(&settings.storage.prefix);
            ensure_patiently(&js, &names, &settings).await?;
            let attempts = js
                .get_key_value(names.attempts())
                .await
                .map_err(|e| nats_err("opening the attempts bucket", e))?;
            let control_kv = js
                .get_key_value(names.control())
                .await
                .map_err(|e| nats_err("opening the control bucket", e))?;
            let control = control::Controls::start(control_kv).await?;
            let beats = js
                .get_key_value(names.relays())
                .await
                .map_err(|e| nats_err("opening the relays bucket", e))?;
            Ok::<_, StoreError>((js, attempts, control, beats))
        })?;
        let ordered = settings
            .targets
            .iter()
            .filter(|t| t.ordered)
            .map(|t| t.name.clone())
            .collect();
        let leased: Arc<Mutex<HashMap<DeliveryId, Leased>>> = Arc::default();
        runtime.spawn(keep_leases(leased.clone()));
        let relays = Arc::new(AtomicUsize::new(1));
        let me = format!("r{:016x}", rand::random::<u64>());
        runtime.spawn(heartbeat::run(beats, me, relays.clone()));
        Ok(NatsStore {
            runtime: Some(runtime),
            names: Names::new(&settings.storage.prefix),
            js,
            settings,
            attempts,
            control,
            leased,
            consumers: tokio::sync::Mutex::default(),
            ordered: Mutex::new(ordered),
            wakeups: Mutex::default(),
            handoffs: Mutex::default(),
            pending: Mutex::default(),
            relays,
            due: Mutex::default(),
        })
    }

    fn wakeup_local(&self, target: &TargetId) {
        self.wakeup(target).notify_one();
    }

    fn is_ordered(&self, target: &TargetId) -> bool {
        lock(&self.ordered).contains(target)
    }

    /// Bounds a NATS round trip by the configured publish timeout, so a lost quorum or an
    /// unreachable server is an error (504 at ingest) rather than a hang.
    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.settings.storage.publish_timeout;
        tokio::time::timeout(limit, f)
            .await
            .map_err(|_| StoreError::Timeout {
                what: what.to_owned(),
                after: limit,
            })?
    }
}

impl Drop for NatsStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// How long a starting relay keeps trying to create its streams: a cluster electing a new
/// leader (4 to 9 s after losing one) answers nothing meanwhile.
const START_PATIENCE: Duration = Duration::from_secs(30);

async fn ensure_patiently(
    js: &jetstream::Context,
    names: &Names,
    settings: &NatsSettings,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        match layout::ensure(js, names, settings, ACK_WAIT).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "JetStream is not answering yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Tells the servers, every [`KEEPALIVE`], that this relay still works on each delivery it
/// holds, so they do not give it to another relay after [`ACK_WAIT`].
async fn keep_leases(leased: Arc<Mutex<HashMap<DeliveryId, Leased>>>) {
    let mut tick = tokio::time::interval(KEEPALIVE);
    loop {
        tick.tick().await;
        let held: Vec<jetstream::Message> =
            lock(&leased).values().map(|l| l.message.clone()).collect();
        for message in held {
            if let Err(e) = message.ack_with(jetstream::AckKind::Progress).await {
                tracing::debug!(error = %e, "extending a lease failed; it runs out after ack_wait");
            }
        }
    }
}

async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, StoreError> {
    let s = &settings.storage;
    let mut options = match &s.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::Credentials(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| nats_err(&format!("reading {}", path.display()), e))?,
        NatsAuth::Token(token) => {
            async_nats::ConnectOptions::with_token(token.expose_secret().to_owned())
        }
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(
                user.clone(),
                password.expose_secret().to_owned(),
            )
        }
    };
    if let Some(tls) = &s.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let options = options
        .name("textus-relay")
        .connection_timeout(s.publish_timeout)
        .request_timeout(Some(s.publish_timeout))
        // A relay keeps trying to reach the servers for as long as it runs; meanwhile
        // ingest answers 504 and deliveries wait.
        .max_reconnects(None);
    let urls: Vec<async_nats::ServerAddr> = s
        .urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| nats_err("reading storage.urls", e))?;
    options
        .connect(urls)
        .await
        .map_err(|e| nats_err(&format!("connecting to {}", s.urls.join(", ")), e))
}

#[async_trait]
impl Queue for NatsStore {
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        self.ingest_event(event).await
    }
    async fn claim(
        &self,
        target: &TargetId,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        // The lease is the consumers' ack_wait, kept alive while held (see ACK_WAIT).
        let _ = lease;
        self.claim_due(target, limit).await
    }
    async fn ack(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.ack_delivery(id).await
    }
    async fn retry_at(
        &self,
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        self.retry_delivery(id, at, last).await
    }
    async fn bury(&self, id: DeliveryId, last: AttemptRecord) -> Result<(), StoreError> {
        self.bury_delivery(id, last).await
    }
    async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.release_delivery(id).await
    }
    async fn credit_wait(
        &self,
        target: &TargetId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<(), StoreError> {
        self.bounded("crediting a wait", self.control.credit(target, from, until))
            .await
    }
    fn wakeup(&self, target: &TargetId) -> Arc<Notify> {
        lock(&self.wakeups)
            .entry(target.clone())
            .or_default()
            .clone()
    }
    fn handoff(&self, target: &TargetId) -> Arc<Handoff> {
        // Never fed: every delivery is claimed from its consumer, by whichever relay.
        lock(&self.handoffs)
            .entry(target.clone())
            .or_default()
            .clone()
    }
    fn relays(&self) -> usize {
        self.relays.load(Ordering::Relaxed)
    }
    fn layout(&self, target: &TargetId, ordered: bool) {
        let mut set = lock(&self.ordered);
        if ordered {
            set.insert(target.clone());
        } else {
            set.remove(target);
        }
    }
    fn control_feed(&self, target: &TargetId) -> Option<watch::Receiver<TargetControl>> {
        Some(self.control.feed(target))
    }
}

#[async_trait]
impl Operations for NatsStore {
    async fn control(&self, target: &TargetId) -> Result<TargetControl, StoreError> {
        self.bounded("reading a target's control", self.control.read(target))
            .await
    }
    async fn set_control(
        &self,
        target: &TargetId,
        change: ControlChange,
    ) -> Result<TargetControl, StoreError> {
        self.bounded(
            "changing a target's control",
            self.control.change(target, change),
        )
        .await
    }
    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        self.list_dead(query).await
    }
    async fn dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetterDetail>, StoreError> {
        self.show_dead(id).await
    }
    async fn replay(
        &self,
        filter: DeadLetterFilter,
        targets: &[TargetId],
    ) -> Result<Replayed, StoreError> {
        self.replay_dead(filter, targets).await
    }
    async fn purge(&self, filter: DeadLetterFilter) -> Result<u64, StoreError> {
        self.purge_dead(filter).await
    }
    async fn counts(&self, target: &TargetId) -> Result<TargetCounts, StoreError> {
        self.bounded("counting a target's deliveries", self.target_counts(target))
            .await
    }
    async fn find_event(&self, event_id: &str) -> Result<Option<EventWhereabouts>, StoreError> {
        self.bounded("finding an event", self.whereabouts(event_id))
            .await
    }
    async fn targets(&self) -> Result<Vec<TargetId>, StoreError> {
        self.bounded("listing targets", self.known_targets()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded("reaching JetStream", async {
            self.js
                .query_account()
                .await
                .map(|_| ())
                .map_err(|e| nats_err("reaching JetStream", e))
        })
        .await
    }
    fn readiness_follows_store(&self) -> bool {
        false
    }
}
