//! The configuration reference (`docs/config-reference.md`), rendered from the schema so that
//! it lists exactly the keys, defaults and descriptions editors get.
//!
//! One section per object, headed by its key path (`targets.NAME.retry`) where it is first
//! used, children right after their parent; later uses link to it. Keys are in the order of
//! [`super::keys::key_lists`], the schema types' field order, which is the order of a typical file.
//! Target kinds share their delivery keys, which are listed once. Scalar types (`Duration`,
//! `Template`, ...) are described once, at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::keys::key_lists;

const DEFS: &str = "#/definitions/";

/// The reference, as Markdown with a final newline.
pub fn markdown() -> String {
    let schema = super::value();
    let mut doc = Doc {
        defs: schema
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        headings: BTreeMap::new(),
    };
    let mut out = format!(
        "# Configuration reference\n\n\
         <!-- Generated from src/config/schema.rs by `textus-relay schema --markdown`; do not \
         edit. A test checks that this file is current. -->\n\n\
         {}\n\n\
         Editors validate and complete relay.yaml with the JSON Schema \
         [`schema/relay.schema.json`](../schema/relay.schema.json), printed by \
         `textus-relay schema`. Every value may also be written as `${{VAR}}` or \
         `${{VAR:-default}}`. `textus-relay check` applies the rules no schema can: that `to` \
         names a defined target, that templates compile, that TLS files can be read.\n",
        paragraph(&text(&schema, "description")),
    );
    out.push_str(&doc.section("", "Top level", &schema, false));
    out.push_str(&doc.value_types());
    out
}

/// The definitions, and the heading each object definition was given.
struct Doc {
    defs: Map<String, Value>,
    headings: BTreeMap<String, String>,
}

impl Doc {
    /// The section of the object at `path`, then the sections of the objects it introduces.
    fn section(&mut self, path: &str, heading: &str, schema: &Value, describe: bool) -> String {
        let mut out = format!("\n## {heading}\n\n");
        if describe {
            let description = text(schema, "description");
            if !description.is_empty() {
                let _ = write!(out, "{}\n\n", paragraph(&description));
            }
        }
        let mut children = Vec::new();
        match schema.get("oneOf").and_then(Value::as_array) {
            Some(variants) if is_tagged(variants) => {
                out.push_str(&self.variants(path, variants, &mut children));
            }
            Some(variants) => {
                let merged = merge(variants);
                out.push_str(&self.table(path, path, &merged, &[], &mut children));
            }
            None => out.push_str(&self.table(path, path, schema, &[], &mut children)),
        }
        for (path, heading, schema) in children {
            out.push_str(&self.section(&path, &heading, &schema, true));
        }
        out
    }

    /// A union tagged by `kind`: each kind's own keys, then the keys every kind shares.
    fn variants(
        &mut self,
        path: &str,
        variants: &[Value],
        children: &mut Vec<(String, String, Value)>,
    ) -> String {
        let first = properties(&variants[0]);
        let shared: Vec<String> = first
            .keys()
            .filter(|key| *key != "kind")
            .filter(|key| {
                variants
                    .iter()
                    .all(|v| properties(v).get(*key) == first.get(*key))
            })
            .cloned()
            .collect();
        let all_kinds = format!("`{path}`: every kind");
        let mut out = String::new();
        for variant in variants {
            let kind = tag(variant).unwrap_or_default();
            let _ = write!(
                out,
                "### `kind: {kind}`\n\n{}\n\n",
                paragraph(&text(variant, "description"))
            );
            let keys_of = format!("{path} kind: {kind}");
            out.push_str(&self.table(path, &keys_of, variant, &shared, children));
            let _ = write!(
                out,
                "\nand the keys of [every kind](#{}).\n\n",
                slug(&all_kinds)
            );
        }
        let mut common = Map::new();
        for key in &shared {
            common.insert(key.clone(), first[key].clone());
        }
        let common = serde_json::json!({ "properties": common });
        let keys_of = format!("{path} kind: {}", tag(&variants[0]).unwrap_or_default());
        let _ = write!(out, "### {all_kinds}\n\n");
        out.push_str(&self.table(path, &keys_of, &common, &[], children));
        out
    }

    /// The key table of an object at `path`, in the order of the key list `keys_of`, without
    /// the keys in `skip`.
    fn table(
        &mut self,
        path: &str,
        keys_of: &str,
        schema: &Value,
        skip: &[String],
        children: &mut Vec<(String, String, Value)>,
    ) -> String {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let order: Vec<&str> = key_lists()
            .into_iter()
            .find(|(p, _)| *p == keys_of)
            .map(|(_, keys)| keys)
            .unwrap_or_default();
        let mut keys: Vec<&String> = properties(schema)
            .keys()
            .filter(|key| !skip.contains(key))
            .collect();
        keys.sort_by_key(|key| order.iter().position(|k| k == key).unwrap_or(usize::MAX));
        let mut out =
            String::from("| key | value | default | description |\n| --- | --- | --- | --- |\n");
        for key in keys {
            let property = &properties(schema)[key];
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let value = self.describe(&child, property, children);
            let default = match property.get("default") {
                _ if required.contains(&key.as_str()) => "required".to_owned(),
                Some(Value::String(s)) => format!("`{s}`"),
                Some(other) => format!("`{other}`"),
                None => String::new(),
            };
            let description = paragraph(&text(property, "description"));
            let _ = writeln!(
                out,
                "| `{key}` | {value} | {default} | {} |",
                cell(&description)
            );
        }
        out
    }

