//! Dead letters on JetStream: the `{prefix}-dead` stream, read by scanning its headers
//! (bodies stay on the servers until one letter is shown), replayed by publishing each
//! letter back to the queue it came from, then deleting it.
//!
//! A scan reads every dead letter of the asked-for target (or all of them): fine for the
//! thousands an operator works through, slow for millions (README).

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use async_nats::jetstream::stream::RawMessageErrorKind;
use futures_util::StreamExt;

use super::meta::{self, DeadMeta, DeliveryMeta};
use super::{NatsStore, nats_err};
use crate::config::TargetId;
use crate::store::sqlite::dead::{ReplaySlice, ReplayTally};
use crate::store::{
    Attempt, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterQuery, DeliveryId, Replayed,
    StoreError, unix_ms,
};

/// Messages per fetch while scanning.
const SCAN_BATCH: usize = 1000;

/// One dead letter as a scan sees it.
struct Scanned {
    seq: u64,
    meta: DeadMeta,
}

impl Scanned {
    fn letter(&self) -> DeadLetter {
        let m = &self.meta;
        DeadLetter {
            id: DeliveryId(i64::try_from(self.seq).unwrap_or(i64::MAX)),
            target: m.target.clone(),
            event_id: m.event_id.clone(),
            event_type: m.event_type.clone(),
            attempts: m.attempts,
            last_status: m.last_status,
            reason: m.reason.clone(),
            received_at: m.received_at,
            dead_at: m.dead_at,
        }
    }

    fn matches(&self, f: &DeadLetterFilter) -> bool {
        let m = &self.meta;
        let id = DeliveryId(i64::try_from(self.seq).unwrap_or(i64::MAX));
        f.ids.as_ref().is_none_or(|ids| ids.contains(&id))
            && f.target
                .as_ref()
                .is_none_or(|t| m.target.as_ref() == Some(t))
            && f.event_type
                .as_ref()
                .is_none_or(|t| m.event_type.as_ref() == Some(t))
            && f.since.is_none_or(|s| m.dead_at >= unix_ms(s))
            && f.until.is_none_or(|u| m.dead_at < unix_ms(u))
    }
}

