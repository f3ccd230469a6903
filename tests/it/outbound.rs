//! What an http target's request carries and how it leaves (issue 18): the direct path that
//! replaced reqwest for most targets keeps reqwest's headers, and a target an environment
//! proxy applies to still goes through the proxy.

use textus_relay::support::sink::{Reply, Sink};

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
    // User info in the URL is sent as Basic credentials, percent-decoded.
    let with_user = target
        .url("/direct")
        .replace("http://", "http://relay:s%40cret@");
    let yaml = two_targets(&with_user, "http://through-proxy.invalid/hook");
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
    // base64 of `relay:s@cret`.
    assert_eq!(header("authorization"), "Basic cmVsYXk6c0BjcmV0");
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

/// The direct path checks certificates against the system's roots, as reqwest did: a second
/// relay serving HTTPS with a private CA's certificate is reached once `SSL_CERT_FILE` names
/// that CA, and refused (connection failed, nothing delivered) without it.
#[tokio::test]
async fn https_targets_trust_the_systems_roots_and_only_them() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let inner_rest = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &sink.url("/t"), "")
    );
    let (inner, chain) = crate::tls::relay_with_tls(dir.path(), &inner_rest).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &chain.ca_pem).expect("write CA");
    // The outer relay forwards TextUs's signature, so the inner one accepts the event.
    let url = format!("https://localhost:{}/webhooks/textus", inner.listen.port());
    let outer_rest = format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [inner]\n",
        http_target("inner", &url, "    forward_textus_signature: true\n")
    );
    let no_proxy: [(&str, Option<&str>); 5] = [
        ("HTTPS_PROXY", None),
        ("https_proxy", None),
        ("ALL_PROXY", None),
        ("all_proxy", None),
        ("SSL_CERT_DIR", None),
    ];

    let mut env = no_proxy.to_vec();
    let ca_path = ca.display().to_string();
    env.push(("SSL_CERT_FILE", Some(ca_path.as_str())));
    let trusting = TestRelay::start_with_env(&outer_rest, &env).await;
    let body = fixture("message.received");
    assert_eq!(trusting.post_signed(&body).await.0, 200);
    let got = sink
        .wait_for(1, PATIENCE)
        .await
        .expect("delivered over HTTPS");
    assert_eq!(got[0].body[..], body[..]);

    // With another CA as its only root the relay refuses the certificate.
    let mut env = no_proxy.to_vec();
    let stranger = dir.path().join("other-ca.pem");
    std::fs::write(&stranger, other_ca()).expect("write other CA");
    let stranger_path = stranger.display().to_string();
    env.push(("SSL_CERT_FILE", Some(stranger_path.as_str())));
    let refusing = TestRelay::start_with_env(&outer_rest, &env).await;
    let other = fixture_with_id("message.received", "/integrations/o/deliveries/2");
    assert_eq!(refusing.post_signed(&other).await.0, 200);
    let reason = eventually("a failed attempt", async || {
        let t = target(&refusing, "inner").await;
        match t["last_error"]["message"].as_str() {
            Some(m) if !m.is_empty() => Ok(m.to_string()),
            _ => Err(format!("no error yet: {t}")),
        }
    })
    .await;
    assert!(
        reason.contains("connection failed") && reason.contains("certificate"),
        "{reason}"
    );
    assert_eq!(
        sink.received().len(),
        1,
        "nothing went past a refused certificate"
    );
}

/// A self-signed CA certificate that signed nothing the tests serve.
fn other_ca() -> String {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("CA certificate").pem()
}
