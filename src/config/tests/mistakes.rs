//! Each kind of mistake a user can make in relay.yaml, and the exact line they see:
//! `FILE:LINE:COLUMN: KEY.PATH: message`.

use std::path::PathBuf;
use std::time::Duration;

use super::{assert_one, load, refused, with_target};
use crate::config::{ConfigError, MinFree, Storage, StorageBudget};

#[test]
fn unknown_key_is_reported_with_its_path() {
    let yaml =
        with_target("    kind: http\n    url: https://x.example\n    circuit: { failures: 5 }\n");
    assert_one(
        &yaml,
        "relay.yaml:6:5: targets.t.circuit: ",
        "unknown key (expected one of: kind, url,",
    );
}

#[test]
fn unknown_top_level_key_is_reported() {
    let yaml = format!(
        "{}templates: {{}}\n",
        with_target("    kind: http\n    url: https://x.example\n")
    );
    assert_one(&yaml, "relay.yaml:9:1: templates: ", "unknown key");
}

#[test]
fn duplicate_key_is_reported_with_the_first_line() {
    let yaml =
        with_target("    kind: http\n    url: https://x.example\n    url: https://y.example\n");
    assert_one(
        &yaml,
        "relay.yaml:6:5: targets.t.url: ",
        "duplicate key (first defined at line 5)",
    );
}

#[test]
fn duplicate_target_name_is_reported() {
    let yaml = "source: { secrets: [x] }\ntargets:\n  t: { kind: http, url: \"https://a.example\" }\n  t: { kind: http, url: \"https://b.example\" }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        yaml,
        "relay.yaml:4:3: targets.t: ",
        "duplicate key (first defined at line 3)",
    );
}

#[test]
fn bad_duration_quotes_the_input() {
    let yaml =
        with_target("    kind: http\n    url: https://x.example\n    retry: { initial: 1x }\n");
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:6:23: targets.t.retry.initial: invalid duration \"1x\" (expected a number and a unit: 500ms, 30s, 10m, 12h, 7d)"
        ]
    );
}

#[test]
fn bad_size_is_reported() {
    let yaml = "source:\n  secrets: [x]\n  max_body: 1mb\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        yaml,
        "relay.yaml:3:13: source.max_body: ",
        "invalid size \"1mb\"",
    );
}

#[test]
fn zero_body_size_is_refused() {
    let yaml = "source: { secrets: [x], max_body: 0KiB }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        yaml,
        "relay.yaml:1:35: source.max_body: ",
        "must be greater than zero",
    );
}

#[test]
fn bad_rate_is_reported() {
    let yaml = with_target("    kind: http\n    url: https://x.example\n    rate_limit: 0/s\n");
    assert_one(
        &yaml,
        "relay.yaml:6:17: targets.t.rate_limit: ",
        "invalid rate \"0/s\" (count must be at least 1)",
    );
}

#[test]
fn route_to_unknown_target_is_reported() {
    let yaml = "source: { secrets: [x] }\ntargets:\n  t: { kind: http, url: \"https://x.example\" }\nroutes:\n  - events: [\"*\"]\n    to: [t]\n  - events: [a.b]\n    to: [t, nope]\n";
    assert_eq!(
        refused(yaml),
        ["relay.yaml:8:13: routes[1].to[1]: unknown target \"nope\" (defined targets: t)"]
    );
}

#[test]
fn bad_pattern_is_reported() {
    let yaml = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes:\n  - events: [ok, \"con*\", a..b]\n    to: [t]\n";
    let lines = refused(yaml);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0]
            .starts_with("relay.yaml:4:18: routes[0].events[1]: invalid event pattern \"con*\""),
        "{lines:#?}"
    );
    assert!(
        lines[1]
            .starts_with("relay.yaml:4:26: routes[0].events[2]: invalid event pattern \"a..b\""),
        "{lines:#?}"
    );
}

#[test]
fn empty_secrets_are_refused() {
    let tail = "targets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        &format!("source:\n  secrets: []\n{tail}"),
        "relay.yaml:2:12: source.secrets: ",
        "at least one secret is required",
    );
    assert_one(
        &format!("source:\n  path: /x\n{tail}"),
        "relay.yaml:2:3: source.secrets: ",
        "missing required key `secrets`",
    );
    assert_eq!(
        refused(&format!(
            "source:\n  secrets: [\"${{EMPTY}}\", ok, \"${{UNSET:-}}\"]\n{tail}"
        )),
        [
            "relay.yaml:2:13: source.secrets[0]: secret is empty",
            "relay.yaml:2:29: source.secrets[2]: secret is empty",
        ]
    );
}

