//! Smoke test of the harness itself (a second or two): the generator against a fast sink,
//! closed loop and open loop, and a black hole that never answers. The benchmark proper runs
//! only from `bench/run`.

use std::time::Duration;

use textus_bench::load::{self, Load, Pace};
use textus_bench::relay::free_port;
use textus_bench::sink::{Behaviour, Clock, Sink};

fn load(sink: &Sink, pace: Pace, duration: Duration) -> Load {
    Load {
        target: sink.addr,
        path: "/hook".into(),
        connections: 4,
        pace,
        duration,
        max_requests: None,
        secret: "textus-smoke".into(),
        valid_signature: true,
        keep_samples: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_counts_every_answer_and_the_sink_every_arrival() {
    let clock = Clock::start();
    let sink = Sink::start(free_port(), Behaviour::Answer, clock)
        .await
        .expect("sink");
    let mut spec = load(&sink, Pace::FullSpeed, Duration::from_secs(5));
    spec.max_requests = Some(500);
    let outcome = load::run(spec, clock).await;
    assert_eq!(outcome.with_status(200), 500, "{outcome:?}");
    assert_eq!(outcome.errors, 0);
    assert_eq!(outcome.latency.len(), 500);
    assert_eq!(sink.arrivals.count(), 500);
    assert_eq!(sink.arrivals.unstamped(), 0);
    assert_eq!(sink.arrivals.e2e().len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_sends_at_its_rate() {
    let clock = Clock::start();
    let sink = Sink::start(free_port(), Behaviour::Answer, clock)
        .await
        .expect("sink");
    let outcome = load::run(
        load(&sink, Pace::Rate(400.0), Duration::from_millis(500)),
        clock,
    )
    .await;
    // 400/s for 0.5 s: 200 requests, scheduled, not as fast as possible.
    assert_eq!(outcome.with_status(200), 200, "{outcome:?}");
    assert!(outcome.elapsed >= Duration::from_millis(490));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_accepts_and_never_answers() {
    let clock = Clock::start();
    let hole = Sink::start(free_port(), Behaviour::BlackHole, clock)
        .await
        .expect("sink");
    let mut stream = tokio::net::TcpStream::connect(hole.addr)
        .await
        .expect("accepts");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .expect("write");
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(read.is_err(), "the black hole answered: {read:?}");
}
