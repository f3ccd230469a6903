//! Tests for escaping, truncation and fitting to Slack's limits.

use serde_json::{Value, json};

use super::*;
use crate::templates::mrkdwn::escape;

/// Every `&` in `text` starts one of the three entities `escape` writes.
fn entities_whole(text: &str) -> bool {
    text.match_indices('&').all(|(i, _)| {
        ["&amp;", "&lt;", "&gt;"]
            .iter()
            .any(|e| text[i..].starts_with(e))
    })
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn block_texts(payload: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for block in payload["blocks"].as_array().into_iter().flatten() {
        out.extend(
            block
                .pointer("/text/text")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        for key in ["fields", "elements"] {
            for item in block[key].as_array().into_iter().flatten() {
                out.extend(item["text"].as_str().map(str::to_owned));
            }
        }
    }
    out
}

#[test]
fn truncate_keeps_short_text_and_marks_cuts() {
    assert_eq!(truncate("hello", 5), "hello");
    assert_eq!(truncate("hello", 4), "hel…");
    assert_eq!(truncate("hello", 1), "…");
    assert_eq!(truncate("hello", 0), "");
    assert_eq!(truncate("ab cd", 4), "ab…", "no space before the marker");
}

#[test]
fn truncate_never_leaves_half_an_entity_at_any_cut() {
    let escaped = escape("a<b>&c <!channel> & <@U1> x&y>z");
    for max in 1..=chars(&escaped) + 1 {
        let cut = truncate(&escaped, max);
        assert!(chars(&cut) <= max, "{max}: {cut}");
        assert!(entities_whole(&cut), "{max}: {cut}");
        let kept = cut.strip_suffix('…').unwrap_or(&cut);
        assert!(escaped.starts_with(kept), "{max}: {cut}");
    }
    assert_eq!(truncate("xx&amp;yy", 5), "xx…");
    assert_eq!(truncate("xx&amp;yy", 8), "xx&amp;…");
}

#[test]
fn truncate_never_leaves_an_open_control_sequence() {
    let text = "see <https://example.com/a|the link> now";
    for max in 1..=chars(text) {
        let cut = truncate(text, max);
        let opens = cut.matches('<').count();
        let closes = cut.matches('>').count();
        assert_eq!(opens, closes, "{max}: {cut}");
    }
}

#[test]
fn truncate_counts_characters_not_bytes() {
    let text = "é😀ü漢".repeat(10);
    for max in 1..=chars(&text) {
        let cut = truncate(&text, max);
        assert!(chars(&cut) <= max);
        let kept = cut.strip_suffix('…').unwrap_or(&cut);
        assert!(text.starts_with(kept));
    }
    assert_eq!(truncate("é😀ü漢", 3), "é😀…");
}

#[test]
fn fit_leaves_small_payloads_and_other_shapes_alone() {
    let small = json!({"text": "hi", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]});
    assert_eq!(fit(small.clone()), small);
    for odd in [
        json!(null),
        json!([1, 2]),
        json!("text"),
        json!(7),
        json!({"blocks": "no"}),
        json!({"text": 5}),
    ] {
        assert_eq!(fit(odd.clone()), odd);
    }
}

#[test]
fn fit_cuts_top_level_text_without_splitting_an_entity() {
    let long = "&lt;".repeat(2_000); // 8,000 characters, one escaped character repeated
    let payload = fit(json!({"text": long}));
    let text = payload["text"].as_str().unwrap_or_default();
    // 2,999 characters would end in "&lt", so the cut backs off to the last whole entity.
    assert_eq!(chars(text), MAX_TEXT_CHARS - 3);
    assert!(entities_whole(text) && text.ends_with("&lt;…"), "{text}");
}

#[test]
fn fit_cuts_each_block_kind_to_its_limit() {
    let long = "&gt;".repeat(2_000);
    let mut fields = vec![json!({"type": "mrkdwn", "text": "f".repeat(2_500)}); 2];
    fields.extend(vec![json!({"type": "plain_text", "text": "f"}); 10]);
    let mut elements = vec![json!({"type": "mrkdwn", "text": long}); 1];
    elements.extend(vec![
        json!({"type": "image", "image_url": "x", "alt_text": "y"});
        11
    ]);
    let payload = fit(json!({"blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "h".repeat(500)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": long}, "fields": fields},
        {"type": "context", "elements": elements},
    ]}));
    let blocks = &payload["blocks"];
    assert_eq!(
        blocks.as_array().map(Vec::len),
        Some(3),
        "nothing dropped: {payload}"
    );
    assert_eq!(
        chars(blocks[0]["text"]["text"].as_str().unwrap_or_default()),
        MAX_HEADER_CHARS
    );
    let section = blocks[1]["text"]["text"].as_str().unwrap_or_default();
    assert!(chars(section) <= MAX_SECTION_TEXT_CHARS && chars(section) > 2_990);
    assert_eq!(
        blocks[1]["fields"].as_array().map(Vec::len),
        Some(MAX_SECTION_FIELDS)
    );
    assert_eq!(
        chars(blocks[1]["fields"][0]["text"].as_str().unwrap_or_default()),
        MAX_FIELD_CHARS
    );
    assert_eq!(
        blocks[2]["elements"].as_array().map(Vec::len),
        Some(MAX_CONTEXT_ELEMENTS)
    );
    let context = blocks[2]["elements"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(chars(context) <= MAX_CONTEXT_TEXT_CHARS && chars(context) > 1_990);
    for text in block_texts(&payload) {
        assert!(!text.is_empty() && entities_whole(&text), "{text}");
    }
}

#[test]
fn fit_keeps_at_most_fifty_blocks_and_says_what_it_dropped() {
    let blocks: Vec<Value> = (0..100)
        .map(|i| json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("block {i}")}}))
        .collect();
    let payload = fit(json!({"text": "t", "blocks": blocks}));
    let blocks = payload["blocks"].as_array().cloned().unwrap_or_default();
    assert_eq!(blocks.len(), MAX_BLOCKS);
    assert_eq!(blocks[48]["text"]["text"], "block 48");
    let note = blocks[49]
        .pointer("/elements/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(note.contains("51 more blocks"), "{note}");
}

#[test]
fn fit_keeps_the_sum_of_block_texts_under_slacks_aggregate_cap() {
    let blocks: Vec<Value> = (0..40)
        .map(
            |_| json!({"type": "section", "text": {"type": "mrkdwn", "text": "&amp;".repeat(600)}}),
        )
        .collect();
    let payload = fit(json!({"blocks": blocks}));
    let texts = block_texts(&payload);
    let total: usize = texts.iter().map(|t| chars(t)).sum();
    assert!(total <= MAX_BLOCKS_TEXT_CHARS + 60, "{total}");
    assert!(texts.len() < 40, "later blocks dropped");
    assert_eq!(
        texts[0],
        "&amp;".repeat(600),
        "the first blocks are kept whole"
    );
    assert!(
        texts
            .last()
            .is_some_and(|t| t.contains("more blocks not shown"))
    );
    assert!(texts.iter().all(|t| entities_whole(t)));
}
