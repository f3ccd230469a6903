//! Finds the filter and test names a template uses, so that an unknown one is
//! a config error at startup instead of a failed delivery.
//!
//! minijinja resolves filter and test names only when the code using them
//! runs, and exposes no stable API to walk a compiled template. This is a
//! small scanner that follows minijinja's lexer (`{{ }}`, `{% %}`, `{# #}`,
//! whitespace-control markers, `{% raw %}`, strings, bracket balance) just far
//! enough to find the names after `|`, after `is [not]`, and in
//! `{% filter name %}`. It only runs on text minijinja has already compiled,
//! so it can assume well-formed input; on anything else it stops early and
//! misses names rather than panicking or inventing them.
//!
//! Not found: names passed as strings to `map`, `select`, `reject`,
//! `selectattr` and `rejectattr` (`map("upper")`); those still fail at render.

/// Whether a name is used as a filter or as a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NameKind {
    Filter,
    Test,
}

/// One use of a filter or test name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NameUse<'a> {
    pub(super) kind: NameKind,
    /// As minijinja resolves it: a dotted name (`a.b`) is one name.
    pub(super) name: &'a str,
    /// Byte offset of the name in the scanned text.
    pub(super) offset: usize,
}

/// Scans a template, or (`expression == true`) a bare expression such as a
/// `when` condition.
pub(super) fn names(source: &str, expression: bool) -> Vec<NameUse<'_>> {
    let mut s = Scanner {
        src: source,
        pos: 0,
        out: Vec::new(),
    };
    if expression {
        s.code(End::Eof);
    } else {
        s.template();
    }
    s.out
}

/// What closes the code being scanned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Variable,
    Block,
    Eof,
}

/// The previous token, as far as finding names needs it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// First token of a `{% %}` block: `filter` here opens a filter block.
    BlockStart,
    Pipe,
    Dot,
    Is,
    IsNot,
    FilterTag,
    Other,
}

struct Scanner<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<NameUse<'a>>,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a [u8] {
        self.src.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn template(&mut self) {
        while let Some(found) = find(self.rest(), b"{") {
            self.pos += found;
            let rest = self.rest();
            let marker = rest.get(1).copied();
            // `{{-`, `{%+`: the whitespace-control byte belongs to the marker.
            let ws = usize::from(matches!(rest.get(2), Some(b'-' | b'+')));
            match marker {
                Some(b'#') => match find(&rest[2..], b"#}") {
                    Some(end) => self.pos += 2 + end + 2,
                    None => return,
                },
                Some(b'{') => {
                    self.pos += 2 + ws;
                    self.code(End::Variable);
                }
                Some(b'%') => {
                    self.pos += 2 + ws;
                    if let Some(len) = basic_tag(self.rest(), "raw") {
                        self.pos += len;
                        if !self.skip_raw_body() {
                            return;
                        }
                    } else {
                        self.code(End::Block);
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Skips to just after `{% endraw %}`; false if there is none.
    fn skip_raw_body(&mut self) -> bool {
        while let Some(found) = find(self.rest(), b"{%") {
            self.pos += found + 2;
            let rest = self.rest();
            let ws = usize::from(matches!(rest.first(), Some(b'-' | b'+')));
            if let Some(len) = basic_tag(&rest[ws..], "endraw") {
                self.pos += ws + len;
                return true;
            }
        }
        false
    }

    /// Scans code up to and including its closing delimiter.
    fn code(&mut self, end: End) {
        let mut prev = if end == End::Block {
            Prev::BlockStart
        } else {
            Prev::Other
        };
        let mut depth = 0usize;
        loop {
            let ws = self
                .rest()
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.pos += ws;
            let rest = self.rest();
            let Some(&first) = rest.first() else { return };
            if depth == 0
                && let Some(len) = closing(rest, end)
            {
                self.pos += len;
                return;
            }
            match first {
                b'|' => {
                    prev = Prev::Pipe;
                    self.pos += 1;
                }
                b'.' => {
                    prev = Prev::Dot;
                    self.pos += 1;
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    prev = Prev::Other;
                    self.pos += 1;
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    prev = Prev::Other;
                    self.pos += 1;
                }
                b'\'' | b'"' => {
                    if !self.skip_string(first) {
                        return;
                    }
                    prev = Prev::Other;
                }
                b'0'..=b'9' => {
                    self.pos += number_len(rest);
                    prev = Prev::Other;
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => prev = self.identifier(prev),
                _ => {
                    // Operators, and bytes minijinja would have rejected.
                    // Step over one whole UTF-8 character.
                    let len = self
                        .src
                        .get(self.pos..)
                        .and_then(|r| r.chars().next())
                        .map_or(1, char::len_utf8);
                    self.pos += len;
                    prev = Prev::Other;
                }
            }
        }
    }

    fn identifier(&mut self, prev: Prev) -> Prev {
        let start = self.pos;
        // Called on an ASCII letter or `_`, so the word is never empty and
        // the scan always moves forward.
        let word = self
            .src
            .get(start..start + ident_len(self.rest()).max(1))
            .unwrap_or_default();
        match prev {
            Prev::Pipe | Prev::FilterTag | Prev::Is | Prev::IsNot
                if !(prev == Prev::Is && word == "not") =>
            {
                let kind = if matches!(prev, Prev::Is | Prev::IsNot) {
                    NameKind::Test
                } else {
                    NameKind::Filter
                };
                let name = self.dotted_name(start);
                self.out.push(NameUse {
                    kind,
                    name,
                    offset: start,
                });
                Prev::Other
            }
            _ => {
                self.pos += word.len().max(1);
                match (prev, word) {
                    (Prev::Is, "not") => Prev::IsNot,
                    (Prev::Dot, _) => Prev::Other,
                    (_, "is") => Prev::Is,
                    (Prev::BlockStart, "filter") => Prev::FilterTag,
                    _ => Prev::Other,
                }
            }
        }
    }

    /// Reads `a`, `a.b`, `a . b`: minijinja names a dotted filter by the
    /// source text from its first to its last segment.
    fn dotted_name(&mut self, start: usize) -> &'a str {
        self.pos += ident_len(self.rest());
        let mut end = self.pos;
        loop {
            let mut p = end + spaces(&self.src.as_bytes()[end..]);
            if self.src.as_bytes().get(p) != Some(&b'.') {
                break;
            }
            p += 1;
            p += spaces(&self.src.as_bytes()[p..]);
            let len = ident_len(&self.src.as_bytes()[p..]);
            if len == 0 {
                break;
            }
            end = p + len;
        }
        self.pos = end;
        self.src.get(start..end).unwrap_or_default()
    }

    /// Skips a quoted string; false if it never ends.
    fn skip_string(&mut self, quote: u8) -> bool {
        let mut escaped = false;
        for (i, &b) in self.rest().iter().enumerate().skip(1) {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b) if b == quote => {
                    self.pos += i + 1;
                    return true;
                }
                _ => {}
            }
        }
        false
    }
}

/// Length of the delimiter closing `end` at the start of `rest`, if any.
fn closing(rest: &[u8], end: End) -> Option<usize> {
    let delim: &[u8] = match end {
        End::Variable => b"}}",
        End::Block => b"%}",
        End::Eof => return None,
    };
    let ws = usize::from(matches!(rest.first(), Some(b'-' | b'+')));
    rest[ws..].starts_with(delim).then_some(ws + delim.len())
}

/// Length of `{% name %}` after its opening `{%` (and ws-control byte), as
/// minijinja's `skip_basic_tag` matches it.
fn basic_tag(rest: &[u8], name: &str) -> Option<usize> {
    let mut p = spaces(rest);
    if !rest[p..].starts_with(name.as_bytes()) {
        return None;
    }
    p += name.len();
    p += spaces(&rest[p..]);
    if matches!(rest.get(p), Some(b'-' | b'+')) {
        p += 1;
    }
    rest[p..].starts_with(b"%}").then_some(p + 2)
}

fn spaces(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_whitespace()).count()
}

fn ident_len(b: &[u8]) -> usize {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => b
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count(),
        _ => 0,
    }
}

