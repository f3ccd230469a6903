//! Tests for the classification of Slack's answers (textus-webhooks.md §2 and §6).

use std::time::Duration;

use super::*;

fn dead(status: u16, body: &str) -> (String, Option<String>) {
    match classify(status, None, body) {
        Verdict {
            outcome:
                Outcome::Dead {
                    status: Some(s),
                    reason,
                },
            attention,
        } if s == status => (reason, attention),
        other => panic!("{status} {body}: {other:?}"),
    }
}

fn retry(status: u16, retry_after: Option<&str>, body: &str) -> (String, Option<Duration>) {
    match classify(status, retry_after, body) {
        Verdict {
            outcome:
                Outcome::Retry {
                    status: Some(s),
                    reason,
                    retry_after,
                },
            attention: None,
        } if s == status => (reason, retry_after),
        other => panic!("{status} {body}: {other:?}"),
    }
}

#[test]
fn ok_is_delivered() {
    let verdict = classify(200, None, "ok");
    assert_eq!(
        verdict,
        Verdict {
            outcome: Outcome::Delivered { status: 200 },
            attention: None
        }
    );
}

#[test]
fn rate_limits_retry_after_slacks_delay() {
    let (reason, after) = retry(429, Some("30"), "");
    assert_eq!(after, Some(Duration::from_secs(30)));
    assert!(
        reason.contains("429") && reason.contains("rate limited"),
        "{reason}"
    );
    assert_eq!(retry(429, None, "").1, None);
    assert_eq!(retry(429, Some("soon"), "").1, None);
    let (reason, _) = retry(429, Some("1"), r#"{"ok":false,"error":"ratelimited"}"#);
    assert!(
        reason.contains("ratelimited") && !reason.contains('{'),
        "{reason}"
    );
}

#[test]
fn slack_side_errors_retry() {
    let (reason, after) = retry(500, None, "rollup_error");
    assert!(
        reason.contains("500") && reason.contains("rollup_error"),
        "{reason}"
    );
    assert_eq!(after, None);
    for status in [502, 503, 504, 408, 425] {
        retry(status, None, "");
    }
    assert_eq!(retry(503, Some("5"), "").1, Some(Duration::from_secs(5)));
}

#[test]
fn redirects_retry_and_are_not_followed() {
    for status in [301, 302, 307, 308] {
        let (reason, after) = retry(status, Some("9"), "");
        assert!(
            reason.contains(&status.to_string()) && reason.contains("redirect"),
            "{reason}"
        );
        assert_eq!(after, None);
    }
}

#[test]
fn rejected_messages_are_dead_without_attention() {
    for error in [
        "invalid_payload",
        "no_text",
        "missing_text_or_fallback_or_attachments",
        "invalid_blocks",
        "invalid_blocks_format",
        "too_many_attachments",
        "user_not_found",
    ] {
        let (reason, attention) = dead(400, &format!("{error}\n"));
        assert!(
            reason.contains("HTTP 400") && reason.contains(error),
            "{reason}"
        );
        assert!(reason.contains("rejected"), "{reason}");
        assert_eq!(attention, None, "{error}");
    }
}

#[test]
fn broken_webhooks_are_dead_and_need_an_operator() {
    let cases = [
        (403, "action_prohibited", "admin"),
        (403, "invalid_token", "new webhook"),
        (400, "invalid_token", "new webhook"),
        (403, "posting_to_general_channel_denied", "another channel"),
        (403, "team_disabled", "disabled"),
        (400, "team_disabled", "disabled"),
        (404, "channel_not_found", "deleted"),
        (404, "no_service", "new webhook"),
        (404, "no_service_id", "invalid"),
        (404, "no_team", "no longer exists"),
        (410, "channel_is_archived", "archived"),
    ];
    for (status, error, advice) in cases {
        let (reason, attention) = dead(status, error);
        assert!(
            reason.contains(&format!("HTTP {status}")) && reason.contains(error),
            "{reason}"
        );
        let attention = attention.unwrap_or_else(|| panic!("{status} {error}: no attention"));
        assert!(
            attention.starts_with(&format!("Slack says {error} (HTTP {status}): ")),
            "{attention}"
        );
        assert!(attention.contains(advice), "{attention}");
    }
    let (_, attention) = dead(410, "channel_is_archived");
    assert_eq!(
        attention.as_deref(),
        Some(
            "Slack says channel_is_archived (HTTP 410): the webhook's channel was archived; unarchive it, or create a new webhook and update the target's url"
        )
    );
}

#[test]
fn unknown_answers_from_the_webhook_statuses_still_need_an_operator() {
    for (status, body) in [
        (404, "Not Found"),
        (410, ""),
        (403, "<html>Forbidden</html>"),
    ] {
        let (_, attention) = dead(status, body);
        assert!(
            attention.is_some_and(|a| a.contains(&format!("HTTP {status}"))),
            "{status}"
        );
    }
    let (reason, _) = dead(410, "  ");
    assert!(reason.contains("(empty body)"), "{reason}");
}

#[test]
fn other_client_errors_are_dead_without_attention() {
    for status in [401, 405, 409, 413, 422] {
        assert_eq!(dead(status, "something_else").1, None, "{status}");
    }
}

#[test]
fn json_error_bodies_are_understood() {
    let (_, attention) = dead(404, r#"{"ok": false, "error": "channel_not_found"}"#);
    assert!(attention.is_some_and(|a| a.starts_with("Slack says channel_not_found (HTTP 404)")));
}

#[test]
fn long_bodies_are_cut_to_one_short_line() {
    let page = format!("<html>\n<body>{}</body>\n</html>", "x".repeat(5_000));
    let (reason, _) = dead(400, &page);
    assert!(
        !reason.contains('\n') && reason.chars().count() < 300,
        "{reason}"
    );
}
