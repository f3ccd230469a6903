//! Key paths for YAML syntax errors.
//!
//! A syntax error leaves no tree to read a key path from, so the path is rebuilt by
//! replaying the parser's event stream up to the error's position. This is a best
//! effort: it names the innermost key or list item the parser was in when it stopped,
//! which is where a reader should start looking.

use serde_saphyr::granit_parser::{Event, Parser};

use super::error::Pos;
use super::reader::child;

/// One open collection while replaying events.
enum Frame {
    Map {
        /// The key whose value is being read, once read.
        key: Option<String>,
    },
    Seq {
        /// Index of the item being read (number of items completed so far).
        index: usize,
    },
}

/// The key path of the innermost node that starts before `at` (empty at top level).
pub(super) fn key_path_at(text: &str, at: Pos) -> String {
    let mut frames: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        // Markers count columns from 0; positions in problems count from 1. A node
        // starting at the error is where the parser failed, so it is not entered; an end
        // there was found before it (a dedent), so it is applied.
        let start = (span.start.line(), span.start.col() + 1);
        let is_end = matches!(event, Event::MappingEnd | Event::SequenceEnd);
        if start > (at.line, at.column) || (start == (at.line, at.column) && !is_end) {
            break;
        }
        match event {
            Event::MappingStart(..) => {
                open(&mut frames);
                frames.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                open(&mut frames);
                frames.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                frames.pop();
                close(&mut frames);
            }
            Event::Scalar(value, ..) => leaf(&mut frames, &value),
            Event::Alias(_) | Event::UnresolvedAlias(_) => leaf(&mut frames, "*"),
            Event::DocumentEnd => frames.clear(),
            _ => {}
        }
    }
    render(&frames)
}

/// A collection starts: as a key (rare, named `?`) or as a value.
fn open(frames: &mut [Frame]) {
    if let Some(Frame::Map { key: key @ None }) = frames.last_mut() {
        *key = Some("?".to_owned());
    }
}

/// A collection ended: it was the value of the current key or item.
fn close(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Map { key }) => *key = None,
        Some(Frame::Seq { index }) => *index += 1,
        None => {}
    }
}

/// A scalar or alias: a key if the enclosing mapping waits for one, else a value.
fn leaf(frames: &mut [Frame], text: &str) {
    match frames.last_mut() {
        Some(Frame::Map { key: key @ None }) => *key = Some(text.to_owned()),
        Some(Frame::Map { key }) => *key = None,
        Some(Frame::Seq { index }) => *index += 1,
        None => {}
    }
}

fn render(frames: &[Frame]) -> String {
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Map { key: Some(key) } => path = child(&path, key),
            Frame::Map { key: None } => {}
            Frame::Seq { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str, line: usize, column: usize) -> String {
        key_path_at(text, Pos { line, column })
    }

    #[test]
    fn names_the_key_being_read() {
        let text = "listen:\n  address: [1, 2\nadmin: {}\n";
        assert_eq!(path(text, 2, 12), "listen.address");
    }

    #[test]
    fn counts_list_items() {
        let text = "routes:\n  - events: [a]\n    to: [x]\n  - events: [b]\n    to: [\n";
        assert_eq!(path(text, 5, 9), "routes[1].to");
    }

    #[test]
    fn dotted_keys_are_quoted_like_in_problems() {
        let text = "t:\n  templates:\n    message.received: { text: [\n";
        assert_eq!(
            path(text, 4, 1),
            "t.templates[\"message.received\"].text[0]"
        );
    }

    #[test]
    fn finished_entries_are_left_out() {
        let text = "a:\n  b: 1\nc: 2\n";
        assert_eq!(path(text, 3, 1), "");
        assert_eq!(path(text, 3, 4), "c");
    }

    #[test]
    fn garbage_gives_an_empty_path() {
        assert_eq!(path("\u{0}: [", 1, 1), "");
        assert_eq!(path("", 9, 9), "");
    }
}
