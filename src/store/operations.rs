//! What operators and the admin API ask of a store ([`Operations`]), and the types they are
//! answered with: dead letters, target control, counts, an event's whereabouts.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use super::{DeliveryId, StorageStatus, StoreError};
use crate::config::TargetId;

/// Operations: what operators and the admin API ask of the store (dead letters, target
/// control, counts, finding an event, readiness and the storage budget), at the rate of
/// people and scrapes rather than of events. A backend may run these beside the hot path
/// rather than in its way.
#[async_trait]
pub trait Operations: Send + Sync {
    /// The persisted control state of `target`.
    async fn control(&self, target: &TargetId) -> Result<TargetControl, StoreError>;
    /// Changes and persists the control state of `target`; returns the new state. The caller
    /// passes it on to the dispatcher (and wakes it: see [`super::Queue::wakeup`]).
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
    /// Where the event `event_id` (the envelope `id`, or the body's digest) is: `None` when
    /// the store knows nothing of it (never received, or delivered everywhere and its id
    /// forgotten). It may cost a scan of the stored events, so a store should run it beside
    /// the hot path rather than in its way.
    async fn find_event(&self, event_id: &str) -> Result<Option<EventWhereabouts>, StoreError>;
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
/// its remembered event id shows the event was received at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventWhereabouts {
    /// Unix milliseconds until which the event id is remembered for de-duplication; `None`
    /// when it is not (de-duplication off, or its window passed and the id was swept).
    pub remembered_until: Option<i64>,
    /// The targets the event was routed to when it was received, kept with its remembered
    /// event id; `None` when the id is not remembered (or was written by a relay
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
