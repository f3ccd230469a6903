//! The schema against the reader: every object with the keys serde reads (which holds the
//! hand-written schemas of the two `auth` objects, and `kind` and the flattened delivery keys, to
//! the derived types), the same defaults, value patterns that accept what the parsers accept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use super::super::{Config, EventPattern as Pattern, TargetKind, nats, reader, storage, units};
use super::keys::key_lists;
use super::value;

/// The key path of every object in `schema`, with its keys, named as in [`KEY_LISTS`].
#[derive(Default)]
struct Objects {
    keys: BTreeMap<String, BTreeSet<String>>,
    problems: Vec<String>,
}

impl Objects {
    fn of(schema: &Value) -> Objects {
        let mut objects = Objects::default();
        objects.visit(schema, "", "", schema);
        objects
    }

    fn resolve<'s>(root: &'s Value, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/definitions/");
                &root["definitions"][name]
            }
            None => schema,
        }
    }

    fn record(&mut self, path: &str, keys: BTreeSet<String>) {
        if let Some(seen) = self.keys.get(path)
            && *seen != keys
        {
            self.problems.push(format!(
                "{path:?} has keys {seen:?} in one place and {keys:?} in another"
            ));
        }
        self.keys.insert(path.to_owned(), keys);
    }

    /// Records the object(s) in `schema` under `name` (its key list's path); keys below
    /// it are at `path.KEY`.
    fn visit(&mut self, root: &Value, name: &str, path: &str, schema: &Value) {
        let schema = Self::resolve(root, schema);
        let child = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        // `allOf: [{ $ref }]` is how draft-07 gives a reference a description.
        let alternatives = ["anyOf", "allOf"]
            .into_iter()
            .filter_map(|key| schema.get(key).and_then(Value::as_array))
            .flatten();
        for alternative in alternatives {
            self.visit(root, name, path, alternative);
        }
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            let mut union = BTreeSet::new();
            for variant in variants {
                let properties = variant["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                match properties.get("kind").and_then(|k| k.get("const")) {
                    // Tagged by `kind`: each variant is an object of its own.
                    Some(Value::String(kind)) => {
                        self.visit(root, &format!("{path} kind: {kind}"), path, variant);
                    }
                    // One key of several (`auth`): one object with all of them.
                    _ => {
                        self.closed(variant, name);
                        for (key, property) in &properties {
                            union.insert(key.clone());
                            self.visit(root, &child(key), &child(key), property);
                        }
                    }
                }
            }
            if !union.is_empty() {
                self.record(name, union);
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            self.closed(schema, name);
            self.record(name, properties.keys().cloned().collect());
            for (key, property) in properties {
                self.visit(root, &child(key), &child(key), property);
            }
        }
        if let Some(items) = schema.get("items") {
            let path = format!("{path}[]");
            self.visit(root, &path, &path, items);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let key = if path == "targets" { "NAME" } else { "KEY" };
            let path = child(key);
            self.visit(root, &path, &path, values);
        }
    }

    fn closed(&mut self, schema: &Value, name: &str) {
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            self.problems.push(format!(
                "{name:?} accepts unknown keys (add deny_unknown_fields)"
            ));
        }
    }
}

#[test]
fn every_object_has_exactly_the_keys_serde_reads() {
    let objects = Objects::of(&value());
    assert!(objects.problems.is_empty(), "{:#?}", objects.problems);
    let walker: BTreeMap<String, BTreeSet<String>> = key_lists()
        .into_iter()
        .map(|(path, keys)| {
            let set: BTreeSet<String> = keys.iter().copied().map(str::to_owned).collect();
            assert_eq!(set.len(), keys.len(), "{path:?} lists a key twice");
            ((*path).to_owned(), set)
        })
        .collect();
    for (path, keys) in &objects.keys {
        let Some(expected) = walker.get(path) else {
            panic!("the schema has an object at {path:?} (keys {keys:?}) that KEY_LISTS lacks");
        };
        assert_eq!(
            keys, expected,
            "{path:?}: the schema's keys (left) differ from serde's (right)"
        );
    }
    for path in walker.keys() {
        assert!(
            objects.keys.contains_key(path),
            "KEY_LISTS has {path:?}, which is no object of the schema"
        );
    }
}

