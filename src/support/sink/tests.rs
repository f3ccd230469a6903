//! Tests for the sink over real loopback sockets: hyper's client where a well-formed
//! exchange is enough, a raw `TcpStream` where the bytes on the wire matter.

use super::*;

use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Upper bound on every network wait, so a broken sink fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

type TestClient = Client<HttpConnector, Full<Bytes>>;

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post_request(url: &str, body: &[u8]) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("static request parts are valid")
}

async fn call(client: &TestClient, request: Request<Full<Bytes>>) -> Answer {
    let response = timeout(WAIT, client.request(request))
        .await
        .expect("sink answers in time")
        .expect("request succeeds");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .expect("response body reads")
        .to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

async fn post(client: &TestClient, url: &str, body: &[u8]) -> Answer {
    call(client, post_request(url, body)).await
}

async fn start(script: Vec<Reply>, then: Reply) -> Sink {
    Sink::start(script, then)
        .await
        .expect("sink binds loopback")
}

async fn raw_connect(sink: &Sink) -> TcpStream {
    timeout(WAIT, TcpStream::connect(sink.addr()))
        .await
        .expect("connect in time")
        .expect("connect succeeds")
}

/// Sends `GET /hang` on a raw connection and waits until the sink has recorded it; the
/// connection, whose request the sink holds.
async fn hang_one(sink: &Sink) -> TcpStream {
    let mut stream = raw_connect(sink).await;
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nHost: sink\r\n\r\n")
        .await
        .expect("write request");
    sink.wait_for(1, WAIT).await.expect("hung request recorded");
    stream
}

/// Reads one response head from a raw socket and returns its status code, or `None` when
/// the sink closed the connection first.
async fn raw_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match timeout(WAIT, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            Ok(_) => return None,
            Err(_) => panic!("sink neither answered nor closed within {WAIT:?}"),
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn scripted_replies_come_in_order_then_the_default() {
    let sink = start(
        vec![
            Reply::Status(503),
            Reply::StatusWithBody(400, "invalid_payload".into()),
            Reply::StatusWithHeaders(429, vec![("Retry-After".into(), "7".into())]),
        ],
        Reply::Status(200),
    )
    .await;
    let client = client();
    let mut answers = Vec::new();
    for i in 0..5 {
        answers.push(post(&client, &sink.url(&format!("/hook/{i}")), b"{}").await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [503, 400, 429, 200, 200]);
    assert_eq!(answers[1].body, "invalid_payload");
    assert_eq!(
        answers[2].headers.get(RETRY_AFTER).expect("retry-after"),
        "7"
    );
    assert!(answers[0].body.is_empty() && answers[3].body.is_empty());
    let paths: Vec<String> = sink.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/hook/0", "/hook/1", "/hook/2", "/hook/3", "/hook/4"]
    );
}

#[tokio::test]
async fn bodies_and_headers_are_recorded_byte_for_byte() {
    let sink = start(vec![], Reply::Status(204)).await;
    // Every byte value, not valid UTF-8, and large enough to arrive in many reads.
    let body: Vec<u8> = (0..=255u8).cycle().take(1024 * 1024 + 3).collect();
    // Header values may carry opaque bytes (obs-text); they must not be re-encoded.
    let opaque = HeaderValue::from_bytes(b"v1,ab+/=\xe9\xff").expect("obs-text is allowed");
    let request = Request::put(sink.url("/hooks/textus?x=1&y=%20z"))
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-signature", opaque.clone())
        .header("x-multi", "one")
        .header("x-multi", "two")
        .body(Full::new(Bytes::from(body.clone())))
        .expect("static request parts are valid");
    assert_eq!(call(&client(), request).await.status, 204);

    let seen = sink.received();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.method, Method::PUT);
    assert_eq!(got.path, "/hooks/textus?x=1&y=%20z");
    assert_eq!(got.body, body);
    assert_eq!(got.headers.get("webhook-signature"), Some(&opaque));
    assert_eq!(
        got.headers.get(CONTENT_TYPE).expect("content-type"),
        "application/json"
    );
    let multi: Vec<_> = got.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
}

#[tokio::test]
async fn chunked_body_is_recorded_without_its_framing() {
    let sink = start(vec![], Reply::Status(200)).await;
    let mut stream = raw_connect(&sink).await;
    let request = b"POST /chunked HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    stream.write_all(request).await.expect("write request");
    assert_eq!(raw_status(&mut stream).await, Some(200));
    let seen = sink.wait_for(1, WAIT).await.expect("request recorded");
    assert_eq!(seen[0].body, "hello, world");
}

#[tokio::test]
async fn wait_for_resolves_once_enough_requests_arrive() {
    let sink = start(vec![], Reply::Status(200)).await;
    let waiter = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.wait_for(2, WAIT).await })
    };
    let client = client();
    post(&client, &sink.url("/a"), b"1").await;
    assert!(!waiter.is_finished(), "resolved after one of two requests");
    post(&client, &sink.url("/b"), b"2").await;
    let seen = timeout(WAIT, waiter)
        .await
        .expect("waiter finishes")
        .expect("waiter task did not panic")
        .expect("two requests arrived");
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (&seen[0].body[..], &seen[1].body[..]),
        (&b"1"[..], &b"2"[..])
    );
    // Requests already recorded satisfy a later call at once.
    let again = sink
        .wait_for(2, Duration::ZERO)
        .await
        .expect("already there");
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn wait_for_times_out_saying_how_many_arrived() {
    let sink = start(vec![], Reply::Status(200)).await;
    post(&client(), &sink.url("/only"), b"").await;
    let waited = Duration::from_millis(100);
    let error = sink
        .wait_for(3, waited)
        .await
        .expect_err("only one arrived");
    assert_eq!(
        (error.expected, error.arrived, error.waited),
        (3, 1, waited)
    );
    assert_eq!(error.addr, sink.addr());
    assert!(error.to_string().contains("got 1 of 3 requests"), "{error}");
}

