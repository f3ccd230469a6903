//! Publishing one event in each of the three shapes, and the publishers that drive them:
//! closed loop (a fixed number of events in flight) or open loop at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use hdrhistogram::Histogram;

use super::Shape;
use crate::load::{Pace, Stamp, Template};
use crate::sink::{Clock, histogram};

/// Stands in for the relay's `Textus-Meta` header (a delivery's facts as base64 JSON, about
/// this long with the fixture's key and signature), so each message carries what the relay's
/// does besides the body.
const META: &str = "eyJ0YXJnZXQiOiJ0MCIsImtleSI6ImJlbmNoLTAwMDAwMDAwMDAwMDAwMDAwMDAwLTAwMDAwMDAwMDAwMDAwMDAw\
MDAwIiwiZXZlbnRfdHlwZSI6Im1lc3NhZ2UucmVjZWl2ZWQiLCJzaWduYXR1cmUiOiJ2MSxBQUFBQUFBQUFBQUFBQUFB\
QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBPSIsInJlY2VpdmVkX2F0IjoxNzAwMDAwMDAwMDAwLCJjcmVhdGVkX2F0\
IjoxNzAwMDAwMDAwMDAwfQ==";

/// Sequence numbers are unique in the process, so no two events of a run share a key (and
/// de-duplication never hides one).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Everything a publisher needs, shared by all of them.
pub struct Ctx {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub shape: Shape,
    /// Targets per event.
    pub fanout: usize,
    /// The subject prefix of this phase's stream.
    pub prefix: String,
    /// Whether batch members carry `Nats-Msg-Id` (only if the server accepts it there).
    pub batch_msg_ids: bool,
    pub template: Template,
    pub clock: Clock,
}

/// What the publishers of one phase saw.
#[derive(Debug)]
pub struct Outcome {
    /// Events whose every PubAck (or the batch's one) came back without error.
    pub events: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per event, from the first publish to the last PubAck (µs).
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
}

impl Ctx {
    /// Publishes one event in this phase's shape and waits until the server has it.
    async fn event(&self) -> Result<(), String> {
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(self.template.render(Stamp {
            seq,
            sent_us: self.clock.now_us(),
        }));
        let key = format!("{}-{seq}", self.prefix);
        // Stands in for the relay's 16 hex digits of SHA-256: one distinct token per event.
        let kh = format!("{:016x}", seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self.shape {
            Shape::PerMessage => self.per_message(&key, &kh, body).await,
            Shape::AtomicBatch => self.atomic_batch(&key, &kh, body, self.batch_msg_ids).await,
            Shape::AtomicBatchNoIds => self.atomic_batch(&key, &kh, body, false).await,
            Shape::PerEvent => self.per_event(&key, &kh, body).await,
        }
    }

    fn queue_subject(&self, target: usize, kh: &str) -> String {
        format!("{}.q.t{target}.n.{kh}", self.prefix)
    }

    /// Today's shape (src/store/nats/queue.rs `publish_all`): every message published at
    /// once, then every PubAck awaited.
    async fn per_message(&self, key: &str, kh: &str, body: Bytes) -> Result<(), String> {
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(self.fanout);
        for t in 0..self.fanout {
            let headers = headers(Some(format!("ev:{key}:t{t}")));
            let ack = self
                .js
                .publish_with_headers(self.queue_subject(t, kh), headers, body.clone())
                .await
                .map_err(|e| format!("publishing: {e}"))?;
            pending.push(ack);
        }
        for p in pending {
            let ack = p.await.map_err(|e| format!("PubAck: {e}"))?;
            if ack.duplicate {
                return Err(format!("PubAck says duplicate (seq {})", ack.sequence));
            }
        }
        Ok(())
    }

    /// ADR-50: every member but the last a plain publish (no reply, no ack), the last with
    /// `Nats-Batch-Commit: 1` and the batch's one PubAck.
    async fn atomic_batch(
        &self,
        key: &str,
        kh: &str,
        body: Bytes,
        msg_ids: bool,
    ) -> Result<(), String> {
        let members = (0..self.fanout)
            .map(|t| {
                let id = msg_ids.then(|| format!("ev:{key}:t{t}"));
                (self.queue_subject(t, kh), id)
            })
            .collect();
        let ack = publish_batch(&self.client, &self.js, key, members, body).await?;
        if ack.count != self.fanout as u64 {
            return Err(format!(
                "batch PubAck counts {} messages, not {}",
                ack.count, self.fanout
            ));
        }
        Ok(())
    }

    /// One message per event; per-target consumers would all read it.
    async fn per_event(&self, key: &str, kh: &str, body: Bytes) -> Result<(), String> {
        let subject = format!("{}.ev.{kh}", self.prefix);
        let ack = self
            .js
            .publish_with_headers(subject, headers(Some(format!("ev:{key}"))), body)
            .await
            .map_err(|e| format!("publishing: {e}"))?
            .await
            .map_err(|e| format!("PubAck: {e}"))?;
        if ack.duplicate {
            return Err(format!("PubAck says duplicate (seq {})", ack.sequence));
        }
        Ok(())
    }
}

fn headers(msg_id: Option<String>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(id) = msg_id {
        h.insert(NATS_MESSAGE_ID, id);
    }
    h.insert("Textus-Meta", META);
    h
}

/// What the PubAck of a committed batch says.
#[derive(Debug)]
pub struct BatchAck {
    /// Stream sequence of the last message.
    pub sequence: u64,
    pub count: u64,
    pub duplicate: bool,
}

/// Publishes `members` (subject, optional `Nats-Msg-Id`) with the same body as one atomic
/// batch named `batch_id` and returns the commit's PubAck, checked to name the batch; a
/// rejected batch is the server's error text.
pub async fn publish_batch(
    client: &async_nats::Client,
    js: &jetstream::Context,
    batch_id: &str,
    members: Vec<(String, Option<String>)>,
    body: Bytes,
) -> Result<BatchAck, String> {
    let last = members.len();
    let mut commit = None;
    for (i, (subject, msg_id)) in members.into_iter().enumerate() {
        let mut h = headers(msg_id);
        h.insert(NATS_BATCH_ID, batch_id);
        h.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string());
        if i + 1 == last {
            h.insert(NATS_BATCH_COMMIT, "1");
            commit = Some(
                js.publish_with_headers(subject, h, body.clone())
                    .await
                    .map_err(|e| format!("publishing the commit: {e}"))?,
            );
        } else {
            // Fire and forget: a member the server refuses fails the whole batch, which
            // the commit's PubAck reports.
            client
                .publish_with_headers(subject, h, body.clone())
                .await
                .map_err(|e| format!("publishing a batch member: {e}"))?;
        }
    }
    let Some(commit) = commit else {
        return Err("an empty batch".into());
    };
    let ack = commit.await.map_err(|e| format!("batch PubAck: {e}"))?;
    if ack.batch_id.as_deref() != Some(batch_id) {
        return Err(format!(
            "batch PubAck names batch {:?}, not {batch_id:?}",
            ack.batch_id
        ));
    }
    Ok(BatchAck {
        sequence: ack.sequence,
        count: ack.batch_size.unwrap_or(0),
        duplicate: ack.duplicate,
    })
}

