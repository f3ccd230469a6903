//! The value types of relay.yaml as JSON Schema: durations, sizes, rates, templates, URLs and
//! the numbers and booleans that may also be written as `${VAR}`.
//!
//! The rule pass expands `${VAR}` in every scalar before reading it (`timeout: ${T:-10s}`,
//! `concurrency: ${WORKERS}`), so each type here also accepts a string that contains a
//! `${NAME}` or `${NAME:-default}` reference: the schema cannot know the variable's value, and
//! refusing such a file in an editor would be a false alarm. The exceptions are the `kind` of a
//! target and of `storage`, which select the keys an editor offers and so must be written out.
//!
//! Patterns are ECMA 262 regular expressions (JSON Schema's dialect); the unit tests at the
//! schema's tests run each one against the rule pass's own parsers.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// A `${NAME}` or `${NAME:-default}` reference anywhere in a string (see `env.rs`).
pub(super) const ENV_REF: &str = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}";

/// A positive whole number, leading zeros allowed as the rule pass allows them.
const POSITIVE: &str = "[0-9]*[1-9][0-9]*";
const DURATION_UNIT: &str = "(ms|s|m|h|d)";

/// `^(?:inner)$` or a `${VAR}` reference.
fn whole_or_env(inner: &str) -> String {
    format!("^(?:{inner})$|{ENV_REF}")
}

/// A string matching `inner` as a whole, or holding a `${VAR}` reference.
fn text(inner: &str, description: &str, examples: Value) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": whole_or_env(inner),
        "description": description,
        "examples": examples,
    })
}

/// Implements [`JsonSchema`] for a marker type with a schema built by `$schema`, kept in the
/// schema's `definitions` under `$name` so editors and the reference show one description for it.
macro_rules! scalar {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub(in crate::config) struct $ty;

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

scalar!(
    /// `500ms`, `30s`, `10m`, `12h`, `7d`; zero allowed.
    Duration,
    "Duration",
    text(
        &format!("[0-9]+{DURATION_UNIT}"),
        "A duration: a whole number and a unit, ms, s, m, h or d (at most 3650d).",
        json!(["500ms", "30s", "10m", "12h", "7d"]),
    )
);

scalar!(
    /// A duration greater than zero.
    PositiveDuration,
    "PositiveDuration",
    text(
        &format!("{POSITIVE}{DURATION_UNIT}"),
        "A duration greater than zero: a whole number and a unit, ms, s, m, h or d \
         (at most 3650d).",
        json!(["500ms", "30s", "10m", "12h", "7d"]),
    )
);

scalar!(
    /// A number of bytes greater than zero, with an optional unit.
    Size,
    "Size",
    json_schema!({
        "description": "A size in bytes, greater than zero: a whole number, optionally with a \
                        unit B, KB, KiB, MB, MiB, GB or GiB.",
        "anyOf": [
            { "type": "integer", "minimum": 1 },
            { "type": "string", "pattern": whole_or_env(&format!("{POSITIVE}(B|KB|KiB|MB|MiB|GB|GiB)?")) },
        ],
        "examples": ["65536", "64KiB", "1MiB", "10MB"],
    })
);

scalar!(
    /// `storage.min_free`: a size (zero allowed) or a whole percentage up to 90.
    MinFree,
    "MinFree",
    json_schema!({
        "description": "Free space to leave on the file system: a size in bytes (a whole \
                        number, optionally with a unit B, KB, KiB, MB, MiB, GB or GiB), or a whole \
                        percentage of the file system's size from 0% to 90%.",
        "anyOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": whole_or_env("[0-9]+(B|KB|KiB|MB|MiB|GB|GiB)?|0*([0-9]|[1-8][0-9]|90)%") },
        ],
        "examples": ["5%", "1GiB", "512MiB"],
    })
);

scalar!(
    /// A whole percentage from 1 to 100.
    Percent,
    "Percent",
    text(
        "0*([1-9]|[1-9][0-9]|100)%",
        "A whole percentage from 1% to 100%.",
        json!(["50%", "100%"]),
    )
);

scalar!(
    /// `COUNT/PERIOD`.
    Rate,
    "Rate",
    text(
        &format!("{POSITIVE}/({POSITIVE})?{DURATION_UNIT}"),
        "A rate, COUNT/PERIOD: at least 1 request per unit (s, m, h, d, ms) or per duration.",
        json!(["1/s", "100/10s", "30/m"]),
    )
);

scalar!(
    /// `true` or `false`, as YAML 1.2 spells them (`yes` and `on` are refused).
    Bool,
    "Bool",
    json_schema!({
        "description": "true or false (yes/no and on/off are refused).",
        "anyOf": [
            { "type": "boolean" },
            { "type": "string", "pattern": whole_or_env("true|True|TRUE|false|False|FALSE") },
        ],
    })
);

scalar!(
    /// `IP:PORT`.
    Address,
    "Address",
    json_schema!({
        "type": "string",
        "description": "A socket address, IP:PORT (an IPv6 address in brackets).",
        "minLength": 1,
        "examples": ["0.0.0.0:8443", "127.0.0.1:9090", "[::]:8443"],
    })
);

