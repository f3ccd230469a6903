//! `textus-relay schema`: the committed schema and reference are its output, every config in
//! the repository points at the schema and passes it, and a misspelled key fails it, as it
//! fails `check`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use textus_relay::config::Config;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn schema() -> Value {
    let (code, out, err) = cli(&["schema"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("a valid draft-07 schema")
}

/// The schema's complaints about `doc`, one line each.
fn complaints(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_and_reference_are_the_commands_output() {
    for (args, file) in [
        (&["schema"][..], textus_relay::config::schema::SCHEMA_PATH),
        (&["schema", "--markdown"][..], "docs/config-reference.md"),
    ] {
        let (code, out, err) = cli(args);
        assert_eq!(code, 0, "{err}");
        let committed = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap_or_default();
        assert!(
            committed == out,
            "{file} is not the output of `textus-relay {}`; regenerate it with\n    \
             cargo run -q -- {} > {file}",
            args.join(" "),
            args.join(" ")
        );
    }
}

/// relay.yaml and every example: the configs a user copies.
fn configs() -> Vec<PathBuf> {
    let mut configs = vec![Path::new(ROOT).join("relay.yaml")];
    for entry in std::fs::read_dir(Path::new(ROOT).join("examples")).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            configs.push(path);
        }
    }
    assert_eq!(
        configs.len(),
        4,
        "relay.yaml and three examples: {configs:?}"
    );
    configs
}

/// The variables the configs need set, as a deployment sets them; the others keep their
/// `${VAR:-default}`.
fn env(name: &str) -> Option<String> {
    let value = match name {
        "TEXTUS_WEBHOOK_SECRET" | "HUBSPOT_TOKEN" | "SF_CLIENT_ID" | "SF_CLIENT_SECRET" => "s3cret",
        "WAREHOUSE_SIGNING_SECRET" => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "SF_DOMAIN" => "example.my.salesforce.com",
        "SLACK_WEBHOOK_URL" => "https://hooks.slack.com/services/T0/B0/x",
        _ => return None,
    };
    Some(value.to_owned())
}

#[test]
fn every_config_in_the_repo_names_the_schema_and_passes_it_and_the_walker() {
    let validator = validator();
    let schema_file = Path::new(ROOT)
        .join(textus_relay::config::schema::SCHEMA_PATH)
        .canonicalize()
        .expect("the committed schema");
    for path in configs() {
        let text = std::fs::read_to_string(&path).expect("config");
        let first = text.lines().next().unwrap_or_default();
        let relative = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: starts with {first:?}", path.display()));
        let dir = path.parent().expect("a folder");
        assert_eq!(
            dir.join(relative).canonicalize().ok().as_ref(),
            Some(&schema_file),
            "{}: $schema={relative} is not the schema file",
            path.display()
        );
        let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
        let problems = complaints(&validator, &doc);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
        if let Err(e) = Config::from_yaml_str(&text, &path, &env) {
            panic!(
                "the schema accepts {} but the walker does not:\n{e}",
                path.display()
            );
        }
    }
}

#[test]
fn a_misspelled_key_fails_the_schema_as_it_fails_the_walker() {
    let validator = validator();
    let valid = json!({
        "source": { "secrets": ["s"] },
        "targets": {
            "warehouse": { "kind": "http", "url": "https://x.example", "retry": { "initial": "1s" } },
            "crm": { "kind": "crm", "url": "https://x.example", "auth": { "bearer": "t" } },
        },
        "routes": [{ "events": ["*"], "to": ["warehouse", "crm"] }],
    });
    assert_eq!(complaints(&validator, &valid), Vec::<String>::new());
    let mistakes: [(&str, &str, Value); 6] = [
        ("", "listne", json!({})),
        ("/targets/warehouse", "concurrensy", json!(4)),
        ("/targets/warehouse/retry", "intial", json!("1s")),
        // A key of another kind of target.
        ("/targets/warehouse", "templates", json!({})),
        (
            "/targets/crm/auth",
            "basic",
            json!({ "username": "u", "password": "p" }),
        ),
        ("/routes/0", "event", json!(["*"])),
    ];
    for (at, key, value) in mistakes {
        let mut doc = valid.clone();
        doc.pointer_mut(at)
            .and_then(Value::as_object_mut)
            .expect("an object")
            .insert(key.to_owned(), value);
        assert!(
            !complaints(&validator, &doc).is_empty(),
            "the schema accepts {key:?} at {at:?}"
        );
        let walker = Config::from_yaml_str(&doc.to_string(), Path::new("relay.yaml"), &env);
        assert!(walker.is_err(), "the walker accepts {key:?} at {at:?}");
    }
}