impl NatsStore {
    /// Every dead letter of `target` (all when `None`), oldest first.
    async fn scan_dead(&self, target: Option<&str>) -> Result<Vec<Scanned>, StoreError> {
        let stream = self.stream(self.names.dead()).await?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.names.dead_filter(target),
                ack_policy: consumer::AckPolicy::None,
                headers_only: true,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("reading dead letters", e))?;
        let mut out = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(SCAN_BATCH)
                .messages()
                .await
                .map_err(|e| nats_err("reading dead letters", e))?;
            let mut got = 0;
            let mut rest = 0;
            while let Some(next) = batch.next().await {
                let msg = next.map_err(|e| nats_err("reading dead letters", e))?;
                got += 1;
                let Ok(info) = msg.info() else { continue };
                rest = info.pending;
                if let Some(meta) = meta::decode::<DeadMeta>(msg.headers.as_ref()) {
                    out.push(Scanned {
                        seq: info.stream_sequence,
                        meta,
                    });
                }
            }
            if got == 0 || rest == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "removing a scan consumer (it expires by itself)");
        }
        Ok(out)
    }

    pub(super) async fn list_dead(
        &self,
        q: DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let filter = DeadLetterFilter {
            ids: None,
            target: q.target.clone(),
            event_type: q.event_type,
            since: q.since,
            until: q.until,
        };
        let scanned = self.bounded_scan(filter.target.as_deref()).await?;
        Ok(scanned
            .iter()
            .rev()
            .filter(|s| s.matches(&filter))
            .take(q.limit)
            .map(Scanned::letter)
            .collect())
    }

    /// A scan is bounded like every other call, but by a longer time: it reads a stream.
    async fn bounded_scan(&self, target: Option<&str>) -> Result<Vec<Scanned>, StoreError> {
        let limit = self.settings.storage.publish_timeout * 6;
        tokio::time::timeout(limit, self.scan_dead(target))
            .await
            .map_err(|_| StoreError::Timeout {
                what: "reading dead letters".to_owned(),
                after: limit,
            })?
    }

    pub(super) async fn show_dead(
        &self,
        id: DeliveryId,
    ) -> Result<Option<DeadLetterDetail>, StoreError> {
        let Ok(seq) = u64::try_from(id.0) else {
            return Ok(None);
        };
        let stream = self.stream(self.names.dead()).await?;
        let msg = match stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(nats_err("reading a dead letter", e)),
        };
        let Some(meta) = meta::decode::<DeadMeta>(Some(&msg.headers)) else {
            return Ok(None);
        };
        let history = meta.history.iter().cloned().map(Attempt::from).collect();
        let scanned = Scanned { seq, meta };
        Ok(Some(DeadLetterDetail {
            letter: scanned.letter(),
            body: msg.payload,
            history,
        }))
    }

    pub(super) async fn replay_dead(
        &self,
        filter: DeadLetterFilter,
        targets: &[TargetId],
    ) -> Result<Replayed, StoreError> {
        let configured: Vec<String> = targets.iter().map(|t| t.as_str().to_owned()).collect();
        let scanned = self.bounded_scan(filter.target.as_deref()).await?;
        let mut slice = ReplaySlice::default();
        let stream = self.stream(self.names.dead()).await?;
        for s in scanned.iter().filter(|s| s.matches(&filter)) {
            let id = i64::try_from(s.seq).unwrap_or(i64::MAX);
            slice.seen.push(id);
            let (Some(target), Some(subject)) = (&s.meta.target, &s.meta.queue_subject) else {
                slice.never_events.push(id);
                continue;
            };
            if !configured.contains(target) {
                slice.unconfigured.push((id, target.clone()));
                continue;
            }
            self.requeue(&stream, s, target, subject).await?;
            slice.replayed.push((id, target.clone()));
            self.wakeup_local(&TargetId(target.as_str().into()));
        }
        let mut tally = ReplayTally::default();
        tally.add(slice);
        Ok(tally.finish(filter.ids.as_deref()))
    }

    /// Queues one dead letter again, due now with no attempts, then deletes it. The
    /// publish's id makes a replay interrupted between the two steps safe to run again.
    async fn requeue(
        &self,
        stream: &async_nats::jetstream::stream::Stream<()>,
        s: &Scanned,
        target: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        let msg = stream
            .get_raw_message(s.seq)
            .await
            .map_err(|e| nats_err("reading a dead letter", e))?;
        let m = DeliveryMeta {
            target: target.to_owned(),
            event_id: s.meta.event_id.clone(),
            event_type: s.meta.event_type.clone(),
            signature: s.meta.signature.clone(),
            received_at: s.meta.received_at,
            // max_age counts from the replay, or an old letter would die again at once.
            created_at: unix_ms(SystemTime::now()),
        };
        let headers: HeaderMap = meta::headers(&m, Some(&format!("replay:{}", s.seq)))?;
        self.bounded("replaying a dead letter", async {
            self.js
                .publish_with_headers(subject.to_owned(), headers, msg.payload)
                .await
                .map_err(|e| nats_err("replaying a dead letter", e))?
                .await
                .map_err(|e| nats_err("replaying a dead letter", e))?;
            stream
                .delete_message(s.seq)
                .await
                .map_err(|e| nats_err("removing a replayed dead letter", e))
        })
        .await?;
        Ok(())
    }

    pub(super) async fn purge_dead(&self, filter: DeadLetterFilter) -> Result<u64, StoreError> {
        let scanned = self.bounded_scan(filter.target.as_deref()).await?;
        let stream = self.stream(self.names.dead()).await?;
        let mut purged = 0;
        for s in scanned.iter().filter(|s| s.matches(&filter)) {
            match stream.delete_message(s.seq).await {
                Ok(_) => purged += 1,
                // Gone already: retention, or another relay's purge.
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(nats_err("purging a dead letter", e)),
            }
        }
        Ok(purged)
    }
}
