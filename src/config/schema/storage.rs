//! The schema of `storage:`: a union tagged by `kind`, in which sqlite's `kind` may be left
//! out (it is the default), so a file without `storage.kind` is still a sqlite store to editors.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_json::Value;

use super::super::de::Loc;

use super::scalars::{
    FilePath, MinFree, NatsPrefix, NatsUrl, Percent, PositiveDuration, Secret, Size, Whole,
};

/// The durable store behind the queues; `kind` says which keys it takes.
#[derive(Deserialize)]
#[serde(transparent)]
pub(in crate::config) struct Storage(pub(in crate::config) StorageKinds);

impl JsonSchema for Storage {
    fn schema_name() -> Cow<'static, str> {
        "Storage".into()
    }

    /// [`StorageKinds`], with `kind` optional for sqlite: it is the default.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = StorageKinds::json_schema(generator);
        // Variants are in declaration order: sqlite first.
        let sqlite = schema
            .get_mut("oneOf")
            .and_then(Value::as_array_mut)
            .and_then(|variants| variants.first_mut())
            .and_then(Value::as_object_mut);
        if let Some(sqlite) = sqlite {
            if let Some(required) = sqlite.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|key| key != "kind");
            }
            if sqlite
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                sqlite.remove("required");
            }
            if let Some(kind) = sqlite
                .get_mut("properties")
                .and_then(|p| p.get_mut("kind"))
                .and_then(Value::as_object_mut)
            {
                kind.insert("default".to_owned(), "sqlite".into());
            }
        }
        let variants = schema
            .get_mut("oneOf")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten();
        for variant in variants {
            if let Some(kind) = variant
                .pointer_mut("/properties/kind")
                .and_then(Value::as_object_mut)
            {
                let description = "Which store: `sqlite` (the default) or `nats`.";
                kind.insert("description".to_owned(), description.into());
            }
        }
        schema
    }
}

