//! `relay.yaml`: loading, `${VAR}` expansion and validation into an immutable [`Config`].
//!
//! Only validated values circulate: [`Config`] does not implement `Deserialize`, and the
//! one way to get one is [`Config::load`] / [`Config::from_yaml_str`], which either
//! returns a config whose every rule holds or a [`ConfigError`] listing every problem
//! found, one `FILE:LINE:COLUMN: KEY.PATH: message` line each (design.md §4).
//!
//! Pipeline: `tree` parses the YAML into located nodes; `de` deserializes them into the raw
//! types of `schema`, which also give the JSON Schema and the reference, so each key, its type
//! and its default are written once; the rule pass (`validate`, `storage`, `targets`) turns the
//! raw values into the types below, expanding `${VAR}` in each string value just before it is
//! interpreted. Templates (Slack messages, CRM requests, route conditions) are stored as
//! written, with their location, by `template`; the targets render them. Credentials are
//! [`Secret`]s (`secrecy`), so no `Debug`, log line or problem can print one.
//!
//! # Why serde, but not serde-saphyr's deserializer (issue 17 item 1)
//!
//! serde-saphyr 2.2's `from_str` stops at the first type mismatch, unknown field, missing field
//! or duplicate key, and its `Spanned<T>` loses the location inside a `#[serde(tag = "kind")]`
//! enum or a `#[serde(flatten)]` field (serde buffers those in its private `Content`): exactly
//! where relay.yaml's targets and storage are. design.md §4 promises every problem in one pass,
//! each with its line and key path. So serde-saphyr only builds the located tree, and `de.rs`
//! is a serde `Deserializer` over that tree that never stops:
//! - leaves are `Loc`s that never fail: a located node the rule pass converts and reports on
//!   (strict booleans and integers, `${VAR}`, templates);
//! - every field is optional to serde: keys left out are handed over as absent, and the rule
//!   pass reports a missing required key;
//! - in `deserialize_struct`, keys not in serde's `fields` are recorded with their location and
//!   key path and skipped, duplicate keys reported and skipped;
//! - `kind:` is read by the deserializer, which hands the same mapping to the variant it names;
//!   the delivery keys every target kind takes are a `$flat` struct read over the same mapping.
//!
//! What stays hand-written is the rule pass: conversions, rules across keys and messages,
//! which are most of the lines.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reader::Env;

mod de;
mod endpoint;
mod env;
mod error;
mod nats;
mod pattern;
mod reader;
pub mod schema;
mod secret;
mod storage;
mod syntax;
mod targets;
mod template;
#[cfg(test)]
mod tests;
mod tls;
mod tree;
mod units;
mod validate;

pub use endpoint::Endpoint;
pub use error::{ConfigError, Problem};
pub use nats::{NatsAuth, NatsStorage, NatsTls};
pub use pattern::EventPattern;
pub use secret::Secret;
// Each kind's settings live in its folder under `targets/`; the reader here builds them.
pub use crate::targets::TargetKind;
pub use crate::targets::crm::{CrmAuth, CrmSettings};
pub use crate::targets::http::{HttpSettings, Signing};
pub use crate::targets::slack::{SlackSettings, SlackTemplate};
pub use template::{BodyTemplate, TemplateSource};

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    /// `listen:`, the ingress socket.
    pub listen: Listen,
    /// `admin:`, the admin API socket.
    pub admin: Admin,
    /// `storage:`, the durable store.
    pub storage: Storage,
    /// `source:`, the TextUs side.
    pub source: Source,
    /// In file order.
    pub targets: Vec<TargetSettings>,
    /// In file order; every matching route applies.
    pub routes: Vec<Route>,
}

/// Where TextUs sends events. Default `0.0.0.0:8443`, plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Socket address to bind.
    pub address: SocketAddr,
    /// `None` for plain HTTP behind a TLS-terminating proxy.
    pub tls: Option<Tls>,
}

/// Certificate and key files; both were readable when the config was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The admin API (health, metrics, dead letters). Default `127.0.0.1:9090`.
///
/// A non-loopback address requires a token: the API can replay and purge dead letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Socket address to bind.
    pub address: SocketAddr,
    /// Bearer token; an empty value (e.g. from `${RELAY_ADMIN_TOKEN:-}`) means none.
    pub token: Option<Secret>,
}

impl Admin {
    /// Reads and validates only `admin:` of `path` (defaults if absent), expanding `${VAR}`
    /// there only. For commands that talk to a running relay (`dead-letters`): they need the
    /// address and token, not the secrets and TLS keys the rest of the file may name, which
    /// an operator's shell often cannot read.
    pub fn load(path: &Path) -> Result<Admin, ConfigError> {
        read_file(path, Admin::from_yaml_str)
    }

