//! The schema of `storage:`: a union tagged by `kind`, in which sqlite's `kind` may be left
//! out (it is the default), so a file without `storage.kind` is still a sqlite store to editors.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use super::scalars::{
    FilePath, MinFree, NatsPrefix, NatsUrl, Percent, PositiveDuration, Secret, Size, Whole,
};

/// The durable store behind the queues; `kind` says which keys it takes.
pub(super) struct Storage;

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

/// The durable store behind the queues; `kind` says which keys it takes.
#[derive(JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum StorageKinds {
    /// `kind: sqlite`, the default: an embedded SQLite database, one relay per file.
    Sqlite(SqliteStorage),
    /// `kind: nats`: JetStream on a NATS cluster, shared by several relays behind one load
    /// balancer. In progress: `check` accepts these keys, but `run` does not open a NATS
    /// store yet.
    Nats(NatsStorage),
}

object! {
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct SqliteStorage {
        /// The SQLite database file, relative to the working directory; its folder is created
        /// if needed.
        #[schemars(extend("default" = "./data/relay.db"))]
        path: Option<FilePath>,
        /// Dead letters older than this (counted from when they died) are deleted.
        #[schemars(extend("default" = "14d"))]
        dead_letter_retention: Option<PositiveDuration>,
        /// The most the store's files may take, at least 16MiB. New events are answered 504
        /// `store_full` when storing one would leave less than the store's reserve (about 5 MiB
        /// plus 384 bytes per queued delivery) below it; the queue drains inside that reserve and
        /// ingest resumes by itself. No limit by default but the disk (see `min_free`).
        max_bytes: Option<Size>,
        /// Free space the relay leaves on the store's file system: new events are answered 504
        /// `store_full` when storing one would leave less than this plus the store's reserve.
        #[schemars(extend("default" = "5%"))]
        min_free: Option<MinFree>,
        /// With several targets, the most of the storage budget one target's pending deliveries
        /// may hold; past it, events routed to that target are treated as by `max_queue` (its
        /// `on_full`), so a dead target cannot take every byte from the healthy ones. `100%`
        /// turns it off; a single target is never limited by it.
        #[schemars(extend("default" = "50%"))]
        target_share: Option<Percent>,
    }
}

object! {
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct NatsStorage {
        /// The NATS servers to connect to, `nats://HOST:PORT` or `tls://HOST:PORT` (port 4222
        /// when left out); a few seeds are enough, the client learns the rest of the cluster.
        /// No user or password in a URL: use `auth`.
        #[schemars(length(min = 1))]
        urls: Vec<NatsUrl>,
        /// Copies the cluster keeps of each stream and KV bucket (JetStream allows up to 5); `1`
        /// for a single development server.
        #[schemars(extend("default" = 3))]
        replicas: Option<Whole<1, 5>>,
        /// Start of the names of the relay's streams, consumers and KV buckets: relays with the
        /// same servers and prefix share one queue. Letters, digits, `-` and `_`, at most 32.
        #[schemars(extend("default" = "textus-relay"))]
        prefix: Option<NatsPrefix>,
        /// How long ingest waits for JetStream to confirm an event is stored on a quorum
        /// (PubAck) before answering TextUs 504 (it retries later). At most 60s. The default
        /// answers well before webhook senders give up; a stream leader lost to a crash takes
        /// NATS 4 to 9 s to replace, and those events get 504s either way.
        #[schemars(extend("default" = "5s"))]
        publish_timeout: Option<PositiveDuration>,
        /// How the relay authenticates to NATS; leave out for none.
        auth: Option<NatsAuth>,
        /// TLS to the servers. Setting it (even `{}`) requires TLS on every connection, as a
        /// `tls://` URL does.
        tls: Option<NatsTls>,
        /// Dead letters older than this (counted from when they died) are deleted.
        #[schemars(extend("default" = "14d"))]
        dead_letter_retention: Option<PositiveDuration>,
    }
}

/// `schema` with a description of its own (draft-07 ignores the siblings of a `$ref`).
fn described(schema: &Schema, description: &str) -> serde_json::Value {
    serde_json::json!({ "allOf": [schema], "description": description })
}

/// Exactly one form: a credentials file, a token, or a user and password.
pub(super) struct NatsAuth;

impl NatsAuth {
    /// The keys of the three forms, as [`JsonSchema::json_schema`] below writes them.
    pub(super) const KEYS: &'static [&'static str] = &["credentials", "token", "user", "password"];
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

object! {
    /// TLS to the NATS servers with these files; each is optional, `cert` and `key` go together.
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct NatsTls {
        /// PEM certificates to trust for the servers, instead of the system's roots; must be
        /// readable at start.
        ca: Option<FilePath>,
        /// PEM client certificate chain, for servers that verify clients; needs `key`.
        cert: Option<FilePath>,
        /// PEM private key of `cert`.
        key: Option<FilePath>,
    }
}