/// Walks `instance` along `schema`, inserting every absent key that has a `default`. Returns
/// where in the schema each default it used is written.
fn fill_defaults(
    root: &Value,
    schema: &Value,
    at: String,
    instance: &mut Value,
    used: &mut BTreeSet<String>,
) {
    let (schema, at) = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => (
            &root["definitions"][reference.trim_start_matches("#/definitions/")],
            reference.to_owned(),
        ),
        None => (schema, at),
    };
    for key in ["anyOf", "allOf"] {
        let alternatives = schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for (i, alternative) in alternatives.enumerate() {
            fill_defaults(root, alternative, format!("{at}/{key}/{i}"), instance, used);
        }
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        for (i, variant) in variants.iter().enumerate() {
            let kind = variant.pointer("/properties/kind/const");
            // Without a `kind`, the variant whose `kind` has a default is the one that applies.
            let chosen = match instance.get("kind") {
                Some(written) => kind == Some(written),
                None => kind == variant.pointer("/properties/kind/default"),
            };
            if kind.is_some() && chosen && instance.is_object() {
                fill_defaults(root, variant, format!("{at}/oneOf/{i}"), instance, used);
            }
        }
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        instance.as_object_mut(),
    ) {
        for (key, property) in properties {
            let at = format!("{at}/properties/{key}");
            match (object.get_mut(key), property.get("default")) {
                (None, Some(default)) => {
                    object.insert(key.clone(), default.clone());
                    used.insert(at);
                }
                (Some(value), _) => fill_defaults(root, property, at, value, used),
                (None, None) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), instance.as_array_mut()) {
        for value in array {
            fill_defaults(root, items, format!("{at}/items"), value, used);
        }
    }
    if let (Some(values), Some(object)) = (
        schema.get("additionalProperties").filter(|v| v.is_object()),
        instance.as_object_mut(),
    ) {
        for value in object.values_mut() {
            fill_defaults(
                root,
                values,
                format!("{at}/additionalProperties"),
                value,
                used,
            );
        }
    }
}

/// Where each `default` of the schema is written, as `fill_defaults` names them.
fn all_defaults(schema: &Value, at: String, found: &mut BTreeSet<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    for (key, value) in object {
        match key.as_str() {
            "default" => {
                found.insert(at.clone());
            }
            "definitions" => {
                for (name, def) in value.as_object().into_iter().flatten() {
                    all_defaults(def, format!("#/definitions/{name}"), found);
                }
            }
            "properties" => {
                for (name, property) in value.as_object().into_iter().flatten() {
                    all_defaults(property, format!("{at}/properties/{name}"), found);
                }
            }
            "anyOf" | "allOf" | "oneOf" => {
                for (i, alternative) in value.as_array().into_iter().flatten().enumerate() {
                    all_defaults(alternative, format!("{at}/{key}/{i}"), found);
                }
            }
            "items" | "additionalProperties" => all_defaults(value, format!("{at}/{key}"), found),
            _ => {}
        }
    }
}

#[test]
fn every_default_in_the_schema_is_what_leaving_the_key_out_gives() {
    // Every object that has defaults is present, so every default applies somewhere.
    // `max_queue` is set because `on_full` is refused without it.
    let base = json!({
        "listen": {}, "admin": {}, "storage": {},
        "source": { "secrets": ["s"] },
        "targets": {
            "h": { "kind": "http", "url": "https://h.example", "max_queue": 9, "retry": {}, "breaker": {} },
            "s": { "kind": "slack", "url": "https://s.example", "max_queue": 9, "retry": {}, "breaker": {} },
            "c": { "kind": "crm", "url": "https://c.example", "max_queue": 9, "retry": {}, "breaker": {} },
        },
        "routes": [{ "events": ["*"], "to": ["h", "s", "c"] }],
    });
    // The other kind of store has defaults of its own.
    let mut nats = base.clone();
    nats["storage"] = json!({ "kind": "nats", "urls": ["nats://127.0.0.1:4222"] });
    let schema = value();
    let mut used = BTreeSet::new();
    let mut filled = base.clone();
    fill_defaults(&schema, &schema, "#".to_owned(), &mut filled, &mut used);
    let mut nats_filled = nats.clone();
    fill_defaults(
        &schema,
        &schema,
        "#".to_owned(),
        &mut nats_filled,
        &mut used,
    );
    let mut every = BTreeSet::new();
    all_defaults(&schema, "#".to_owned(), &mut every);
    assert_eq!(
        used, every,
        "defaults used (left) and in the schema (right)"
    );
    assert!(used.len() >= 20, "{used:#?}");

    // JSON is YAML: the reader reads both texts. Inserted keys move the crm URL template,
    // which remembers where it was written.
    let load = |doc: &Value| {
        let mut config =
            Config::from_yaml_str(&doc.to_string(), Path::new("relay.yaml"), &|_| None)
                .unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
        for target in &mut config.targets {
            if let TargetKind::Crm(crm) = &mut target.kind {
                (crm.url.line, crm.url.column) = (0, 0);
            }
        }
        config
    };
    assert_eq!(load(&filled), load(&base), "{filled:#}");
    assert_eq!(load(&nats_filled), load(&nats), "{nats_filled:#}");
}

/// A scalar definition of the schema as a schema of its own.
fn validator(name: &str) -> jsonschema::Validator {
    let schema = value();
    let standalone = json!({
        "$schema": schema["$schema"],
        "definitions": schema["definitions"],
        "$ref": format!("#/definitions/{name}"),
    });
    jsonschema::validator_for(&standalone).expect("a valid schema")
}