    /// A short description of a value's type, linking to its section; an object seen for
    /// the first time is added to `children`.
    fn describe(
        &mut self,
        path: &str,
        schema: &Value,
        children: &mut Vec<(String, String, Value)>,
    ) -> String {
        if schema == &Value::Bool(true) {
            return "any YAML".to_owned();
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix(DEFS).unwrap_or(reference).to_owned();
            let def = self.defs.get(&name).cloned().unwrap_or_default();
            if !is_object(&def) {
                return format!("[{name}](#{})", slug(&name));
            }
            let heading = match self.headings.get(&name) {
                Some(heading) => heading.clone(),
                None => {
                    let heading = format!("`{path}`");
                    self.headings.insert(name, heading.clone());
                    children.push((path.to_owned(), heading.clone(), def));
                    heading
                }
            };
            return format!("[object](#{})", slug(&heading));
        }
        // Draft-07 ignores the siblings of a `$ref`, so a described reference is wrapped.
        if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            return self.describe(path, only, children);
        }
        if let Some(value) = schema.get("const") {
            return format!("`{}`", plain(value));
        }
        if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array) {
            // The text spellings of numbers and the `${VAR}` alternative are said once, at
            // the top; null is what leaving a key out means.
            let shown: Vec<&Value> = alternatives
                .iter()
                .filter(|a| !is_null(a) && !is_text_spelling(a))
                .collect();
            let parts: Vec<String> = shown
                .into_iter()
                .map(|a| self.describe(path, a, children))
                .collect();
            return parts.join(" or ");
        }
        let words = schema
            .get("enum")
            .or_else(|| schema.get("pattern").and(schema.get("examples")));
        if let Some(words) = words.and_then(Value::as_array) {
            let words: Vec<String> = words.iter().map(|w| format!("`{}`", plain(w))).collect();
            return words.join(", ");
        }
        match types(schema).as_slice() {
            ["integer"] => match (schema.get("minimum"), schema.get("maximum")) {
                (Some(min), Some(max)) => format!("whole number, {min} to {max}"),
                _ => "whole number".to_owned(),
            },
            ["array"] => match schema.get("items") {
                Some(items) => {
                    let item = self.describe(&format!("{path}[]"), items, children);
                    format!("list of {item}")
                }
                None => "list".to_owned(),
            },
            ["object"] => match schema.get("additionalProperties") {
                Some(values) if values.is_object() => {
                    let name = if path == "targets" { "NAME" } else { "KEY" };
                    let of = self.describe(&format!("{path}.{name}"), values, children);
                    format!("map of {of}")
                }
                _ => "object".to_owned(),
            },
            [one] => (*one).to_owned(),
            _ => "any YAML".to_owned(),
        }
    }

    /// The value types: every definition that is not an object.
    fn value_types(&self) -> String {
        let mut out = String::from("\n## Value types\n");
        for (name, def) in &self.defs {
            if is_object(def) {
                continue;
            }
            let _ = write!(
                out,
                "\n### {name}\n\n{}",
                paragraph(&text(def, "description"))
            );
            if let Some(examples) = def.get("examples").and_then(Value::as_array) {
                let examples: Vec<String> =
                    examples.iter().map(|e| format!("`{}`", plain(e))).collect();
                let _ = write!(out, " Examples: {}.", examples.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

/// The variants of an untagged union (`auth`) as one object: their keys together.
fn merge(variants: &[Value]) -> Value {
    let mut merged = Map::new();
    for variant in variants {
        for (key, schema) in properties(variant) {
            let mut schema = schema.clone();
            if let (Some(object), Some(description)) =
                (schema.as_object_mut(), variant.get("description"))
            {
                object
                    .entry("description")
                    .or_insert_with(|| description.clone());
            }
            merged.insert(key.clone(), schema);
        }
    }
    serde_json::json!({ "properties": merged })
}

fn text(schema: &Value, key: &str) -> String {
    schema
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Doc comment lines joined into one paragraph.
fn paragraph(text: &str) -> String {
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// Table cells cannot hold `|`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn properties(schema: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&EMPTY)
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|t| *t != "null")
    .collect()
}

fn tag(variant: &Value) -> Option<&str> {
    properties(variant)
        .get("kind")
        .and_then(|k| k.get("const"))
        .and_then(Value::as_str)
}

/// Whether a definition is an object (or a union of objects) rather than a value type.
fn is_object(schema: &Value) -> bool {
    schema.get("properties").is_some() || schema.get("oneOf").is_some()
}

fn is_null(schema: &Value) -> bool {
    types(schema).is_empty() && schema.get("type").is_some()
}

/// A string alternative that only admits another spelling of the value: digits for a
/// number, `"true"` for a boolean, a `${VAR}` reference.
fn is_text_spelling(schema: &Value) -> bool {
    types(schema) == ["string"]
        && schema.get("pattern").is_some()
        && schema.get("examples").is_none()
}

/// A union whose variants are told apart by a `kind` constant.
fn is_tagged(variants: &[Value]) -> bool {
    !variants.is_empty() && variants.iter().all(|v| tag(v).is_some())
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}
