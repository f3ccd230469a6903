//! The raw types of relay.yaml: what the file holds, as written (durations as `"10s"`, `${VAR}`
//! anywhere), each key with its type, its default and its description once.
//!
//! They derive `Deserialize`, read through the located tree's deserializer (`de.rs`) into
//! [`Loc`] leaves that the rule pass (`validate.rs`, `storage.rs`, `targets.rs`) converts and
//! checks, and `JsonSchema`, for `textus-relay schema` and `docs/config-reference.md`: their doc
//! comments are the descriptions editors show. A default is a constant next to its type, which
//! the schema's `default` and the rule pass both read.
//!
//! Two objects are read as structs but described by hand, as "exactly one of": `storage.auth`
//! and `targets.NAME.auth`. Tests in `schema/tests.rs` hold those to the keys serde reads, every
//! `default` to what leaving the key out gives, each value pattern to what the rule pass's parser
//! accepts, and the committed schema and reference to this output.
//!
//! The schema may accept text the rule pass then refuses (an unknown target in `to`, a port out
//! of range, a template that does not compile): it checks the shape, `textus-relay check`
//! checks the rest.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

use super::de::Loc;

use scalars::{
    Address, Bool, Duration, EventPattern, FilePath, HttpUrl, Method, OnFull, PositiveDuration,
    Priority, Rate, Secret, Size, TargetName, Template, UrlTemplate, Whole,
};
pub(super) use storage::{
    DEAD_LETTER_RETENTION, NatsAuth, NatsStorage, NatsTls, SqliteStorage, Storage, StorageKinds,
};

