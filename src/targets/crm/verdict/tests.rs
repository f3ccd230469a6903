//! Tests for [`classify`], with HubSpot and Salesforce bodies shaped as in
//! textus-webhooks.md §3 and §4.

use super::*;

/// The reason and hint of a `Retry`, failing the test on any other outcome.
#[track_caller]
fn retried(outcome: Outcome) -> (String, Option<Duration>) {
    match outcome {
        Outcome::Retry {
            reason,
            retry_after,
            ..
        } => (reason, retry_after),
        other => panic!("expected Retry, got {other:?}"),
    }
}

/// The status and reason of a `Dead`, failing the test on any other outcome.
#[track_caller]
fn dead(outcome: Outcome) -> (Option<u16>, String) {
    match outcome {
        Outcome::Dead { status, reason } => (status, reason),
        other => panic!("expected Dead, got {other:?}"),
    }
}

const HUBSPOT_VALIDATION: &str = r#"{"status":"error","message":"Property values were not valid","errors":[{"message":"Property \"textus_contact_id\" does not exist","in":"textus_contact_id"}],"category":"VALIDATION_ERROR","correlationId":"a1b2c3d4-0000-4000-8000-000000000001"}"#;
const HUBSPOT_RATE: &str = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","category":"RATE_LIMITS","policyName":"TEN_SECONDLY_ROLLING","correlationId":"c0ffee00-0000-4000-8000-000000000002"}"#;

fn hubspot_429(policy: &str) -> String {
    HUBSPOT_RATE.replace("TEN_SECONDLY_ROLLING", policy)
}

#[test]
fn successes_are_delivered() {
    let hubspot_created = r#"{"id":"512","properties":{"hs_communication_channel_type":"SMS"},"createdAt":"2024-05-14T16:02:11.120Z","archived":false}"#;
    let salesforce_created =
        r#"{"id":"003xx000004TmiQAAS","success":true,"errors":[],"created":true}"#;
    let hubspot_batch = r#"{"status":"COMPLETE","results":[{"id":"512","properties":{}}],"startedAt":"2024-05-14T16:02:10Z","completedAt":"2024-05-14T16:02:11Z"}"#;
    assert_eq!(
        classify(201, None, hubspot_created),
        Outcome::Delivered { status: 201 }
    );
    assert_eq!(
        classify(201, None, salesforce_created),
        Outcome::Delivered { status: 201 }
    );
    assert_eq!(
        classify(200, None, hubspot_batch),
        Outcome::Delivered { status: 200 }
    );
    assert_eq!(classify(204, None, ""), Outcome::Delivered { status: 204 });
    assert_eq!(
        classify(200, None, "ok"),
        Outcome::Delivered { status: 200 }
    );
}

#[test]
fn hubspot_207_with_a_failed_item_is_dead_with_its_message() {
    let body = r#"{"status":"COMPLETE","results":[{"id":"512","properties":{}}],"numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid: hs_timestamp is required","context":{"propertyName":["hs_timestamp"]}}],"startedAt":"2024-05-14T16:02:10Z","completedAt":"2024-05-14T16:02:11Z"}"#;
    let (status, reason) = dead(classify(207, None, body));
    assert_eq!(status, Some(207));
    assert_eq!(
        reason,
        "HTTP 207 batch partly failed (1 failed, 1 written): VALIDATION_ERROR: Property values were not valid: hs_timestamp is required"
    );
}

#[test]
fn hubspot_207_without_failed_items_is_delivered() {
    let body =
        r#"{"status":"COMPLETE","results":[{"id":"512"},{"id":"513"}],"numErrors":0,"errors":[]}"#;
    assert_eq!(
        classify(207, None, body),
        Outcome::Delivered { status: 207 }
    );
    let (_, reason) = dead(classify(207, None, ""));
    assert_eq!(reason, "HTTP 207 multi-status without a readable body");
}