#[test]
fn schema_values_take_env_references_where_the_walker_does() {
    let validator = validator();
    let doc = json!({
        "source": { "secrets": ["s"], "max_body": "${MAX_BODY:-1MiB}", "keep_unrouted": "${KEEP}" },
        "targets": {
            "t": {
                "kind": "http", "url": "${URL}", "concurrency": "${WORKERS:-8}",
                "timeout": "${T}", "rate_limit": "${RATE}", "ordering": "${ORDER}",
            },
        },
        "routes": [{ "events": ["${EVENTS}"], "to": ["t"], "priority": "${P:-high}" }],
    });
    assert_eq!(complaints(&validator, &doc), Vec::<String>::new());
    let set = |name: &str| {
        let value = match name {
            "URL" => "https://x.example",
            "KEEP" => "true",
            "WORKERS" => "8",
            "T" => "5s",
            "RATE" => "3/s",
            "ORDER" => "fifo",
            "EVENTS" => "message.received",
            _ => return None,
        };
        Some(value.to_owned())
    };
    let config = Config::from_yaml_str(&doc.to_string(), Path::new("relay.yaml"), &set)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.targets[0].concurrency, 8);
}

#[test]
fn the_schema_tells_the_storage_kinds_apart_as_the_walker_does() {
    let validator = validator();
    let with_storage = |storage: Value| {
        json!({
            "storage": storage,
            "source": { "secrets": ["s"] },
            "targets": { "t": { "kind": "http", "url": "https://x.example" } },
            "routes": [{ "events": ["*"], "to": ["t"] }],
        })
    };
    let walker =
        |doc: &Value| Config::from_yaml_str(&doc.to_string(), Path::new("relay.yaml"), &env);
    for valid in [
        json!({}),
        json!({ "kind": "sqlite", "max_bytes": "1GiB" }),
        json!({ "kind": "nats", "urls": ["nats://a:4222", "b:4222"], "replicas": 1,
                "auth": { "user": "u", "password": "${NATS_PASSWORD:-p}" }, "tls": {} }),
    ] {
        let doc = with_storage(valid);
        assert_eq!(complaints(&validator, &doc), Vec::<String>::new(), "{doc}");
        assert!(walker(&doc).is_ok(), "{doc}");
    }
    for invalid in [
        // A key of the other kind, either way round.
        json!({ "urls": ["nats://a:4222"] }),
        json!({ "kind": "nats", "urls": ["nats://a:4222"], "path": "./relay.db" }),
        json!({ "kind": "nats" }),
        json!({ "kind": "nats", "urls": [] }),
        json!({ "kind": "nats", "urls": ["nats://a:4222"], "replicas": 6 }),
        json!({ "kind": "nats", "urls": ["nats://a:4222"], "prefix": "a.b" }),
        json!({ "kind": "nats", "urls": ["nats://a:4222"], "auth": { "token": "t", "user": "u", "password": "p" } }),
        json!({ "kind": "nats", "urls": ["nats://a:4222"], "auth": { "user": "u" } }),
        json!({ "kind": "redis" }),
    ] {
        let doc = with_storage(invalid);
        assert!(
            !complaints(&validator, &doc).is_empty(),
            "the schema accepts {doc}"
        );
        assert!(walker(&doc).is_err(), "the walker accepts {doc}");
    }
}
