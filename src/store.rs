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
mod operations;
pub mod sqlite;

pub use operations::{
    Attempt, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterQuery,
    DeliveryState, Disabled, EventDelivery, EventWhereabouts, Operations, Replayed, Skipped,
    StoredEvent, TargetControl, TargetCounts,
};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{OnFull, Priority, TargetId};
use crate::event::ParsedBody;

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
    /// The event id (design.md §2): the envelope `id`, or `sha256:<hex>` of the body when it
    /// has none. Events are de-duplicated by it. The SQLite store keeps it in columns named
    /// `key` (`events.key`, `dedupe.key`), and the NATS store in the `key` field of a message's
    /// metadata header: names on disk and on the wire, kept so existing stores still open.
    pub event_id: String,
    /// The envelope's `action`; `None` when the body could not be read as an event.
    pub event_type: Option<String>,
    /// The raw body, byte for byte as TextUs sent it.
    pub body: Bytes,
    /// The body as JSON, if ingress parsed it; deliveries handed over as they are stored take
    /// it along ([`Job::parsed`]).
    pub parsed: ParsedBody,
    /// The `X-TextUs-Signature` header as received, for targets that forward it.
    pub signature: String,
    pub received_at: SystemTime,
    /// Targets that get one delivery each, with the policy they were routed under. Empty
    /// means unrouted.
    pub targets: Vec<Routed>,
    /// Set when the body is signed but unusable (not JSON, no `action`): kept as a dead letter.
    pub dead_reason: Option<String>,
    /// How long the event id is remembered; zero turns de-duplication off for this event.
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
    /// Stored (or, when unrouted and not kept, only its id remembered).
    Accepted,
    /// The event id was seen within the de-duplication window: nothing new was stored.
    Duplicate,
    /// A target with `on_full: reject` has a full queue: nothing was stored (not even the
    /// event id, so the sender's retry is not taken for a duplicate).
    Rejected { target: TargetId, limit: QueueLimit },
    /// The storage budget is spent: nothing was stored, not even the event id. Answered 504
    /// `store_full`; the store drains inside its reserve and takes events again by itself.
    Full(SpaceLimit),
}

/// One delivery handed to a dispatcher, with everything needed to attempt it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_type: Option<String>,
    /// The raw body, byte for byte as TextUs sent it: what a plain http target sends.
    pub body: Bytes,
    /// The body as JSON for templated targets, read through [`Job::event`]: parsed by ingress
    /// for a delivery handed over as it was stored, else once for this claim by its first
    /// reader.
    pub parsed: ParsedBody,
    pub signature: String,
    pub received_at: SystemTime,
    /// Attempts already made before this one.
    pub attempts: u32,
    /// Where `retry.max_age` counts from: when the delivery was created, moved later by the
    /// time its target spent not sending (breaker open, disabled, paused; see
    /// [`Queue::credit_wait`]), so waiting out an outage does not age a delivery.
    pub created_at: SystemTime,
}

impl Job {
    /// The event as JSON (`null` for a body that is not JSON), parsed at most once per job.
    pub fn event(&self) -> &serde_json::Value {
        self.parsed.value(&self.body)
    }
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
    /// Stores the event and one queued delivery per target, unless its id is a duplicate.
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
