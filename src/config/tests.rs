//! End-to-end tests of [`Config::from_yaml_str`]: what a user sees for a valid file
//! and for defaults; each kind of mistake is in `tests/mistakes.rs`. Slack and CRM
//! targets and route conditions, with their templates, are in `tests/templates.rs`
//! and `tests/template_mistakes.rs`.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use super::*;

mod mistakes;
mod nats;
mod policy;
mod template_mistakes;
mod templates;

/// A test-only certificate and key (PEM) that exist in any checkout, for `listen.tls`.
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/localhost.crt");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/localhost.key");

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "TEXTUS_WEBHOOK_SECRET" => Some("textus-ab: #c{1}".to_owned()),
        "WAREHOUSE_SECRET" => Some(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([42u8; 32])
        )),
        "HOOK_TOKEN" => Some("t0k3n".to_owned()),
        "EMPTY" => Some(String::new()),
        "SLACK_WEBHOOK_URL" => {
            Some("https://hooks.slack.com/services/T000/B000/sl4ckS3cret".to_owned())
        }
        "HUBSPOT_TOKEN" => Some("pat-na1-hubS3cret".to_owned()),
        "SF_DOMAIN" => Some("acme".to_owned()),
        "SF_CLIENT_ID" => Some("3MVG9client".to_owned()),
        "SF_CLIENT_SECRET" => Some("sfS3cret".to_owned()),
        "LEGACY_PASSWORD" => Some("p4ssS3cret".to_owned()),
        "NATS_TOKEN" => Some("nats-t0ken-S3cret".to_owned()),
        "NATS_PASSWORD" => Some("nats-p4ss-S3cret".to_owned()),
        _ => None,
    }
}

pub(super) fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str(yaml, Path::new("relay.yaml"), &env)
}