scalar!(
    /// A file path.
    FilePath,
    "FilePath",
    json_schema!({
        "type": "string",
        "description": "A file path, relative to the working directory unless it starts with /.",
        "minLength": 1,
    })
);

scalar!(
    /// An `http` or `https` URL.
    HttpUrl,
    "HttpUrl",
    json_schema!({
        "type": "string",
        "description": "An http:// or https:// URL with a host.",
        "pattern": format!("^[hH][tT][tT][pP][sS]?://|{ENV_REF}"),
        "examples": ["https://ingest.example.com/textus"],
    })
);

scalar!(
    /// A URL template: `http(s)://` written outside any tag.
    UrlTemplate,
    "UrlTemplate",
    json_schema!({
        "type": "string",
        "description": "A template (Jinja syntax) that renders to the request URL. Its text \
                        outside `{{ }}` and `{% %}` starts with http:// or https://.",
        "pattern": format!(r"^([hH][tT][tT][pP][sS]?://|\{{[{{%#])|{ENV_REF}"),
        "examples": ["https://api.example.com/contacts/{{ event.contact.id }}"],
    })
);

scalar!(
    /// A template in Jinja syntax over `event` and `meta`.
    Template,
    "Template",
    json_schema!({
        "type": "string",
        "description": "A template in Jinja syntax (minijinja) over the parsed event (`event`) \
                        and its metadata (`meta.type`, `meta.id`, `meta.received_at`). Quote \
                        it when it starts with `{{`.",
    })
);

scalar!(
    /// A credential or other text that must not be empty.
    Secret,
    "Secret",
    json_schema!({
        "type": "string",
        "description": "A credential: not empty once ${VAR} references are expanded. Write it \
                        as ${VAR} to keep it out of the file.",
        "minLength": 1,
        "examples": ["${HUBSPOT_TOKEN}"],
    })
);

scalar!(
    /// `*`, an exact event type or a prefix pattern.
    EventPattern,
    "EventPattern",
    text(
        r"\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?",
        "An event type pattern: exact (message.received), a prefix of whole segments \
         (contact.*) or * for every type. Quote * and patterns ending in .*.",
        json!(["message.received", "contact.*", "*"]),
    )
);

scalar!(
    /// The name of a target defined under `targets`.
    TargetName,
    "TargetName",
    text(
        "[A-Za-z0-9_-]+",
        "The name of a target defined under `targets`: letters, digits, - and _.",
        json!(["warehouse"]),
    )
);

scalar!(
    /// A NATS server: `nats://` or `tls://` and a host, or a bare `HOST:PORT`.
    NatsUrl,
    "NatsUrl",
    text(
        r"(([nN][aA][tT][sS]|[tT][lL][sS])://)?(\[[0-9A-Fa-f:.]+\]|[^\s/@:?#\[\]${}]+)(:[0-9]+)?/?",
        "A NATS server: nats://HOST:PORT, or tls://HOST:PORT to require TLS (port 4222 when \
         left out; a bare HOST:PORT means nats://). No user or password in the URL.",
        json!(["nats://nats-1:4222", "tls://nats.example.com:4222"]),
    )
);

scalar!(
    /// `storage.prefix` of `kind: nats`.
    NatsPrefix,
    "NatsPrefix",
    text(
        "[A-Za-z0-9_-]{1,32}",
        "The start of JetStream stream, consumer and KV bucket names: 1 to 32 letters, digits, \
         - and _.",
        json!(["textus-relay"]),
    )
);

/// Target names, slack template keys: the patterns of `propertyNames`.
pub(super) const TARGET_NAME: &str = "^[A-Za-z0-9_-]+$";
pub(super) const EVENT_TYPE_OR_ANY: &str = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*)$";

/// A whole number from `MIN` to `MAX`, or a string holding one or a `${VAR}` reference.
pub(in crate::config) struct Whole<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> JsonSchema for Whole<MIN, MAX> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Whole_{MIN}_{MAX}").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": MIN, "maximum": MAX },
                { "type": "string", "pattern": whole_or_env("[0-9]+") },
            ],
        })
    }
}

inline_type!(
    /// `routes[].priority`.
    Priority,
    |_generator| one_of(&["high", "normal"])
);

inline_type!(
    /// A target's `on_full`.
    OnFull,
    |_generator| one_of(&["reject", "dead_letter"])
);

inline_type!(
    /// A crm target's `method`, in any letter case.
    Method,
    |_generator| one_of_any_case(&["GET", "POST", "PUT", "PATCH", "DELETE"])
);

/// One of `words` exactly, or a `${VAR}` reference.
fn one_of(words: &[&str]) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string", "enum": words },
            { "type": "string", "pattern": ENV_REF },
        ],
    })
}

/// One of `words` in any letter case (HTTP methods), or a `${VAR}` reference.
fn one_of_any_case(words: &[&str]) -> Schema {
    let alternatives: Vec<String> = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    json_schema!({
        "type": "string",
        "pattern": whole_or_env(&alternatives.join("|")),
        "examples": words,
    })
}
