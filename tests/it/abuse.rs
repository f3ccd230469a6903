//! Inbound abuse (issue 5, item 4): idle and half-open connections, trickled bodies, huge
//! heads, hostile bodies and many clients at once. None may starve a real, signed request.

use std::time::Duration;

use textus_relay::ingress::signature;
use textus_relay::support::sink::{Reply, Sink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn relay() -> (TestRelay, Sink) {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let yaml = format!(
        "source: {{ secrets: [\"{SECRET}\"], max_body: 1MiB }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [all]\n",
        http_target("all", &sink.url("/in"), "")
    );
    (TestRelay::start(&yaml).await, sink)
}

fn unique(i: usize) -> Vec<u8> {
    fixture_with_id(
        "message.received",
        &format!("/integrations/abuse/deliveries/{i}"),
    )
}

/// Reads until the relay closes the connection (or `PATIENCE` passes): what it answered.
async fn read_all(conn: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn idle_and_half_open_connections_do_not_starve_signed_requests() {
    let (relay, _sink) = relay().await;
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut conn = TcpStream::connect(relay.listen).await.expect("connect");
        if i % 2 == 1 {
            conn.write_all(b"POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nX-TextUs-Sig")
                .await
                .expect("half a head");
        }
        idle.push(conn);
    }
    let (status, body) = relay.post_signed(&unique(1)).await;
    assert_eq!(status, 200, "{body}");
    // The relay drops them after its head timeout, without answering (nothing to answer).
    for conn in idle.iter_mut().step_by(37) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("the relay closes an idle connection within a bounded time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let (status, _) = relay.post_signed(&unique(2)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_trickled_body_is_accepted_without_blocking_others() {
    let (relay, sink) = relay().await;
    let body = unique(10);
    let sig = signature::sign(SECRET, &body);
    let mut conn = TcpStream::connect(relay.listen).await.expect("connect");
    let head = format!(
        "POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nContent-Length: {}\r\nX-TextUs-Signature: {sig}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let pieces: Vec<&[u8]> = body.chunks(body.len().div_ceil(20)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        conn.write_all(piece).await.expect("piece");
        // The trickle itself (what is under test), not a wait for anything to happen.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if i == 2 {
            // Meanwhile a normal request is answered at once.
            let (status, _) = relay.post_signed(&unique(11)).await;
            assert_eq!(status, 200);
        }
    }
    let answer = read_all(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    sink.wait_for(2, PATIENCE).await.expect("both delivered");
}

#[tokio::test]
async fn oversized_heads_get_a_clean_refusal_and_the_relay_lives_on() {
    let (relay, _sink) = relay().await;
    // 100 KB in one header: over the relay's limit, under pingora's.
    let mut conn = TcpStream::connect(relay.listen).await.expect("connect");
    let head = format!(
        "POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let answer = read_all(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(answer.contains("headers_too_large"), "{answer:.400}");

    // 2 MB: over pingora's limit as well; the connection is closed, nothing else happens.
    let mut conn = TcpStream::connect(relay.listen).await.expect("connect");
    let head = format!(
        "POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(2 * 1024 * 1024)
    );
    // The relay may close while we still write: that is a clean refusal too.
    let _ = conn.write_all(head.as_bytes()).await;
    let answer = read_all(&mut conn).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer:.200}"
    );

    let (status, _) = relay.post_signed(&unique(20)).await;
    assert_eq!(status, 200, "the relay still serves; log:\n{}", relay.log());
}

#[tokio::test]
async fn hostile_signed_bodies_are_answered_200_and_kept_as_dead_letters() {
    let (relay, sink) = relay().await;
    let nested = "[".repeat(100_000).into_bytes();
    let mut wrapped = br#"{"id":"/integrations/abuse/deliveries/nested","action":"#.to_vec();
    wrapped.extend_from_slice(&nested);
    let non_utf8 = b"\xff\xfe\x00{\"action\":\"message.received\"}\xc3\x28".to_vec();
    for body in [&nested, &wrapped, &non_utf8] {
        let (status, json) = relay.post_signed(body).await;
        assert_eq!(status, 200, "{json}");
        assert!(json["dead_letter"].is_string(), "{json}");
    }
    let dead = relay.wait_dead_letters(3).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    // The relay is still healthy and delivers a real event.
    assert_eq!(relay.post_signed(&unique(30)).await.0, 200);
    sink.wait_for(1, PATIENCE).await.expect("delivered");
}

#[tokio::test]
async fn many_concurrent_clients_are_all_answered() {
    let (relay, sink) = relay().await;
    let url = relay.url("/webhooks/textus");
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..200 {
        let url = url.clone();
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("client");
            let mut statuses = Vec::new();
            for r in 0..3 {
                let body = unique(1000 + c * 3 + r);
                let answer = client
                    .post(&url)
                    .header("X-TextUs-Signature", signature::sign(SECRET, &body))
                    .body(body)
                    .send()
                    .await;
                statuses.push(
                    answer
                        .map(|a| a.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
            }
            statuses
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        for status in done.expect("client task") {
            assert_eq!(status, Ok(200));
            ok += 1;
        }
    }
    assert_eq!(ok, 600);
    sink.wait_for(600, PATIENCE).await.expect("all delivered");
}
