//! Names and shapes of what the store keeps in JetStream, and creating or updating them at
//! open, idempotently: the deliveries stream (work queue, one subject per target), the
//! dead-letter stream, the seen stream (keys of unrouted events), and the control and attempts
//! KV buckets.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};

use super::settings::NatsSettings;
use super::{NatsStore, nats_err};
use crate::config::TargetId;
use crate::store::StoreError;

/// Consumer `ack_wait` until the first claim tells the real lease.
pub(super) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Names derived from the prefix.
#[derive(Clone, Debug)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }
    pub(super) fn deliveries(&self) -> String {
        format!("{}-deliveries", self.prefix)
    }
    pub(super) fn dead(&self) -> String {
        format!("{}-dead", self.prefix)
    }
    pub(super) fn seen(&self) -> String {
        format!("{}-seen", self.prefix)
    }
    pub(super) fn control(&self) -> String {
        format!("{}-control", self.prefix)
    }
    pub(super) fn attempts(&self) -> String {
        format!("{}-attempts", self.prefix)
    }
    /// Where deliveries for `target` are published.
    pub(super) fn queue_subject(&self, target: &str) -> String {
        format!("{}.q.{}", self.prefix, token(target))
    }
    pub(super) fn queue_all(&self) -> String {
        format!("{}.q.*", self.prefix)
    }
    /// Where dead letters of `target` (or of no target) are published.
    pub(super) fn dead_subject(&self, target: Option<&str>) -> String {
        match target {
            Some(t) => format!("{}.dead.t.{}", self.prefix, token(t)),
            None => format!("{}.dead.none", self.prefix),
        }
    }
    pub(super) fn dead_all(&self) -> String {
        format!("{}.dead.>", self.prefix)
    }
    pub(super) fn seen_subject(&self) -> String {
        format!("{}.seen", self.prefix)
    }
    pub(super) fn consumer(&self, target: &str) -> String {
        format!("{}-{}", self.prefix, token(target))
    }
    /// The target whose queue `subject` is, if it is one.
    pub(super) fn target_of_queue(&self, subject: &str) -> Option<TargetId> {
        let rest = subject.strip_prefix(&format!("{}.q.", self.prefix))?;
        untoken(rest).map(|t| TargetId(t.into()))
    }
    pub(super) fn target_of_dead(&self, subject: &str) -> Option<TargetId> {
        let rest = subject.strip_prefix(&format!("{}.dead.t.", self.prefix))?;
        untoken(rest).map(|t| TargetId(t.into()))
    }
}

/// A target name as one subject token and consumer-name part: kept as is when it is made of
/// `[A-Za-z0-9_-]` (and does not start with the escape), hex-encoded after `_x` otherwise, so
/// that no name can reach `.`, `*`, `>` or whitespace, and no two names collide.
pub(super) fn token(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with("_x")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        name.to_owned()
    } else {
        format!("_x{}", hex::encode(name))
    }
}

fn untoken(token: &str) -> Option<String> {
    match token.strip_prefix("_x") {
        Some(h) => String::from_utf8(hex::decode(h).ok()?).ok(),
        None => Some(token.to_owned()),
    }
}

/// Creates or updates every stream and bucket, and a consumer per configured target.
pub(super) async fn ensure(
    js: &jetstream::Context,
    names: &Names,
    s: &NatsSettings,
) -> Result<(), StoreError> {
    // JetStream wants a non-zero window; an event with a zero window sends no Nats-Msg-Id.
    let window = s.dedupe_window.max(Duration::from_secs(1));
    js.create_or_update_stream(stream::Config {
        name: names.deliveries(),
        subjects: vec![format!("{}.q.>", s.prefix)],
        // Acked deliveries are removed; each subject has exactly one consumer (its target).
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: window,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating the deliveries stream", e))?;
    js.create_or_update_stream(stream::Config {
        name: names.dead(),
        subjects: vec![names.dead_all()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: window,
        max_age: s.dead_letter_retention.unwrap_or_default(),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating the dead-letter stream", e))?;
    js.create_or_update_stream(stream::Config {
        name: names.seen(),
        subjects: vec![names.seen_subject()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: s.replicas,
        duplicate_window: window,
        // Only the Nats-Msg-Id window matters; the messages themselves may go with it.
        max_age: window,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating the seen stream", e))?;
    for (bucket, what) in [
        (names.control(), "target control"),
        (names.attempts(), "attempt history"),
    ] {
        js.create_or_update_key_value(kv::Config {
            bucket,
            description: format!("textus-relay {what}"),
            history: 1,
            num_replicas: s.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err("creating a KV bucket", e))?;
    }
    for target in &s.targets {
        ensure_consumer(js, names, target.as_str(), DEFAULT_LEASE).await?;
    }
    Ok(())
}

/// The durable pull consumer of one target, created or updated with `lease` as `ack_wait`.
pub(super) async fn ensure_consumer(
    js: &jetstream::Context,
    names: &Names,
    target: &str,
    lease: Duration,
) -> Result<consumer::PullConsumer, StoreError> {
    let stream = js
        .get_stream_no_info(names.deliveries())
        .await
        .map_err(|e| nats_err("opening the deliveries stream", e))?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names.consumer(target)),
            filter_subject: names.queue_subject(target),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: lease,
            max_deliver: -1,
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err("creating a target's consumer", e))
}

impl NatsStore {
    /// The consumer of `target`, updated if `lease` differs from its current `ack_wait`.
    pub(super) async fn consumer(
        &self,
        target: &TargetId,
        lease: Duration,
    ) -> Result<consumer::PullConsumer, StoreError> {
        let known = self.leases.lock().await.get(target).copied();
        if known != Some(lease) {
            let c = ensure_consumer(&self.js, &self.names, target.as_str(), lease).await?;
            self.leases.lock().await.insert(target.clone(), lease);
            return Ok(c);
        }
        let stream = self.deliveries().await?;
        stream
            .get_consumer(&self.names.consumer(target.as_str()))
            .await
            .map_err(|e| nats_err("opening a target's consumer", e))
    }

    pub(super) async fn deliveries(&self) -> Result<stream::Stream<()>, StoreError> {
        self.js
            .get_stream_no_info(self.names.deliveries())
            .await
            .map_err(|e| nats_err("opening the deliveries stream", e))
    }

    pub(super) async fn dead_stream(&self) -> Result<stream::Stream<()>, StoreError> {
        self.js
            .get_stream_no_info(self.names.dead())
            .await
            .map_err(|e| nats_err("opening the dead-letter stream", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide() {
        for name in ["crm", "slack-ops_1", "a.b", "_x61", "sp ace", ""] {
            let t = token(name);
            assert!(!t.contains(['.', '*', '>', ' ']), "{t}");
            assert_eq!(untoken(&t).as_deref(), Some(name));
        }
        assert_ne!(token("_x61"), token("a"));
    }
}