    /// [`Admin::load`] on text read from `file` (used in messages only).
    pub fn from_yaml_str(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Admin, ConfigError> {
        read_text(text, file, env, true, validate::admin_only)
    }
}

/// The durable store behind the queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Embedded SQLite database. Default path `./data/relay.db` (relative to the working
    /// directory, like every relative path in the file).
    Sqlite {
        /// The database file; its directory must exist or be creatable.
        path: PathBuf,
        /// How long a dead letter is kept after it died before it is deleted, > 0.
        /// Default 14 days.
        dead_letter_retention: Duration,
        /// When ingest stops so that the store can always drain (`max_bytes`, `min_free`,
        /// `target_share`).
        budget: StorageBudget,
    },
    /// JetStream on a NATS cluster, shared by several relays (`kind: nats`).
    Nats(NatsStorage),
}

/// The storage budget: ingest answers 504 `store_full` before the store could fill its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageBudget {
    /// The most the store's files may take (reserve included); `None`: no limit but the disk.
    pub max_bytes: Option<u64>,
    /// Free space left on the store's file system. Default 5 %.
    pub min_free: MinFree,
    /// The most of the budget one target's pending deliveries may hold when several targets
    /// are configured, in percent (1 to 100; 100 turns it off). Default 50.
    pub target_share: u8,
}

impl Default for StorageBudget {
    fn default() -> Self {
        StorageBudget {
            max_bytes: None,
            min_free: MinFree::Percent(5),
            target_share: 50,
        }
    }
}

/// `storage.min_free`: a size, or a whole percentage of the file system's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinFree {
    Bytes(u64),
    Percent(u8),
}

/// The TextUs webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// URL path events are posted to; starts with `/`. Default `/webhooks/textus`.
    pub path: String,
    /// TextUs signing secrets, used as-is; several allow rotation. Never empty, and no
    /// secret is empty.
    pub secrets: Vec<Secret>,
    /// Largest accepted body in bytes (> 0). Default 1 MiB.
    pub max_body: usize,
    /// How long event ids are remembered for de-duplication; zero turns it off.
    /// Default 24 h.
    pub dedupe_window: Duration,
    /// Keep events that match no route, for inspection. Default false.
    pub keep_unrouted: bool,
}

/// A target's name, the key under `targets:`; `[A-Za-z0-9_-]+`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub Arc<str>);

impl TargetId {
    /// The name as written in the file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One destination, with its own queue, concurrency, retry policy and rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSettings {
    /// Its key under `targets:`.
    pub name: TargetId,
    /// What the target does with a delivery.
    pub kind: TargetKind,
    /// Deliveries in flight at once, 1..=1024. Default 4.
    pub concurrency: usize,
    /// Per-attempt timeout, > 0. Default 10 s.
    pub timeout: Duration,
    /// When and how long failed deliveries are retried.
    pub retry: RetryPolicy,
    /// Token bucket; `None` for no limit.
    pub rate_limit: Option<Rate>,
    /// When to stop sending to a target that keeps failing, and how to probe it.
    pub breaker: BreakerPolicy,
    /// Which deliveries must wait for others. Default unordered.
    pub ordering: DeliveryOrder,
    /// Most pending (queued or in flight) deliveries; `None` for no limit.
    pub max_queue: Option<u64>,
    /// What happens to an event routed here while the queue holds `max_queue`.
    pub on_full: OnFull,
}

/// `breaker:` of a target (design.md §5): after `failures` consecutive failed attempts the
/// target is open (nothing is sent), and one probe delivery is tried every `probe`.
///
/// Invariants: `failures >= 1`, `probe > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker. Default 5.
    pub failures: u32,
    /// Time between probes while open. Default 30 s.
    pub probe: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            probe: Duration::from_secs(30),
        }
    }
}

/// `ordering:` of a target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeliveryOrder {
    /// Up to `concurrency` deliveries in flight, in any order (the default).
    #[default]
    Unordered,
    /// `fifo`: one delivery in flight for the whole target; a failing head blocks the rest.
    Fifo,
    /// `{ key: TEMPLATE }`: fifo per rendered key, different keys in parallel. The
    /// template contains at least one `{{ }}` or `{% %}`.
    Key(TemplateSource),
}

