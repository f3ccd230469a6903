//! Reads for operators: a target's counts, where one event is, which targets have
//! deliveries. They read consumer and stream state; nothing here is on the hot path.

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;

use super::layout::{Lane, event_id_hash};
use super::meta::{self, DeadMeta, DeliveryMeta, History};
use super::{NatsStore, nats_err};
use crate::config::TargetId;
use crate::store::{
    DeliveryId, DeliveryState, EventDelivery, EventWhereabouts, StoreError, StoredEvent,
    TargetCounts,
};

/// Most messages of one event read by [`NatsStore::whereabouts`]: an event has one delivery
/// per target, and a few more copies when it was accepted again after its window.
const MAX_COPIES: usize = 256;

impl NatsStore {
    pub(super) async fn target_counts(
        &self,
        target: &TargetId,
    ) -> Result<TargetCounts, StoreError> {
        let deliveries = self.stream(self.names.deliveries()).await?;
        let mut counts = TargetCounts::default();
        for lane in Lane::of(self.is_ordered(target)) {
            let name = self.names.consumer(target.as_str(), lane);
            match deliveries.consumer_info(&name).await {
                // A delivery waiting for its retry's delay is still pending an ack: JetStream
                // counts it in flight (README).
                Ok(info) => {
                    counts.queued += info.num_pending;
                    counts.in_flight += info.num_ack_pending as u64;
                }
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(nats_err("reading a consumer", e)),
            }
        }
        if counts.queued + counts.in_flight > 0 {
            let first = deliveries
                .direct_get_next_for_subject(self.names.target_filter(target.as_str()), None)
                .await;
            counts.oldest_queued_at = first
                .ok()
                .and_then(|m| meta::decode::<DeliveryMeta>(Some(&m.headers)))
                .map(|m| m.created_at);
        }
        let dead = self.stream(self.names.dead()).await?;
        let mut subjects = dead
            .info_with_subjects(self.names.dead_filter(Some(target.as_str())))
            .await
            .map_err(|e| nats_err("counting dead letters", e))?;
        while let Some(next) = subjects.next().await {
            let (_, n) = next.map_err(|e| nats_err("counting dead letters", e))?;
            counts.dead += n as u64;
        }
        Ok(counts)
    }

    pub(super) async fn known_targets(&self) -> Result<Vec<TargetId>, StoreError> {
        let mut found = BTreeSet::new();
        let deliveries = self.stream(self.names.deliveries()).await?;
        let mut consumers = deliveries.consumers();
        while let Some(next) = consumers.next().await {
            let info = next.map_err(|e| nats_err("listing consumers", e))?;
            if info.num_pending + info.num_ack_pending as u64 == 0 {
                continue;
            }
            if let Some(t) = self.names.target_of_consumer(&info.name) {
                found.insert(t.as_str().to_owned());
            }
        }
        let dead = self.stream(self.names.dead()).await?;
        let mut subjects = dead
            .info_with_subjects(self.names.dead_filter(None))
            .await
            .map_err(|e| nats_err("listing dead letters", e))?;
        while let Some(next) = subjects.next().await {
            let (subject, _) = next.map_err(|e| nats_err("listing dead letters", e))?;
            if let Some(t) = self.names.target_of_dead(&subject) {
                found.insert(t.as_str().to_owned());
            }
        }
        Ok(found.into_iter().map(|t| TargetId(t.into())).collect())
    }

    pub(super) async fn whereabouts(
        &self,
        event_id: &str,
    ) -> Result<Option<EventWhereabouts>, StoreError> {
        let id_hash = event_id_hash(event_id);
        let deliveries = self.stream(self.names.deliveries()).await?;
        let mut found = EventWhereabouts::default();
        let mut stored: HashMap<i64, Option<String>> = HashMap::new();
        let mut delivered_up_to: HashMap<String, u64> = HashMap::new();
        for msg in read_all(&deliveries, &self.names.event_filter(&id_hash)).await? {
            let Some(m) = meta::decode::<DeliveryMeta>(Some(&msg.headers)) else {
                continue;
            };
            if m.event_id != event_id {
                continue;
            }
            stored.insert(m.received_at, m.event_type.clone());
            let target = TargetId(m.target.as_str().into());
            // Handed out to a relay and not settled: its consumer's delivered sequence is at
            // or past it.
            let lane_consumer = consumer_of(&self.names, &msg.subject, &target);
            let floor = match delivered_up_to.get(&lane_consumer) {
                Some(f) => *f,
                None => {
                    let f = deliveries
                        .consumer_info(&lane_consumer)
                        .await
                        .map(|i| i.delivered.stream_sequence)
                        .unwrap_or(0);
                    delivered_up_to.insert(lane_consumer.clone(), f);
                    f
                }
            };
            let id = DeliveryId(i64::try_from(msg.sequence).unwrap_or(i64::MAX));
            let history: History = self
                .attempts
                .get(id.to_string())
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let last = history.recent.last();
            found.deliveries.push(EventDelivery {
                id,
                target: Some(m.target),
                state: if msg.sequence <= floor {
                    DeliveryState::InFlight
                } else {
                    DeliveryState::Queued
                },
                attempts: history.count,
                next_attempt_at: None,
                last_status: last.and_then(|a| a.status),
                last_error: last.map(|a| a.reason.clone()),
            });
        }
        let dead = self.stream(self.names.dead()).await?;
        for filter in self.names.dead_event_filters(&id_hash) {
            for msg in read_all(&dead, &filter).await? {
                let Some(m) = meta::decode::<DeadMeta>(Some(&msg.headers)) else {
                    continue;
                };
                if m.event_id != event_id {
                    continue;
                }
                stored.insert(m.received_at, m.event_type.clone());
                found.deliveries.push(EventDelivery {
                    id: DeliveryId(i64::try_from(msg.sequence).unwrap_or(i64::MAX)),
                    target: m.target,
                    state: DeliveryState::Dead,
                    attempts: m.attempts,
                    next_attempt_at: None,
                    last_status: m.last_status,
                    last_error: Some(m.reason),
                });
            }
        }
        if found.deliveries.is_empty() {
            return Ok(None);
        }
        let mut copies: Vec<_> = stored.into_iter().collect();
        copies.sort();
        found.stored = copies
            .into_iter()
            .map(|(received_at, event_type)| StoredEvent {
                event_type,
                received_at,
            })
            .collect();
        Ok(Some(found))
    }
}

/// The consumer name of the lane a queue subject is on.
fn consumer_of(names: &super::layout::Names, subject: &str, target: &TargetId) -> String {
    let lane = subject.rsplit('.').nth(1).unwrap_or("n");
    let lane = match lane {
        "h" => Lane::High,
        l => l
            .strip_prefix('o')
            .and_then(|i| i.parse().ok())
            .map_or(Lane::Normal, Lane::Ordered),
    };
    names.consumer(target.as_str(), lane)
}

/// Every message on `subject` (wildcards allowed), by direct gets, up to [`MAX_COPIES`].
async fn read_all(
    stream: &Stream<()>,
    subject: &str,
) -> Result<Vec<async_nats::jetstream::message::StreamMessage>, StoreError> {
    let mut out = Vec::new();
    let mut from = None;
    while out.len() < MAX_COPIES {
        match stream
            .direct_get_next_for_subject(subject.to_owned(), from)
            .await
        {
            Ok(m) => {
                from = Some(m.sequence + 1);
                out.push(m);
            }
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                break;
            }
            Err(e) => return Err(nats_err("reading an event's messages", e)),
        }
    }
    Ok(out)
}