/// Implements [`JsonSchema`] for a marker type whose schema is written inline where it is
/// used (no definition of its own), built by `$schema` with the generator as `$generator`.
macro_rules! inline_type {
    ($(#[$doc:meta])* $ty:ident, |$generator:ident| $schema:expr) => {
        $(#[$doc])*
        pub(in crate::config) struct $ty;

        impl JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema($generator: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

pub(super) mod keys;
mod markdown;
mod scalars;
mod storage;
#[cfg(test)]
mod tests;

pub use markdown::markdown;

/// Where the schema is committed, relative to the repository root; configs point at it.
pub const SCHEMA_PATH: &str = "schema/relay.schema.json";

/// The schema of relay.yaml, in JSON Schema draft-07: the newest draft the YAML language
/// server (VS Code's YAML extension) validates with; it warns on 2020-12 schemas.
pub fn value() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RelayFile>();
    schema.to_value()
}

/// [`value`] as pretty-printed JSON with a final newline.
pub fn json() -> String {
    // A JSON value always prints.
    let mut text = serde_json::to_string_pretty(&value()).unwrap_or_default();
    text.push('\n');
    text
}

/// # textus-relay configuration (relay.yaml)
///
/// One YAML file, validated at start and by `textus-relay check`. Unknown keys are errors.
/// `${VAR}` and `${VAR:-default}` are expanded from the environment inside every value.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "relay.yaml")]
pub(super) struct RelayFile {
    /// Where TextUs sends events.
    pub(super) listen: Option<Listen>,
    /// The admin API: health, metrics, dead letters.
    pub(super) admin: Option<Admin>,
    /// The durable store behind the queues.
    pub(super) storage: Option<Storage>,
    /// The TextUs webhook endpoint.
    pub(super) source: Source,
    /// The destinations, by name (letters, digits, `-` and `_`). Each has its own queue,
    /// concurrency, retry policy and rate limit.
    #[schemars(schema_with = "targets")]
    pub(super) targets: Loc,
    /// Which events go where. Every route whose pattern matches applies, and a target gets
    /// each event once.
    #[schemars(length(min = 1))]
    pub(super) routes: Loc<Vec<Route>>,
}

/// The sections `Admin::load` reads: nothing else of the file is looked at.
#[derive(Deserialize)]
pub(super) struct AdminFile {
    pub(super) admin: Option<Admin>,
}

/// The sections `Endpoint::load` reads: nothing else of the file is looked at.
#[derive(Deserialize)]
pub(super) struct EndpointFile {
    pub(super) listen: Option<Listen>,
    pub(super) source: Source,
}

fn targets(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "minProperties": 1,
        "propertyNames": { "pattern": scalars::TARGET_NAME },
        "additionalProperties": generator.subschema_for::<Target>(),
    })
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Listen {
    /// Socket address to bind.
    #[schemars(extend("default" = Listen::ADDRESS))]
    pub(super) address: Option<Loc<Address>>,
    /// Serve HTTPS directly with this PEM certificate chain and key; leave out for plain
    /// HTTP behind a TLS-terminating proxy.
    pub(super) tls: Option<Tls>,
}

impl Listen {
    pub(super) const ADDRESS: &str = "0.0.0.0:8443";
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Tls {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// PEM certificate chain file; must be readable at start.
    pub(super) cert: Loc<FilePath>,
    /// PEM private key file matching `cert`; must be readable at start.
    pub(super) key: Loc<FilePath>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Admin {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// Socket address of the health, metrics and API listener. A non-loopback address
    /// requires `token`.
    #[schemars(extend("default" = Admin::ADDRESS))]
    pub(super) address: Option<Loc<Address>>,
    /// When set (not empty), `/api/` calls need `Authorization: Bearer <token>`. Write it as
    /// `${RELAY_ADMIN_TOKEN:-}` to keep it out of the file.
    pub(super) token: Option<Loc<String>>,
}

impl Admin {
    pub(super) const ADDRESS: &str = "127.0.0.1:9090";
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Source {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The URL path TextUs posts to; starts with `/`.
    #[schemars(extend("default" = Source::PATH), regex(pattern = r"^/[^\s?#]*$|\$\{"))]
    pub(super) path: Option<Loc<String>>,
    /// The TextUs webhook secrets (the integration's webhookSecret); a signature matching any
    /// one of them is accepted, so list two to rotate.
    #[schemars(length(min = 1))]
    pub(super) secrets: Loc<Vec<Secret>>,
    /// Larger bodies are refused with 413.
    #[schemars(extend("default" = Source::MAX_BODY))]
    pub(super) max_body: Option<Loc<Size>>,
    /// How long an event id is remembered for de-duplication; `0s` turns it off.
    #[schemars(extend("default" = Source::DEDUPE_WINDOW))]
    pub(super) dedupe_window: Option<Loc<Duration>>,
    /// Store events that match no route (for inspection) instead of only counting them.
    #[schemars(extend("default" = Source::KEEP_UNROUTED))]
    pub(super) keep_unrouted: Option<Loc<Bool>>,
}

impl Source {
    pub(super) const PATH: &str = "/webhooks/textus";
    pub(super) const MAX_BODY: &str = "1MiB";
    pub(super) const DEDUPE_WINDOW: &str = "24h";
    pub(super) const KEEP_UNROUTED: bool = false;
}

/// A destination; `kind` says which keys it takes.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(tag = "kind", deny_unknown_fields)]
pub(super) enum Target {
    /// `kind: http` forwards the original body byte for byte, with Standard Webhooks headers.
    Http(HttpTarget),
    /// `kind: slack` posts one message per event to a Slack incoming webhook.
    Slack(SlackTarget),
    /// `kind: crm` sends one templated JSON request per event to any API (HubSpot,
    /// Salesforce, ...).
    Crm(CrmTarget),
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct HttpTarget {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The endpoint.
    pub(super) url: Loc<HttpUrl>,
    /// Static headers added to every request (not `host`, `content-length`, the
    /// `webhook-*` headers or `x-textus-signature`, which the relay sets).
    pub(super) headers: Option<Loc<BTreeMap<String, String>>>,
    /// Standard Webhooks signature of each request (`webhook-signature` header).
    pub(super) signing: Option<Signing>,
    /// Also send TextUs's original `X-TextUs-Signature`.
    #[schemars(extend("default" = false))]
    pub(super) forward_textus_signature: Option<Loc<Bool>>,
    #[serde(rename = "$flat")]
    #[schemars(flatten)]
    pub(super) delivery: Delivery,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Signing {
    /// `whsec_` and the standard base64 of 24 to 64 random bytes.
    pub(super) secret: Loc<Secret>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct SlackTarget {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The incoming webhook URL. It is the credential: write it as `${SLACK_WEBHOOK_URL}`.
    pub(super) url: Loc<HttpUrl>,
    /// Messages per event type: an exact type (`message.received`) or `"*"` for every type
    /// without its own entry. Types with neither get the built-in message.
    pub(super) templates: Option<Loc<SlackTemplates>>,
    #[serde(rename = "$flat")]
    #[schemars(flatten)]
    pub(super) delivery: Delivery,
}

inline_type!(
    /// Slack messages by event type.
    SlackTemplates,
    |generator| json_schema!({
        "type": "object",
        "propertyNames": { "pattern": scalars::EVENT_TYPE_OR_ANY },
        "additionalProperties": generator.subschema_for::<SlackTemplate>(),
    })
);

/// The message for one event type: `text`, `blocks` or both.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, extend("minProperties" = 1))]
pub(super) struct SlackTemplate {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The message text (the notification, and the fallback when there are blocks).
    pub(super) text: Option<Loc<Template>>,
    /// Block Kit blocks: a list whose string leaves are templates, or one template that
    /// renders to the list.
    pub(super) blocks: Option<Loc<Blocks>>,
}

inline_type!(
    /// Slack blocks: a list, or a template.
    Blocks,
    |generator| json_schema!({
        "anyOf": [
            { "type": "array" },
            generator.subschema_for::<Template>(),
        ],
    })
);

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct CrmTarget {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The HTTP method: GET, POST, PUT, PATCH or DELETE, in any case.
    #[schemars(extend("default" = CrmTarget::METHOD))]
    pub(super) method: Option<Loc<Method>>,
    /// The request URL, a template.
    pub(super) url: Loc<UrlTemplate>,
    /// Request headers; the values are templates. Not `authorization` when `auth` is set,
    /// nor the headers the relay sets.
    pub(super) headers: Option<Loc<BTreeMap<String, Template>>>,
    /// How requests authenticate.
    pub(super) auth: Option<CrmAuth>,
    /// The JSON body: YAML whose string leaves are templates. A leaf that is exactly one
    /// `{{ expr }}` keeps the expression's JSON type; unquoted `true`, `false`, `null` and
    /// numbers stay typed. Leave out for no body.
    pub(super) body: Option<Loc<serde_json::Value>>,
    #[serde(rename = "$flat")]
    #[schemars(flatten)]
    pub(super) delivery: Delivery,
}

impl CrmTarget {
    pub(super) const METHOD: &str = "POST";
}

/// `auth:` of a crm target as read: the rule pass checks exactly one scheme is set, which
/// [`CrmAuthSchema`] tells editors.
#[derive(Deserialize)]
pub(super) struct CrmAuth {
    #[serde(rename = "$at")]
    pub(super) at: Loc,
    pub(super) bearer: Loc,
    pub(super) basic: Loc,
    pub(super) oauth2: Loc,
}

impl JsonSchema for CrmAuth {
    fn schema_name() -> Cow<'static, str> {
        CrmAuthSchema::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        CrmAuthSchema::json_schema(generator)
    }
}

/// Exactly one of these keys.
#[expect(dead_code, reason = "the schema of `CrmAuth`, never built")]
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
#[schemars(rename = "CrmAuth")]
enum CrmAuthSchema {
    /// `Authorization: Bearer TOKEN` (write the token alone).
    Bearer(Secret),
    /// `Authorization: Basic ...`.
    Basic(Basic),
    /// The OAuth2 client credentials flow; the token is cached and sent as a bearer token.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2),
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Basic {
    /// Not empty, without `:`.
    pub(super) username: Loc<Secret>,
    pub(super) password: Loc<Secret>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct OAuth2 {
    /// The provider's token endpoint.
    pub(super) token_url: Loc<HttpUrl>,
    pub(super) client_id: Loc<Secret>,
    pub(super) client_secret: Loc<Secret>,
    /// Space-separated scopes, if the provider wants them.
    pub(super) scope: Option<Loc<String>>,
}

/// The delivery settings every kind of target takes.
#[derive(Deserialize, JsonSchema)]
pub(super) struct Delivery {
    /// Deliveries in flight at once for this target.
    #[schemars(extend("default" = Delivery::CONCURRENCY))]
    pub(super) concurrency: Option<Loc<Whole<1, { super::targets::MAX_CONCURRENCY }>>>,
    /// Per-attempt timeout, connection included.
    #[schemars(extend("default" = Delivery::TIMEOUT))]
    pub(super) timeout: Option<Loc<PositiveDuration>>,
    /// When and how long failed deliveries are retried (exponential backoff with full
    /// jitter).
    pub(super) retry: Option<Retry>,
    /// Token bucket, e.g. `5/s`: it starts with one token, and idle time earns bursts of up
    /// to the count. Default: none, except `1/s` for slack (Slack's limit per webhook).
    pub(super) rate_limit: Option<Loc<Rate>>,
    /// When to stop sending to a target that keeps failing, and how to probe it. Always on.
    pub(super) breaker: Option<Breaker>,
    /// `unordered` (the default), `fifo` (one delivery in flight for the whole target; a
    /// failing head blocks the rest) or `{ key: TEMPLATE }` (fifo per rendered key, different
    /// keys in parallel up to `concurrency`).
    #[schemars(extend("default" = Delivery::ORDERING))]
    pub(super) ordering: Option<Loc<Ordering>>,
    /// Most deliveries pending (queued or in flight) for this target. Default: no limit.
    pub(super) max_queue: Option<Loc<Whole<1, { super::targets::policy::MAX_QUEUE }>>>,
    /// With `max_queue`, what a full queue does to a new event: `reject` answers the whole
    /// event 504 (nothing stored; TextUs retries it later); `dead_letter` stores this
    /// target's delivery as a dead letter, and other targets get theirs.
    #[schemars(extend("default" = Delivery::ON_FULL))]
    pub(super) on_full: Option<Loc<OnFull>>,
}

impl Delivery {
    pub(super) const CONCURRENCY: u64 = 4;
    pub(super) const TIMEOUT: &str = "10s";
    pub(super) const ORDERING: &str = "unordered";
    pub(super) const ON_FULL: &str = "reject";
}

inline_type!(
    /// `unordered`, `fifo` or `{ key: TEMPLATE }`.
    Ordering,
    |generator| json_schema!({
        "anyOf": [
            { "type": "string", "enum": ["unordered", "fifo"] },
            { "type": "string", "pattern": scalars::ENV_REF },
            generator.subschema_for::<OrderingKey>(),
        ],
    })
);

/// Fifo per rendered key.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct OrderingKey {
    /// A template that uses the event, e.g. `"{{ event.conversation.id }}"`.
    pub(super) key: Loc<Template>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Retry {
    #[serde(rename = "$at")]
    #[schemars(skip)]
    pub(super) at: Loc,
    /// The first backoff.
    #[schemars(extend("default" = Retry::INITIAL))]
    pub(super) initial: Option<Loc<PositiveDuration>>,
    /// The backoff cap (also caps `Retry-After`); not less than `initial`.
    #[schemars(extend("default" = Retry::MAX_DELAY))]
    pub(super) max_delay: Option<Loc<PositiveDuration>>,
    /// Give up (dead letter) once the next attempt would fall after this age.
    #[schemars(extend("default" = Retry::MAX_AGE))]
    pub(super) max_age: Option<Loc<PositiveDuration>>,
    /// Give up after this many attempts. Default: no limit.
    pub(super) max_attempts: Option<Loc<Whole<1, { u32::MAX as u64 }>>>,
}

impl Retry {
    pub(super) const INITIAL: &str = "1s";
    pub(super) const MAX_DELAY: &str = "10m";
    pub(super) const MAX_AGE: &str = "24h";
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Breaker {
    /// Consecutive failed attempts (connection errors, timeouts, 408, 425, 429, 5xx, 3xx)
    /// that open the breaker.
    #[schemars(extend("default" = Breaker::FAILURES))]
    pub(super) failures: Option<Loc<Whole<1, { super::targets::policy::MAX_FAILURES }>>>,
    /// While open, one delivery is tried as a probe this often.
    #[schemars(extend("default" = Breaker::PROBE))]
    pub(super) probe: Option<Loc<PositiveDuration>>,
}

impl Breaker {
    pub(super) const FAILURES: u64 = 5;
    pub(super) const PROBE: &str = "30s";
}

#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct Route {
    /// Event type patterns: exact (`message.received`), prefix (`contact.*`) or `"*"`.
    #[schemars(length(min = 1))]
    pub(super) events: Loc<Vec<EventPattern>>,
    /// Names of targets defined under `targets`.
    #[schemars(length(min = 1))]
    pub(super) to: Loc<Vec<TargetName>>,
    /// A condition on the event, written without `{{ }}`, e.g.
    /// `"event.message.direction == 'in'"`; the route applies only where it is true.
    #[schemars(length(min = 1))]
    pub(super) when: Option<Loc<String>>,
    /// `high` or `normal` for the deliveries this route creates. By default
    /// `contact.opted_out` and `contact.opted_in` are high and everything else normal; when
    /// several routes send an event to a target, high wins.
    pub(super) priority: Option<Loc<Priority>>,
}
