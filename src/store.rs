//! The durable queue behind the relay: events, one delivery per (event, target), dead letters.
//!
//! Ingress calls [`Queue::ingest`] and answers TextUs 200 only after it returned `Ok`, so an
//! acknowledged event survives a crash. Dispatchers [`Queue::claim`] due deliveries under a lease,
//! or are handed new ones already leased as they are stored ([`Queue::handoff`]); an expired
//! lease (or a restart) makes a delivery claimable again, so delivery is at-least-once.
//!
//! A [`Store`] is two traits, so that a backend implements small pieces: [`Queue`], the hot
//! path ingress and dispatchers use for every event, and [`Operations`], what operators and the
//! admin API ask. Both are shaped so a JetStream backend fits: enqueue-with-dedupe, claim due
//! work for one target, ack, retry-at, bury, list dead letters, stats; dead letters are selected by a
//! [`DeadLetterFilter`] (ids, target, type, time), which maps onto a dead-letter stream's
//! subjects and sequence/time ranges as naturally as onto SQL.

pub mod handoff;
pub mod nats;
pub mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{OnFull, Priority, TargetId};

/// Identifies one delivery (one event for one target) inside a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An event that ingress verified and wants stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// De-duplication key: the envelope `id`, or `sha256:<hex>` of the body when it has none.
    pub key: String,
    /// The envelope's `action`; `None` when the body could not be read as an event.
    pub event_type: Option<String>,
    /// The raw body, byte for byte as TextUs sent it.
    pub body: Bytes,
    /// The `X-TextUs-Signature` header as received, for targets that forward it.
    pub signature: String,
    pub received_at: SystemTime,
    /// Targets that get one delivery each, with the policy they were routed under. Empty
    /// means unrouted.
    pub targets: Vec<Routed>,
    /// Set when the body is signed but unusable (not JSON, no `action`): kept as a dead letter.
    pub dead_reason: Option<String>,
    /// How long the key is remembered; zero turns de-duplication off for this event.
    pub dedupe_window: Duration,
    /// Keep the event even when no target wants it (`source.keep_unrouted`).
    pub keep_unrouted: bool,
}

/// One delivery [`Queue::ingest`] creates: the target and how it is queued there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub target: TargetId,
    /// Due high-priority deliveries of a target are claimed before due normal ones.
    pub priority: Priority,
    /// `None`: unordered. `Some(key)`: only the oldest pending delivery of the target with
    /// this key (the head) can be claimed, so deliveries with one key go out one at a time, in
    /// order. A fifo target gives every delivery the same key.
    pub order_key: Option<String>,
    /// The target's `max_queue` and `on_full`; `None` for no limit.
    pub quota: Option<Quota>,
}

impl Routed {
    /// An unordered, normal-priority delivery without a quota.
    pub fn plain(target: TargetId) -> Routed {
        Routed {
            target,
            priority: Priority::Normal,
            order_key: None,
            quota: None,
        }
    }
}

/// A target's queue limits, and what happens to its deliveries past them (`on_full`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// At most this many pending (queued or in flight) deliveries (`max_queue`).
    pub max_queue: Option<u64>,
    /// At most this percentage of the storage budget (`storage.target_share`), so that one
    /// dead target cannot take the whole budget from the others.
    pub share_percent: Option<u8>,
    pub on_full: OnFull,
}

/// Which of a target's queue limits an event met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    /// `max_queue` pending deliveries.
    Deliveries(u64),
    /// Its `storage.target_share` of the storage budget, about `bytes`.
    Share { percent: u8, bytes: u64 },
}

impl std::fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueLimit::Deliveries(n) => write!(f, "max_queue {n}"),
            QueueLimit::Share { percent, bytes } => {
                write!(
                    f,
                    "target_share {percent}% of the storage budget, {bytes} bytes"
                )
            }
        }
    }
}

/// Why the store takes no new events for now; see [`Ingested::Full`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpaceLimit {
    /// `storage.max_bytes`, less the reserve kept for draining.
    MaxBytes,
    /// `storage.min_free`, plus the reserve kept for draining.
    MinFree,
    /// A write failed for lack of space (something else filled the disk).
    DiskFull,
}

