//! The rule pass's context: the raw types' located values (`de.rs`) and the problems found.
//!
//! Every reader reports what is wrong at the node that is wrong, with its key path,
//! and keeps going: a `None` or [`Field::Invalid`] result means "already reported".
//! The caller then only has to combine results, never to report type errors itself.
//!
//! Messages quote the offending text, except text that came from the environment
//! (it may be a secret): that is shown as written in the file, e.g. `"${URL}" as
//! expanded`. Secrets are never quoted at all; their readers build their own messages.

use super::Secret;
use serde::de::DeserializeOwned;

use super::de::{self, Loc, Slot, UnknownKey};
use super::env;
use super::error::{Pos, Problems};
use super::tree::{Node, Value};

/// How the loaders look environment variables up.
pub(super) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// State of one validation pass: what the deserializer found (`de.rs`), and the problems.
pub(super) struct Ctx<'e> {
    env: Env<'e>,
    pub(super) problems: Problems,
    slots: Vec<Slot<'e>>,
    /// Unknown keys, reported when the pass ends (see [`Ctx::finish`]).
    pub(super) unknown: Vec<UnknownKey>,
}

/// A scalar value after `${VAR}` expansion.
pub(super) struct Text {
    pub(super) value: String,
    /// How to show the value in a message.
    pub(super) quoted: String,
}

/// A mapping whose keys are all strings, duplicates already reported and dropped.
pub(super) struct Mapping<'n> {
    pub(super) path: String,
    pub(super) at: Pos,
    pub(super) entries: Vec<Entry<'n>>,
}

#[derive(Clone, Copy)]
pub(super) struct Entry<'n> {
    pub(super) key: &'n str,
    pub(super) key_at: Pos,
    pub(super) value: &'n Node,
}

/// The outcome of reading an optional key.
pub(super) enum Field<T> {
    /// Not in the file (or written as null): the default applies.
    Absent,
    /// Present but wrong; already reported.
    Invalid,
    Valid(T),
}

impl<T> Field<T> {
    /// The value or `default`; `None` if invalid.
    pub(super) fn or(self, default: T) -> Option<T> {
        match self {
            Field::Absent => Some(default),
            Field::Invalid => None,
            Field::Valid(value) => Some(value),
        }
    }

    /// The value, or the default `default` gives; `None` if invalid.
    pub(super) fn or_else(self, default: impl FnOnce() -> Option<T>) -> Option<T> {
        match self {
            Field::Absent => default(),
            Field::Invalid => None,
            Field::Valid(value) => Some(value),
        }
    }

    /// For keys whose absence means "none": `Some(None)` if absent, `None` if invalid.
    pub(super) fn optional(self) -> Option<Option<T>> {
        match self {
            Field::Absent => Some(None),
            Field::Invalid => None,
            Field::Valid(value) => Some(Some(value)),
        }
    }
}

/// `parent.key`, or `key` at the top level.
///
/// A key that would make the path ambiguous is written in brackets and quotes:
/// `templates["message.received"]`, `templates["*"]`, `targets[""]`. That is any key
/// with `.`, `[`, `]`, `"` or `*` in it (event types have dots, and `*` reads as a
/// wildcard), and the empty key.
pub(super) fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && !key.contains(['.', '[', ']', '"', '*']);
    match (plain, parent.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{key:?}]"),
    }
}

/// `parent[index]`.
pub(super) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// "a duration", "an integer".
fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}

/// Expands `${VAR}` in `raw`, with how to show the result in a message.
pub(super) fn expand(raw: &str, env: Env<'_>) -> Result<Text, String> {
    let expanded = env::expand(raw, env)?;
    Ok(if expanded.from_env {
        Text {
            value: expanded.value,
            quoted: format!("{raw:?} as expanded"),
        }
    } else {
        Text {
            quoted: format!("{:?}", expanded.value),
            value: expanded.value,
        }
    })
}

