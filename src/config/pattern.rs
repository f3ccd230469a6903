//! Event type patterns used by routes: `*`, `contact.*` and exact types.
//!
//! Event types are dotted lower-case segments (`message.received`,
//! `contact.opted_out`). A prefix pattern matches whole segments only, so `contact.*`
//! matches `contact.opted_out` but neither `contacts.created` nor `contact` itself.

use std::fmt;

/// Which event types a route applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventPattern {
    /// `*`: every event type, including ones TextUs adds later.
    Any,
    /// `contact.*`, stored as `contact.` (with the trailing dot).
    Prefix(String),
    /// `message.received`: that type only.
    Exact(String),
}

impl EventPattern {
    /// Parses a pattern as written in `routes[].events`.
    ///
    /// Valid forms: `*`, `seg(.seg)*` and `seg(.seg)*.*` where `seg` is `[a-z0-9_]+`.
    pub fn parse(text: &str) -> Result<EventPattern, String> {
        if text == "*" {
            return Ok(EventPattern::Any);
        }
        let (segments, prefix) = match text.strip_suffix(".*") {
            Some(segments) => (segments, true),
            None => (text, false),
        };
        let valid = segments.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !valid {
            return Err(
                "expected `*`, an event type such as message.received, or a prefix such as contact.*"
                    .to_owned(),
            );
        }
        Ok(if prefix {
            EventPattern::Prefix(format!("{segments}."))
        } else {
            EventPattern::Exact(segments.to_owned())
        })
    }

    /// Whether an event of type `event_type` (the envelope's `action`) matches.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::Any => true,
            EventPattern::Prefix(prefix) => {
                // The stored prefix ends with '.', so only whole segments match, and at
                // least one segment must follow it.
                event_type.len() > prefix.len() && event_type.starts_with(prefix.as_str())
            }
            EventPattern::Exact(exact) => event_type == exact,
        }
    }
}

impl fmt::Display for EventPattern {
    /// The pattern as it is written in the config file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventPattern::Any => f.write_str("*"),
            EventPattern::Prefix(prefix) => write!(f, "{prefix}*"),
            EventPattern::Exact(exact) => f.write_str(exact),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> EventPattern {
        EventPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(pattern("*"), EventPattern::Any);
        assert_eq!(
            pattern("contact.*"),
            EventPattern::Prefix("contact.".to_owned())
        );
        assert_eq!(
            pattern("a.b_2.*"),
            EventPattern::Prefix("a.b_2.".to_owned())
        );
        assert_eq!(
            pattern("message.received"),
            EventPattern::Exact("message.received".to_owned())
        );
        assert_eq!(pattern("ping"), EventPattern::Exact("ping".to_owned()));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "con*", "a..b", "", ".a", "a.", "*.a", "a.*.b", "A.b", "a b", "a.**", ".*", "a-b", "é",
        ] {
            assert!(
                EventPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn any_matches_everything() {
        assert!(pattern("*").matches("message.received"));
        assert!(pattern("*").matches("something.new"));
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let p = pattern("contact.*");
        assert!(p.matches("contact.opted_out"));
        assert!(p.matches("contact.a.b"));
        assert!(!p.matches("contacts.x"));
        assert!(!p.matches("contact"));
        assert!(!p.matches("contact."));
        assert!(!p.matches("message.received"));
    }

    #[test]
    fn exact_matches_only_itself() {
        let p = pattern("message.received");
        assert!(p.matches("message.received"));
        assert!(!p.matches("message.received.x"));
        assert!(!p.matches("message"));
    }

    #[test]
    fn displays_as_written() {
        for text in ["*", "contact.*", "message.received"] {
            assert_eq!(pattern(text).to_string(), text);
        }
    }
}
