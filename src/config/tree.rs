//! The YAML document as a tree of located nodes, before any schema is applied.
//!
//! serde-saphyr does the YAML work (syntax, anchors, aliases, merge keys, resource
//! budgets) and hands every node over with its position. The raw types are then read from
//! this tree (`de.rs`), not from the text, because serde-saphyr's deserializer stops at the
//! first unknown key or wrong type, while `textus-relay check` should list every problem of
//! the file in one pass, each with its key path.
//!
//! Invariant: every scalar is kept as the text written in the file. Untyped
//! deserialization makes serde-saphyr guess types (`0o17` → 15, `yes` → true), so for
//! those scalars the text is sliced back out of the source using the node's span.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned};

use super::error::{Pos, Problem, clean};
use super::syntax;

/// Deepest nesting accepted. relay.yaml needs about 5 levels; the limit keeps hostile
/// input from exhausting the stack of the recursive tree building.
const MAX_DEPTH: usize = 32;

/// Most YAML events replayed through aliases (`*name`) in one file: plenty for sharing
/// a retry policy between targets, far too few for an alias bomb.
const MAX_ALIAS_EVENTS: usize = 10_000;

/// One node of the document.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) value: Value,
    pub(super) at: Pos,
    /// A scalar written unquoted that YAML reads as a boolean or a number (`5`, `true`,
    /// but also `yes` or `0x1F`). Request bodies keep such values typed.
    pub(super) typed: bool,
    /// Where a scalar's text is written, for templates: line N of the text is on file
    /// line `text_at.line + N - 1`. It differs from `at` for a block scalar (`|`, `>`)
    /// that starts with empty lines (`at` is its first non-empty line), and for an alias,
    /// whose text is at the anchor.
    pub(super) text_at: Pos,
}

/// What a node holds. Scalars are text; the schema decides what they mean.
#[derive(Debug)]
pub(super) enum Value {
    /// `~`, `null` or nothing at all.
    Null,
    /// Any other scalar, quoted or not.
    Scalar(String),
    Seq(Vec<Node>),
    /// Entries in file order, duplicates included: `de.rs` reports them, with
    /// their key paths, instead of serde-saphyr stopping at the first.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// How a node is named in "expected X, found Y" messages.
    pub(super) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses `text` as one YAML document.
pub(super) fn parse(text: &str) -> Result<Node, Problem> {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    // The text is sliced from the source anyway; these only stop serde-saphyr from
    // rejecting scalars it would otherwise have to type (e.g. `.nan`).
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    if let Some(budget) = options.budget.as_mut() {
        budget.max_depth = MAX_DEPTH;
    }
    // Aliases are copied into the tree; a small file must not expand into a huge one.
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(root) => Ok(into_node(root, text)),
        Err(err) => Err(syntax_problem(&err, text)),
    }
}

/// Turns a serde-saphyr error into a problem with the best key path we can find.
fn syntax_problem(err: &serde_saphyr::Error, text: &str) -> Problem {
    let at = err.location().map_or(Pos { line: 1, column: 1 }, |l| Pos {
        line: to_usize(l.line()).max(1),
        column: to_usize(l.column()).max(1),
    });
    // Rendering entry points unwrap these wrappers before formatting; calling the
    // formatter directly, we must do it ourselves (see `MessageFormatter::format_message`).
    let mut inner = err.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let mut message = serde_saphyr::UserMessageFormatter
        .format_message(inner)
        .into_owned();
    // `events: [*]` is the likeliest syntax error in this file: YAML reads `*` as the
    // start of an alias name, and finds none.
    if is_bare_star(text, at) {
        message.push_str(" (write \"*\" in quotes for the any-event pattern)");
    }
    Problem {
        line: at.line,
        column: at.column,
        key: clean(&syntax::key_path_at(text, at)),
        message: clean(&message),
    }
}

/// Whether a `*` with no alias name after it is at a 1-based line and column.
fn is_bare_star(text: &str, at: Pos) -> bool {
    let Some(line) = at.line.checked_sub(1).and_then(|n| text.lines().nth(n)) else {
        return false;
    };
    let mut chars = line.chars().skip(at.column.saturating_sub(1));
    chars.next() == Some('*')
        && !chars
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn into_node(spanned: Spanned<Raw>, text: &str) -> Node {
    let at = position(&spanned.referenced);
    let typed = matches!(spanned.value, Raw::Typed(_));
    let text_at = match &spanned.value {
        Raw::Str(value) => text_start(text, &spanned.defined, value),
        _ => at,
    };
    let value = match spanned.value {
        Raw::Null => Value::Null,
        Raw::Str(s) => Value::Scalar(s),
        // The anchored definition holds the text when the value came through an alias.
        Raw::Typed(fallback) => {
            Value::Scalar(source_text(text, &spanned.defined).unwrap_or(fallback))
        }
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|n| into_node(n, text)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (into_node(k, text), into_node(v, text)))
                .collect(),
        ),
    };
    Node {
        value,
        at,
        typed,
        text_at,
    }
}

fn position(location: &serde_saphyr::Location) -> Pos {
    // `max(1)`: a node serde-saphyr could not place has line 0; problems are 1-based.
    Pos {
        line: to_usize(location.line()).max(1),
        column: to_usize(location.column()).max(1),
    }
}

