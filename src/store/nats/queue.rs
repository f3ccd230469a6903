//! The hot path on JetStream after ingest (see [`super::ingest`]): claim (fetch under a
//! lease), ack, retry (nak with delay), release (nak now) and bury (dead-letter publish,
//! then term).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::AckKind;
use futures_util::StreamExt;

use super::layout::{Lane, event_id_hash};
use super::meta::{self, DeadMeta, DeliveryMeta, History};
use super::{Leased, NatsStore, POLL, lock, nats_err};
use crate::config::TargetId;
use crate::store::{AttemptRecord, Claimed, DeliveryId, Job, StoreError, from_unix_ms, unix_ms};

/// How long one lane's fetch may wait for the server's "nothing more".
const LANE_WAIT: Duration = Duration::from_millis(250);

impl NatsStore {
    pub(super) async fn claim_due(
        &self,
        target: &TargetId,
        limit: usize,
    ) -> Result<Claimed, StoreError> {
        let mut jobs = Vec::new();
        if self.is_ordered(target) {
            // Every ordered lane hands out one delivery at a time (max_ack_pending 1), so
            // they are asked at once, and only those this relay is not already sending from.
            // That can claim more than `limit`: the dispatcher starts them as slots free up.
            let busy: std::collections::HashSet<Lane> = lock(&self.leased)
                .values()
                .filter(|l| &l.target == target)
                .map(|l| l.lane)
                .collect();
            let lanes: Vec<Lane> = Lane::of(true)
                .into_iter()
                .filter(|l| !busy.contains(l))
                .collect();
            let fetched = futures_util::future::join_all(
                lanes.iter().map(|lane| self.fetch_lane(target, *lane, 1)),
            )
            .await;
            for (lane, messages) in lanes.into_iter().zip(fetched) {
                for msg in messages? {
                    if let Some(job) = self.job(target, lane, msg).await? {
                        jobs.push(job);
                    }
                }
            }
        } else {
            for lane in [Lane::High, Lane::Normal] {
                let room = limit.max(1).saturating_sub(jobs.len());
                if room == 0 {
                    break;
                }
                for msg in self.fetch_lane(target, lane, room).await? {
                    if let Some(job) = self.job(target, lane, msg).await? {
                        jobs.push(job);
                    }
                }
            }
        }
        Ok(Claimed {
            jobs,
            next_due: Some(self.next_due(target)),
        })
    }

    /// Up to `room` due deliveries of one lane, leased to this relay.
    async fn fetch_lane(
        &self,
        target: &TargetId,
        lane: Lane,
        room: usize,
    ) -> Result<Vec<async_nats::jetstream::Message>, StoreError> {
        let consumer = self.consumer(target, lane).await?;
        let mut batch = self
            .bounded("claiming deliveries", async {
                consumer
                    .fetch()
                    .max_messages(room)
                    .messages()
                    .await
                    .map_err(|e| nats_err("fetching deliveries", e))
            })
            .await?;
        let mut out = Vec::new();
        // A lane whose one delivery is out (an ordered head waiting for its retry, or sent
        // by another relay) may answer nothing at all: the wait is bounded, and what came is
        // kept.
        while let Ok(Some(next)) = tokio::time::timeout(LANE_WAIT, batch.next()).await {
            match next {
                Ok(msg) => out.push(msg),
                // 409: the lane has all the deliveries out it may (an ordered lane's head).
                Err(e) if matches!(lane, Lane::Ordered(_)) && e.to_string().contains("409") => {
                    break;
                }
                Err(e) => return Err(nats_err("fetching deliveries", e)),
            }
        }
        Ok(out)
    }

    /// Turns a fetched message into a job and keeps it under lease; `None` for a message that
    /// is not a delivery (published by hand on our subjects), which is removed.
    async fn job(
        &self,
        target: &TargetId,
        lane: Lane,
        msg: async_nats::jetstream::Message,
    ) -> Result<Option<Job>, StoreError> {
        let (seq, delivered) = match msg.info() {
            Ok(i) => (i.stream_sequence, i.delivered),
            Err(e) => return Err(nats_err("reading a delivery's metadata", e)),
        };
        let id = DeliveryId(i64::try_from(seq).unwrap_or(i64::MAX));
        let Some(m) = meta::decode::<DeliveryMeta>(msg.headers.as_ref()) else {
            tracing::warn!(target = %target, sequence = seq, "removing a message without delivery metadata");
            msg.ack_with(AckKind::Term)
                .await
                .map_err(|e| nats_err("removing a foreign message", e))?;
            return Ok(None);
        };
        // Only a redelivered message can have failed before, or one moved in with its
        // attempts (`migrate`).
        let has_history = delivered > 1 || meta::carries_history(msg.headers.as_ref());
        let history = if has_history {
            self.history(id).await?
        } else {
            History::default()
        };
        let credit = self.control.credited(target, m.created_at);
        let job = Job {
            id,
            event_id: m.event_id,
            event_type: m.event_type,
            body: msg.payload.clone(),
            parsed: Default::default(),
            signature: m.signature,
            received_at: from_unix_ms(m.received_at),
            attempts: history.count,
            created_at: from_unix_ms(m.created_at.saturating_add(credit)),
        };
        lock(&self.leased).insert(
            id,
            Leased {
                target: target.clone(),
                lane,
                message: msg,
                has_history,
            },
        );
        Ok(Some(job))
    }