/// `on_full:` of a target: what a full queue (`max_queue`) does to a new event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// Answer TextUs 504 for the whole event, so it keeps and retries it (the default).
    #[default]
    Reject,
    /// Store this target's delivery straight as a dead letter; other targets get theirs.
    DeadLetter,
}

/// `priority:` of a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Served after every due high-priority delivery of the target.
    #[default]
    Normal,
    /// Served first (compliance events: `contact.opted_out`, `contact.opted_in`).
    High,
}

impl Priority {
    /// The priority of an event type when no route says otherwise: opt-outs and opt-ins are
    /// compliance events and go ahead of a backlog of messages.
    pub fn default_for(event_type: &str) -> Priority {
        match event_type {
            "contact.opted_out" | "contact.opted_in" => Priority::High,
            _ => Priority::Normal,
        }
    }
}

/// Exponential backoff with full jitter (design.md §5).
///
/// Invariants: `initial > 0`, `max_delay >= initial`, `max_attempts >= 1` when set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay. Default 1 s.
    pub initial: Duration,
    /// Cap on the doubling delay (and on `Retry-After`). Default 10 min.
    pub max_delay: Duration,
    /// Age after which a delivery becomes a dead letter. Default 24 h.
    pub max_age: Duration,
    /// Attempts after which a delivery becomes a dead letter; `None` for no limit.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            max_attempts: None,
        }
    }
}

/// `count` requests per `per` (`1/s`, `100/10s`, `30/m`). `count >= 1`, `per > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (the bucket size), at least 1.
    pub count: u32,
    /// The period, > 0.
    pub per: Duration,
}

impl fmt::Display for Rate {
    /// As written in relay.yaml: `1/s`, `30/m`, `100/10s`, `10/500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.per.as_millis();
        let per = match ms {
            1_000 => "s".to_owned(),
            60_000 => "m".to_owned(),
            3_600_000 => "h".to_owned(),
            86_400_000 => "d".to_owned(),
            _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
            _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
            _ => format!("{ms}ms"),
        };
        write!(f, "{}/{per}", self.count)
    }
}

/// Sends events matching any of `events` to every target in `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Never empty.
    pub events: Vec<EventPattern>,
    /// Never empty; each names a target of [`Config::targets`].
    pub to: Vec<TargetId>,
    /// `when:`, an expression over the event (e.g. `event.contact is defined`); the
    /// route applies only where it is true. Not empty, and not wrapped in `{{ }}`.
    pub when: Option<TemplateSource>,
    /// `priority:` of the deliveries this route creates; `None` for the event type's
    /// default ([`Priority::default_for`]).
    pub priority: Option<Priority>,
}

impl Config {
    /// Reads and validates `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        read_file(path, Config::from_yaml_str)
    }

    /// Validates `text`, read from `file` (used in messages only, and not read).
    /// `env` looks variables up; `listen.tls` files are checked on disk.
    pub fn from_yaml_str(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        read_text(text, file, env, false, |ctx, raw| {
            validate::config(ctx, raw, file)
        })
    }
}

/// Reads `path` and hands its text to `from_text` with the process environment.
fn read_file<T>(
    path: &Path,
    from_text: impl FnOnce(&str, &Path, Env<'_>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_text(&text, path, &|name| std::env::var(name).ok())
}

/// Parses `text`, deserializes the tree into the raw types `R` and turns them into `T` with
/// the rule pass `rules`, in one pass: the value, or every problem found, sorted by position.
/// `partial`: `R` is some of the top-level sections; the others are not looked at.
fn read_text<R: serde::de::DeserializeOwned, T>(
    text: &str,
    file: &Path,
    env: Env<'_>,
    partial: bool,
    rules: impl FnOnce(&mut reader::Ctx<'_>, &R) -> Option<T>,
) -> Result<T, ConfigError> {
    let root = tree::parse(text).map_err(|problem| ConfigError::Syntax {
        file: file.to_owned(),
        problem,
    })?;
    let mut ctx = reader::Ctx::new(env);
    let value = ctx
        .read::<R>(&root, "", partial)
        .and_then(|raw| rules(&mut ctx, &raw));
    match value {
        Some(value) if ctx.problems.is_empty() && ctx.unknown.is_empty() => Ok(value),
        _ => {
            if ctx.problems.is_empty() && ctx.unknown.is_empty() {
                // Every `None` is reported where it arises; this only guards against a
                // reader forgetting to, so an invalid config can never pass silently.
                ctx.report(root.at, "", "invalid configuration");
            }
            Err(ConfigError::Invalid {
                file: file.to_owned(),
                problems: ctx.finish(),
            })
        }
    }
}