/// Runs `in_flight` publishers for `duration`. Open loop (`Pace::Rate`): publisher `i` of `N`
/// starts its `k`-th event at `start + (k·N + i) / rate`, and an event that starts late is
/// timed from its intended instant, so a stall is not hidden (as in [`crate::load`]).
pub async fn drive(ctx: Arc<Ctx>, pace: Pace, duration: Duration, in_flight: usize) -> Outcome {
    let start = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|i| {
            tokio::spawn(worker(
                ctx.clone(),
                pace,
                start,
                start + duration,
                i,
                in_flight,
            ))
        })
        .collect();
    let mut out = Outcome {
        events: 0,
        errors: 0,
        first_error: None,
        latency: histogram(),
        elapsed: Duration::ZERO,
    };
    for w in workers {
        let Ok(part) = w.await else {
            out.errors += 1;
            continue;
        };
        out.events += part.events;
        out.errors += part.errors;
        out.first_error = out.first_error.or(part.first_error);
        let _ = out.latency.add(&part.latency);
    }
    out.elapsed = start.elapsed();
    out
}

async fn worker(
    ctx: Arc<Ctx>,
    pace: Pace,
    start: Instant,
    deadline: Instant,
    index: usize,
    workers: usize,
) -> Outcome {
    let mut out = Outcome {
        events: 0,
        errors: 0,
        first_error: None,
        latency: histogram(),
        elapsed: Duration::ZERO,
    };
    let mut previous_done = start;
    for k in 0u64.. {
        let intended = match pace {
            Pace::FullSpeed => Instant::now(),
            Pace::Rate(rate) => {
                let slot = k as f64 * workers as f64 + index as f64;
                start + Duration::from_secs_f64(slot / rate)
            }
        };
        if intended >= deadline {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let sent = Instant::now();
        let result = ctx.event().await;
        let done = Instant::now();
        let from = match pace {
            Pace::Rate(_) if previous_done > intended => intended,
            _ => sent,
        };
        previous_done = done;
        match result {
            Ok(()) => {
                out.events += 1;
                let us = u64::try_from((done - from).as_micros()).unwrap_or(u64::MAX);
                let _ = out.latency.record(us.max(1));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}
