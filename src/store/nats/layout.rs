//! Names and shapes of what the store keeps in JetStream, and creating or updating them at
//! open, idempotently.
//!
//! - `{prefix}-deliveries`: a work queue, one message per (event, target), on subject
//!   `{prefix}.q.<target>.<lane>.<key hash>`. Unordered deliveries take lane `h` (high
//!   priority) or `n` (normal); ordered ones take lane `o0`..`o31`, chosen by their order key,
//!   and each ordered lane's consumer has one delivery in flight at a time. The key hash in
//!   the subject lets an operator's "where is event X" read only that event's messages.
//! - `{prefix}-dead`: dead letters, on `{prefix}.dead.t.<target>.<key hash>` (or
//!   `{prefix}.dead.none.<key hash>` for a body that never was an event), kept for
//!   `dead_letter_retention`.
//! - `{prefix}-seen`: the id of every event stored, for `dedupe_window`, on
//!   `{prefix}.seen.<key hash>` (with `Nats-Msg-Id` `ev:<key>`): looked up by ingest before
//!   it stores anything, and written once everything is stored.
//! - KV `{prefix}-control`: each target's pause / disable state and credited waits.
//! - KV `{prefix}-attempts`: the attempt history of deliveries that failed at least once.
//! - KV `{prefix}-relays`: one heartbeat per live relay, so rate limits are split between them.
//!
//! Consumers are named `{prefix}-<target>-<lane>`; a removed target's consumers and queued
//! deliveries stay until a target of that name is configured again (as with SQLite).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use sha2::{Digest, Sha256};

use super::settings::NatsSettings;
use super::{NatsStore, nats_err};
use crate::config::TargetId;
use crate::store::StoreError;

/// Ordered lanes per ordered target: keys hash onto them, so a stuck key holds up the keys
/// that share its lane (about 1 in 32) instead of all of them. More lanes cost more fetches
/// per claim (they run in parallel).
pub(super) const ORDERED_LANES: usize = 32;

/// A lane of one target's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    High,
    Normal,
    Ordered(usize),
}

impl Lane {
    fn token(self) -> String {
        match self {
            Lane::High => "h".to_owned(),
            Lane::Normal => "n".to_owned(),
            Lane::Ordered(i) => format!("o{i}"),
        }
    }

    /// The lanes a claim reads, in the order it reads them.
    pub(super) fn of(ordered: bool) -> Vec<Lane> {
        if ordered {
            (0..ORDERED_LANES).map(Lane::Ordered).collect()
        } else {
            vec![Lane::High, Lane::Normal]
        }
    }

    /// The ordered lane of an order key.
    pub(super) fn for_key(key: &str) -> Lane {
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Lane::Ordered((u64::from_be_bytes(first) % ORDERED_LANES as u64) as usize)
    }
}

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
    pub(super) fn relays(&self) -> String {
        format!("{}-relays", self.prefix)
    }
    /// Where a delivery of the event with id hash `id_hash` for `target` is published.
    pub(super) fn queue_subject(&self, target: &str, lane: Lane, id_hash: &str) -> String {
        format!(
            "{}.q.{}.{}.{id_hash}",
            self.prefix,
            token(target),
            lane.token()
        )
    }
    /// Every delivery of one lane of `target` (a consumer's filter).
    pub(super) fn lane_filter(&self, target: &str, lane: Lane) -> String {
        format!("{}.q.{}.{}.*", self.prefix, token(target), lane.token())
    }
    /// Every delivery of `target`.
    pub(super) fn target_filter(&self, target: &str) -> String {
        format!("{}.q.{}.>", self.prefix, token(target))
    }
    /// Every delivery of the event with id hash `id_hash`.
    pub(super) fn event_filter(&self, id_hash: &str) -> String {
        format!("{}.q.*.*.{id_hash}", self.prefix)
    }
    pub(super) fn dead_subject(&self, target: Option<&str>, id_hash: &str) -> String {
        match target {
            Some(t) => format!("{}.dead.t.{}.{id_hash}", self.prefix, token(t)),
            None => format!("{}.dead.none.{id_hash}", self.prefix),
        }
    }
    /// Dead letters of `target` (`None`: of every target and of no target).
    pub(super) fn dead_filter(&self, target: Option<&str>) -> String {
        match target {
            Some(t) => format!("{}.dead.t.{}.*", self.prefix, token(t)),
            None => format!("{}.dead.>", self.prefix),
        }
    }
    pub(super) fn dead_event_filters(&self, id_hash: &str) -> [String; 2] {
        [
            format!("{}.dead.t.*.{id_hash}", self.prefix),
            format!("{}.dead.none.{id_hash}", self.prefix),
        ]
    }
    /// Where an event's id is remembered: by its key's hash, so that ingest can look it up.
    pub(super) fn seen_subject(&self, id_hash: &str) -> String {
        format!("{}.seen.{id_hash}", self.prefix)
    }
    pub(super) fn seen_subjects(&self) -> String {
        format!("{}.seen.*", self.prefix)
    }
    pub(super) fn consumer(&self, target: &str, lane: Lane) -> String {
        format!("{}-{}-{}", self.prefix, token(target), lane.token())
    }
    /// The target a consumer of ours serves, if `name` is one.
    pub(super) fn target_of_consumer(&self, name: &str) -> Option<TargetId> {
        let rest = name.strip_prefix(&format!("{}-", self.prefix))?;
        let (target, _lane) = rest.rsplit_once('-')?;
        untoken(target).map(|t| TargetId(t.into()))
    }
    /// The target of a dead letter's subject (`None` for no target or not ours).
    pub(super) fn target_of_dead(&self, subject: &str) -> Option<TargetId> {
        let rest = subject.strip_prefix(&format!("{}.dead.t.", self.prefix))?;
        let (target, _kh) = rest.split_once('.')?;
        untoken(target).map(|t| TargetId(t.into()))
    }
}

