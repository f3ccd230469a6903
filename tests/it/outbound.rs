//! What an http target's request carries and how it leaves (issue 18): the direct path that
//! replaced reqwest for most targets keeps reqwest's headers, and a target an environment
//! proxy applies to still goes through the proxy.

use textus_relay::sink::{Reply, Sink};

use crate::support::*;

fn two_targets(direct: &str, proxied: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}{}routes:\n  - events: [\"*\"]\n    to: [direct, proxied]\n",
        http_target("direct", direct, "    headers: { x-api-key: \"k-123\" }\n"),
        http_target("proxied", proxied, ""),
    )
}

#[tokio::test]
async fn http_targets_honour_proxy_variables_and_send_reqwests_headers() {
    let proxy = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let target = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    // `.invalid` never resolves: only the proxy can deliver to it.
    let yaml = two_targets(&target.url("/direct"), "http://through-proxy.invalid/hook");
    let proxy_url = proxy.url("");
    let relay = TestRelay::start_with_env(
        &yaml,
        &[
            ("HTTP_PROXY", Some(&proxy_url)),
            ("NO_PROXY", Some("127.0.0.1")),
            ("http_proxy", None),
            ("no_proxy", None),
            ("HTTPS_PROXY", None),
            ("https_proxy", None),
            ("ALL_PROXY", None),
            ("all_proxy", None),
            ("REQUEST_METHOD", None),
        ],
    )
    .await;
    let body = fixture("message.received");
    assert_eq!(relay.post_signed(&body).await.0, 200);

    let via_proxy = proxy
        .wait_for(1, PATIENCE)
        .await
        .expect("sent to the proxy");
    assert_eq!(via_proxy[0].path, "/hook");
    assert_eq!(
        via_proxy[0].headers.get("host").map(|h| h.as_bytes()),
        Some(&b"through-proxy.invalid"[..])
    );
    assert_eq!(via_proxy[0].body[..], body[..]);

    // NO_PROXY names the target's host: it is reached directly, never through the proxy.
    let direct = target.wait_for(1, PATIENCE).await.expect("sent directly");
    let r = &direct[0];
    assert_eq!(r.path, "/direct");
    assert_eq!(r.body[..], body[..]);
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        header("user-agent").starts_with("textus-relay/"),
        "{:?}",
        r.headers
    );
    assert_eq!(header("accept"), "*/*");
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-api-key"), "k-123");
    assert_eq!(header("content-length"), body.len().to_string());
    assert_eq!(header("host"), target.url("").trim_start_matches("http://"));
    assert!(!header("webhook-id").is_empty());
    assert!(!header("webhook-timestamp").is_empty());

    wait_drained(&relay, "direct").await;
    wait_drained(&relay, "proxied").await;
    assert_eq!(
        proxy.received().len(),
        1,
        "only the proxied target used the proxy"
    );
}