    fn take(&self, id: DeliveryId) -> Result<Leased, StoreError> {
        lock(&self.leased)
            .remove(&id)
            .ok_or(StoreError::NotLeased(id))
    }

    pub(super) async fn ack_delivery(&self, id: DeliveryId) -> Result<(), StoreError> {
        let leased = self.take(id)?;
        // Double ack: returns once the server recorded it, so a crash after it cannot
        // redeliver.
        self.bounded("acknowledging a delivery", async {
            leased
                .message
                .double_ack()
                .await
                .map_err(|e| nats_err("acknowledging a delivery", e))
        })
        .await?;
        if leased.has_history {
            self.forget_history(id).await;
        }
        Ok(())
    }

    pub(super) async fn retry_delivery(
        &self,
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        let leased = self.take(id)?;
        let mut history = if leased.has_history {
            self.history(id).await?
        } else {
            History::default()
        };
        history.push(unix_ms(SystemTime::now()), last.status, last.reason);
        self.save_history(id, &history).await?;
        let delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.bounded("scheduling a retry", async {
            leased
                .message
                .double_ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| nats_err("scheduling a retry", e))
        })
        .await?;
        lock(&self.due).entry(leased.target).or_default().push(at);
        Ok(())
    }

    pub(super) async fn release_delivery(&self, id: DeliveryId) -> Result<(), StoreError> {
        let leased = self.take(id)?;
        self.bounded("releasing a delivery", async {
            leased
                .message
                .double_ack_with(AckKind::Nak(None))
                .await
                .map_err(|e| nats_err("releasing a delivery", e))
        })
        .await?;
        self.wakeup_local(&leased.target);
        Ok(())
    }

    pub(super) async fn bury_delivery(
        &self,
        id: DeliveryId,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        let leased = self.take(id)?;
        let Some(m) = meta::decode::<DeliveryMeta>(leased.message.headers.as_ref()) else {
            return Err(StoreError::Nats(format!("delivery {id} has no metadata")));
        };
        let now = unix_ms(SystemTime::now());
        let mut history = if leased.has_history {
            self.history(id).await?
        } else {
            History::default()
        };
        history.push(now, last.status, last.reason.clone());
        let id_hash = event_id_hash(&m.event_id);
        let dead = DeadMeta {
            target: Some(m.target),
            event_id: m.event_id,
            event_type: m.event_type,
            signature: m.signature,
            received_at: m.received_at,
            dead_at: now,
            reason: last.reason,
            last_status: last.status,
            attempts: history.count,
            history: history.recent,
            queue_subject: Some(leased.message.subject.to_string()),
        };
        // The id makes a repeated burial (a crash between publish and term) one dead letter.
        let headers = meta::headers(&dead, Some(&format!("bury:{id}")))?;
        let subject = self.names.dead_subject(dead.target.as_deref(), &id_hash);
        let payload = leased.message.payload.clone();
        self.bounded("storing a dead letter", async {
            self.js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| nats_err("storing a dead letter", e))?
                .await
                .map_err(|e| nats_err("storing a dead letter", e))?;
            leased
                .message
                .double_ack_with(AckKind::Term)
                .await
                .map_err(|e| nats_err("removing a buried delivery", e))
        })
        .await?;
        self.forget_history(id).await;
        Ok(())
    }

    async fn history(&self, id: DeliveryId) -> Result<History, StoreError> {
        let raw = self
            .bounded("reading attempts", async {
                self.attempts
                    .get(id.to_string())
                    .await
                    .map_err(|e| nats_err("reading attempts", e))
            })
            .await?;
        Ok(raw
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    async fn save_history(&self, id: DeliveryId, h: &History) -> Result<(), StoreError> {
        let json = serde_json::to_vec(h).map_err(|e| StoreError::Nats(format!("encoding: {e}")))?;
        self.bounded("recording an attempt", async {
            self.attempts
                .put(id.to_string(), json.into())
                .await
                .map_err(|e| nats_err("recording an attempt", e))
        })
        .await?;
        Ok(())
    }

    /// A settled delivery's history is no longer needed; a failure here only leaves a small
    /// key behind, so it is logged, not returned.
    async fn forget_history(&self, id: DeliveryId) {
        if let Err(e) = self.attempts.purge(id.to_string()).await {
            tracing::warn!(delivery = %id, error = %e, "could not remove the attempt history");
        }
    }

    /// When the dispatcher of `target` should look again: the earliest retry this relay
    /// scheduled, or [`POLL`] from now for work that other relays queued or scheduled.
    fn next_due(&self, target: &TargetId) -> SystemTime {
        let now = SystemTime::now();
        let poll = now + POLL;
        let mut due = lock(&self.due);
        let Some(list) = due.get_mut(target) else {
            return poll;
        };
        list.retain(|t| *t > now);
        list.iter().min().copied().map_or(poll, |t| t.min(poll))
    }
}