#[test]
fn missing_env_var_is_named_at_its_location() {
    let yaml = "source:\n  secrets: [\"${TEXTUS_WEBHOOK_SECRET}\", \"${NEW_SECRET}\"]\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        yaml,
        "relay.yaml:2:41: source.secrets[1]: ",
        "environment variable `NEW_SECRET` is not set",
    );
}

#[test]
fn bad_url_is_reported() {
    let yaml = with_target("    kind: http\n    url: ftp://x.example/in\n");
    assert_one(
        &yaml,
        "relay.yaml:5:10: targets.t.url: ",
        "invalid URL \"ftp://x.example/in\" (the scheme must be http or https)",
    );
    let yaml = with_target("    kind: http\n    url: not a url\n");
    assert_one(
        &yaml,
        "relay.yaml:5:10: targets.t.url: ",
        "invalid URL \"not a url\"",
    );
}

#[test]
fn bad_whsec_secret_is_reported_without_echo() {
    let yaml = with_target(
        "    kind: http\n    url: https://x.example\n    signing: { secret: whsec_c2hvcnQ= }\n",
    );
    let lines = refused(&yaml);
    assert_eq!(
        lines,
        [
            "relay.yaml:6:24: targets.t.signing.secret: signing secret decodes to 5 bytes (expected 24 to 64)"
        ]
    );
    let yaml = with_target(
        "    kind: http\n    url: https://x.example\n    signing:\n      secret: hunter2\n",
    );
    let lines = refused(&yaml);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with(
        "relay.yaml:7:15: targets.t.signing.secret: signing secret must start with `whsec_`"
    ));
    assert!(!lines[0].contains("hunter2"));
}

#[test]
fn bad_headers_are_reported() {
    let yaml = with_target(
        "    kind: http\n    url: https://x.example\n    headers:\n      Bad Name: x\n      X-Ok: \"a\\u0001b\"\n      webhook-id: x\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:7:7: targets.t.headers.Bad Name: invalid header name \"Bad Name\"",
            "relay.yaml:8:13: targets.t.headers.X-Ok: invalid header value (control characters are not allowed; value not shown)",
            "relay.yaml:9:7: targets.t.headers.webhook-id: header `webhook-id` is set by the relay",
        ]
    );
}

#[test]
fn each_kind_has_its_own_keys() {
    let yaml =
        with_target("    kind: slack\n    url: https://hooks.slack.com/x\n    method: POST\n");
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:6:5: targets.t.method: unknown key (expected one of: kind, url, templates, concurrency, timeout, retry, rate_limit, breaker, ordering, max_queue, on_full)"
        ]
    );
    let yaml = with_target(
        "    kind: http\n    url: https://x.example\n    templates: {}\n    auth: { bearer: x }\n    body: {}\n    method: PUT\n",
    );
    let lines = refused(&yaml);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "targets.t.templates",
            "targets.t.auth",
            "targets.t.body",
            "targets.t.method"
        ],
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("unknown key")),
        "{lines:#?}"
    );
    let yaml = with_target(
        "    kind: crm\n    url: https://x.example\n    signing: { secret: x }\n    templates: {}\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:6:5: targets.t.signing: unknown key (expected one of: kind, method, url, headers, auth, body, concurrency, timeout, retry, rate_limit, breaker, ordering, max_queue, on_full)",
            "relay.yaml:7:5: targets.t.templates: unknown key (expected one of: kind, method, url, headers, auth, body, concurrency, timeout, retry, rate_limit, breaker, ordering, max_queue, on_full)",
        ]
    );
    let yaml = with_target("    kind: smtp\n    method: POST\n");
    assert_one(
        &yaml,
        "relay.yaml:4:11: targets.t.kind: ",
        "unknown target kind \"smtp\" (expected one of: http, slack, crm)",
    );
}