impl SpaceLimit {
    pub fn describe(self) -> &'static str {
        match self {
            SpaceLimit::MaxBytes => "the store reached storage.max_bytes (less its reserve)",
            SpaceLimit::MinFree => {
                "the file system's free space reached storage.min_free (plus the store's reserve)"
            }
            SpaceLimit::DiskFull => "the disk is full",
        }
    }
}

/// The storage budget as an operator sees it (`/api/v1/store`, `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StorageStatus {
    /// `open`, or `stopped` while new events are answered 504 `store_full`.
    pub ingest: &'static str,
    /// Which limit stopped ingest.
    pub stopped_by: Option<SpaceLimit>,
    /// Unix ms since when ingest has been stopped.
    pub stopped_since: Option<i64>,
    /// The store's files on disk: database, log and reserve file.
    pub store_bytes: u64,
    /// What its data takes: the database as its pages say and the log at its allowance, less
    /// free pages inside the file.
    pub used_bytes: u64,
    /// Free pages inside the database file, reused before the file grows.
    pub reclaimable_bytes: u64,
    /// Room kept for draining while ingest is stopped: a fixed part plus headroom per
    /// pending delivery.
    pub reserve_bytes: u64,
    /// How much more ingest may store before it stops (0 while stopped).
    pub ingest_room_bytes: u64,
    pub max_bytes: Option<u64>,
    pub min_free_bytes: u64,
    /// Free space of the store's file system.
    pub free_bytes: u64,
    pub filesystem_bytes: u64,
    pub pending_deliveries: u64,
    /// Whether the reserve file (`<store>-reserve`) is in place.
    pub reserve_file: bool,
}

/// What [`Queue::ingest`] did with an event. `Accepted` and `Duplicate` are answered 200,
/// `Rejected` 504.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Stored (or, when unrouted and not kept, only its key remembered).
    Accepted,
    /// The key was seen within the de-duplication window: nothing new was stored.
    Duplicate,
    /// A target with `on_full: reject` has a full queue: nothing was stored (not even the
    /// de-duplication key, so the sender's retry is not taken for a duplicate).
    Rejected { target: TargetId, limit: QueueLimit },
    /// The storage budget is spent: nothing was stored, not even the key. Answered 504
    /// `store_full`; the store drains inside its reserve and takes events again by itself.
    Full(SpaceLimit),
}

/// One delivery handed to a dispatcher, with everything needed to attempt it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: DeliveryId,
    pub event_key: String,
    pub event_type: Option<String>,
    pub body: Bytes,
    pub signature: String,
    pub received_at: SystemTime,
    /// Attempts already made before this one.
    pub attempts: u32,
    /// Where `retry.max_age` counts from: when the delivery was created, moved later by the
    /// time its target spent not sending (breaker open, disabled, paused; see
    /// [`Queue::credit_wait`]), so waiting out an outage does not age a delivery.
    pub created_at: SystemTime,
}

/// The result of [`Queue::claim`].
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// When the earliest delivery of this target that is not due yet falls due.
    pub next_due: Option<SystemTime>,
}

/// What the last attempt of a delivery saw, kept with it for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub status: Option<u16>,
    pub reason: String,
}

/// A delivery that will not be attempted again without an operator (or a body that was
/// never deliverable, with no target).
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    pub id: DeliveryId,
    pub target: Option<String>,
    pub event_id: String,
    pub event_type: Option<String>,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub reason: String,
    /// Unix milliseconds.
    pub received_at: i64,
    /// Unix milliseconds of the last attempt (or of the burial).
    pub dead_at: i64,
}

/// Which dead letters to list, newest first. Every field that is set must match.
#[derive(Clone, Debug, Default)]
pub struct DeadLetterQuery {
    pub target: Option<String>,
    pub limit: usize,
    /// The event's `action`.
    pub event_type: Option<String>,
    /// Dead at or after this time (inclusive).
    pub since: Option<SystemTime>,
    /// Dead before this time (exclusive).
    pub until: Option<SystemTime>,
}

