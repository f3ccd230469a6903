//! Secrets, tokens and signatures never appear in logs (design.md §7), even at `debug` or
//! `trace`.

use serde_json::json;
use textus_relay::ingress::signature;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN_TOKEN: &str = "admin-token-d41d8cd98f00b204";
const BEARER: &str = "pat-na1-bearer-0123456789abcdef";

/// A full run at `RUST_LOG=trace` (everything `debug` logs and more): every sample event signed, a forged one (401), admin calls
/// with and without the token, deliveries to a signing http target (first refused, so there are
/// retries) and to a bearer-auth crm target. Then the log is searched for each secret and
/// every signature that went over the wire in either direction.
#[tokio::test]
async fn secrets_tokens_and_signatures_never_reach_the_log() {
    // Regression: #5
    secrets_stay_out_of_the_log(false).await;
}

/// The same run with `--log-format json`: its fields are written by another formatter, which
/// must keep them out just as well.
#[tokio::test]
async fn secrets_tokens_and_signatures_never_reach_the_json_log() {
    secrets_stay_out_of_the_log(true).await;
}

async fn secrets_stay_out_of_the_log(json_logs: bool) {
    let http = Sink::start(vec![Reply::Status(503)], Reply::Status(200))
        .await
        .expect("http sink");
    let crm = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("crm sink");
    let rest = format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
{}  crm:
    kind: crm
    url: "{}"
    auth: {{ bearer: "{BEARER}" }}
    body: {{ id: "{{{{ meta.id }}}}" }}
routes:
  - events: ["*"]
    to: [web, crm]
"#,
        http_target(
            "web",
            &http.url("/web"),
            &format!(
                "    signing: {{ secret: \"{WHSEC}\" }}\n    forward_textus_signature: true\n"
            )
        ),
        crm.url("/crm"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let admin_extra = format!(", token: \"{ADMIN_TOKEN}\"");
    let relay = if json_logs {
        TestRelay::launch_json_logged(dir.path(), &admin_extra, &rest, "trace").await
    } else {
        TestRelay::launch_logged(dir.path(), &admin_extra, &rest, "trace").await
    };

    let mut signatures = Vec::new();
    for event_type in EVENT_TYPES {
        let body = fixture(event_type);
        let sig = signature::sign(SECRET, &body);
        assert_eq!(relay.post_with(&body, Some(&sig)).await.0, 200);
        signatures.push(sig);
    }
    let forged = signature::sign("textus-not-the-secret", &fixture("message.received"));
    let (status, _) = relay
        .post_with(&fixture("message.received"), Some(&forged))
        .await;
    assert_eq!(status, 401);
    signatures.push(forged);
    let (status, _) = relay
        .admin_call(
            reqwest::Method::GET,
            "/api/v1/targets",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = relay
        .admin_call(
            reqwest::Method::POST,
            "/api/v1/dead-letters/replay",
            Some("wrong-token"),
            Some(json!({"target": "web"})),
        )
        .await;
    assert_eq!(status, 401);

    let n = EVENT_TYPES.len();
    let sent = http.wait_for(n + 1, PATIENCE).await.expect("http target");
    crm.wait_for(n, PATIENCE).await.expect("crm target");
    // What the relay itself sent: Standard Webhooks signatures made with the whsec secret.
    for r in &sent {
        for name in ["webhook-signature", "x-textus-signature"] {
            if let Some(v) = r.headers.get(name) {
                signatures.push(v.to_str().expect("ascii").to_string());
            }
        }
    }

    let log = relay.log();
    assert!(
        log.contains("DEBUG") || log.contains("debug"),
        "the run logged at debug"
    );
    if json_logs {
        // Every line is a JSON object: this run really is the JSON format's.
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "not a JSON log line: {line}"
            );
        }
    }
    let whsec_key = WHSEC.trim_start_matches("whsec_");
    let secrets = [SECRET, WHSEC, whsec_key, ADMIN_TOKEN, BEARER];
    for secret in secrets
        .iter()
        .copied()
        .chain(signatures.iter().map(String::as_str))
    {
        assert!(
            !log.contains(secret),
            "the log contains a secret or signature: {secret}"
        );
    }
    // Signatures can carry several space-separated parts (`v1,<base64> v1,<base64>`).
    for part in signatures.iter().flat_map(|s| s.split([' ', ','])) {
        if part.len() >= 16 {
            assert!(!log.contains(part), "the log contains a signature: {part}");
        }
    }
}
