//! Moving deliveries and dead letters in from a SQLite store (`textus-relay migrate`): each
//! is published where ingest or a burial would have put it, with `Nats-Msg-Id` =
//! `mig:<its SQLite id>`, so a move interrupted after the PubAck and run again stores it once
//! (within the streams' duplicate window, `source.dedupe_window`).

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::kv::CreateErrorKind;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;

use super::layout::{Lane, event_id_hash};
use super::meta::{self, AttemptRec, DeadMeta, DeliveryMeta, History};
use super::{NatsStore, nats_err};
use crate::config::Priority;
use crate::store::StoreError;
use crate::store::sqlite::export::Exported;

/// Whether JetStream already had what was moved (a rerun after an interrupted move).
pub type Duplicate = bool;

impl NatsStore {
    /// Queues a pending delivery, with its attempts so far, and returns once JetStream
    /// has it.
    pub async fn import_delivery(&self, d: &Exported) -> Result<Duplicate, StoreError> {
        let Some(target) = d.target.as_deref() else {
            return Err(StoreError::Nats(format!(
                "delivery {} is pending but has no target",
                d.id
            )));
        };
        let m = DeliveryMeta {
            target: target.to_owned(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            signature: d.signature.clone(),
            received_at: d.received_at,
            created_at: d.created_at,
        };
        let mut headers = meta::headers(&m, Some(&msg_id(d)))?;
        if d.attempts > 0 {
            // A first delivery is not otherwise looked up in the attempts bucket.
            headers.insert(meta::HISTORY_HEADER, "1");
        }
        let subject = self.names.queue_subject(
            target,
            self.import_lane(target, d),
            &event_id_hash(&d.event_id),
        );
        let ack = self
            .bounded("moving a delivery", self.publish(subject, headers, &d.body))
            .await?;
        if d.attempts > 0 {
            self.import_history(ack.sequence, d, ack.duplicate).await?;
        }
        Ok(ack.duplicate)
    }

    /// Stores a dead letter where a burial would have, listed, shown and replayed like one.
    pub async fn import_dead(&self, d: &Exported) -> Result<Duplicate, StoreError> {
        let id_hash = event_id_hash(&d.event_id);
        let queue_subject = d.target.as_deref().map(|t| {
            self.names
                .queue_subject(t, self.import_lane(t, d), &id_hash)
        });
        let dead = DeadMeta {
            target: d.target.clone(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            signature: d.signature.clone(),
            received_at: d.received_at,
            dead_at: d.updated_at,
            reason: d.last_error.clone().unwrap_or_default(),
            last_status: d.last_status,
            attempts: d.attempts,
            history: records(d),
            queue_subject,
        };
        let headers = meta::headers(&dead, Some(&msg_id(d)))?;
        let subject = self.names.dead_subject(d.target.as_deref(), &id_hash);
        let ack = self
            .bounded(
                "moving a dead letter",
                self.publish(subject, headers, &d.body),
            )
            .await?;
        Ok(ack.duplicate)
    }

    /// Remembers event ids for de-duplication as ingest does, so that TextUs retrying an
    /// event the SQLite relay had acknowledged is answered `duplicate` by the relays on NATS.
    /// Published a slice at once, then every PubAck awaited; returns how many JetStream
    /// already had. Each is kept for the whole `dedupe_window` from now: a little longer
    /// than SQLite would have, never shorter.
    pub async fn import_seen(&self, event_ids: &[String]) -> Result<u64, StoreError> {
        let markers: Vec<_> = event_ids.iter().map(|id| self.seen_marker(id)).collect();
        let acks = self
            .bounded(
                "moving event ids",
                self.publish_all(&markers, &Bytes::new()),
            )
            .await?;
        Ok(acks.iter().map(|duplicate| u64::from(*duplicate)).sum())
    }

    /// The lane a claim reads it from: the configured target's ordering decides; for a
    /// target no longer configured, whether it was queued with an order key.
    fn import_lane(&self, target: &str, d: &Exported) -> Lane {
        let configured = self
            .settings
            .targets
            .iter()
            .find(|t| t.name.as_str() == target);
        let ordered = configured.map_or(d.order_key.is_some(), |t| t.ordered);
        if ordered {
            // The empty key is the fifo key, and a key that failed to render (routing).
            return Lane::for_key(d.order_key.as_deref().unwrap_or(""));
        }
        match d.priority {
            Priority::High => Lane::High,
            Priority::Normal => Lane::Normal,
        }
    }

    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        body: &Bytes,
    ) -> Result<PublishAck, StoreError> {
        let pending: PublishAckFuture = self
            .js
            .publish_with_headers(subject, headers, body.clone())
            .await
            .map_err(|e| nats_err("publishing", e))?;
        pending
            .await
            .map_err(|e| nats_err("waiting for the PubAck", e))
    }

    /// Records the attempts under the delivery's stream sequence. After a duplicate publish
    /// the history may already be there, and a relay may have added attempts since: it is
    /// then left as it is.
    async fn import_history(
        &self,
        seq: u64,
        d: &Exported,
        duplicate: bool,
    ) -> Result<(), StoreError> {
        let history = History {
            count: d.attempts,
            recent: records(d),
        };
        let json: Bytes = serde_json::to_vec(&history)
            .map_err(|e| StoreError::Nats(format!("encoding: {e}")))?
            .into();
        let key = seq.to_string();
        self.bounded("moving attempts", async {
            if duplicate {
                match self.attempts.create(&key, json).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(nats_err("moving attempts", e)),
                }
            } else {
                self.attempts
                    .put(&key, json)
                    .await
                    .map(|_| ())
                    .map_err(|e| nats_err("moving attempts", e))
            }
        })
        .await
    }
}

fn msg_id(d: &Exported) -> String {
    format!("mig:{}", d.id)
}

/// The most recent attempts, as many as the JetStream store keeps.
fn records(d: &Exported) -> Vec<AttemptRec> {
    let skip = d.history.len().saturating_sub(meta::MAX_HISTORY);
    d.history[skip..]
        .iter()
        .map(|a| AttemptRec {
            attempt: a.attempt,
            at: a.at,
            status: a.status,
            reason: a.reason.clone(),
        })
        .collect()
}