#[test]
fn rule_violations_are_reported() {
    let yaml = "source: { secrets: [x], path: webhooks, dedupe_window: 0s }\n\
                targets:\n  \
                  t:\n    \
                    kind: http\n    \
                    url: https://x.example\n    \
                    timeout: 0s\n    \
                    concurrency: 1025\n    \
                    retry: { initial: 0ms, max_attempts: 0 }\n\
                routes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_eq!(
        refused(yaml),
        [
            "relay.yaml:1:31: source.path: invalid path \"webhooks\" (must start with `/`)",
            "relay.yaml:6:14: targets.t.timeout: invalid duration \"0s\" (must be greater than zero)",
            "relay.yaml:7:18: targets.t.concurrency: invalid concurrency \"1025\" (expected a whole number from 1 to 1024)",
            "relay.yaml:8:23: targets.t.retry.initial: invalid duration \"0ms\" (must be greater than zero)",
            "relay.yaml:8:42: targets.t.retry.max_attempts: invalid max_attempts \"0\" (expected a whole number from 1 to 4294967295)",
        ]
    );
}

#[test]
fn storage_kinds() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        &format!("storage: {{ kind: redis, url: x }}\n{tail}"),
        "relay.yaml:1:18: storage.kind: ",
        "unknown storage kind \"redis\" (expected one of: sqlite, nats)",
    );
    let config = load(&format!("storage: {{ path: /var/lib/relay.db }}\n{tail}")).expect("valid");
    assert_eq!(
        config.storage,
        Storage::Sqlite {
            path: PathBuf::from("/var/lib/relay.db"),
            dead_letter_retention: Duration::from_secs(14 * 86_400),
            budget: StorageBudget::default(),
        }
    );
}

#[test]
fn dead_letter_retention_is_a_positive_duration() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        &format!("storage: {{ dead_letter_retention: 0s }}\n{tail}"),
        "relay.yaml:1:35: storage.dead_letter_retention: ",
        "must be greater than zero",
    );
    assert_one(
        &format!("storage: {{ dead_letter_retention: two weeks }}\n{tail}"),
        "relay.yaml:1:35: storage.dead_letter_retention: ",
        "expected a number and a unit",
    );
    let config = load(&format!(
        "storage: {{ dead_letter_retention: 36h }}\n{tail}"
    ))
    .expect("valid");
    assert_eq!(
        config.storage,
        Storage::Sqlite {
            path: PathBuf::from("./data/relay.db"),
            dead_letter_retention: Duration::from_secs(36 * 3600),
            budget: StorageBudget::default(),
        }
    );
}

#[test]
fn the_storage_budget_is_read_and_its_mistakes_located() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    assert_one(
        &format!("storage: {{ max_bytes: 1MiB }}\n{tail}"),
        "relay.yaml:1:23: storage.max_bytes: ",
        "must be at least 16MiB",
    );
    assert_one(
        &format!("storage: {{ min_free: 95% }}\n{tail}"),
        "relay.yaml:1:22: storage.min_free: ",
        "percentage from 0% to 90%",
    );
    assert_one(
        &format!("storage: {{ min_free: lots }}\n{tail}"),
        "relay.yaml:1:22: storage.min_free: ",
        "expected bytes or a number and a unit",
    );
    assert_one(
        &format!("storage: {{ target_share: 0% }}\n{tail}"),
        "relay.yaml:1:26: storage.target_share: ",
        "from 1% to 100%",
    );
    let config = load(&format!(
        "storage: {{ max_bytes: 2GiB, min_free: 1GiB, target_share: 30% }}\n{tail}"
    ))
    .expect("valid");
    let Storage::Sqlite { budget, .. } = config.storage else {
        panic!("a sqlite store: {:?}", config.storage)
    };
    assert_eq!(
        budget,
        StorageBudget {
            max_bytes: Some(2 << 30),
            min_free: MinFree::Bytes(1 << 30),
            target_share: 30,
        }
    );
    let config = load(&format!("storage: {{ min_free: 10% }}\n{tail}")).expect("valid");
    let Storage::Sqlite { budget, .. } = config.storage else {
        panic!("a sqlite store: {:?}", config.storage)
    };
    assert_eq!(budget.min_free, MinFree::Percent(10));
}