/// Asserts that the schema `name` accepts exactly the samples `walker` accepts.
fn agree(name: &str, samples: &[&str], walker: impl Fn(&str) -> bool) {
    let validator = validator(name);
    let mut accepted = 0;
    for sample in samples {
        let valid = walker(sample);
        assert_eq!(
            validator.is_valid(&json!(sample)),
            valid,
            "{name} {sample:?}: the parser says {valid}"
        );
        accepted += usize::from(valid);
    }
    assert!(
        accepted > 0 && accepted < samples.len(),
        "{name}: samples of both kinds"
    );
}

#[test]
fn value_patterns_accept_what_the_parsers_accept() {
    let durations = [
        "500ms", "30s", "10m", "12h", "7d", "0s", "007s", "1x", "", "s", "10", "1.5s", "-1s",
        " 1s", "1 s", "1S", "1m30s",
    ];
    agree("Duration", &durations, |s| units::duration(s).is_ok());
    agree("PositiveDuration", &durations, |s| {
        units::duration(s).is_ok_and(|d| !d.is_zero())
    });
    let sizes = [
        "1024", "10B", "64KiB", "2KB", "1MiB", "3MB", "1GiB", "1GB", "0", "0KiB", "1mb", "MiB",
        "1.5MiB", "1 MiB", "-1", "1TiB", "",
    ];
    agree("Size", &sizes, |s| units::size(s).is_ok_and(|n| n > 0));
    let free = [
        "5%", "0%", "90%", "91%", "100%", "05%", "1GiB", "0", "512MiB", "%", "5.5%", "-1%", "5 %",
        "1TiB", "",
    ];
    agree("MinFree", &free, |s| storage::min_free(s).is_ok());
    let percents = [
        "50%", "1%", "100%", "0%", "101%", "050%", "50", "%", "5.5%", "",
    ];
    agree("Percent", &percents, |s| storage::target_share(s).is_ok());
    let rates = [
        "1/s", "100/10s", "30/m", "5/2h", "10/500ms", "1", "/s", "1/", "0/s", "1/0s", "1/x", "a/s",
        "1/s/s", "1/10",
    ];
    agree("Rate", &rates, |s| units::rate(s).is_ok());
    let patterns = [
        "*",
        "contact.*",
        "a.b_2.*",
        "message.received",
        "ping",
        "con*",
        "a..b",
        "",
        ".a",
        "a.",
        "*.a",
        "a.*.b",
        "A.b",
        "a b",
        "a.**",
        ".*",
        "a-b",
    ];
    agree("EventPattern", &patterns, |s| Pattern::parse(s).is_ok());
    let servers = [
        "nats://nats-1:4222",
        "tls://10.0.0.1:4222",
        "NATS://x",
        "nats://[::1]:4222",
        "nats-2:4222",
        "localhost",
        "nats://x:4222/",
        "http://x:4222",
        "ws://x:8080",
        "nats://u:p@x:4222",
        "nats://x:4222/path",
        "nats://",
        "nats://x:4222?a=b",
        "",
        "two words",
    ];
    agree("NatsUrl", &servers, |s| {
        let text = reader::Text {
            value: s.to_owned(),
            quoted: format!("{s:?}"),
        };
        nats::server_url(&text).is_ok()
    });
    let (longest, too_long) = ("x".repeat(32), "x".repeat(33));
    let prefixes = [
        "textus-relay",
        "a",
        "A_1-b",
        longest.as_str(),
        too_long.as_str(),
        "",
        "a.b",
        "a*",
        "a>",
        "a b",
        "a/b",
        "é",
    ];
    agree("NatsPrefix", &prefixes, |s| nats::prefix(s).is_ok());
    let booleans = [
        "true", "True", "TRUE", "false", "FALSE", "yes", "no", "1", "on", "",
    ];
    agree("Bool", &booleans, |s| reader::boolean(s).is_ok());
    // Environment references stand for any value, in every type.
    for name in [
        "Duration",
        "PositiveDuration",
        "Size",
        "Rate",
        "EventPattern",
        "Bool",
        "HttpUrl",
        "TargetName",
        "NatsUrl",
        "NatsPrefix",
    ] {
        let validator = validator(name);
        for reference in ["${X}", "${RATE:-1/s}", "x${_A1}y"] {
            assert!(
                validator.is_valid(&json!(reference)),
                "{name} {reference:?}"
            );
        }
        assert!(
            !validator.is_valid(&json!("${1X}")),
            "{name}: invalid variable name"
        );
    }
    // Numbers and booleans also come unquoted.
    assert!(validator("Bool").is_valid(&json!(true)));
    assert!(validator("Size").is_valid(&json!(65536)));
    assert!(!validator("Size").is_valid(&json!(0)));
}
