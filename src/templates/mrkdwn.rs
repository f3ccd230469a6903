//! Escaping event text for Slack mrkdwn: what Slack templates do to every interpolated value
//! (and the `slack_escape` filter to one), and the built-in Slack messages to each text they
//! take from an event.
//!
//! Slack gives `&`, `<` and `>` control meaning in mrkdwn (`<!channel>`, `<@U123>`,
//! `<https://x|click>`), so text from a TextUs event is escaped before it joins our markup.

/// `&`, `<` and `>` as `&amp;`, `&lt;` and `&gt;`: Slack's mrkdwn control characters, and
/// nothing else, so that other text reads exactly as written.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_replaces_exactly_the_three_control_characters() {
        assert_eq!(
            escape("<!channel> <@U123> <https://evil|click> & *bold* _x_ ~y~ \"q\" 'a' é😀"),
            "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|click&gt; &amp; *bold* _x_ ~y~ \"q\" 'a' é😀"
        );
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "already-escaped text is escaped again"
        );
        assert_eq!(escape(""), "");
    }
}