#[test]
fn hubspot_429_waits_per_policy_unless_retry_after_says_otherwise() {
    let (reason, after) = retried(classify(429, None, HUBSPOT_RATE));
    assert_eq!(after, Some(Duration::from_secs(10)));
    assert_eq!(
        reason,
        "HTTP 429 rate limited: RATE_LIMITS: You have reached your ten_secondly_rolling limit. (policy TEN_SECONDLY_ROLLING, correlationId c0ffee00-0000-4000-8000-000000000002)"
    );
    assert_eq!(
        retried(classify(429, Some("3"), HUBSPOT_RATE)).1,
        Some(Duration::from_secs(3))
    );
    let secondly = hubspot_429("SECONDLY");
    assert_eq!(
        retried(classify(429, None, &secondly)).1,
        Some(Duration::from_secs(1))
    );
    let (reason, after) = retried(classify(429, None, &hubspot_429("DAILY")));
    assert_eq!(after, Some(Duration::from_secs(3600)));
    assert!(reason.contains("policy DAILY"), "{reason}");
    // A plain 429 leaves the wait to the dispatcher's backoff.
    assert_eq!(retried(classify(429, None, "")).1, None);
}

#[test]
fn locked_waits_at_least_two_seconds() {
    let body = r#"{"status":"error","message":"Record is locked","category":"LOCKED"}"#;
    assert_eq!(
        retried(classify(423, None, body)).1,
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        retried(classify(423, Some("5"), body)).1,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn server_errors_and_cloudflare_codes_are_retried() {
    for status in [500, 502, 503, 504, 521, 522, 523, 524, 525, 526] {
        let (reason, after) = retried(classify(status, None, ""));
        assert_eq!(reason, format!("HTTP {status} server error"));
        assert_eq!(after, None);
    }
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let unavailable =
        r#"[{"errorCode":"SERVER_UNAVAILABLE","message":"Server temporarily unavailable"}]"#;
    let (reason, after) = retried(classify(503, Some(&later), unavailable));
    assert!(
        after.is_some_and(|d| d > Duration::from_secs(100) && d <= Duration::from_secs(120)),
        "{after:?}"
    );
    assert_eq!(
        reason,
        "HTTP 503 server error: SERVER_UNAVAILABLE: Server temporarily unavailable"
    );
    let unknown = r#"[{"message":"An unexpected error occurred. Please include this ErrorId if you contact support: 1733466380-12345 (-1290311045)","errorCode":"UNKNOWN_EXCEPTION"}]"#;
    assert!(
        retried(classify(500, None, unknown))
            .0
            .contains("UNKNOWN_EXCEPTION")
    );
}

#[test]
fn salesforce_request_limit_is_a_throttle_not_a_permission_error() {
    let daily =
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
    let (reason, after) = retried(classify(403, None, daily));
    assert_eq!(
        reason,
        "HTTP 403 API request limit exceeded: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
    );
    assert_eq!(after, Some(Duration::from_secs(3600)));
    let concurrent = r#"[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
    assert_eq!(
        retried(classify(403, None, concurrent)).1,
        Some(Duration::from_secs(300))
    );
    // An XML answer (Accept not honoured) still carries the code.
    let xml = "<Errors><Error><errorCode>REQUEST_LIMIT_EXCEEDED</errorCode><message>TotalRequests Limit exceeded.</message></Error></Errors>";
    assert_eq!(
        retried(classify(403, None, xml)).1,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn salesforce_lock_contention_is_retried_other_400s_are_dead() {
    let locked = r#"[{"message":"unable to obtain exclusive access to this record or 1 records: 003xx000004TmiQAAS","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#;
    let (reason, after) = retried(classify(400, None, locked));
    assert!(
        reason.starts_with("HTTP 400 record locked: UNABLE_TO_LOCK_ROW: unable to obtain"),
        "{reason}"
    );
    assert_eq!(after, None);
    let missing = r#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]},{"message":"bad value for restricted picklist field: Done","errorCode":"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST","fields":["Status"]}]"#;
    assert_eq!(
        dead(classify(400, None, missing)),
        (
            Some(400),
            "HTTP 400 bad request: REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (+1 more)".to_owned()
        )
    );
}

#[test]
fn hubspot_400_quotes_category_message_and_first_sub_error() {
    let (status, reason) = dead(classify(400, None, HUBSPOT_VALIDATION));
    assert_eq!(status, Some(400));
    assert_eq!(
        reason,
        r#"HTTP 400 bad request: VALIDATION_ERROR: Property values were not valid: Property "textus_contact_id" does not exist (correlationId a1b2c3d4-0000-4000-8000-000000000001)"#
    );
}

#[test]
fn unauthorized_is_dead_for_both_providers() {
    let salesforce =
        r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
    assert_eq!(
        dead(classify(401, None, salesforce)).1,
        "HTTP 401 unauthorized: INVALID_SESSION_ID: Session expired or invalid"
    );
    let hubspot = r#"{"status":"error","message":"Authentication credentials not found. This API supports OAuth 2.0 authentication","correlationId":"5d1c7d5e-0000-4000-8000-000000000003","category":"INVALID_AUTHENTICATION"}"#;
    let (status, reason) = dead(classify(401, None, hubspot));
    assert_eq!(status, Some(401));
    assert!(
        reason.starts_with(
            "HTTP 401 unauthorized: INVALID_AUTHENTICATION: Authentication credentials not found"
        ),
        "{reason}"
    );
}

#[test]
fn permission_errors_are_dead() {
    let hubspot = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","correlationId":"0f0f0f0f-0000-4000-8000-000000000004","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredGranularScopes":["crm.objects.contacts.write"]}}]}"#;
    let (_, reason) = dead(classify(403, None, hubspot));
    assert!(reason.starts_with("HTTP 403 forbidden (missing scope or permission): MISSING_SCOPES: This app hasn't been granted"), "{reason}");
    let salesforce = r#"[{"message":"insufficient access rights on cross-reference id","errorCode":"INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY","fields":[]}]"#;
    assert!(
        dead(classify(403, None, salesforce))
            .1
            .contains("INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY")
    );
}

#[test]
fn not_found_and_conflict_are_dead_with_the_message() {
    let salesforce =
        r#"[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]"#;
    assert_eq!(
        dead(classify(404, None, salesforce)).1,
        "HTTP 404 not found: NOT_FOUND: The requested resource does not exist"
    );
    assert_eq!(dead(classify(404, None, "")).1, "HTTP 404 not found");
    let conflict = r#"{"status":"error","message":"Contact already exists. Existing ID: 12345","correlationId":"9a9a9a9a-0000-4000-8000-000000000005","category":"CONFLICT"}"#;
    let (status, reason) = dead(classify(409, None, conflict));
    assert_eq!(status, Some(409));
    assert!(
        reason.contains("upsert")
            && reason.contains("CONFLICT: Contact already exists. Existing ID: 12345"),
        "{reason}"
    );
}

#[test]
fn salesforce_300_is_dead_other_redirects_are_retried() {
    let matches = r#"["/services/data/v62.0/sobjects/Contact/003xx000004TmiQAAS","/services/data/v62.0/sobjects/Contact/003xx000004TmiRAAS"]"#;
    let (status, reason) = dead(classify(300, None, matches));
    assert_eq!(status, Some(300));
    assert!(
        reason.starts_with("HTTP 300 multiple records match the external ID")
            && reason.contains("003xx000004TmiRAAS"),
        "{reason}"
    );
    for status in [301, 302, 307, 308] {
        let (reason, _) = retried(classify(status, None, ""));
        assert_eq!(
            reason,
            format!("HTTP {status} redirect (redirects are not followed)")
        );
    }
}

#[test]
fn other_client_errors_are_dead_except_timeouts() {
    for status in [405, 410, 412, 414, 415, 422] {
        assert_eq!(dead(classify(status, None, "")).0, Some(status));
    }
    let generic = r#"{"error":{"code":"invalid_field","message":"email is invalid"}}"#;
    assert_eq!(
        dead(classify(422, None, generic)).1,
        "HTTP 422 rejected: invalid_field: email is invalid"
    );
    retried(classify(408, None, ""));
    retried(classify(425, None, ""));
}

#[test]
fn long_reasons_are_cut_to_the_limit() {
    let long = format!(
        r#"{{"status":"error","message":"{}","category":"VALIDATION_ERROR"}}"#,
        "é".repeat(1000)
    );
    let (_, reason) = dead(classify(400, None, &long));
    assert_eq!(reason.chars().count(), REASON_CHARS);
    assert!(
        reason.starts_with("HTTP 400 bad request: VALIDATION_ERROR: éé") && reason.ends_with('…')
    );
    let exact = "x".repeat(REASON_CHARS);
    assert_eq!(truncate(&exact), exact);
}

fn composite(parts: &[(&str, u16, &str)]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|(reference, status, body)| {
            format!(r#"{{"body":{body},"httpHeaders":{{}},"httpStatusCode":{status},"referenceId":"{reference}"}}"#)
        })
        .collect();
    format!(r#"{{"compositeResponse":[{}]}}"#, parts.join(","))
}

const HALTED: &str = r#"[{"errorCode":"PROCESSING_HALTED","message":"The transaction was rolled back since another operation in the same transaction failed."}]"#;

#[test]
fn composite_answers_are_checked_item_by_item() {
    let created = r#"{"id":"003xx000004TmiQAAS","success":true,"errors":[],"created":true}"#;
    let ok = composite(&[
        ("contact", 201, created),
        (
            "task",
            201,
            r#"{"id":"00Txx0000012345","success":true,"errors":[],"created":true}"#,
        ),
    ]);
    assert_eq!(classify(200, None, &ok), Outcome::Delivered { status: 200 });

    // allOrNone: the halted task is a consequence; the contact's error is the cause.
    let missing = r#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#;
    let failed = composite(&[("contact", 400, missing), ("task", 400, HALTED)]);
    let (status, reason) = dead(classify(200, None, &failed));
    assert_eq!(status, Some(200));
    assert_eq!(
        reason,
        "HTTP 200 2 of 2 items failed; contact HTTP 400: REQUIRED_FIELD_MISSING: Required fields are missing: [LastName]"
    );

    // Nothing was written and the cause is lock contention: resending is safe.
    let locked = r#"[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW","fields":[]}]"#;
    let contended = composite(&[("contact", 400, HALTED), ("task", 400, locked)]);
    let (reason, _) = retried(classify(200, None, &contended));
    assert!(
        reason.contains("task HTTP 400: UNABLE_TO_LOCK_ROW"),
        "{reason}"
    );

    // The contact was written: resending could duplicate it, so the delivery is dead.
    let partial = composite(&[("contact", 201, created), ("task", 400, locked)]);
    assert!(
        dead(classify(200, None, &partial))
            .1
            .contains("1 of 2 items failed; task")
    );
}

#[test]
fn sobject_collections_answers_are_checked_item_by_item() {
    let duplicate = r#"[{"id":"003xx000004TmiQAAS","success":true,"errors":[],"created":false},{"success":false,"errors":[{"statusCode":"DUPLICATES_DETECTED","message":"Use one of these records?","fields":[]}]}]"#;
    assert_eq!(
        dead(classify(200, None, duplicate)).1,
        "HTTP 200 1 of 2 items failed; #1: DUPLICATES_DETECTED: Use one of these records?"
    );
    let locked = r#"[{"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"unable to obtain exclusive access to this record","fields":[]}]},{"success":false,"errors":[{"statusCode":"ALL_OR_NONE_OPERATION_ROLLED_BACK","message":"Record rolled back because not all records were valid and the request was using AllOrNone header","fields":[]}]}]"#;
    assert!(
        retried(classify(200, None, locked))
            .0
            .contains("#0: UNABLE_TO_LOCK_ROW")
    );
    let all_ok = r#"[{"id":"003xx000004TmiQAAS","success":true,"errors":[],"created":true}]"#;
    assert_eq!(
        classify(200, None, all_ok),
        Outcome::Delivered { status: 200 }
    );
    // An array without success flags is some other API's data, not a per-item answer.
    assert_eq!(
        classify(200, None, r#"[{"id":1},{"id":2}]"#),
        Outcome::Delivered { status: 200 }
    );
}