#[tokio::test]
async fn hang_records_the_request_but_never_answers() {
    let sink = start(vec![Reply::Hang], Reply::Status(200)).await;
    let client = client();
    let hung = timeout(
        Duration::from_millis(300),
        client.request(post_request(&sink.url("/void"), b"lost")),
    )
    .await;
    assert!(hung.is_err(), "a hung request was answered");
    let seen = sink.wait_for(1, WAIT).await.expect("hung request recorded");
    assert_eq!(
        (seen[0].path.as_str(), &seen[0].body[..]),
        ("/void", &b"lost"[..])
    );
    // The Hang used up its script slot; the next request gets the default.
    assert_eq!(post(&client, &sink.url("/next"), b"").await.status, 200);
}

#[tokio::test]
async fn shutdown_closes_hung_connections_and_refuses_new_ones() {
    let sink = start(vec![], Reply::Hang).await;
    let mut stream = hang_one(&sink).await;
    sink.shutdown();
    assert_eq!(raw_status(&mut stream).await, None, "hung request answered");
    let after = timeout(
        WAIT,
        client().request(post_request(&sink.url("/late"), b"")),
    )
    .await
    .expect("client gives up in time");
    assert!(after.is_err(), "a stopped sink answered");
    assert_eq!(
        sink.received().len(),
        1,
        "recorded requests survive shutdown"
    );
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_sink() {
    let sink = start(vec![Reply::Hang], Reply::Status(200)).await;
    let mut stream = hang_one(&sink).await;
    let other = sink.clone();
    drop(sink);
    // One handle is left, so the sink still serves.
    assert_eq!(post(&client(), &other.url("/alive"), b"").await.status, 200);
    drop(other);
    assert_eq!(raw_status(&mut stream).await, None, "hung request answered");
}

#[tokio::test]
async fn set_then_switches_the_default_reply() {
    let sink = start(vec![Reply::Status(500)], Reply::Status(503)).await;
    let client = client();
    assert_eq!(post(&client, &sink.url("/"), b"").await.status, 500);
    assert_eq!(post(&client, &sink.url("/"), b"").await.status, 503);
    sink.set_then(Reply::StatusWithBody(200, "recovered".into()));
    let answer = post(&client, &sink.url("/"), b"").await;
    assert_eq!((answer.status, &answer.body[..]), (200, &b"recovered"[..]));
}

#[tokio::test]
async fn keep_alive_connection_carries_several_requests() {
    let sink = start(vec![Reply::Status(503)], Reply::Status(200)).await;
    let stream = raw_connect(&sink).await;
    // hyper's connection-level client sends everything on this one socket, or fails.
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    let mut statuses = Vec::new();
    for body in ["first", "second"] {
        let request = Request::post("/keep")
            .header(HOST, sink.addr().to_string())
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts are valid");
        let response = timeout(WAIT, sender.send_request(request))
            .await
            .expect("answer in time")
            .expect("same connection still open");
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.expect("body reads");
    }
    assert_eq!(statuses, [503, 200]);
    assert!(
        !connection.is_finished(),
        "sink closed the kept-alive connection"
    );
    let bodies: Vec<Bytes> = sink.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["first", "second"]);
}

