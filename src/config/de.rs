//! A serde `Deserializer` over the located tree, so the schema's types (`schema.rs`) can
//! `#[derive(Deserialize)]` and be what the rule pass reads.
//!
//! It never stops at a mistake, so one pass still finds every problem:
//! - Values are [`Loc`] leaves that never fail: a leaf keeps its node (any shape), key path
//!   and position, and the rule pass converts it and reports what is wrong with it.
//! - Every field is optional to serde: after the keys written in a mapping, the fields left out
//!   are handed over as absent, so a derived struct never stops at a missing field. An
//!   `Option` field is then `None`, a [`Loc`] knows it is absent, and the rule pass reports a
//!   missing required key. A struct that reports at its own mapping (or must know whether it
//!   is broken, below) declares a `$at` field: the mapping itself.
//! - Unknown keys (those not in serde's `fields`) are recorded with their location and skipped;
//!   duplicate and non-string keys are reported and skipped.
//! - A struct over something that is not a mapping is reported and read as empty, marked
//!   broken so the rule pass does not add "missing key" problems under it.
//! - `kind:` selects the variant of an enum here, by hand: serde's internally tagged enums
//!   buffer the value in its private `Content` and lose the tree.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::value::Error;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, forward_to_deserialize_any};

use super::error::{Pos, Problems};
use super::reader::{Env, child, expand};
use super::tree::{Node, Value};

/// The newtype name by which a [`Loc`] asks this deserializer for its slot.
const LOC: &str = "$textus_relay::Loc";
/// The field of a struct that holds the struct's own mapping.
pub(super) const HERE: &str = "$at";

/// Where a value is, as the rule pass sees it.
pub(super) struct Slot<'n> {
    /// `None` when the key is absent.
    pub(super) node: Option<&'n Node>,
    pub(super) path: String,
    /// The key as written (the last part of `path`).
    pub(super) key: &'static str,
    /// The value's position, or for an absent key its mapping's.
    pub(super) at: Pos,
    /// The key's position, when the key is written.
    pub(super) key_at: Option<Pos>,
    /// A mapping whose problem is already reported (not a mapping, unknown `kind`).
    pub(super) broken: bool,
}

/// A key not in serde's `fields`, kept until the rule pass is done: `storage` reports a key
/// of its other kind as belonging there, the rest become "unknown key" problems.
pub(super) struct UnknownKey {
    pub(super) at: Pos,
    pub(super) parent: String,
    pub(super) key: String,
    pub(super) expected: Vec<&'static str>,
}

/// A value of the file with the JSON Schema of `S`, read by the rule pass.
pub(super) struct Loc<S = ()> {
    pub(super) id: usize,
    schema: PhantomData<fn() -> S>,
}

impl<S: JsonSchema> JsonSchema for Loc<S> {
    fn inline_schema() -> bool {
        S::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        S::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        S::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        S::json_schema(generator)
    }
}

impl<'de, S> Deserialize<'de> for Loc<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;
        impl Visitor<'_> for Id {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value of relay.yaml's tree")
            }
            fn visit_u64<E: de::Error>(self, id: u64) -> Result<usize, E> {
                usize::try_from(id).map_err(E::custom)
            }
        }
        let id = deserializer.deserialize_newtype_struct(LOC, Id)?;
        Ok(Loc {
            id,
            schema: PhantomData,
        })
    }
}

/// What one deserialization found: the slots the [`Loc`]s point to, and the problems.
pub(super) struct Found<'n> {
    pub(super) slots: Vec<Slot<'n>>,
    pub(super) unknown: Vec<UnknownKey>,
    pub(super) problems: Problems,
}

struct State<'n> {
    env: Env<'n>,
    /// Report no unknown keys at the top: the loader reads only some sections.
    partial: bool,
    /// The number of the first slot.
    first: usize,
    found: RefCell<Found<'n>>,
}

/// Reads `node`, at key path `path`, into `T`; the slots found are numbered from `first`.
/// `Err` only for a shape the raw types do not handle (a bug).
pub(super) fn read<'n, T: Deserialize<'n>>(
    node: &'n Node,
    path: &str,
    env: Env<'n>,
    partial: bool,
    first: usize,
) -> (Result<T, Error>, Found<'n>) {
    let state = State {
        env,
        partial,
        first,
        found: RefCell::new(Found {
            slots: Vec::new(),
            unknown: Vec::new(),
            problems: Problems::default(),
        }),
    };
    let de = De {
        state: &state,
        node: Some(node),
        path: path.to_owned(),
        key: "",
        at: node.at,
        key_at: None,
        mode: Mode::Plain,
        outer: &[],
    };
    let value = T::deserialize(de);
    (value, state.found.into_inner())
}