/// Where the text of a string scalar starts. serde-saphyr places a block scalar at its
/// first non-empty line, which is not line 1 of its text when empty lines come first;
/// each such line is a leading `\n` of the value. Quoted scalars are left alone: there
/// a leading `\n` is an escape or a folded line, not an empty line of the text.
fn text_start(text: &str, location: &serde_saphyr::Location, value: &str) -> Pos {
    let at = position(location);
    let quoted = location
        .span()
        .byte_offset()
        .and_then(|start| text.get(usize::try_from(start).ok()?..))
        .is_some_and(|rest| rest.starts_with(['"', '\'']));
    if quoted {
        return at;
    }
    let empty_lines = value.bytes().take_while(|&b| b == b'\n').count();
    Pos {
        line: at.line.saturating_sub(empty_lines).max(1),
        column: at.column,
    }
}

/// The source text of a plain scalar, if its byte span is known and sane.
fn source_text(text: &str, location: &serde_saphyr::Location) -> Option<String> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let slice = text.get(start..start.checked_add(len)?)?.trim();
    (!slice.is_empty()).then(|| slice.to_owned())
}

/// What serde's untyped visitor sees, before positions are attached.
enum Raw {
    Null,
    Str(String),
    /// A scalar serde-saphyr typed as bool or number; holds a rendering of that value
    /// in case the source text cannot be sliced.
    Typed(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Typed(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.value {
            Value::Scalar(s) => s,
            other => panic!("expected a scalar, got {other:?}"),
        }
    }

    fn entries(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("expected a mapping, got {other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_source_text() {
        let root = parse("a: 0o17\nb: yes\nc: 1e3\nd: \"q\\tx\"\ne: 1_000\nf: .nan\ny: 007\n")
            .expect("valid yaml");
        let got: Vec<(&str, &str)> = entries(&root)
            .iter()
            .map(|(k, v)| (scalar(k), scalar(v)))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "0o17"),
                ("b", "yes"),
                ("c", "1e3"),
                ("d", "q\tx"),
                ("e", "1_000"),
                ("f", ".nan"),
                ("y", "007")
            ]
        );
    }

    #[test]
    fn nodes_carry_their_positions() {
        let root = parse("top:\n  inner: [x, ~]\n").expect("valid yaml");
        let (_, inner_map) = &entries(&root)[0];
        let (key, list) = &entries(inner_map)[0];
        assert_eq!(key.at, Pos { line: 2, column: 3 });
        let Value::Seq(items) = &list.value else {
            panic!("expected a list")
        };
        assert_eq!(
            items[0].at,
            Pos {
                line: 2,
                column: 11
            }
        );
        assert!(matches!(items[1].value, Value::Null));
    }

    #[test]
    fn unquoted_booleans_and_numbers_are_marked_typed() {
        let root =
            parse("a: 5\nb: \"5\"\nc: yes\nd: text\ne: 'true'\nf: |\n  7\n").expect("valid yaml");
        let typed: Vec<bool> = entries(&root).iter().map(|(_, v)| v.typed).collect();
        assert_eq!(typed, [true, false, true, false, false, false]);
    }

    #[test]
    fn text_positions_count_leading_empty_lines_of_block_scalars() {
        let root = parse("a: |+\n\n\n  x\nb: \"\\ny\"\nc: &t |\n  z\nd: *t\n").expect("valid yaml");
        let got: Vec<(Pos, Pos)> = entries(&root)
            .iter()
            .map(|(_, v)| (v.at, v.text_at))
            .collect();
        let pos = |line, column| Pos { line, column };
        assert_eq!(
            got,
            [
                // `at` is the first non-empty line; the text starts two lines above.
                (pos(4, 3), pos(2, 3)),
                // A quoted `\n` is an escape, not an empty line.
                (pos(5, 4), pos(5, 4)),
                (pos(7, 3), pos(7, 3)),
                // Through an alias, the text is at the anchor.
                (pos(8, 4), pos(7, 3)),
            ]
        );
    }

    #[test]
    fn aliases_resolve_to_the_anchored_text() {
        let root = parse("a: &t 0x10\nb: *t\n").expect("valid yaml");
        let (_, b) = &entries(&root)[1];
        assert_eq!(scalar(b), "0x10");
        assert_eq!(b.at.line, 2);
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_deserializer() {
        let root = parse("a: 1\na: 2\n").expect("valid yaml");
        assert_eq!(entries(&root).len(), 2);
    }

    #[test]
    fn syntax_errors_are_located() {
        let problem = parse("listen:\n  address: [1, 2\n").expect_err("unclosed bracket");
        assert_eq!(problem.line, 2);
        assert_eq!(problem.key, "listen.address");
        assert!(problem.message.contains("bracket"), "{problem:?}");
        assert!(!problem.message.contains("at line"), "{problem:?}");
    }

    #[test]
    fn unquoted_star_gets_a_hint() {
        let problem = parse("routes:\n  - events: [*]\n").expect_err("alias syntax");
        assert_eq!((problem.line, problem.column), (2, 14));
        assert!(
            problem
                .message
                .ends_with("(write \"*\" in quotes for the any-event pattern)")
        );
        let problem = parse("a: *nope\n").expect_err("unknown alias");
        assert!(!problem.message.contains("quotes"), "{problem:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(&deep).is_err());
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(parse(&block).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(parse(&bomb).is_err());
    }
}
