//! Slack mrkdwn safety: [`fit`] a payload within Slack's size limits, never cutting through
//! the escapes of [`crate::templates::mrkdwn::escape`].
//!
//! [`fit`] never fails: whatever it is given, it returns a payload whose texts and block counts
//! Slack accepts, cutting with "…". Every cut is by characters, so it never splits a UTF-8
//! character, and it backs off to before a half-cut `&amp;`/`&lt;`/`&gt;` or an unclosed `<…>`
//! control sequence, so a cut can neither show `&am` nor open a mention or link.
//!
//! The limits (textus-webhooks.md §2 unless noted) are the constants below.

use serde_json::{Value, json};

/// Top-level `text`. Slack itself truncates at 40,000 (§2, S5); with blocks it is only the
/// notification, so §2's relay rule keeps it at 3,000.
pub const MAX_TEXT_CHARS: usize = 3_000;
/// Blocks per message (§2, S6).
pub const MAX_BLOCKS: usize = 50;
/// A section's `text` (§2, S6); longer text makes Slack answer 400.
pub const MAX_SECTION_TEXT_CHARS: usize = 3_000;
/// A section's `fields`, and the text of each (§2, grade C).
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_FIELD_CHARS: usize = 2_000;
/// A header's plain_text (§2, grade C).
pub const MAX_HEADER_CHARS: usize = 150;
/// A context block's elements. Not in §2: Slack's context block reference says 10.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Not in §2. Slack's text-object reference says 3,000; one third-party limits guide says 2,000
/// for context elements; the lower one is used, context lines being short anyway.
pub const MAX_CONTEXT_TEXT_CHARS: usize = 2_000;
/// A `markdown` block's text: Slack's markdown block reference says 12,000.
pub const MAX_MARKDOWN_CHARS: usize = 12_000;
/// All block texts together. Slack rejects long messages with `msg_blocks_too_long` at about
/// 12,000–13,300 characters although no limit is documented (§2; bolt-js #2509, #2867, where
/// 11,341 characters of text already failed); 10,000 leaves room for block containers.
pub const MAX_BLOCKS_TEXT_CHARS: usize = 10_000;

/// A block is not started once less than this much of the budget is left: a few characters of
/// it would say nothing, and the omission note still has to fit.
const MIN_BLOCK_BUDGET: usize = 100;

/// `text` cut to at most `max_chars` characters, the last being "…" when anything was cut.
///
/// The cut backs off to before an unclosed `<` and then before an `&` that starts a cut entity,
/// so already-escaped text stays well formed.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    if text.chars().nth(max_chars).is_none() {
        return text.to_owned();
    }
    // Byte offset where the (max_chars - 1)th character starts: room for the marker.
    let end = text
        .char_indices()
        .nth(max_chars - 1)
        .map_or(text.len(), |(i, _)| i);
    let kept = back_off(&text[..end]);
    format!("{}…", kept.trim_end())
}

/// `prefix` without a trailing, unclosed `<…` sequence or a trailing partial `&…;` entity.
fn back_off(prefix: &str) -> &str {
    let mut kept = prefix;
    if let Some(open) = kept.rfind('<')
        && !kept[open..].contains('>')
    {
        kept = &kept[..open];
    }
    if let Some(amp) = kept.rfind('&') {
        let tail = &kept[amp + 1..];
        // The longest entity Slack uses is `&amp;`: anything short, unterminated and
        // entity-like after the last `&` is a cut entity.
        if tail.len() < 5 && !tail.contains(';') && tail.chars().all(|c| c.is_ascii_alphanumeric())
        {
            kept = &kept[..amp];
        }
    }
    kept
}

/// `payload` within Slack's limits: texts cut, excess blocks, fields and context elements
/// dropped (dropped blocks are replaced by one note saying so). A payload that is not an object,
/// or parts that have an unexpected shape, are left as they are: fitting is not validating.
pub fn fit(mut payload: Value) -> Value {
    let Some(object) = payload.as_object_mut() else {
        return payload;
    };
    if let Some(Value::String(text)) = object.get_mut("text") {
        fit_string(text, MAX_TEXT_CHARS);
    }
    if let Some(Value::Array(blocks)) = object.get_mut("blocks") {
        fit_blocks(blocks);
    }
    payload
}

fn fit_string(text: &mut String, max_chars: usize) {
    if text.chars().nth(max_chars).is_some() {
        *text = truncate(text, max_chars);
    }
}

/// Applies the per-block limits, then the count and aggregate budget, in block order so the
/// start of the message (its title) survives.
fn fit_blocks(blocks: &mut Vec<Value>) {
    let max_kept = if blocks.len() > MAX_BLOCKS {
        MAX_BLOCKS - 1 // leaves room for the omission note
    } else {
        MAX_BLOCKS
    };
    let mut remaining = MAX_BLOCKS_TEXT_CHARS;
    let mut kept = 0;
    for block in blocks.iter_mut() {
        if kept == max_kept || remaining < MIN_BLOCK_BUDGET {
            break;
        }
        limit_counts(block);
        for (text, limit) in text_slots(block) {
            // At least one character: Slack rejects an empty text object.
            fit_string(text, limit.min(remaining).max(1));
            remaining = remaining.saturating_sub(text.chars().count());
        }
        kept += 1;
    }
    let dropped = blocks.len() - kept;
    if dropped > 0 {
        blocks.truncate(kept);
        let s = if dropped == 1 { "" } else { "s" };
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("… {dropped} more block{s} not shown (Slack size limits)")}],
        }));
    }
}

/// Drops fields and context elements beyond Slack's counts.
fn limit_counts(block: &mut Value) {
    let max = match block.get("type").and_then(Value::as_str) {
        Some("section") => ("fields", MAX_SECTION_FIELDS),
        Some("context") => ("elements", MAX_CONTEXT_ELEMENTS),
        _ => return,
    };
    if let Some(Value::Array(items)) = block.get_mut(max.0) {
        items.truncate(max.1);
    }
}

/// Every text of `block` that Slack limits, with its limit.
fn text_slots(block: &mut Value) -> Vec<(&mut String, usize)> {
    let mut slots = Vec::new();
    let Some(object) = block.as_object_mut() else {
        return slots;
    };
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Iterating the entries lends out `text` and `fields` at once, which `get_mut` cannot.
    for (key, value) in object.iter_mut() {
        match (kind.as_str(), key.as_str()) {
            ("section", "text") => push_text(&mut slots, value, MAX_SECTION_TEXT_CHARS),
            ("header", "text") => push_text(&mut slots, value, MAX_HEADER_CHARS),
            ("markdown", "text") => {
                if let Value::String(text) = value {
                    slots.push((text, MAX_MARKDOWN_CHARS));
                }
            }
            ("section", "fields") | ("context", "elements") => {
                let limit = if kind == "section" {
                    MAX_FIELD_CHARS
                } else {
                    MAX_CONTEXT_TEXT_CHARS
                };
                if let Value::Array(items) = value {
                    for item in items {
                        push_text(&mut slots, item, limit);
                    }
                }
            }
            _ => {}
        }
    }
    slots
}

/// The `text` of a text object (image elements have none and are skipped).
fn push_text<'a>(slots: &mut Vec<(&'a mut String, usize)>, object: &'a mut Value, limit: usize) {
    if let Some(Value::String(text)) = object.get_mut("text") {
        slots.push((text, limit));
    }
}

#[cfg(test)]
mod tests;