/// A number's length, roughly: enough not to mistake `1e5` or `0x1f` for an
/// identifier. Precision does not matter, numbers never hold names.
fn number_len(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(src: &str, expression: bool) -> Vec<(NameKind, &str)> {
        names(src, expression)
            .iter()
            .map(|u| (u.kind, u.name))
            .collect()
    }

    use NameKind::{Filter, Test};

    #[test]
    fn finds_filters_and_tests() {
        assert_eq!(
            found(
                "{{ a | upper | truncate(5, end='|x') }} {{ b|e164 }}",
                false
            ),
            [(Filter, "upper"), (Filter, "truncate"), (Filter, "e164")]
        );
        assert_eq!(
            found(
                "{% if a is defined and b is not none and c.is %}x{% endif %}",
                false
            ),
            [(Test, "defined"), (Test, "none")]
        );
        assert_eq!(
            found("{%- filter upper|nope -%}x{% endfilter %}", false),
            [(Filter, "upper"), (Filter, "nope")]
        );
        assert_eq!(
            found("x is odd and y|abs > 1", true),
            [(Test, "odd"), (Filter, "abs")]
        );
        assert_eq!(
            found("{{ x|a.b }}{{ y|c . d }}", false),
            [(Filter, "a.b"), (Filter, "c . d")]
        );
    }

    #[test]
    fn skips_strings_comments_raw_and_text() {
        let src = "a | b {# {{ x|c }} #}{{ '|d' ~ \"\\\"|e\" }}\
                   {% raw %}{{ x|f }}{% endraw %}{{ {'k': {'v': 1}}|g }}";
        assert_eq!(found(src, false), [(Filter, "g")]);
        assert_eq!(
            found("{{ 1e5|h }}{{ x.0|i }}", false),
            [(Filter, "h"), (Filter, "i")]
        );
    }

    #[test]
    fn reports_byte_offsets() {
        // `é` is two bytes.
        let uses = names("é\n{{ x | upper }}", false);
        assert_eq!(uses.first().map(|u| u.offset), Some(10));
    }

    #[test]
    fn stops_quietly_on_broken_input() {
        for src in [
            "{{ 'x|y",
            "{# |z",
            "{% raw %}{{ x|q }}",
            "{{ x|",
            "{{ é|ü }}",
            "{%",
        ] {
            let _ = names(src, false);
            let _ = names(src, true);
        }
        assert!(found("{{ 'x|y", false).is_empty());
    }
}