/// The keys serde derived for `T` (its `fields`), asked of a deserializer that only records
/// them: `storage` uses it to name the kind an out-of-place key belongs to, the reference to
/// list keys in file order.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'c>(&'c Cell<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            self.0.set(fields);
            Err(de::Error::custom("only the fields"))
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Fields(&fields));
    fields.get()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// The mapping of an enum variant: `kind` is its tag, not an unknown key.
    Tagged,
    /// Already reported: read as empty, no unknown keys.
    Broken,
}

#[derive(Clone)]
struct De<'s, 'n> {
    state: &'s State<'n>,
    node: Option<&'n Node>,
    path: String,
    key: &'static str,
    at: Pos,
    key_at: Option<Pos>,
    mode: Mode,
    /// For a struct flattened into its parent (a `$flat` field), the parent's fields.
    outer: &'static [&'static str],
}

/// Whether a field is one of the deserializer's own (`$at`, `$flat`), not a key.
fn own(field: &str) -> bool {
    field.starts_with('$')
}

impl<'n> De<'_, 'n> {
    fn report(&self, at: Pos, path: &str, message: impl Into<String>) {
        self.state
            .found
            .borrow_mut()
            .problems
            .push(at, path, message);
    }

    fn mismatch(&self, node: &Node, expected: &str) {
        let message = format!("expected {expected}, found {}", node.kind());
        self.report(node.at, &self.path, message);
    }

    /// A deserializer for the value of `key` of this mapping.
    fn child(&self, key: &'static str, entry: Option<(&'n Node, Pos)>, mode: Mode) -> Self {
        De {
            state: self.state,
            node: entry.map(|(node, _)| node),
            path: child(&self.path, key),
            key,
            at: entry.map_or(self.node.map_or(self.at, |n| n.at), |(node, _)| node.at),
            key_at: entry.map(|(_, at)| at),
            mode,
            outer: &[],
        }
    }

    /// The entries of a mapping with string keys, first occurrences only; the others are
    /// reported.
    fn entries(&self, quiet: bool) -> Vec<(&'n str, Pos, &'n Node)> {
        let Some(Node {
            value: Value::Map(pairs),
            ..
        }) = self.node
        else {
            return Vec::new();
        };
        let mut entries: Vec<(&'n str, Pos, &'n Node)> = Vec::with_capacity(pairs.len());
        for (key_node, value) in pairs {
            let Value::Scalar(key) = &key_node.value else {
                if !quiet {
                    self.mismatch(key_node, "a string key");
                }
                continue;
            };
            if let Some((_, first, _)) = entries.iter().find(|(k, ..)| k == key) {
                if quiet {
                    continue;
                }
                let message = format!("duplicate key (first defined at line {})", first.line);
                self.report(key_node.at, &child(&self.path, key), message);
                continue;
            }
            entries.push((key, key_node.at, value));
        }
        entries
    }

    /// Which variant of an enum `kind:` names, and how its mapping is to be read.
    fn kind(&self, name: &str, variants: &'static [&'static str]) -> (&'static str, Mode) {
        let broken = (variants.first().copied().unwrap_or(""), Mode::Broken);
        let node = match self.node {
            Some(
                node @ Node {
                    value: Value::Map(_) | Value::Null,
                    ..
                },
            ) => node,
            Some(node) => {
                self.mismatch(node, "a mapping");
                return broken;
            }
            None => return broken,
        };
        // The noun in messages, and the variant when `kind` is left out.
        let (noun, default) = match name {
            "StorageKinds" => ("storage", Some("sqlite")),
            _ => ("target", None),
        };
        let path = child(&self.path, "kind");
        // The first `kind`; `deserialize_struct` reports any duplicate.
        let written = match &node.value {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(key, _)| matches!(&key.value, Value::Scalar(k) if k == "kind")),
            _ => None,
        };
        let kind = written
            .map(|(_, value)| value)
            .filter(|value| !matches!(value.value, Value::Null));
        let Some(kind) = kind else {
            return match default.and_then(|d| variants.iter().find(|v| **v == d)) {
                Some(variant) => (variant, Mode::Tagged),
                None => {
                    let at = written.map_or(node.at, |(key, _)| key.at);
                    self.report(at, &path, "missing required key `kind`");
                    broken
                }
            };
        };
        let Value::Scalar(raw) = &kind.value else {
            let message = format!("expected a string, found {}", kind.kind());
            self.report(kind.at, &path, message);
            return broken;
        };
        let text = match expand(raw, self.state.env) {
            Ok(text) => text,
            Err(message) => {
                self.report(kind.at, &path, message);
                return broken;
            }
        };
        match variants.iter().find(|v| **v == text.value) {
            Some(variant) => (variant, Mode::Tagged),
            None => {
                let message = format!(
                    "unknown {noun} kind {} (expected one of: {})",
                    text.quoted,
                    variants.join(", ")
                );
                self.report(kind.at, &path, message);
                broken
            }
        }
    }
}

