//! The hot path on JetStream: ingest (publish, PubAck, Nats-Msg-Id), claim (fetch under a
//! lease), ack, retry (nak with delay), release (nak now) and bury (dead-letter publish, then
//! term).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::context::PublishAckFuture;
use futures_util::StreamExt;

use super::meta::{self, DeadMeta, DeliveryMeta, History};
use super::{Leased, NatsStore, nats_err};
use crate::config::TargetId;
use crate::store::{
    AttemptRecord, Claimed, DeliveryId, Ingested, Job, NewEvent, StoreError, from_unix_ms, unix_ms,
};

impl NatsStore {
    pub(super) async fn ingest_event(&self, e: NewEvent) -> Result<Ingested, StoreError> {
        for r in &e.targets {
            if r.order_key.is_some() {
                return Err(StoreError::Unsupported(
                    "ordered delivery (fifo / order_key) on storage.kind nats",
                ));
            }
            if r.quota.is_some() {
                return Err(StoreError::Unsupported(
                    "max_queue / target_share quotas on storage.kind nats",
                ));
            }
        }
        let dedupe = !e.dedupe_window.is_zero();
        let now = unix_ms(SystemTime::now());
        let received_at = unix_ms(e.received_at);
        let mut pending: Vec<PublishAckFuture> = Vec::new();
        let timeout = self.settings.publish_timeout;
        let publish = async {
            if let Some(reason) = &e.dead_reason {
                let dead = DeadMeta {
                    target: None,
                    key: e.key.clone(),
                    event_type: e.event_type.clone(),
                    signature: e.signature.clone(),
                    received_at,
                    dead_at: now,
                    reason: reason.clone(),
                    last_status: None,
                    attempts: 0,
                    history: Vec::new(),
                };
                let id = dedupe.then(|| format!("ev:{}", e.key));
                let h = meta::headers(&dead, id.as_deref())?;
                pending.push(self.publish(self.names.dead_subject(None), h, e.body.clone()).await?);
            } else if e.targets.is_empty() {
                // Nothing to deliver: only the key is remembered (and the body kept for the
                // window when keep_unrouted asks for it).
                if !dedupe && !e.keep_unrouted {
                    return Ok(Vec::new());
                }
                let id = dedupe.then(|| format!("ev:{}", e.key));
                let mut h = async_nats::HeaderMap::new();
                if let Some(id) = &id {
                    h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                }
                let body = if e.keep_unrouted { e.body.clone() } else { bytes::Bytes::new() };
                pending.push(self.publish(self.names.seen_subject(), h, body).await?);
            }
            for r in &e.targets {
                let m = DeliveryMeta {
                    target: r.target.as_str().to_owned(),
                    key: e.key.clone(),
                    event_type: e.event_type.clone(),
                    signature: e.signature.clone(),
                    received_at,
                    created_at: now,
                };
                // One id per (event, target): a retry after a partial publish stores exactly
                // the deliveries that are missing, and is a duplicate only when none are.
                let id = dedupe.then(|| format!("ev:{}:{}", e.key, r.target));
                let h = meta::headers(&m, id.as_deref())?;
                let subject = self.names.queue_subject(r.target.as_str());
                pending.push(self.publish(subject, h, e.body.clone()).await?);
            }
            let mut acks = Vec::with_capacity(pending.len());
            for p in pending {
                acks.push(p.await.map_err(|e| nats_err("waiting for the PubAck", e))?);
            }
            Ok::<_, StoreError>(acks)
        };
        let acks = tokio::time::timeout(timeout, publish)
            .await
            .map_err(|_| StoreError::Timeout(timeout))??;
        for r in &e.targets {
            self.wakeup_local(&r.target);
        }
        if !acks.is_empty() && acks.iter().all(|a| a.duplicate) {
            return Ok(Ingested::Duplicate);
        }
        Ok(Ingested::Accepted)
    }

    async fn publish(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<PublishAckFuture, StoreError> {
        self.js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| nats_err("publishing", e))
    }

    pub(super) async fn claim_due(
        &self,
        target: &TargetId,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        let consumer = self.consumer(target, lease).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(limit.max(1))
            .messages()
            .await
            .map_err(|e| nats_err("fetching deliveries", e))?;
        let credits = self.credits(target).await?;
        let mut jobs = Vec::new();
        while let Some(next) = batch.next().await {
            let msg = next.map_err(|e| nats_err("fetching deliveries", e))?;
            let Some(seq) = msg.info().ok().map(|i| i.stream_sequence) else {
                continue;
            };
            let id = DeliveryId(i64::try_from(seq).unwrap_or(i64::MAX));
            let Some(m) = meta::decode::<DeliveryMeta>(msg.headers.as_ref()) else {
                // Not ours (published by hand on our subject): keep it out of the way.
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            };
            let history = self.history(id).await?;
            let created = m.created_at + super::control::credit_after(&credits, m.created_at);
            jobs.push(Job {
                id,
                event_key: m.key,
                event_type: m.event_type,
                body: msg.payload.clone(),
                signature: m.signature,
                received_at: from_unix_ms(m.received_at),
                attempts: history.count,
                created_at: from_unix_ms(created),
            });
            self.leased.lock().await.insert(
                id,
                Leased {
                    target: target.clone(),
                    message: msg,
                },
            );
        }
        let next_due = self.next_due(target).await;
        Ok(Claimed { jobs, next_due })
    }