impl<'e> Ctx<'e> {
    pub(super) fn new(env: Env<'e>) -> Self {
        Ctx {
            env,
            problems: Problems::default(),
            slots: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// Deserializes `node`, at key path `path`, into the raw type `T` (`de.rs`), keeping what
    /// it found for the rule pass. `partial`: `T` is some of the top-level sections only.
    pub(super) fn read<T: DeserializeOwned>(
        &mut self,
        node: &'e Node,
        path: &str,
        partial: bool,
    ) -> Option<T> {
        let (raw, found) = de::read::<T>(node, path, self.env, partial, self.slots.len());
        self.slots.extend(found.slots);
        self.unknown.extend(found.unknown);
        self.problems.extend(found.problems);
        match raw {
            Ok(raw) => Some(raw),
            Err(err) => {
                self.report(node.at, path, err.to_string());
                None
            }
        }
    }

    /// The problems of the pass, unknown keys included, in reading order (at one position, an
    /// unknown key first: it was found first).
    pub(super) fn finish(self) -> Vec<super::Problem> {
        let mut problems = Problems::default();
        for unknown in self.unknown {
            let message = format!(
                "unknown key (expected one of: {})",
                unknown.expected.join(", ")
            );
            problems.push(unknown.at, &child(&unknown.parent, &unknown.key), message);
        }
        problems.extend(self.problems);
        problems.into_sorted()
    }

    fn slot<S>(&self, loc: &Loc<S>) -> &Slot<'e> {
        &self.slots[loc.id]
    }

    /// The value, unless absent or null.
    pub(super) fn node<S>(&self, loc: &Loc<S>) -> Option<&'e Node> {
        self.slot(loc)
            .node
            .filter(|node| !matches!(node.value, Value::Null))
    }

    /// The key path of the value.
    pub(super) fn path<S>(&self, loc: &Loc<S>) -> String {
        self.slot(loc).path.clone()
    }

    /// Where the value is, or its mapping when absent.
    pub(super) fn at<S>(&self, loc: &Loc<S>) -> Pos {
        self.slot(loc).at
    }

    /// Where the key is written, else where the value would be.
    pub(super) fn key_at<S>(&self, loc: &Loc<S>) -> Pos {
        let slot = self.slot(loc);
        slot.key_at.unwrap_or(slot.at)
    }

    /// The path of a struct's mapping (its `$at`), unless its problem is already reported.
    pub(super) fn section<S>(&self, here: &Loc<S>) -> Option<String> {
        let slot = self.slot(here);
        (!slot.broken).then(|| slot.path.clone())
    }