/// The error text, one line per problem, for a file that must be refused.
pub(super) fn refused(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(err) => err.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts that exactly one problem is reported and that it starts with `prefix`
/// (`FILE:LINE:COLUMN: KEY: ` at least) and contains `fragment`.
pub(super) fn assert_one(yaml: &str, prefix: &str, fragment: &str) {
    let lines = refused(yaml);
    assert_eq!(lines.len(), 1, "expected one problem, got {lines:#?}");
    assert!(
        lines[0].starts_with(prefix),
        "{:?} does not start with {prefix:?}",
        lines[0]
    );
    assert!(
        lines[0].contains(fragment),
        "{:?} does not contain {fragment:?}",
        lines[0]
    );
}

/// A valid file around one target body and route list, for mistakes in those.
pub(super) fn with_target(target: &str) -> String {
    format!(
        "source: {{ secrets: [x] }}\ntargets:\n  t:\n{target}routes:\n  - events: [\"*\"]\n    to: [t]\n"
    )
}

fn full_yaml() -> String {
    format!(
        r#"listen:                        # where TextUs sends events
  address: 0.0.0.0:8443
  tls: {{ cert: {CERT}, key: "{KEY}" }}
admin:
  address: 127.0.0.1:9090
  token: ${{RELAY_ADMIN_TOKEN:-}}   # ${{NOT_SET}} in a comment is not expanded
storage:
  kind: sqlite
  path: ./data/relay.db
source:
  path: /webhooks/textus
  secrets: [ "${{TEXTUS_WEBHOOK_SECRET}}", "old: #not-a-comment" ]
  max_body: 1MiB
  dedupe_window: 24h
  keep_unrouted: true
targets:
  warehouse:
    kind: http                 # forwards the original body unchanged
    url: https://ingest.example.com/textus
    signing: {{ secret: "${{WAREHOUSE_SECRET}}" }}
    concurrency: 8
    retry: {{ initial: 1s, max_delay: 10m, max_age: 24h, max_attempts: 20 }}
  audit-log:
    kind: http
    url: http://127.0.0.1:8081/events
    headers:
      Authorization: Bearer ${{HOOK_TOKEN}}
      X-Env: prod
    forward_textus_signature: true
    timeout: ${{AUDIT_TIMEOUT:-5s}}
    rate_limit: 100/10s
routes:
  - events: [ message.received ]
    to: [ audit-log, warehouse ]
  - events: [ "contact.*" ]
    to: [ warehouse ]
  - events: [ "*" ]
    to: [ warehouse ]
"#
    )
}

fn id(name: &str) -> TargetId {
    TargetId(Arc::from(name))
}

#[test]
fn full_config_parses_to_the_expected_values() {
    let config = load(&full_yaml()).expect("valid config");
    let header = |name: &str, value: &str| {
        let mut value = http::HeaderValue::from_str(value).expect("valid value");
        value.set_sensitive(true);
        (
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            value,
        )
    };
    let expected = Config {
        file: PathBuf::from("relay.yaml"),
        listen: Listen {
            address: "0.0.0.0:8443".parse().expect("addr"),
            tls: Some(Tls {
                cert: PathBuf::from(CERT),
                key: PathBuf::from(KEY),
            }),
        },
        admin: Admin {
            address: "127.0.0.1:9090".parse().expect("addr"),
            token: None,
        },
        storage: Storage::Sqlite {
            path: PathBuf::from("./data/relay.db"),
            dead_letter_retention: Duration::from_secs(14 * 86_400),
            budget: StorageBudget::default(),
        },
        source: Source {
            path: "/webhooks/textus".to_owned(),
            secrets: vec!["textus-ab: #c{1}".into(), "old: #not-a-comment".into()],
            max_body: 1 << 20,
            dedupe_window: Duration::from_secs(86_400),
            keep_unrouted: true,
        },
        targets: vec![
            TargetSettings {
                name: id("warehouse"),
                kind: TargetKind::Http(HttpSettings {
                    url: "https://ingest.example.com/textus".parse().expect("url"),
                    headers: vec![],
                    signing: Some(Signing {
                        key: vec![42u8; 32].into(),
                    }),
                    forward_textus_signature: false,
                }),
                concurrency: 8,
                timeout: Duration::from_secs(10),
                retry: RetryPolicy {
                    initial: Duration::from_secs(1),
                    max_delay: Duration::from_secs(600),
                    max_age: Duration::from_secs(86_400),
                    max_attempts: Some(20),
                },
                rate_limit: None,
                breaker: BreakerPolicy::default(),
                ordering: DeliveryOrder::Unordered,
                max_queue: None,
                on_full: OnFull::Reject,
            },
            TargetSettings {
                name: id("audit-log"),
                kind: TargetKind::Http(HttpSettings {
                    url: "http://127.0.0.1:8081/events".parse().expect("url"),
                    headers: vec![
                        header("authorization", "Bearer t0k3n"),
                        header("x-env", "prod"),
                    ],
                    signing: None,
                    forward_textus_signature: true,
                }),
                concurrency: 4,
                timeout: Duration::from_secs(5),
                retry: RetryPolicy::default(),
                rate_limit: Some(Rate {
                    count: 100,
                    per: Duration::from_secs(10),
                }),
                breaker: BreakerPolicy::default(),
                ordering: DeliveryOrder::Unordered,
                max_queue: None,
                on_full: OnFull::Reject,
            },
        ],
        routes: vec![
            Route {
                events: vec![EventPattern::Exact("message.received".to_owned())],
                to: vec![id("audit-log"), id("warehouse")],
                when: None,
                priority: None,
            },
            Route {
                events: vec![EventPattern::Prefix("contact.".to_owned())],
                to: vec![id("warehouse")],
                when: None,
                priority: None,
            },
            Route {
                events: vec![EventPattern::Any],
                to: vec![id("warehouse")],
                when: None,
                priority: None,
            },
        ],
    };
    assert_eq!(config, expected);
}

#[test]
fn minimal_config_gets_the_defaults() {
    let yaml = "source: { secrets: [x] }\ntargets:\n  w: { kind: http, url: \"https://example.com\" }\nroutes:\n  - { events: [\"*\"], to: [w] }\n";
    let config = load(yaml).expect("valid config");
    assert_eq!(
        config.listen,
        Listen {
            address: "0.0.0.0:8443".parse().expect("addr"),
            tls: None
        }
    );
    assert_eq!(
        config.admin,
        Admin {
            address: "127.0.0.1:9090".parse().expect("addr"),
            token: None
        }
    );
    assert_eq!(
        config.storage,
        Storage::Sqlite {
            path: PathBuf::from("./data/relay.db"),
            dead_letter_retention: Duration::from_secs(14 * 86_400),
            budget: StorageBudget::default(),
        }
    );
    assert_eq!(
        config.source,
        Source {
            path: "/webhooks/textus".to_owned(),
            secrets: vec!["x".into()],
            max_body: 1_048_576,
            dedupe_window: Duration::from_secs(24 * 3600),
            keep_unrouted: false,
        }
    );
    let [target] = config.targets.as_slice() else {
        panic!("one target")
    };
    assert_eq!(target.concurrency, 4);
    assert_eq!(target.timeout, Duration::from_secs(10));
    assert_eq!(
        target.retry,
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            max_age: Duration::from_secs(86_400),
            max_attempts: None,
        }
    );
    assert_eq!(target.rate_limit, None);
    let TargetKind::Http(http) = &target.kind else {
        panic!("an http target")
    };
    assert!(http.headers.is_empty() && http.signing.is_none() && !http.forward_textus_signature);
}