/// Which dead letters to replay or purge. Every field that is set must match (ids *and*
/// target *and* ...); a filter with nothing set matches every dead letter, so callers that
/// take filters from outside should insist on at least one (see [`DeadLetterFilter::is_empty`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these dead letters.
    pub ids: Option<Vec<DeliveryId>>,
    pub target: Option<String>,
    /// The event's `action`.
    pub event_type: Option<String>,
    /// Dead at or after this time (inclusive).
    pub since: Option<SystemTime>,
    /// Dead before this time (exclusive).
    pub until: Option<SystemTime>,
}

impl DeadLetterFilter {
    /// True when no criterion is set, i.e. the filter matches every dead letter.
    pub fn is_empty(&self) -> bool {
        *self == DeadLetterFilter::default()
    }
}

/// One attempt of a delivery as it was settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1 for the first attempt (counted again from 1 after a replay).
    pub attempt: u32,
    /// Unix milliseconds when the attempt's result was recorded.
    pub at: i64,
    /// The HTTP status, when the target answered at all.
    pub status: Option<u16>,
    pub reason: String,
}

/// A dead letter with what an operator needs to decide on it.
#[derive(Clone, Debug)]
pub struct DeadLetterDetail {
    pub letter: DeadLetter,
    /// The raw body as TextUs sent it.
    pub body: Bytes,
    /// Oldest first; the most recent [`Attempt`]s only, when a delivery made very many.
    pub history: Vec<Attempt>,
}

/// Dead letters a replay left alone, grouped by why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub reason: String,
    pub count: u64,
    /// The first of them (at most [`Skipped::MAX_IDS`]), so an operator can look them up.
    pub ids: Vec<DeliveryId>,
}

impl Skipped {
    /// How many ids one group lists.
    pub const MAX_IDS: usize = 100;
}

/// What [`Operations::replay`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Dead letters queued again, due now, with attempts reset.
    pub replayed: u64,
    /// How many of them per target.
    pub targets: std::collections::BTreeMap<String, u64>,
    /// Matching dead letters that could not be replayed.
    pub skipped: Vec<Skipped>,
}

/// Per-target counts for the admin API.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TargetCounts {
    pub queued: u64,
    pub in_flight: u64,
    pub dead: u64,
    /// Unix milliseconds at which the oldest pending (queued or in flight) delivery was
    /// created; `None` when nothing is pending.
    pub oldest_queued_at: Option<i64>,
}

/// Where one event is, as far as the store can tell (see [`Operations::find_event`]).
///
/// A delivered delivery is deleted, and its event once no delivery refers to it, so a target
/// that got the event leaves no trace here: only what is still pending or dead is listed, and
/// the de-duplication key shows the event was received at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventWhereabouts {
    /// Unix milliseconds until which the key is remembered for de-duplication; `None` when it
    /// is not (de-duplication off, or its window passed and the key was swept).
    pub remembered_until: Option<i64>,
    /// The targets the event was routed to when it was received, kept with its
    /// de-duplication key; `None` when the key is not remembered (or was written by a relay
    /// before this was kept). With it, a routed target with nothing held got the event.
    pub routed: Option<Vec<String>>,
    /// The stored copies of the event: usually one, more when it was accepted again after its
    /// window or with de-duplication off; none once every delivery of it is done.
    pub stored: Vec<StoredEvent>,
    /// Every delivery of those copies that is queued, in flight or dead, oldest first.
    pub deliveries: Vec<EventDelivery>,
}

/// One stored copy of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub event_type: Option<String>,
    /// Unix milliseconds.
    pub received_at: i64,
}

/// One delivery of an event that the store still holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventDelivery {
    pub id: DeliveryId,
    /// `None` for a body that was never an event (a dead letter without a target).
    pub target: Option<String>,
    pub state: DeliveryState,
    /// Attempts made so far (counted again from 0 after a replay).
    pub attempts: u32,
    /// Unix milliseconds: when a queued delivery is due, or when the lease of one in flight
    /// runs out; `None` for a dead letter.
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// Where a delivery the store holds stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    InFlight,
    Dead,
}