    /// The value of a required key, or a "missing" problem at the key or its mapping.
    pub(super) fn require<S>(&mut self, loc: &Loc<S>) -> Option<&'e Node> {
        let slot = self.slot(loc);
        if slot.broken {
            return None;
        }
        let node = self.node(loc);
        if node.is_none() {
            let (at, path, key) = (self.key_at(loc), self.path(loc), self.slot(loc).key);
            self.report(at, &path, format!("missing required key `{key}`"));
        }
        node
    }

    /// [`Ctx::require`], with the key path.
    pub(super) fn require_at<S>(&mut self, loc: &Loc<S>) -> Option<(&'e Node, String)> {
        let node = self.require(loc)?;
        Some((node, self.path(loc)))
    }

    /// The value of an optional key unless absent or null, with its key path.
    pub(super) fn present<S>(&self, loc: Option<&Loc<S>>) -> Option<(&'e Node, String)> {
        let loc = loc?;
        Some((self.node(loc)?, self.path(loc)))
    }

    /// The value as written, null included; `None` when absent.
    pub(super) fn written_node<S>(&self, loc: &Loc<S>) -> Option<&'e Node> {
        self.slot(loc).node
    }

    /// Whether the key is written (null included).
    pub(super) fn written<S>(&self, loc: &Loc<S>) -> bool {
        self.slot(loc).node.is_some()
    }

    /// [`Ctx::parse`] for an optional key of a raw type.
    pub(super) fn value<S, T>(
        &mut self,
        loc: Option<&Loc<S>>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Field<T> {
        let Some((loc, node)) = loc.and_then(|loc| Some((loc, self.node(loc)?))) else {
            return Field::Absent;
        };
        let path = self.path(loc);
        match self.parse(node, &path, what, parse) {
            Some(value) => Field::Valid(value),
            None => Field::Invalid,
        }
    }

    /// [`Ctx::value`] with a default written as in the file, read by the same `parse`.
    pub(super) fn value_or<S, T>(
        &mut self,
        loc: Option<&Loc<S>>,
        what: &str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.value(loc, what, &parse) {
            Field::Absent => match parse(default) {
                Ok(value) => Some(value),
                // The schema tests load every default; this only keeps a typo from passing.
                Err(message) => {
                    self.report(
                        Pos::default(),
                        "",
                        format!("bad default {default:?}: {message}"),
                    );
                    None
                }
            },
            Field::Invalid => None,
            Field::Valid(value) => Some(value),
        }
    }

    pub(super) fn report(&mut self, at: Pos, key: &str, message: impl Into<String>) {
        self.problems.push(at, key, message);
    }

    fn mismatch(&mut self, node: &Node, path: &str, expected: &str) {
        let message = format!("expected {expected}, found {}", node.kind());
        self.report(node.at, path, message);
    }

    /// Reads a mapping (null counts as empty). Reports duplicate and non-string keys.
    pub(super) fn mapping<'n>(&mut self, node: &'n Node, path: String) -> Option<Mapping<'n>> {
        let pairs: &'n [(Node, Node)] = match &node.value {
            Value::Map(pairs) => pairs,
            Value::Null => &[],
            _ => {
                self.mismatch(node, &path, "a mapping");
                return None;
            }
        };
        let mut entries: Vec<Entry<'n>> = Vec::with_capacity(pairs.len());
        for (key_node, value) in pairs {
            let Value::Scalar(key) = &key_node.value else {
                self.mismatch(key_node, &path, "a string key");
                continue;
            };
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                let message = format!(
                    "duplicate key (first defined at line {})",
                    first.key_at.line
                );
                self.report(key_node.at, &child(&path, key), message);
                continue;
            }
            entries.push(Entry {
                key,
                key_at: key_node.at,
                value,
            });
        }
        Some(Mapping {
            path,
            at: node.at,
            entries,
        })
    }

    /// Reads a list (null counts as empty).
    pub(super) fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            _ => {
                self.mismatch(node, path, "a list");
                None
            }
        }
    }

    /// Reads a scalar and expands `${VAR}` in it.
    pub(super) fn text(&mut self, node: &Node, path: &str) -> Option<Text> {
        let Value::Scalar(raw) = &node.value else {
            self.mismatch(node, path, "a string");
            return None;
        };
        match expand(raw, self.env) {
            Ok(text) => Some(text),
            Err(message) => {
                self.report(node.at, path, message);
                None
            }
        }
    }

    /// Reads a credential: not empty once expanded, and never quoted in a message.
    pub(super) fn secret(&mut self, node: &Node, path: &str) -> Option<Secret> {
        self.convert(node, path, |t| {
            if t.value.is_empty() {
                Err("secret is empty".to_owned())
            } else {
                Ok(Secret::from(t.value.as_str()))
            }
        })
    }

    /// Reads a scalar and converts it with `convert`, which returns the full message.
    pub(super) fn convert<T>(
        &mut self,
        node: &Node,
        path: &str,
        convert: impl FnOnce(&Text) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(node, path)?;
        match convert(&text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.report(node.at, path, message);
                None
            }
        }
    }

    /// Reads a scalar with `parse`, which returns only the reason it is invalid:
    /// problems read `invalid WHAT "input" (reason)`.
    pub(super) fn parse<T>(
        &mut self,
        node: &Node,
        path: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
            self.mismatch(node, path, &article(what));
            return None;
        }
        self.convert(node, path, |text| {
            parse(&text.value)
                .map_err(|reason| format!("invalid {what} {} ({reason})", text.quoted))
        })
    }
}

/// `true` or `false` (YAML 1.2 spellings; `yes`/`on` are refused as too surprising).
pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A decimal integer within `min..=max`.
pub(super) fn integer(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let out_of_range = || format!("expected a whole number from {min} to {max}");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_would_be_ambiguous_are_quoted_in_paths() {
        assert_eq!(child("", "targets"), "targets");
        assert_eq!(child("targets", "a b"), "targets.a b");
        assert_eq!(
            child("t.templates", "message.received"),
            "t.templates[\"message.received\"]"
        );
        assert_eq!(child("t.templates", "*"), "t.templates[\"*\"]");
        assert_eq!(child("targets", ""), "targets[\"\"]");
        assert_eq!(child("", "a\"b"), "[\"a\\\"b\"]");
        assert_eq!(child("x", "[0]"), "x[\"[0]\"]");
    }

    #[test]
    fn integers_are_plain_decimal_in_range() {
        assert_eq!(integer("8", 1, 1024), Ok(8));
        for bad in [
            "0",
            "1025",
            "-1",
            "+1",
            "0x10",
            "1e3",
            "",
            "99999999999999999999999",
        ] {
            assert!(integer(bad, 1, 1024).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(boolean("true"), Ok(true));
        assert_eq!(boolean("FALSE"), Ok(false));
        assert!(boolean("yes").is_err());
        assert!(boolean("1").is_err());
    }
}
