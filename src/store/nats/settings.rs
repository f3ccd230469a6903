//! What a [`super::NatsStore`] needs to open: where the servers are, how to authenticate, and
//! the per-relay facts (de-duplication window, dead-letter retention, targets) that shape its
//! streams and consumers.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::TargetId;

/// Connection and layout of the JetStream store (`storage.kind: nats`).
#[derive(Clone, Debug)]
pub struct NatsSettings {
    /// `nats://host:port` (or `tls://`) of one or more servers of the cluster.
    pub urls: Vec<String>,
    /// Copies of every stream and bucket the cluster keeps (1 for a single dev server).
    pub replicas: usize,
    /// Prefix of the names of streams, consumers, buckets and subjects.
    pub prefix: String,
    pub auth: NatsAuth,
    pub tls: Option<NatsTls>,
    /// How long ingest waits for a PubAck before it answers with an error (504).
    pub publish_timeout: Duration,
    /// `source.dedupe_window`: the streams' `duplicate_window`.
    pub dedupe_window: Duration,
    /// `storage.dead_letter_retention`: the dead-letter stream's `max_age`; `None` keeps them.
    pub dead_letter_retention: Option<Duration>,
    /// The configured targets: each gets its own durable consumer at open.
    pub targets: Vec<TargetId>,
}

impl NatsSettings {
    /// One server, one replica, the default prefix: for tests and a dev server.
    pub fn single(url: impl Into<String>) -> NatsSettings {
        NatsSettings {
            urls: vec![url.into()],
            replicas: 1,
            prefix: "textus-relay".to_owned(),
            auth: NatsAuth::None,
            tls: None,
            publish_timeout: Duration::from_secs(5),
            dedupe_window: Duration::from_secs(24 * 3600),
            dead_letter_retention: None,
            targets: Vec::new(),
        }
    }
}

/// How the relay proves who it is to NATS.
#[derive(Clone, Debug, Default)]
pub enum NatsAuth {
    #[default]
    None,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    Credentials(PathBuf),
    Token(String),
    UserPassword { user: String, password: String },
}

/// TLS towards the servers: a private CA, and a client certificate for mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct NatsTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}
