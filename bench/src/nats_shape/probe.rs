//! Does `Nats-Msg-Id` work inside an atomic batch on this server? ADR-50 says its first
//! release rejected it; the relay stays idempotent only through those ids, so the answer
//! decides whether the batch shape can replace today's. Asked of the server, not assumed:
//! batches with ids fresh, repeated, partly repeated and repeated within one batch, each
//! with the stream's message count after it.

use async_nats::jetstream;
use bytes::Bytes;

use super::publish::publish_batch;

/// One batch of the probe and what became of it.
#[derive(Clone, Debug)]
pub struct Step {
    pub what: &'static str,
    pub ids: Vec<Option<String>>,
    /// `stored`, `duplicate` (with the PubAck's count) or the server's error text.
    pub answer: String,
    pub accepted: bool,
    /// Messages in the stream after this batch.
    pub messages_after: u64,
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub steps: Vec<Step>,
}

impl Probe {
    /// The first step (three fresh ids) was accepted.
    pub fn msg_id_accepted(&self) -> bool {
        self.steps.first().is_some_and(|s| s.accepted)
    }

    /// A whole repeat stored nothing and every batch after the first kept the stream's
    /// count where de-duplication says it should be.
    pub fn repeat_stores_nothing(&self) -> bool {
        match (self.steps.first(), self.steps.get(1)) {
            (Some(a), Some(b)) => a.accepted && b.messages_after == a.messages_after,
            _ => false,
        }
    }
}

/// Runs the probe on a new stream named `name` (subjects `name.>`), then deletes it.
pub async fn run(
    client: &async_nats::Client,
    js: &jetstream::Context,
    name: &str,
    config: jetstream::stream::Config,
) -> anyhow::Result<Probe> {
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..config
    })
    .await?;
    let id = |s: &str| Some(format!("ev:probe:{s}"));
    let batches: [(&'static str, Vec<Option<String>>); 5] = [
        (
            "3 members, each with its own Nats-Msg-Id",
            vec![id("a1"), id("a2"), id("a3")],
        ),
        (
            "the same 3 ids again (a retry), new batch id",
            vec![id("a1"), id("a2"), id("a3")],
        ),
        (
            "1 id already stored, 2 new",
            vec![id("a3"), id("c2"), id("c3")],
        ),
        (
            "the same new id twice in one batch",
            vec![id("d1"), id("d1")],
        ),
        ("3 members without Nats-Msg-Id", vec![None, None, None]),
    ];
    let body = Bytes::from_static(b"{\"probe\":true}");
    let mut steps = Vec::new();
    for (k, (what, ids)) in batches.into_iter().enumerate() {
        let members = ids
            .iter()
            .enumerate()
            .map(|(t, msg_id)| (format!("{name}.q.t{t}.n.{k:016x}"), msg_id.clone()))
            .collect();
        let batch_id = format!("{name}-probe-{k}");
        let result = publish_batch(client, js, &batch_id, members, body.clone()).await;
        let (answer, accepted) = match result {
            Ok(ack) if ack.duplicate => (
                format!("duplicate (count {}, seq {})", ack.count, ack.sequence),
                true,
            ),
            Ok(ack) => (
                format!("stored (count {}, last seq {})", ack.count, ack.sequence),
                true,
            ),
            Err(e) => (e, false),
        };
        let messages_after = js.get_stream(name).await?.get_info().await?.state.messages;
        steps.push(Step {
            what,
            ids,
            answer,
            accepted,
            messages_after,
        });
    }
    js.delete_stream(name).await?;
    Ok(Probe { steps })
}
