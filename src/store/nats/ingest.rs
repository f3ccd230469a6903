//! Ingest on JetStream: one message per (event, target) published with `Nats-Msg-Id`
//! `ev:<key>:<target>`, after a look-up of the seen stream; answered once every PubAck came.

use std::time::{Instant, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;

use super::layout::{Lane, event_id_hash};
use super::meta::{self, DeadMeta, DeliveryMeta};
use super::{NatsStore, PENDING_TTL, Pending, lock, nats_err};
use crate::config::{OnFull, Priority, TargetId};
use crate::store::{Ingested, NewEvent, QueueLimit, Routed, StoreError, unix_ms};

/// One message an event becomes.
pub(super) struct Outgoing {
    subject: String,
    headers: HeaderMap,
    target: Option<TargetId>,
}

impl NatsStore {
    pub(super) async fn ingest_event(&self, e: NewEvent) -> Result<Ingested, StoreError> {
        let dedupe = !e.dedupe_window.is_zero();
        let now = unix_ms(SystemTime::now());
        let id_hash = event_id_hash(&e.event_id);
        // Looked up before anything is stored, not only answered by the PubAck of the id
        // written last: the deliveries' own ids are gone once they are delivered (or were
        // never these, for what `migrate` moved in), and a repeat would be stored again.
        if dedupe
            && self
                .bounded(
                    "looking up the event id",
                    self.seen_before(&e.event_id, &id_hash),
                )
                .await?
        {
            return Ok(Ingested::Duplicate);
        }
        let mut out = Vec::new();
        if let Some(reason) = &e.dead_reason {
            let dead = self.dead_meta(&e, None, None, reason.clone(), now);
            let id = dedupe.then(|| format!("ev:{}", e.event_id));
            out.push(Outgoing {
                subject: self.names.dead_subject(None, &id_hash),
                headers: meta::headers(&dead, id.as_deref())?,
                target: None,
            });
        } else if e.targets.is_empty() {
            // Nothing to deliver: only the key is remembered, so a repeat is a duplicate.
            if !dedupe {
                return Ok(Ingested::Accepted);
            }
            out.push(self.seen_marker(&e.event_id));
        }
        for r in &e.targets {
            // One id per (event, target): a retry after a partial publish stores exactly the
            // deliveries that are missing, and is a duplicate only when none are.
            let id = dedupe.then(|| format!("ev:{}:{}", e.event_id, r.target));
            if let Some(limit) = self.queue_full(r).await {
                let on_full = r.quota.map(|q| q.on_full).unwrap_or_default();
                match on_full {
                    OnFull::Reject => {
                        return Ok(Ingested::Rejected {
                            target: r.target.clone(),
                            limit,
                        });
                    }
                    OnFull::DeadLetter => {
                        let reason = format!("queue full ({limit})");
                        let queue =
                            self.names
                                .queue_subject(r.target.as_str(), self.lane(r), &id_hash);
                        let dead = self.dead_meta(&e, Some(&r.target), Some(queue), reason, now);
                        out.push(Outgoing {
                            subject: self.names.dead_subject(Some(r.target.as_str()), &id_hash),
                            headers: meta::headers(&dead, id.as_deref())?,
                            target: None,
                        });
                        continue;
                    }
                }
            }
            let m = DeliveryMeta {
                target: r.target.as_str().to_owned(),
                event_id: e.event_id.clone(),
                event_type: e.event_type.clone(),
                signature: e.signature.clone(),
                received_at: unix_ms(e.received_at),
                created_at: now,
            };
            out.push(Outgoing {
                subject: self
                    .names
                    .queue_subject(r.target.as_str(), self.lane(r), &id_hash),
                headers: meta::headers(&m, id.as_deref())?,
                target: Some(r.target.clone()),
            });
        }
        let acks = self
            .bounded("storing the event", self.publish_all(&out, &e.body))
            .await?;
        for o in &out {
            if let Some(t) = &o.target {
                self.count_stored(t);
                self.wakeup_local(t);
            }
        }
        let routed = out.iter().any(|o| o.target.is_some());
        if dedupe && routed {
            // The deliveries' stream drops what was delivered, and with it, after a change of
            // leader, the memory of their ids: the key is kept apart, in a stream that keeps
            // it for the whole window, and only once every delivery is stored, so a crash in
            // between is a retry that stores again, never a lost event taken for a duplicate.
            let seen = [self.seen_marker(&e.event_id)];
            let marker = self
                .bounded(
                    "remembering the event",
                    self.publish_all(&seen, &Bytes::new()),
                )
                .await?;
            return Ok(if marker.iter().all(|d| *d) {
                Ingested::Duplicate
            } else {
                Ingested::Accepted
            });
        }
        if !acks.is_empty() && acks.iter().all(|duplicate| *duplicate) {
            return Ok(Ingested::Duplicate);
        }
        Ok(Ingested::Accepted)
    }

    /// Whether the seen stream remembers `event_id`: an event stored within its window.
    async fn seen_before(&self, event_id: &str, id_hash: &str) -> Result<bool, StoreError> {
        let stream = self.stream(self.names.seen()).await?;
        // From the stream's leader, not a replica that may be behind.
        match stream
            .get_last_raw_message_by_subject(&self.names.seen_subject(id_hash))
            .await
        {
            // Another event id with the same hash is not this one.
            Ok(m) => Ok(m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .is_some_and(|id| id.as_str() == format!("ev:{event_id}"))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(nats_err("looking up the event id", e)),
        }
    }

    /// The message that remembers `event_id` in the seen stream, by its message id
    /// (`ev:<event id>`).
    pub(super) fn seen_marker(&self, event_id: &str) -> Outgoing {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("ev:{event_id}"),
        );
        Outgoing {
            subject: self.names.seen_subject(&event_id_hash(event_id)),
            headers,
            target: None,
        }
    }

    /// Publishes every message at once, then waits for every PubAck; returns, per message,
    /// whether JetStream already had it (a duplicate).
    pub(super) async fn publish_all(
        &self,
        out: &[Outgoing],
        body: &Bytes,
    ) -> Result<Vec<bool>, StoreError> {
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(out.len());
        for o in out {
            pending.push(
                self.js
                    .publish_with_headers(o.subject.clone(), o.headers.clone(), body.clone())
                    .await
                    .map_err(|e| nats_err("publishing", e))?,
            );
        }
        let mut acks = Vec::with_capacity(pending.len());
        for p in pending {
            let ack = p.await.map_err(|e| nats_err("waiting for the PubAck", e))?;
            acks.push(ack.duplicate);
        }
        Ok(acks)
    }

    fn lane(&self, r: &Routed) -> Lane {
        match (&r.order_key, r.priority) {
            (Some(key), _) => {
                lock(&self.ordered).insert(r.target.clone());
                Lane::for_key(key)
            }
            (None, Priority::High) => Lane::High,
            (None, Priority::Normal) => Lane::Normal,
        }
    }

    fn dead_meta(
        &self,
        e: &NewEvent,
        target: Option<&TargetId>,
        queue_subject: Option<String>,
        reason: String,
        now: i64,
    ) -> DeadMeta {
        DeadMeta {
            target: target.map(|t| t.as_str().to_owned()),
            event_id: e.event_id.clone(),
            event_type: e.event_type.clone(),
            signature: e.signature.clone(),
            received_at: unix_ms(e.received_at),
            dead_at: now,
            reason,
            last_status: None,
            attempts: 0,
            history: Vec::new(),
            queue_subject,
        }
    }

    /// Which `max_queue` limit `r` meets, if any. The count is at most [`PENDING_TTL`] old
    /// plus what this relay stored since, so relays storing at once can pass the limit by
    /// what they take in that time (README, "Several relays on NATS JetStream").
    async fn queue_full(&self, r: &Routed) -> Option<QueueLimit> {
        let max = r.quota.and_then(|q| q.max_queue)?;
        let cached = lock(&self.pending)
            .get(&r.target)
            .filter(|p| p.read_at.elapsed() < PENDING_TTL)
            .map(|p| p.count);
        let count = match cached {
            Some(c) if c < max => c,
            // Full by a count that may be stale, or no count: read it now, so a queue that
            // drained takes events again at once.
            _ => {
                // A count that cannot be read does not stop ingest: the limit protects the
                // servers' disk, which JetStream's own limits also do.
                let c = self.pending_count(&r.target).await.unwrap_or(0);
                lock(&self.pending).insert(
                    r.target.clone(),
                    Pending {
                        read_at: Instant::now(),
                        count: c,
                    },
                );
                c
            }
        };
        (count >= max).then_some(QueueLimit::Deliveries(max))
    }

    fn count_stored(&self, target: &TargetId) {
        if let Some(p) = lock(&self.pending).get_mut(target) {
            p.count += 1;
        }
    }

    /// Queued and in-flight deliveries of `target`, from its consumers.
    pub(super) async fn pending_count(&self, target: &TargetId) -> Result<u64, StoreError> {
        let stream = self.stream(self.names.deliveries()).await?;
        let mut total = 0;
        for lane in Lane::of(self.is_ordered(target)) {
            let name = self.names.consumer(target.as_str(), lane);
            match stream.consumer_info(&name).await {
                Ok(info) => total += info.num_pending + info.num_ack_pending as u64,
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(nats_err("reading a consumer", e)),
            }
        }
        Ok(total)
    }
}