    async fn take(&self, id: DeliveryId) -> Result<Leased, StoreError> {
        self.leased
            .lock()
            .await
            .remove(&id)
            .ok_or(StoreError::NotLeased(id))
    }

    pub(super) async fn ack_delivery(&self, id: DeliveryId) -> Result<(), StoreError> {
        let leased = self.take(id).await?;
        // Double ack: returns only once the server recorded it, so a crash after it cannot
        // redeliver (a lease that expired before it is answered with an error).
        leased
            .message
            .double_ack()
            .await
            .map_err(|e| nats_err("acknowledging a delivery", e))?;
        self.forget_history(id).await;
        Ok(())
    }

    pub(super) async fn retry_delivery(
        &self,
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        let leased = self.take(id).await?;
        let mut history = self.history(id).await?;
        history.push(unix_ms(SystemTime::now()), last.status, last.reason);
        self.save_history(id, &history).await?;
        let delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        leased
            .message
            .double_ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| nats_err("scheduling a retry", e))?;
        self.remember_due(&leased.target, at).await;
        Ok(())
    }

    pub(super) async fn release_delivery(&self, id: DeliveryId) -> Result<(), StoreError> {
        let leased = self.take(id).await?;
        leased
            .message
            .double_ack_with(AckKind::Nak(None))
            .await
            .map_err(|e| nats_err("releasing a delivery", e))?;
        self.wakeup_local(&leased.target);
        Ok(())
    }

    pub(super) async fn bury_delivery(
        &self,
        id: DeliveryId,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        let leased = self.take(id).await?;
        let Some(m) = meta::decode::<DeliveryMeta>(leased.message.headers.as_ref()) else {
            return Err(StoreError::Nats(format!("delivery {id} has no metadata")));
        };
        let now = unix_ms(SystemTime::now());
        let mut history = self.history(id).await?;
        history.push(now, last.status, last.reason.clone());
        let dead = DeadMeta {
            target: Some(m.target),
            key: m.key,
            event_type: m.event_type,
            signature: m.signature,
            received_at: m.received_at,
            dead_at: now,
            reason: last.reason,
            last_status: last.status,
            attempts: history.count,
            history: history.recent,
        };
        // The id makes a repeated burial (a crash between publish and term) one dead letter.
        let h = meta::headers(&dead, Some(&format!("bury:{id}")))?;
        let subject = self.names.dead_subject(dead.target.as_deref());
        let ack = self
            .publish(subject, h, leased.message.payload.clone())
            .await?;
        tokio::time::timeout(self.settings.publish_timeout, ack)
            .await
            .map_err(|_| StoreError::Timeout(self.settings.publish_timeout))?
            .map_err(|e| nats_err("storing a dead letter", e))?;
        leased
            .message
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|e| nats_err("removing a buried delivery", e))?;
        self.forget_history(id).await;
        Ok(())
    }

    async fn history(&self, id: DeliveryId) -> Result<History, StoreError> {
        let raw = self
            .attempts
            .get(id.to_string())
            .await
            .map_err(|e| nats_err("reading attempts", e))?;
        Ok(raw
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    async fn save_history(&self, id: DeliveryId, h: &History) -> Result<(), StoreError> {
        let json = serde_json::to_vec(h).map_err(|e| StoreError::Nats(format!("encoding: {e}")))?;
        self.attempts
            .put(id.to_string(), json.into())
            .await
            .map_err(|e| nats_err("recording an attempt", e))?;
        Ok(())
    }

    /// A settled delivery's history is no longer needed; a failure here only leaves a small
    /// key behind, so it is logged, not returned.
    async fn forget_history(&self, id: DeliveryId) {
        if let Err(e) = self.attempts.purge(id.to_string()).await {
            tracing::warn!(delivery = %id, error = %e, "could not remove the attempt history");
        }
    }

    async fn remember_due(&self, target: &TargetId, at: SystemTime) {
        self.due.lock().await.entry(target.clone()).or_default().push(at);
    }

    /// The earliest retry this relay scheduled for `target` that is still in the future.
    /// Retries scheduled by other relays are found by the dispatcher's idle claims.
    async fn next_due(&self, target: &TargetId) -> Option<SystemTime> {
        let now = SystemTime::now();
        let mut due = self.due.lock().await;
        let list = due.get_mut(target)?;
        list.retain(|t| *t > now);
        list.iter().min().copied()
    }
}