#[test]
fn syntax_errors_are_located_with_a_key_path() {
    let yaml = "source:\n  secrets: [x\ntargets: {}\n";
    let err = load(yaml).expect_err("syntax error");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    // The flow list swallows the next line, so the parser trips on its `:`.
    assert_eq!(
        err.to_string(),
        "relay.yaml:3:8: source.secrets[0]: illegal placement of ':' indicator"
    );
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let yaml = "listen: { address: nowhere }\nadmin: { address: \"0.0.0.0:9090\" }\nsource: { secrets: [x], dedupe_window: 1w }\ntargets:\n  a b: { kind: http, url: \"https://x.example\", concurrency: 0 }\n  t: { kind: http, url: \"https://x.example\", retry: { initial: 2m, max_delay: 1m } }\nroutes: [ { events: [\"*\"], to: [t, ghost] } ]\n";
    let lines = refused(yaml);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "listen.address",
            "admin.address",
            "source.dedupe_window",
            "targets.a b",
            "targets.a b.concurrency",
            "targets.t.retry.max_delay",
            "routes[0].to[1]",
        ],
        "{lines:#?}"
    );
}

#[test]
fn wrong_types_are_reported() {
    let yaml = "listen: 8443\nsource: { secrets: x, keep_unrouted: yes }\ntargets: { t: { kind: http, url: [a], concurrency: 2.5 } }\nroutes: { events: [\"*\"] }\n";
    let lines = refused(yaml);
    assert_eq!(
        lines,
        [
            "relay.yaml:1:9: listen: expected a mapping, found a string",
            "relay.yaml:2:20: source.secrets: expected a list, found a string",
            "relay.yaml:2:38: source.keep_unrouted: invalid boolean \"yes\" (expected true or false)",
            "relay.yaml:3:34: targets.t.url: expected a URL, found a list",
            "relay.yaml:3:52: targets.t.concurrency: invalid concurrency \"2.5\" (expected a whole number from 1 to 1024)",
            "relay.yaml:4:9: routes: expected a list, found a mapping",
        ]
    );
}

#[test]
fn tls_files_must_be_readable() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    let yaml = format!(
        "listen:\n  tls:\n    cert: /nonexistent/relay.crt\n    key: {}\n{tail}",
        env!("CARGO_MANIFEST_DIR")
    );
    let lines = refused(&yaml);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "relay.yaml:3:11: listen.tls.cert: cannot read \"/nonexistent/relay.crt\": "
        ),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("relay.yaml:4:10: listen.tls.key: cannot read "),
        "{lines:#?}"
    );
    assert!(lines[1].ends_with("it is a directory"), "{lines:#?}");
}

#[test]
fn tls_files_must_be_a_pem_certificate_and_its_key() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let with = |cert: &str, key: &str| {
        refused(&format!(
            "listen:\n  tls:\n    cert: {cert}\n    key: {key}\n{tail}"
        ))
    };
    let lines = with(manifest, &format!("{dir}/localhost.key"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("relay.yaml:3:11: listen.tls.cert: ")
            && lines[0].contains("Cargo.toml")
            && lines[0].contains("holds no certificate"),
        "{lines:#?}"
    );
    let lines = with(
        &format!("{dir}/localhost.crt"),
        &format!("{dir}/localhost.crt"),
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("relay.yaml:4:10: listen.tls.key: ")
            && lines[0].contains("localhost.crt")
            && lines[0].contains("no PEM private key"),
        "{lines:#?}"
    );
    let lines = with(&format!("{dir}/localhost.crt"), &format!("{dir}/other.key"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("listen.tls.key: ")
            && lines[0].contains("other.key")
            && lines[0].contains("does not fit the certificate"),
        "{lines:#?}"
    );
}

#[test]
fn empty_and_non_mapping_documents_are_refused() {
    let lines = refused("");
    assert_eq!(
        lines,
        [
            "relay.yaml:1:1: source: missing required key `source`",
            "relay.yaml:1:1: targets: missing required key `targets`",
            "relay.yaml:1:1: routes: missing required key `routes`",
        ]
    );
    assert_eq!(
        refused("- a\n- b\n"),
        ["relay.yaml:1:1: expected a mapping, found a list"]
    );
}

// Regression: #5 (a config fuzz seed with `cert: /dev/zero` read the device as PEM until it ran
// out of memory).
#[test]
fn tls_files_must_be_regular_files() {
    let tail = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";
    let lines = refused(&format!(
        "listen:\n  tls:\n    cert: /dev/zero\n    key: /dev/null\n{tail}"
    ));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines[0],
        "relay.yaml:3:11: listen.tls.cert: cannot read \"/dev/zero\": it is not a regular file"
    );
    assert!(
        lines[1].ends_with("\"/dev/null\": it is not a regular file"),
        "{lines:#?}"
    );
}
