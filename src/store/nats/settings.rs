//! What a [`super::NatsStore`] needs to open: the `storage:` block of relay.yaml, and the
//! facts of the rest of the config (de-duplication window, which targets are ordered) that
//! shape its streams and consumers.

use std::time::Duration;

use crate::config::{NatsAuth, NatsStorage, TargetId};

/// Connection and layout of the JetStream store (`storage.kind: nats`).
#[derive(Clone, Debug)]
pub struct NatsSettings {
    pub storage: NatsStorage,
    /// `source.dedupe_window`: the streams' `duplicate_window`.
    pub dedupe_window: Duration,
    /// The configured targets: each gets its own durable consumers at open.
    pub targets: Vec<TargetLayout>,
}

/// How one target's queue is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetLayout {
    pub name: TargetId,
    /// `ordering: fifo` or `{ key: ... }`: its deliveries go to ordered lanes.
    pub ordered: bool,
}

impl NatsSettings {
    /// One server, one replica, the default prefix and a 24 h window: for tests and a dev
    /// server.
    pub fn single(url: impl Into<String>) -> NatsSettings {
        NatsSettings {
            storage: NatsStorage {
                urls: vec![url.into()],
                replicas: 1,
                prefix: "textus-relay".to_owned(),
                publish_timeout: Duration::from_secs(5),
                auth: NatsAuth::None,
                tls: None,
                dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
            },
            dedupe_window: Duration::from_secs(24 * 3600),
            targets: Vec::new(),
        }
    }
}