/// The subject token for an event id: 16 hex digits of its SHA-256, so ids of any length
/// and characters fit one token.
pub(super) fn event_id_hash(event_id: &str) -> String {
    hex::encode(&Sha256::digest(event_id.as_bytes())[..8])
}

/// A target name as one subject token and consumer-name part: kept as is when it is made of
/// `[A-Za-z0-9_]` (and does not start with the escape), hex-encoded after `_x` otherwise, so
/// that no name can reach `.`, `*`, `>`, `-` (the consumer-name separator) or whitespace, and
/// no two names collide.
pub(super) fn token(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with("_x")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
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

/// Creates or updates every stream and bucket, and the consumers of every configured target.
pub(super) async fn ensure(
    js: &jetstream::Context,
    names: &Names,
    s: &NatsSettings,
    lease: Duration,
) -> Result<(), StoreError> {
    let replicas = s.storage.replicas;
    // JetStream wants a non-zero window; an event with a zero window sends no Nats-Msg-Id.
    let window = s.dedupe_window.max(Duration::from_secs(1));
    js.create_or_update_stream(stream::Config {
        name: names.deliveries(),
        subjects: vec![format!("{}.q.>", s.storage.prefix)],
        // Acked deliveries are removed; each subject has exactly one consumer (its lane).
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: window,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating the deliveries stream", e))?;
    js.create_or_update_stream(stream::Config {
        name: names.dead(),
        subjects: vec![names.dead_filter(None)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: window.min(s.storage.dead_letter_retention),
        max_age: s.storage.dead_letter_retention,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating the dead-letter stream", e))?;
    js.create_or_update_stream(stream::Config {
        name: names.seen(),
        subjects: vec![names.seen_subjects()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
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
            num_replicas: replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err("creating a KV bucket", e))?;
    }
    js.create_or_update_key_value(kv::Config {
        bucket: names.relays(),
        description: "textus-relay relays alive (heartbeats)".to_owned(),
        history: 1,
        // A relay that stops beating is forgotten after this.
        max_age: super::heartbeat::FORGET_AFTER,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err("creating a KV bucket", e))?;
    for target in &s.targets {
        for lane in Lane::of(target.ordered) {
            ensure_consumer(js, names, target.name.as_str(), lane, lease).await?;
        }
    }
    Ok(())
}

/// The durable pull consumer of one lane of a target, created or updated with `lease` as
/// `ack_wait`.
pub(super) async fn ensure_consumer(
    js: &jetstream::Context,
    names: &Names,
    target: &str,
    lane: Lane,
    lease: Duration,
) -> Result<consumer::PullConsumer, StoreError> {
    let stream = js
        .get_stream_no_info(names.deliveries())
        .await
        .map_err(|e| nats_err("opening the deliveries stream", e))?;
    let ordered = matches!(lane, Lane::Ordered(_));
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names.consumer(target, lane)),
            filter_subject: names.lane_filter(target, lane),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: lease,
            max_deliver: -1,
            // One in flight per ordered lane: its head is retried (nak with delay) or
            // redelivered (lease expiry) before anything behind it is handed out.
            max_ack_pending: if ordered { 1 } else { -1 },
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err("creating a target's consumer", e))
}

impl NatsStore {
    /// The consumer of one lane of `target`, created or updated the first time this relay
    /// uses it (a target added by a reload has none yet).
    pub(super) async fn consumer(
        &self,
        target: &TargetId,
        lane: Lane,
    ) -> Result<consumer::PullConsumer, StoreError> {
        let name = self.names.consumer(target.as_str(), lane);
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(&name) {
            return Ok(c.clone());
        }
        let c = ensure_consumer(
            &self.js,
            &self.names,
            target.as_str(),
            lane,
            super::ACK_WAIT,
        )
        .await?;
        consumers.insert(name, c.clone());
        Ok(c)
    }

    pub(super) async fn stream(&self, name: String) -> Result<stream::Stream<()>, StoreError> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| nats_err("opening a stream", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide() {
        for name in [
            "crm",
            "slack_ops1",
            "slack-ops",
            "a.b",
            "_x61",
            "sp ace",
            "",
        ] {
            let t = token(name);
            assert!(!t.contains(['.', '*', '>', ' ', '-']), "{t}");
            assert_eq!(untoken(&t).as_deref(), Some(name));
        }
        assert_ne!(token("_x61"), token("a"));
    }

    #[test]
    fn consumer_names_give_back_their_target() {
        let names = Names::new("textus-relay");
        for target in ["crm", "slack-ops", "a.b"] {
            let name = names.consumer(target, Lane::Ordered(3));
            assert_eq!(
                names.target_of_consumer(&name),
                Some(TargetId(target.into()))
            );
        }
        let dead = names.dead_subject(Some("slack-ops"), &event_id_hash("ev1"));
        assert_eq!(
            names.target_of_dead(&dead),
            Some(TargetId("slack-ops".into()))
        );
        assert_eq!(names.target_of_dead(&names.dead_subject(None, "00")), None);
    }

    #[test]
    fn one_order_key_always_takes_the_same_lane() {
        assert_eq!(Lane::for_key("contact-7"), Lane::for_key("contact-7"));
        let lanes: std::collections::HashSet<Lane> =
            (0..100).map(|i| Lane::for_key(&format!("k{i}"))).collect();
        assert!(lanes.len() > 4, "keys spread over the lanes: {lanes:?}");
    }
}