#[test]
fn keys_are_never_expanded() {
    let yaml = with_target(
        "    kind: http\n    url: https://x.example\n    headers: { \"${HOOK_TOKEN}\": x }\n",
    );
    let lines = refused(&yaml);
    assert_eq!(
        lines,
        ["relay.yaml:6:16: targets.t.headers.${HOOK_TOKEN}: invalid header name \"${HOOK_TOKEN}\""]
    );
}

#[test]
fn env_expansion_applies_defaults_and_escapes() {
    let yaml = with_target(
        "    kind: http\n    url: https://x.example/a$$b?t=${HOOK_TOKEN}\n    timeout: ${UNSET_TIMEOUT:-250ms}\n    concurrency: ${UNSET_C:-16}\n",
    );
    let config = load(&yaml).expect("valid config");
    let target = &config.targets[0];
    let TargetKind::Http(http) = &target.kind else {
        panic!("an http target")
    };
    assert_eq!(http.url.as_str(), "https://x.example/a$b?t=t0k3n");
    assert_eq!(target.timeout, Duration::from_millis(250));
    assert_eq!(target.concurrency, 16);
}

#[test]
fn values_from_the_environment_are_not_echoed() {
    let yaml = with_target("    kind: http\n    url: ${HOOK_TOKEN}\n");
    let lines = refused(&yaml);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "relay.yaml:5:10: targets.t.url: invalid URL \"${HOOK_TOKEN}\" as expanded"
        ),
        "{lines:#?}"
    );
    assert!(!lines[0].contains("t0k3n"), "{lines:#?}");
}

#[test]
fn admin_token_empty_means_none_and_guards_public_addresses() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    let config = load(&format!(
        "admin: {{ address: \"0.0.0.0:9090\", token: \"${{HOOK_TOKEN}}\" }}\n{tail}"
    ))
    .expect("valid");
    assert_eq!(config.admin.token, Some("t0k3n".into()));
    assert!(
        !format!("{config:?}").contains("t0k3n"),
        "Debug must redact the token"
    );
    let lines = refused(&format!(
        "admin: {{ address: \"[::]:9090\", token: \"${{EMPTY}}\" }}\n{tail}"
    ));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("relay.yaml:1:19: admin.address: [::]:9090 is not a loopback address"),
        "{lines:#?}"
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = load(&full_yaml()).expect("valid config");
    let debug = format!("{config:?}");
    for secret in ["textus-ab: #c{1}", "t0k3n", "KioqKioq"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

#[test]
fn load_reports_unreadable_files() {
    let err = Config::load(Path::new("/nonexistent/relay.yaml")).expect_err("no such file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/relay.yaml: cannot read config file: "),
        "{err}"
    );
}

#[test]
fn hostile_inputs_do_not_panic() {
    let inputs = [
        "\u{0}".to_owned(),
        "a: *b\n".to_owned(),
        "? [a]\n: b\n".to_owned(),
        "{a: b}: c\n".to_owned(),
        "---\na: 1\n---\nb: 2\n".to_owned(),
        "x: &a [*a]\n".to_owned(),
        "source: !!binary aGk=\n".to_owned(),
        "source: { secrets: [!!int 1x] }\n".to_owned(),
        "targets: { \"\": { kind: http } }\n".to_owned(),
        format!("{}\n", "[".repeat(100_000)),
        "a: \"\\xZZ\"\n".to_owned(),
        "routes: [ { events: [\"*\"], to: [~, [], {}] } ]\n".to_owned(),
        "source: { secrets: [\"${\"] }\n".to_owned(),
        "\t- a\n".to_owned(),
    ];
    for input in &inputs {
        let err = load(input).expect_err("invalid");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn the_admin_section_is_read_alone_for_commands_that_talk_to_a_relay() {
    let read = |yaml: &str| Admin::from_yaml_str(yaml, Path::new("relay.yaml"), &env);
    // The rest of the file names secrets this shell does not have and files it cannot read.
    let yaml = "listen: { tls: { cert: /nope.crt, key: /nope.key } }\nadmin: { address: \"0.0.0.0:9191\", token: \"${HOOK_TOKEN}\" }\nsource: { secrets: [\"${NOT_SET}\"] }\n";
    assert!(load(yaml).is_err(), "the whole file is not valid here");
    let admin = read(yaml).expect("admin alone is valid");
    assert_eq!(admin.address, "0.0.0.0:9191".parse().expect("addr"));
    assert_eq!(admin.token, Some("t0k3n".into()));
    let defaults = read("source: {}\n").expect("no admin section");
    assert_eq!(defaults.address, "127.0.0.1:9090".parse().expect("addr"));
    let err = read("admin: { address: nowhere }\n").expect_err("bad address");
    assert!(
        err.to_string()
            .starts_with("relay.yaml:1:19: admin.address: "),
        "{err}"
    );
}
