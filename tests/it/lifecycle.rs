//! Process life: crash and restart, SIGTERM, persistence of de-duplication.

use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

fn config(url: &str) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", url, "")
    )
}

#[tokio::test]
async fn kill_9_with_a_backlog_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = Sink::start(vec![], Reply::Status(503))
        .await
        .expect("down target");
    let mut relay = TestRelay::start_in(dir.path(), &config(&down.url("/t"))).await;
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let body = fixture_with_id(
            "message.received",
            &format!("/integrations/k/deliveries/{i}"),
        );
        let (status, json) = relay.post_signed(&body).await;
        assert_eq!(status, 200, "{json}");
        acknowledged.push(body);
    }
    relay.kill9();
    down.shutdown();

    let up = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("recovered target");
    let relay = TestRelay::start_in(dir.path(), &config(&up.url("/t"))).await;
    let got = up
        .wait_for(50, PATIENCE)
        .await
        .expect("every acknowledged event delivered after restart");
    for body in &acknowledged {
        assert!(
            got.iter().any(|r| r.body[..] == body[..]),
            "an acknowledged event was lost"
        );
    }
    // De-duplication survived the crash too.
    let (status, json) = relay.post_signed(&acknowledged[0]).await;
    assert_eq!((status, json["status"].as_str()), (200, Some("duplicate")));
}

#[tokio::test]
async fn sigterm_exits_zero_and_keeps_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = Sink::start(vec![], Reply::Status(503))
        .await
        .expect("down target");
    let mut relay = TestRelay::start_in(dir.path(), &config(&down.url("/t"))).await;
    assert_eq!(
        relay.post_signed(&fixture("contact.opted_out")).await.0,
        200
    );
    let status = relay.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        relay.log()
    );
    down.shutdown();

    let up = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("target");
    let _relay = TestRelay::start_in(dir.path(), &config(&up.url("/t"))).await;
    let got = up
        .wait_for(1, PATIENCE)
        .await
        .expect("queued event delivered after restart");
    assert_eq!(got[0].body[..], fixture("contact.opted_out")[..]);
}

#[tokio::test]
async fn requests_arriving_after_sigterm_get_504_so_textus_retries_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sink = Sink::start(vec![], Reply::Status(200))
        .await
        .expect("target");
    let mut relay = TestRelay::start(&config(&sink.url("/t"))).await;
    let request = |body: &[u8]| {
        let sig = textus_relay::ingress::signature::sign(SECRET, body);
        let mut req = format!(
            "POST /webhooks/textus HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nX-TextUs-Signature: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    };
    // One keep-alive connection, open before the signal.
    let mut conn = tokio::net::TcpStream::connect(relay.listen)
        .await
        .expect("connect");
    conn.write_all(&request(&fixture("message.received")))
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.expect("first answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let pid = relay.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    // The relay keeps serving open connections for its grace period; wait until it has seen
    // the signal (it stops accepting new connections first).
    eventually("new connections refused after SIGTERM", async || {
        match tokio::net::TcpStream::connect(relay.listen).await {
            Ok(_) => Err("still accepting"),
            Err(_) => Ok(()),
        }
    })
    .await;
    conn.write_all(&request(&fixture("message.delivered")))
        .await
        .expect("write late request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("shutting_down"), "{text}");
    assert!(relay.wait_exit().success());
}
