//! What travels with a message besides its body: one header holding the delivery's (or dead
//! letter's) facts as base64 JSON, so that reasons and signatures with any characters fit a
//! NATS header, and the attempt history kept per delivery.

use async_nats::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::store::{Attempt, StoreError};

/// The header that carries [`DeliveryMeta`] or [`DeadMeta`].
pub(super) const HEADER: &str = "Textus-Meta";

/// Set on a delivery that is queued with attempts already made (moved in from SQLite by
/// `migrate`), so its first claim reads its history as a redelivery's would.
pub(super) const HISTORY_HEADER: &str = "Textus-History";

/// How many attempts a delivery or dead letter keeps (the most recent ones).
pub(super) const MAX_HISTORY: usize = 20;

/// One queued delivery: the event it carries, for one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct DeliveryMeta {
    pub target: String,
    /// Named `key` in the header: the name messages already in a stream carry.
    #[serde(rename = "key")]
    pub event_id: String,
    pub event_type: Option<String>,
    pub signature: String,
    /// Unix ms.
    pub received_at: i64,
    /// Unix ms of creation (of the replay, for a replayed delivery).
    pub created_at: i64,
}

/// One dead letter: the delivery it was and why it died.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct DeadMeta {
    pub target: Option<String>,
    /// Named `key` in the header, as in [`DeliveryMeta`].
    #[serde(rename = "key")]
    pub event_id: String,
    pub event_type: Option<String>,
    pub signature: String,
    pub received_at: i64,
    pub dead_at: i64,
    pub reason: String,
    pub last_status: Option<u16>,
    /// Attempts made in all (the history may keep fewer).
    pub attempts: u32,
    pub history: Vec<AttemptRec>,
    /// Where the delivery was queued (its target and lane), so a replay queues it there
    /// again; `None` for a body that was never an event.
    #[serde(default)]
    pub queue_subject: Option<String>,
}

/// [`Attempt`] as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct AttemptRec {
    pub attempt: u32,
    pub at: i64,
    pub status: Option<u16>,
    pub reason: String,
}

impl From<AttemptRec> for Attempt {
    fn from(a: AttemptRec) -> Attempt {
        Attempt {
            attempt: a.attempt,
            at: a.at,
            status: a.status,
            reason: a.reason,
        }
    }
}

/// A delivery's attempts so far (in the attempts bucket, under its stream sequence).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct History {
    /// Attempts made in all.
    pub count: u32,
    /// The most recent ones, oldest first.
    pub recent: Vec<AttemptRec>,
}

impl History {
    pub(super) fn push(&mut self, at: i64, status: Option<u16>, reason: String) {
        self.count += 1;
        self.recent.push(AttemptRec {
            attempt: self.count,
            at,
            status,
            reason,
        });
        if self.recent.len() > MAX_HISTORY {
            self.recent.remove(0);
        }
    }
}

pub(super) fn encode<T: Serialize>(meta: &T) -> Result<String, StoreError> {
    let json = serde_json::to_vec(meta).map_err(|e| StoreError::Nats(format!("encoding: {e}")))?;
    Ok(STANDARD.encode(json))
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(headers: Option<&HeaderMap>) -> Option<T> {
    let value = headers?.get(HEADER)?;
    let json = STANDARD.decode(value.as_str()).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Whether a message says it has an attempt history (see [`HISTORY_HEADER`]).
pub(super) fn carries_history(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(HISTORY_HEADER).is_some())
}

pub(super) fn headers<T: Serialize>(
    meta: &T,
    msg_id: Option<&str>,
) -> Result<HeaderMap, StoreError> {
    let mut h = HeaderMap::new();
    h.insert(HEADER, encode(meta)?.as_str());
    if let Some(id) = msg_id {
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    Ok(h)
}