// Deserialized as serde's external tagging, which the tree's deserializer reads from `kind:`
// (`de.rs`); described to editors as what the file holds, a mapping tagged by `kind`.
/// The durable store behind the queues; `kind` says which keys it takes.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(tag = "kind", deny_unknown_fields)]
pub(in crate::config) enum StorageKinds {
    /// `kind: sqlite`, the default: an embedded SQLite database, one relay per file.
    Sqlite(SqliteStorage),
    /// `kind: nats`: JetStream on a NATS cluster, shared by several relays behind one load
    /// balancer. In progress: `check` accepts these keys, but `run` does not open a NATS
    /// store yet.
    Nats(NatsStorage),
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(in crate::config) struct SqliteStorage {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(in crate::config) at: Loc,
    /// The SQLite database file, relative to the working directory; its folder is created
    /// if needed.
    #[schemars(extend("default" = SqliteStorage::PATH))]
    pub(in crate::config) path: Option<Loc<FilePath>>,
    /// Dead letters older than this (counted from when they died) are deleted.
    #[schemars(extend("default" = DEAD_LETTER_RETENTION))]
    pub(in crate::config) dead_letter_retention: Option<Loc<PositiveDuration>>,
    /// The most the store's files may take, at least 16MiB. New events are answered 504
    /// `store_full` when storing one would leave less than the store's reserve (about 5 MiB
    /// plus 384 bytes per queued delivery) below it; the queue drains inside that reserve and
    /// ingest resumes by itself. No limit by default but the disk (see `min_free`).
    pub(in crate::config) max_bytes: Option<Loc<Size>>,
    /// Free space the relay leaves on the store's file system: new events are answered 504
    /// `store_full` when storing one would leave less than this plus the store's reserve.
    #[schemars(extend("default" = SqliteStorage::MIN_FREE))]
    pub(in crate::config) min_free: Option<Loc<MinFree>>,
    /// With several targets, the most of the storage budget one target's pending deliveries
    /// may hold; past it, events routed to that target are treated as by `max_queue` (its
    /// `on_full`), so a dead target cannot take every byte from the healthy ones. `100%`
    /// turns it off; a single target is never limited by it.
    #[schemars(extend("default" = SqliteStorage::TARGET_SHARE))]
    pub(in crate::config) target_share: Option<Loc<Percent>>,
}

/// Both kinds keep dead letters this long by default.
pub(in crate::config) const DEAD_LETTER_RETENTION: &str = "14d";

impl SqliteStorage {
    pub(in crate::config) const PATH: &str = "./data/relay.db";
    pub(in crate::config) const MIN_FREE: &str = "5%";
    pub(in crate::config) const TARGET_SHARE: &str = "50%";
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(in crate::config) struct NatsStorage {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(in crate::config) at: Loc,
    /// The NATS servers to connect to, `nats://HOST:PORT` or `tls://HOST:PORT` (port 4222
    /// when left out); a few seeds are enough, the client learns the rest of the cluster.
    /// No user or password in a URL: use `auth`.
    #[schemars(length(min = 1))]
    pub(in crate::config) urls: Loc<Vec<NatsUrl>>,
    /// Copies the cluster keeps of each stream and KV bucket (JetStream allows up to 5); `1`
    /// for a single development server.
    #[schemars(extend("default" = NatsStorage::REPLICAS))]
    pub(in crate::config) replicas: Option<Loc<Whole<1, 5>>>,
    /// Start of the names of the relay's streams, consumers and KV buckets: relays with the
    /// same servers and prefix share one queue. Letters, digits, `-` and `_`, at most 32.
    #[schemars(extend("default" = NatsStorage::PREFIX))]
    pub(in crate::config) prefix: Option<Loc<NatsPrefix>>,
    /// How long ingest waits for JetStream to confirm an event is stored on a quorum
    /// (PubAck) before answering TextUs 504 (it retries later). At most 60s. The default
    /// answers well before webhook senders give up; a stream leader lost to a crash takes
    /// NATS 4 to 9 s to replace, and those events get 504s either way.
    #[schemars(extend("default" = NatsStorage::PUBLISH_TIMEOUT))]
    pub(in crate::config) publish_timeout: Option<Loc<PositiveDuration>>,
    /// How the relay authenticates to NATS; leave out for none.
    pub(in crate::config) auth: Option<NatsAuth>,
    /// TLS to the servers. Setting it (even `{}`) requires TLS on every connection, as a
    /// `tls://` URL does.
    pub(in crate::config) tls: Option<NatsTls>,
    /// Dead letters older than this (counted from when they died) are deleted.
    #[schemars(extend("default" = DEAD_LETTER_RETENTION))]
    pub(in crate::config) dead_letter_retention: Option<Loc<PositiveDuration>>,
}

impl NatsStorage {
    pub(in crate::config) const REPLICAS: u64 = 3;
    pub(in crate::config) const PREFIX: &str = "textus-relay";
    pub(in crate::config) const PUBLISH_TIMEOUT: &str = "5s";
}

/// `schema` with a description of its own (draft-07 ignores the siblings of a `$ref`).
fn described(schema: &Schema, description: &str) -> serde_json::Value {
    serde_json::json!({ "allOf": [schema], "description": description })
}

/// Exactly one form: a credentials file, a token, or a user and password (the rule pass
/// checks there is one; the schema below says so to editors).
#[derive(Deserialize)]
pub(in crate::config) struct NatsAuth {
    #[serde(rename = "$at")]
    pub(in crate::config) at: Loc,
    pub(in crate::config) credentials: Loc,
    pub(in crate::config) token: Loc,
    pub(in crate::config) user: Loc,
    pub(in crate::config) password: Loc,
}

impl JsonSchema for NatsAuth {
    fn schema_name() -> Cow<'static, str> {
        "NatsAuth".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let file = generator.subschema_for::<FilePath>();
        let secret = generator.subschema_for::<Secret>();
        json_schema!({
            "description": "Exactly one form: a credentials file, a token, or a user and password.",
            "oneOf": [
                {
                    "type": "object",
                    "description": "A credentials file.",
                    "properties": {
                        "credentials": described(&file, "A `.creds` file (the user JWT and NKey \
                                                         seed, as `nsc` writes it); must be \
                                                         readable at start."),
                    },
                    "required": ["credentials"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "description": "A token.",
                    "properties": {
                        "token": described(&secret, "A token the servers accept; write it as \
                                                     `${NATS_TOKEN}`."),
                    },
                    "required": ["token"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "description": "A user and password.",
                    "properties": {
                        "user": described(&secret, "The user name; needs `password`."),
                        "password": described(&secret, "The user's password; write it as \
                                                        `${NATS_PASSWORD}`."),
                    },
                    "required": ["user", "password"],
                    "additionalProperties": false,
                },
            ],
        })
    }
}

/// TLS to the NATS servers with these files; each is optional, `cert` and `key` go together.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(in crate::config) struct NatsTls {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(in crate::config) at: Loc,
    /// PEM certificates to trust for the servers, instead of the system's roots; must be
    /// readable at start.
    pub(in crate::config) ca: Option<Loc<FilePath>>,
    /// PEM client certificate chain, for servers that verify clients; needs `key`.
    pub(in crate::config) cert: Option<Loc<FilePath>>,
    /// PEM private key of `cert`.
    pub(in crate::config) key: Option<Loc<FilePath>>,
}