/// Whether a target may send, as an operator or a `410 Gone` left it. Persisted, so a
/// restart keeps a disabled target disabled.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TargetControl {
    /// Set when the receiver answered 410 Gone; cleared only by an operator.
    pub disabled: Option<Disabled>,
    /// Unix milliseconds at which an operator paused the target; `None` when not paused.
    pub paused_at: Option<i64>,
}

impl TargetControl {
    /// Since when (Unix ms) the target has been held back, if it is.
    pub fn held_since(&self) -> Option<i64> {
        let disabled = self.disabled.as_ref().map(|d| d.at);
        match (disabled, self.paused_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why and when a target was disabled.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Disabled {
    pub reason: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// A change to a target's [`TargetControl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlChange {
    /// Stop sending until enabled (a `410 Gone`). Keeps the first time, updates the reason.
    Disable { reason: String },
    /// Stop sending until enabled (an operator). Keeps the first time.
    Pause,
    /// Clear both.
    Enable,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("creating store folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store write failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store is closed")]
    Closed,
    #[error(
        "the store {path} is held by another relay (pid {pid}); stop that one first, or take \
         over from it without downtime with `run --upgrade` (README, \"Zero-downtime restart\")"
    )]
    Held { path: String, pid: String },
    #[error("cannot lock the store with {lock}: {source}")]
    Lock {
        lock: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store is overloaded: {0} writes are already waiting")]
    Overloaded(usize),
    #[error("NATS JetStream: {0}")]
    Nats(String),
    #[error("NATS JetStream: no answer {what} within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("delivery {0} is not leased by this relay (its lease ran out, or it was settled)")]
    NotLeased(DeliveryId),
}

/// The durable queue: both halves of a store, [`Queue`] and [`Operations`]. The relay holds a
/// store as `Arc<dyn Store>`; a module that needs only one half takes only that half (ingress
/// takes a [`Queue`]). Every method that changes state returns only after the change is
/// durable.
pub trait Store: Queue + Operations {}

impl<S: Queue + Operations + ?Sized> Store for S {}

/// The hot path: what ingress and the dispatchers call for every event and every attempt
/// (store, claim, settle), and the per-target plumbing a dispatcher sets up as it starts
/// (wakeups, handoff, layout, the feed of control changes). A backend makes these fast; all of
/// them run at the rate of events.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores the event and one queued delivery per target, unless its key is a duplicate.
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError>;
    /// Leases up to `limit` due deliveries of `target` for `lease`.
    async fn claim(
        &self,
        target: &TargetId,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError>;
    /// The delivery succeeded: forget it (and its event once no target still needs it).
    async fn ack(&self, id: DeliveryId) -> Result<(), StoreError>;
    /// [`Queue::ack`] for a result that nothing waits on (an unordered delivery, not a
    /// probe): the store may hold it for a moment so that it commits with other writes.
    /// Still durable when it returns.
    async fn ack_unhurried(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.ack(id).await
    }
    /// The attempt failed but may succeed later: try again at `at`.
    async fn retry_at(
        &self,
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    ) -> Result<(), StoreError>;
    /// The delivery will not succeed by retrying: keep it as a dead letter.
    async fn bury(&self, id: DeliveryId, last: AttemptRecord) -> Result<(), StoreError>;
    /// A claimed delivery was not attempted after all (its target stopped sending): back to
    /// the queue, due now, with no attempt counted.
    async fn release(&self, id: DeliveryId) -> Result<(), StoreError>;
    /// `target` sent nothing from `from` to `until` (breaker open, disabled, paused): that
    /// time does not count towards `retry.max_age` of its pending deliveries.
    async fn credit_wait(
        &self,
        target: &TargetId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<(), StoreError>;
    /// Notified whenever deliveries for `target` are queued, so its dispatcher wakes at once
    /// and claims them.
    fn wakeup(&self, target: &TargetId) -> Arc<Notify>;
    /// Where `target`'s dispatcher offers room for deliveries leased to it as they are
    /// stored, and takes them (see [`handoff`]). A store that cannot hand over ignores the
    /// offer, and every delivery is queued and claimed.
    fn handoff(&self, target: &TargetId) -> Arc<handoff::Handoff>;
    /// How many relays share this store and its targets (itself included): a rate limit is
    /// split between them. 1 for a store of one relay.
    fn relays(&self) -> usize {
        1
    }
    /// Tells the store how a target's deliveries are ordered (its dispatcher calls this as it
    /// starts, also after a reload), for a store that lays ordered queues out apart.
    fn layout(&self, _target: &TargetId, _ordered: bool) {}
    /// Changes to `target`'s control made anywhere (by another relay sharing the store), for
    /// its dispatcher to follow; `None` for a store only this relay uses, where every change
    /// goes through this relay's own admin API and dispatcher.
    fn control_feed(
        &self,
        _target: &TargetId,
    ) -> Option<tokio::sync::watch::Receiver<TargetControl>> {
        None
    }
}

/// Operations: what operators and the admin API ask of the store (dead letters, target
/// control, counts, finding an event, readiness and the storage budget), at the rate of
/// people and scrapes rather than of events. A backend may run these beside the hot path
/// rather than in its way.
#[async_trait]
pub trait Operations: Send + Sync {
    /// The persisted control state of `target`.
    async fn control(&self, target: &TargetId) -> Result<TargetControl, StoreError>;
    /// Changes and persists the control state of `target`; returns the new state. The caller
    /// passes it on to the dispatcher (and wakes it: see [`Queue::wakeup`]).
    async fn set_control(
        &self,
        target: &TargetId,
        change: ControlChange,
    ) -> Result<TargetControl, StoreError>;
    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError>;
    /// One dead letter with its body and attempt history; `None` if `id` is not a dead letter.
    async fn dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetterDetail>, StoreError>;
    /// Puts the matching dead letters back in their targets' queues, due now, with attempts
    /// (and the attempt history) reset, and wakes those targets' dispatchers. Only targets in
    /// `targets` (the configured ones) are replayed; others, and bodies that were never events,
    /// are reported as [`Skipped`]. Never fails because of what it skipped.
    async fn replay(
        &self,
        filter: DeadLetterFilter,
        targets: &[TargetId],
    ) -> Result<Replayed, StoreError>;
    /// Deletes the matching dead letters (and their events once nothing refers to them);
    /// returns how many.
    async fn purge(&self, filter: DeadLetterFilter) -> Result<u64, StoreError>;
    async fn counts(&self, target: &TargetId) -> Result<TargetCounts, StoreError>;
    /// Where the event with de-duplication key `key` (the envelope `id`) is: `None` when the
    /// store knows nothing of it (never received, or delivered everywhere and its key
    /// forgotten). It may cost a scan of the stored events, so a store should run it beside
    /// the hot path rather than in its way.
    async fn find_event(&self, key: &str) -> Result<Option<EventWhereabouts>, StoreError>;
    /// Every target name that still has deliveries (queued, in flight or dead), configured or
    /// not: after a target is removed from the config its deliveries stay, under its name.
    async fn targets(&self) -> Result<Vec<TargetId>, StoreError>;
    /// Proves the store can still run a transaction (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// The storage budget as of the store's last measurement; `None` for a store without one.
    fn storage(&self) -> Option<StorageStatus> {
        None
    }
    /// Whether `/readyz` should fail while [`Operations::ping`] does. A store of one relay:
    /// yes. A store shared by relays behind a load balancer: no, since every relay answers 504
    /// (which TextUs retries) while the store is unreachable, and failing readiness on all
    /// of them at once would have the balancer refuse connections, which TextUs takes for a
    /// failed integration.
    fn readiness_follows_store(&self) -> bool {
        true
    }
}

/// Unix milliseconds, the store's time unit; times before 1970 clamp to 0.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Inverse of [`unix_ms`].
pub fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
