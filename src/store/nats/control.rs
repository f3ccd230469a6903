//! Each target's control state (paused, disabled by a 410) and the waits credited to its
//! `max_age`, in the KV bucket `{prefix}-control`, shared by every relay. A watch on the
//! bucket keeps a copy here and tells this relay's dispatchers when another relay paused,
//! enabled or disabled a target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::layout::token;
use super::{lock, nats_err};
use crate::config::TargetId;
use crate::store::{ControlChange, Disabled, StoreError, TargetControl, unix_ms};

/// Credited waits kept per target; older ones only matter to deliveries older than them.
const MAX_CREDITS: usize = 64;

/// How often a change is tried again when another relay changed the same key first.
const MAX_RACES: usize = 16;

/// What the bucket holds per target.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    disabled: Option<DisabledRec>,
    paused_at: Option<i64>,
    /// `[from, until]` in Unix ms: times the target sent nothing, oldest first.
    credits: Vec<[i64; 2]>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct DisabledRec {
    reason: String,
    at: i64,
}

impl Entry {
    fn control(&self) -> TargetControl {
        TargetControl {
            disabled: self.disabled.as_ref().map(|d| Disabled {
                reason: d.reason.clone(),
                at: d.at,
            }),
            paused_at: self.paused_at,
        }
    }
}

/// The control bucket with this relay's copy of it.
pub(super) struct Controls {
    kv: kv::Store,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// By bucket key (the target's token).
    entries: Mutex<HashMap<String, Entry>>,
    feeds: Mutex<HashMap<String, watch::Sender<TargetControl>>>,
}

impl Shared {
    fn apply(&self, key: &str, entry: Entry) {
        let control = entry.control();
        lock(&self.entries).insert(key.to_owned(), entry);
        if let Some(feed) = lock(&self.feeds).get(key) {
            feed.send_if_modified(|c| {
                let changed = *c != control;
                *c = control.clone();
                changed
            });
        }
    }
}

impl Controls {
    /// Reads the bucket and keeps watching it (on the store's runtime).
    pub(super) async fn start(kv: kv::Store) -> Result<Controls, StoreError> {
        let shared = Arc::new(Shared::default());
        let mut watch = kv
            .watch_all()
            .await
            .map_err(|e| nats_err("watching the control bucket", e))?;
        let copy = shared.clone();
        tokio::spawn(async move {
            while let Some(change) = watch.next().await {
                match change {
                    Ok(e) => {
                        let entry = match e.operation {
                            kv::Operation::Put => {
                                serde_json::from_slice(&e.value).unwrap_or_default()
                            }
                            _ => Entry::default(),
                        };
                        copy.apply(&e.key, entry);
                    }
                    Err(e) => tracing::warn!(error = %e, "watching the control bucket"),
                }
            }
            tracing::warn!(
                "the control bucket's watch ended; changes made by other relays are seen at their next start"
            );
        });
        Ok(Controls { kv, shared })
    }

    /// The state of `target` as the bucket has it now.
    pub(super) async fn read(&self, target: &TargetId) -> Result<TargetControl, StoreError> {
        let key = token(target.as_str());
        let entry = self
            .kv
            .entry(key.as_str())
            .await
            .map_err(|e| nats_err("reading a target's control", e))?;
        let entry: Entry = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                serde_json::from_slice(&e.value).unwrap_or_default()
            }
            _ => Entry::default(),
        };
        let control = entry.control();
        self.shared.apply(&key, entry);
        Ok(control)
    }

    pub(super) async fn change(
        &self,
        target: &TargetId,
        change: ControlChange,
    ) -> Result<TargetControl, StoreError> {
        let now = unix_ms(SystemTime::now());
        let entry = self
            .update(target, |e| match &change {
                ControlChange::Disable { reason } => {
                    let at = e.disabled.as_ref().map_or(now, |d| d.at);
                    e.disabled = Some(DisabledRec {
                        reason: reason.clone(),
                        at,
                    });
                }
                ControlChange::Pause => {
                    e.paused_at.get_or_insert(now);
                }
                ControlChange::Enable => {
                    e.disabled = None;
                    e.paused_at = None;
                }
            })
            .await?;
        Ok(entry.control())
    }

    pub(super) async fn credit(
        &self,
        target: &TargetId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<(), StoreError> {
        let (from, until) = (unix_ms(from), unix_ms(until));
        if until <= from {
            return Ok(());
        }
        self.update(target, |e| {
            e.credits.push([from, until]);
            let extra = e.credits.len().saturating_sub(MAX_CREDITS);
            e.credits.drain(..extra);
        })
        .await?;
        Ok(())
    }

    /// Read, change, write with the revision read, again if another relay wrote in between.
    async fn update(
        &self,
        target: &TargetId,
        change: impl Fn(&mut Entry),
    ) -> Result<Entry, StoreError> {
        let key = token(target.as_str());
        for _ in 0..MAX_RACES {
            let current = self
                .kv
                .entry(key.as_str())
                .await
                .map_err(|e| nats_err("reading a target's control", e))?;
            let (mut entry, revision) = match &current {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice(&e.value).unwrap_or_default(),
                    Some(e.revision),
                ),
                Some(e) => (Entry::default(), Some(e.revision)),
                None => (Entry::default(), None),
            };
            change(&mut entry);
            let json = serde_json::to_vec(&entry)
                .map_err(|e| StoreError::Nats(format!("encoding control: {e}")))?;
            // Ok(false): another relay wrote first; read again.
            let written = match revision {
                Some(r) => match self.kv.update(key.as_str(), json.into(), r).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(e) => Err(nats_err("writing a target's control", e)),
                },
                None => match self.kv.create(key.as_str(), json.into()).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(nats_err("writing a target's control", e)),
                },
            };
            if written? {
                self.shared.apply(&key, entry.clone());
                return Ok(entry);
            }
        }
        Err(StoreError::Nats(format!(
            "changing the control of {target}: other relays kept changing it first"
        )))
    }

    /// Milliseconds of credited waits of `target` after `created_at` (Unix ms), from this
    /// relay's copy of the bucket.
    pub(super) fn credited(&self, target: &TargetId, created_at: i64) -> i64 {
        let entries = lock(&self.shared.entries);
        let Some(entry) = entries.get(&token(target.as_str())) else {
            return 0;
        };
        entry
            .credits
            .iter()
            .map(|[from, until]| until - (*from).max(created_at))
            .filter(|ms| *ms > 0)
            .sum()
    }

    /// Tells of every change to `target`'s control, by any relay.
    pub(super) fn feed(&self, target: &TargetId) -> watch::Receiver<TargetControl> {
        let key = token(target.as_str());
        let current = lock(&self.shared.entries)
            .get(&key)
            .map(Entry::control)
            .unwrap_or_default();
        lock(&self.shared.feeds)
            .entry(key)
            .or_insert_with(|| watch::channel(current).0)
            .subscribe()
    }
}