impl<'de, 's> Deserializer<'de> for De<'s, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: the raw config types take located values only",
            self.path
        )))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            None
            | Some(Node {
                value: Value::Null, ..
            }) => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name != LOC {
            return visitor.visit_newtype_struct(self);
        }
        let mut found = self.state.found.borrow_mut();
        let id = self.state.first + found.slots.len();
        found.slots.push(Slot {
            node: self.node,
            path: self.path,
            key: self.key,
            at: self.at,
            key_at: self.key_at,
            broken: self.mode == Mode::Broken,
        });
        drop(found);
        visitor.visit_u64(id as u64)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut mode = self.mode;
        if let Some(node) = self.node
            && !matches!(node.value, Value::Map(_) | Value::Null)
            && self.outer.is_empty()
            && mode != Mode::Broken
        {
            self.mismatch(node, "a mapping");
            mode = Mode::Broken;
        }
        // A `$flat` field is read over this same mapping, and it reports the unknown keys:
        // only it knows both lists.
        let flat = fields.iter().any(|f| f.starts_with("$flat"));
        let same = |mode, outer| De {
            mode,
            outer,
            ..self.clone()
        };
        let mut values: Vec<(&'static str, De<'s, 'de>)> = Vec::with_capacity(fields.len());
        values.push((HERE, same(mode, &[])));
        for field in fields.iter().filter(|f| f.starts_with("$flat")) {
            values.push((field, same(mode, fields)));
        }
        let expected: Vec<&'static str> = (mode == Mode::Tagged)
            .then_some("kind")
            .into_iter()
            .chain(self.outer.iter().chain(fields).copied().filter(|f| !own(f)))
            .collect();
        let quiet = flat || mode == Mode::Broken || (self.state.partial && self.path.is_empty());
        // Below a broken mapping nothing is reported again; below a tagged one, `kind` is a key
        // like any other.
        let below = if mode == Mode::Broken {
            Mode::Broken
        } else {
            Mode::Plain
        };
        for (key, key_at, value) in self.entries(!self.outer.is_empty()) {
            match fields.iter().find(|f| **f == key && !own(f)) {
                Some(field) => {
                    values.push((field, self.child(field, Some((value, key_at)), below)))
                }
                None if mode == Mode::Tagged && key == "kind" => {}
                None if quiet || self.outer.contains(&key) => {}
                None => self.state.found.borrow_mut().unknown.push(UnknownKey {
                    at: key_at,
                    parent: self.path.clone(),
                    key: key.to_owned(),
                    expected: expected.clone(),
                }),
            }
        }
        for field in fields {
            if !values.iter().any(|(f, _)| f == field) {
                values.push((field, self.child(field, None, below)));
            }
        }
        visitor.visit_map(Entries {
            values: values.into_iter(),
            value: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (variant, mode) = self.kind(name, variants);
        visitor.visit_enum(Variant {
            variant,
            content: De { mode, ..self },
        })
    }

    /// A struct that does not keep its `$at`.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

/// The fields of one struct, its `$at` first.
struct Entries<'s, 'n> {
    values: std::vec::IntoIter<(&'static str, De<'s, 'n>)>,
    value: Option<De<'s, 'n>>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.values.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("a value without a key")),
        }
    }
}

/// The variant `kind:` selected, over the same mapping.
struct Variant<'s, 'n> {
    variant: &'static str,
    content: De<'s, 'n>,
}

impl<'s, 'de> de::EnumAccess<'de> for Variant<'s, 'de> {
    type Error = Error;
    type Variant = De<'s, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, De<'s, 'de>), Error> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, self.content))
    }
}

impl<'de> de::VariantAccess<'de> for De<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Err(de::Error::custom("a kind is a mapping"))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a kind is a mapping"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests;
