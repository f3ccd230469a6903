//! Guarantee 1 under attack: `kill -9` at random moments while 8 connections send signed
//! events, restarting on the same store each time; afterwards every event that got a 200 must
//! reach both routed targets. `scripts/soak` runs the same harness for minutes.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use textus_relay::support::sink::{Reply, Sink};

use crate::load::{Load, wait_delivered};
use crate::support::*;

/// Concurrent connections sending events.
const CONNECTIONS: usize = 8;
/// How often a soak prints how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Two targets, every event to both, with fast retries so redelivery after a kill is quick,
/// and enough concurrency that delivery roughly keeps up with 8 connections of ingest.
pub fn two_targets(a: &Sink, b: &Sink) -> String {
    let extra = "    concurrency: 16\n";
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}{}routes:\n  - events: [\"*\"]\n    to: [a, b]\n",
        http_target("a", &a.url("/a"), extra),
        http_target("b", &b.url("/b"), extra),
    )
}

/// What one crash run measured.
#[derive(Debug)]
pub struct Figures {
    pub kills: usize,
    pub sent: usize,
    /// Events answered 200 `accepted`.
    pub acknowledged: usize,
    /// Acknowledged events that reached both targets.
    pub delivered: usize,
    /// Acknowledged events missing at a target after the final wait (must be 0).
    pub lost: usize,
    /// Requests that got no answer because of a kill (TextUs would retry them).
    pub no_answer: usize,
    /// Answers other than 200 `accepted`, by status (only 504 is acceptable).
    pub other: BTreeMap<u16, usize>,
    /// Deliveries beyond the first of an (event, target): at-least-once at work.
    pub redelivered: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kills={} sent={} acknowledged={} delivered={} lost={} no_answer={} other_status={:?} redelivered={}",
            self.kills,
            self.sent,
            self.acknowledged,
            self.delivered,
            self.lost,
            self.no_answer,
            self.other,
            self.redelivered
        )
    }
}

/// Runs load and kills the relay `kills` times (or, with `until`, until that instant),
/// each after the load has made progress and then a random pause of up to `max_pause`.
pub async fn crash_run(kills: usize, until: Option<Instant>, max_pause: Duration) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Sink::start(vec![], Reply::Status(200)).await.expect("a");
    let b = Sink::start(vec![], Reply::Status(200)).await.expect("b");
    let mut relay = TestRelay::start_in(dir.path(), &two_targets(&a, &b)).await;
    let load = Load::start(relay.listen, CONNECTIONS, "crash");
    let mut killed = 0;
    let mut reported = Instant::now();
    loop {
        if until.is_some() && reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            println!(
                "soak progress: kills={killed} acknowledged={}",
                load.acknowledged()
            );
        }
        let more = match until {
            Some(at) => Instant::now() < at,
            None => killed < kills,
        };
        if !more {
            break;
        }
        // Progress first, so each cycle really had events in flight; then a random moment.
        load.wait_for_progress(load.acknowledged(), 1).await;
        let pause = rand::rng().random_range(Duration::ZERO..=max_pause);
        tokio::time::sleep(pause).await;
        relay.kill9();
        killed += 1;
        relay.restart().await;
    }
    load.wait_for_progress(load.acknowledged(), 1).await;
    let tally = load.stop().await;
    let waited = wait_delivered(&[&a, &b], &tally.acknowledged, PATIENCE).await;
    let lost: HashSet<&String> = waited.iter().flat_map(|(_, missing)| missing).collect();
    Figures {
        kills: killed,
        sent: tally.sent(),
        acknowledged: tally.acknowledged.len(),
        delivered: tally.acknowledged.len() - lost.len(),
        lost: lost.len(),
        no_answer: tally.no_answer,
        other: tally.other.clone(),
        redelivered: waited.iter().map(|(d, _)| d.repeats()).sum(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let figures = crash_run(3, None, Duration::from_millis(1500)).await;
    println!("crash: {figures}");
    assert_eq!(figures.kills, 3);
    assert!(figures.acknowledged > 0, "{figures}");
    assert_eq!(figures.lost, 0, "acknowledged events were lost: {figures}");
    // A relay that is starting or stopping may refuse with 504 (TextUs retries it), nothing else.
    assert!(figures.other.keys().all(|s| *s == 504), "{figures}");
}

/// The long version: `scripts/soak --minutes N` (or `SOAK_MINUTES=N cargo test --test it
/// crash::soak -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long; run by scripts/soak"]
async fn soak() {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(5);
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    let figures = crash_run(0, Some(until), Duration::from_secs(3)).await;
    println!("soak: {figures}");
    assert_eq!(figures.lost, 0, "acknowledged events were lost: {figures}");
    assert!(figures.other.keys().all(|s| *s == 504), "{figures}");
}