#[tokio::test]
async fn delay_answers_after_the_delay() {
    let delay = Duration::from_millis(200);
    let sink = start(vec![Reply::Delay(delay, 202)], Reply::Status(200)).await;
    let started = Instant::now();
    let answer = post(&client(), &sink.url("/slow"), b"").await;
    assert_eq!(answer.status, 202);
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn concurrent_requests_get_replies_in_recording_order() {
    let script = (0..8)
        .map(|i| Reply::StatusWithBody(200, i.to_string()))
        .collect();
    let sink = start(script, Reply::Status(500)).await;
    let client = client();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let (client, url) = (client.clone(), sink.url("/race"));
            tokio::spawn(async move { (i, post(&client, &url, i.to_string().as_bytes()).await) })
        })
        .collect();
    let received = sink.wait_for(8, WAIT).await.expect("all recorded");
    for call in calls {
        let (i, answer) = call.await.expect("call task did not panic");
        // The reply text is the index the request was recorded at.
        let index: usize = std::str::from_utf8(&answer.body)
            .ok()
            .and_then(|text| text.parse().ok())
            .expect("a scripted reply");
        assert_eq!(
            received[index].body,
            i.to_string(),
            "reply {index} went elsewhere"
        );
    }
}

#[tokio::test]
async fn oversized_body_is_refused_and_not_recorded() {
    let sink = start(vec![Reply::Status(201)], Reply::Status(200)).await;
    let mut stream = raw_connect(&sink).await;
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: sink\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    assert_eq!(raw_status(&mut stream).await, Some(413));
    // Refused requests neither appear nor use up the script.
    assert_eq!(post(&client(), &sink.url("/small"), b"").await.status, 201);
    let paths: Vec<String> = sink.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/small"]);
}

#[tokio::test]
async fn malformed_requests_do_not_stop_the_sink() {
    let sink = start(vec![], Reply::Status(200)).await;
    let garbage: [&[u8]; 3] = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for bytes in garbage {
        let mut stream = raw_connect(&sink).await;
        stream.write_all(bytes).await.expect("write garbage");
        let status = raw_status(&mut stream).await;
        assert!(matches!(status, None | Some(400)), "answered {status:?}");
    }
    assert_eq!(post(&client(), &sink.url("/fine"), b"").await.status, 200);
    let paths: Vec<String> = sink.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/fine"]);
}

#[tokio::test]
async fn invalid_script_entries_answer_500_or_drop_the_header() {
    let sink = start(
        vec![
            Reply::Status(101),
            Reply::StatusWithHeaders(
                429,
                vec![
                    ("bad name".into(), "1".into()),
                    ("x-bad-value".into(), "a\nb".into()),
                    ("retry-after".into(), "3".into()),
                ],
            ),
        ],
        Reply::Status(1000),
    )
    .await;
    let client = client();
    let answer = post(&client, &sink.url("/"), b"").await;
    assert_eq!(answer.status, 500);
    assert!(String::from_utf8_lossy(&answer.body).contains("101"));
    let answer = post(&client, &sink.url("/"), b"").await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.headers.get(RETRY_AFTER).expect("retry-after"), "3");
    assert!(answer.headers.get("x-bad-value").is_none());
    assert_eq!(post(&client, &sink.url("/"), b"").await.status, 500);
}

#[test]
fn handles_and_futures_can_cross_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_handle<T: Send + Sync + Clone + fmt::Debug>() {}
    assert_handle::<Sink>();
    let check = async {
        let sink = start(vec![], Reply::Status(200)).await;
        sink.wait_for(0, WAIT).await
    };
    assert_send(&check);
}
