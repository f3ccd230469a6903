//! The measurements of issue 6, each on a fresh relay process with a fresh store.
//!
//! All of them share the one generator ([`crate::load`]) and the same number of connections,
//! so the ceiling (wrong signature → 401: HTTP + HMAC, no storage) and the durable ingest
//! figures are directly comparable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::load::{self, Load, Outcome, Pace};
use crate::relay::{self, Relay, TargetSpec};
use crate::sink::{Behaviour, Clock, Sink};

/// What every scenario needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    pub relay_bin: PathBuf,
    pub connections: usize,
    /// How long each timed phase runs.
    pub phase: Duration,
    /// Events to queue for the down target (1,000,000 in the issue).
    pub backlog: u64,
    /// The longest the backlog fill may take; past it the figure is measured on what fitted.
    pub fill_budget: Duration,
    /// The longest the drain may take.
    pub drain_budget: Duration,
    /// `concurrency` of the fast http targets.
    pub target_concurrency: usize,
    /// If set, a full run measures ceiling and ingest again with this many connections.
    pub wide_connections: Option<usize>,
    /// Events of the burst whose 3 deliveries each make the backlog of the drain-ack scenario.
    pub drain_burst: u64,
}

/// Percentiles of a microsecond histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// A latency distribution kept for the plot.
#[derive(Clone, Debug)]
pub struct Curve {
    pub label: String,
    pub histogram: Histogram<u64>,
}

/// Where the CPU went during a timed phase, in CPU seconds per second of wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub relay: f64,
    /// The generator and the sinks (this process).
    pub harness: f64,
    /// The relay's CPU seconds in the phase (not per second).
    pub relay_secs: f64,
}

impl CpuUse {
    pub(crate) fn measure(relay: &Relay, since: (f64, f64, Instant)) -> CpuUse {
        let wall = since.2.elapsed().as_secs_f64().max(1e-9);
        let relay_secs = relay.cpu_secs() - since.0;
        CpuUse {
            relay: relay_secs / wall,
            harness: (relay::cpu_secs("self") - since.1) / wall,
            relay_secs,
        }
    }

    pub(crate) fn mark(relay: &Relay) -> (f64, f64, Instant) {
        (relay.cpu_secs(), relay::cpu_secs("self"), Instant::now())
    }
}

/// What the store's writer did during a phase, from the relay's own metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Commits {
    pub transactions: f64,
    pub mean_batch: f64,
    pub mean_commit_ms: f64,
}

impl Commits {
    async fn read(relay: &Relay) -> Commits {
        let text = relay.metrics_text().await.unwrap_or_default();
        let n = relay::metric(&text, "relay_commit_batch_size_count");
        let ops = relay::metric(&text, "relay_commit_batch_size_sum");
        let secs = relay::metric(&text, "relay_commit_duration_seconds_sum");
        Commits {
            transactions: n,
            mean_batch: ops / n.max(1.0),
            mean_commit_ms: secs * 1000.0 / n.max(1.0),
        }
    }
}

/// Idle RSS and the HTTP ceiling.
pub struct Ceiling {
    pub cpu: CpuUse,
    pub rss_idle: u64,
    pub outcome: Outcome,
    pub rate: f64,
}

impl Ceiling {
    /// Relay CPU per 401 answer, in µs.
    pub fn relay_cpu_us_per_401(&self) -> f64 {
        self.cpu.relay_secs * 1e6 / self.outcome.with_status(401).max(1) as f64
    }
}

/// Durable ingest at full speed, with the fan-out it drives.
pub struct Ingest {
    pub outcome: Outcome,
    pub rate: f64,
    pub rss_peak: u64,
    pub deliveries: u64,
    /// Deliveries per second from the first send to the last delivery.
    pub fanout: f64,
    /// How long after the generator stopped the last delivery arrived.
    pub delivery_tail: Duration,
    pub warnings: usize,
    /// During the generator's run only.
    pub cpu: CpuUse,
    /// From the first send to the last delivery: the fan-out that trails the load is part of
    /// the events' cost.
    pub cpu_to_last_delivery: CpuUse,
    /// From start to the last delivery (ingest and fan-out together).
    pub commits: Commits,
    /// Bytes the relay wrote (store, WAL, sockets, logs) per accepted event, fan-out included.
    pub written_per_event: f64,
}

impl Ingest {
    /// Relay CPU per durable event with its 3 deliveries, first send to last delivery, in µs.
    pub fn relay_cpu_us_per_event(&self) -> f64 {
        self.cpu_to_last_delivery.relay_secs * 1e6 / self.outcome.with_status(200).max(1) as f64
    }
}

/// Open-loop ack latency at one rate, with the end-to-end latency of the deliveries.
pub struct Paced {
    pub rate: f64,
    pub outcome: Outcome,
    pub ack: Percentiles,
    pub e2e: Percentiles,
    pub ack_curve: Histogram<u64>,
    pub e2e_curve: Histogram<u64>,
    pub cpu: CpuUse,
    pub commits: Commits,
}

/// Healthy-target end-to-end latency without and with a black-holed second target.
pub struct Isolation {
    pub without: Percentiles,
    pub with_black_hole: Percentiles,
    pub without_curve: Histogram<u64>,
    pub with_curve: Histogram<u64>,
    pub ack_without: Percentiles,
    pub ack_with: Percentiles,
    /// Healthy end-to-end p99 (ms) of each run: `[without, with]`.
    pub p99_per_run: [Vec<f64>; 2],
}

/// A backlog for a down target, then its drain.
pub struct Backlog {
    pub requested: u64,
    pub accepted: u64,
    pub non_200: u64,
    pub fill_rate: f64,
    pub fill_time: Duration,
    pub rss_before: u64,
    pub rss_with_backlog: u64,
    pub rss_drain_peak: u64,
    pub store_before: u64,
    pub store_with_backlog: u64,
    pub failed_attempts_during_fill: u64,
    pub drained: u64,
    pub drain_time: Duration,
    pub drain_rate: f64,
    pub drain_complete: bool,
    /// Bytes the relay wrote (store, WAL, sockets, logs) per event accepted during the fill,
    /// and per delivery during the drain.
    pub written_per_event_fill: f64,
    pub written_per_delivery_drain: f64,
}

pub(crate) fn fast_targets(sinks: &[Sink], concurrency: usize) -> Vec<TargetSpec> {
    sinks
        .iter()
        .enumerate()
        .map(|(i, s)| TargetSpec::new(&format!("fast{}", i + 1), &s.url(), concurrency))
        .collect()
}

pub(crate) async fn sinks(n: usize, clock: Clock) -> anyhow::Result<Vec<Sink>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Sink::start(relay::free_port(), Behaviour::Answer, clock).await?);
    }
    Ok(out)
}

pub(crate) fn load(s: &Settings, relay: &Relay, pace: Pace, valid: bool) -> Load {
    Load {
        target: relay.listen,
        path: relay::PATH.into(),
        connections: s.connections,
        pace,
        duration: s.phase,
        max_requests: None,
        secret: relay::SECRET.into(),
        valid_signature: valid,
        keep_samples: false,
    }
}

/// Samples the relay's RSS every 100 ms until dropped; keeps the peak.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(relay::rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until the sinks together counted `expected` arrivals (or `patience` passed).
pub(crate) async fn wait_arrivals(sinks: &[&Sink], expected: u64, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let got: u64 = sinks.iter().map(|s| s.arrivals.count()).sum();
        if got >= expected {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Idle RSS (3 targets configured, 3 s after ready) and the 401 ceiling.
pub async fn ceiling(s: &Settings, clock: Clock) -> anyhow::Result<Ceiling> {
    let sinks = sinks(3, clock).await?;
    let relay = Relay::start(&s.relay_bin, &fast_targets(&sinks, s.target_concurrency)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = relay.rss_bytes();
    let mark = CpuUse::mark(&relay);
    let outcome = load::run(load(s, &relay, Pace::FullSpeed, false), clock).await;
    let cpu = CpuUse::measure(&relay, mark);
    let rate = outcome.rate(401);
    Ok(Ceiling {
        cpu,
        rss_idle,
        outcome,
        rate,
    })
}

/// Full-speed durable ingest to 3 routed targets, the fan-out it drives and the peak RSS.
pub async fn ingest(s: &Settings, clock: Clock) -> anyhow::Result<Ingest> {
    let sinks = sinks(3, clock).await?;
    let relay = Relay::start(&s.relay_bin, &fast_targets(&sinks, s.target_concurrency)).await?;
    let rss = RssSampler::start(relay.pid());
    let written_before = relay::written_bytes(relay.pid());
    let started_us = clock.now_us();
    let mark = CpuUse::mark(&relay);
    let outcome = load::run(load(s, &relay, Pace::FullSpeed, true), clock).await;
    let cpu = CpuUse::measure(&relay, mark);
    let stopped_us = clock.now_us();
    let accepted = outcome.with_status(200);
    let all: Vec<&Sink> = sinks.iter().collect();
    // Bounded so that a relay whose fan-out falls far behind cannot stretch bench/run past
    // its 10 minutes; `deliveries` < 3 × accepted in the results then says so.
    wait_arrivals(&all, 3 * accepted, Duration::from_secs(30)).await;
    // Read at once: the relay is idle from here on, and the 20 ms poll adds next to nothing.
    let cpu_to_last_delivery = CpuUse::measure(&relay, mark);
    let deliveries: u64 = sinks.iter().map(|s| s.arrivals.count()).sum();
    let last_us = sinks
        .iter()
        .map(|s| s.arrivals.last_us())
        .max()
        .unwrap_or(stopped_us);
    Ok(Ingest {
        rate: outcome.rate(200),
        outcome,
        rss_peak: rss.peak(),
        deliveries,
        fanout: deliveries as f64 / ((last_us - started_us) as f64 / 1e6).max(1e-9),
        delivery_tail: Duration::from_micros(last_us.saturating_sub(stopped_us)),
        warnings: relay.log_problems(),
        cpu,
        cpu_to_last_delivery,
        commits: Commits::read(&relay).await,
        written_per_event: relay::written_bytes(relay.pid()).saturating_sub(written_before) as f64
            / accepted.max(1) as f64,
    })
}

/// Open-loop ack latency at `rate` events/s, and end-to-end latency to the 3 targets.
pub async fn paced(s: &Settings, clock: Clock, rate: f64) -> anyhow::Result<Paced> {
    let sinks = sinks(3, clock).await?;
    let relay = Relay::start(&s.relay_bin, &fast_targets(&sinks, s.target_concurrency)).await?;
    let mark = CpuUse::mark(&relay);
    let outcome = load::run(load(s, &relay, Pace::Rate(rate), true), clock).await;
    let cpu = CpuUse::measure(&relay, mark);
    let all: Vec<&Sink> = sinks.iter().collect();
    wait_arrivals(&all, 3 * outcome.with_status(200), Duration::from_secs(60)).await;
    let mut e2e = crate::sink::histogram();
    for sink in &sinks {
        let _ = e2e.add(sink.arrivals.e2e());
    }
    Ok(Paced {
        rate,
        ack: Percentiles::of(&outcome.latency),
        e2e: Percentiles::of(&e2e),
        ack_curve: outcome.latency.clone(),
        e2e_curve: e2e,
        outcome,
        cpu,
        commits: Commits::read(&relay).await,
    })
}

/// A healthy target and a second one, answering or black-holed, at 1,000 events/s.
///
/// The two setups alternate (answering, black hole, answering, black hole) and each side's
/// runs are merged, so a burst of noise from whatever else shares the machine does not land
/// on one side only.
pub async fn isolation(s: &Settings, clock: Clock) -> anyhow::Result<Isolation> {
    let mut e2e = [crate::sink::histogram(), crate::sink::histogram()];
    let mut ack = [crate::sink::histogram(), crate::sink::histogram()];
    let mut runs = [Vec::new(), Vec::new()];
    for round in 0..4 {
        let side = round % 2;
        let behaviour = [Behaviour::Answer, Behaviour::BlackHole][side];
        let healthy = Sink::start(relay::free_port(), Behaviour::Answer, clock).await?;
        let other = Sink::start(relay::free_port(), behaviour, clock).await?;
        // The second target keeps the defaults (concurrency 4, timeout 10 s): what an
        // operator gets without tuning.
        let targets = [
            TargetSpec::new("healthy", &healthy.url(), s.target_concurrency),
            TargetSpec::new("other", &other.url(), 4),
        ];
        let relay = Relay::start(&s.relay_bin, &targets).await?;
        let outcome = load::run(load(s, &relay, Pace::Rate(1000.0), true), clock).await;
        wait_arrivals(
            &[&healthy],
            outcome.with_status(200),
            Duration::from_secs(60),
        )
        .await;
        let run = healthy.arrivals.e2e();
        runs[side].push(Percentiles::of(&run).p99_ms);
        let _ = e2e[side].add(&run);
        let _ = ack[side].add(&outcome.latency);
    }
    let [without_curve, with_curve] = e2e;
    Ok(Isolation {
        without: Percentiles::of(&without_curve),
        with_black_hole: Percentiles::of(&with_curve),
        without_curve,
        with_curve,
        ack_without: Percentiles::of(&ack[0]),
        ack_with: Percentiles::of(&ack[1]),
        p99_per_run: runs,
    })
}

/// Fills a backlog for a target that refuses connections as fast as the relay accepts, then
/// brings the target up and times the drain.
pub async fn backlog(s: &Settings, clock: Clock) -> anyhow::Result<Backlog> {
    let down = relay::free_port();
    let mut target = TargetSpec::new("down", &format!("http://{down}/hook"), s.target_concurrency);
    // Short backoff and breaker probe, so that deliveries tried during the outage are due
    // again, and the breaker closes, within seconds of the target coming back: the drain then
    // measures throughput, not the retry schedule or the 30 s default probe interval.
    target.extra = "    retry: { initial: 1s, max_delay: 2s }\n    breaker: { probe: 1s }\n".into();
    let relay = Relay::start(&s.relay_bin, &[target]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, store_before) = (relay.rss_bytes(), relay.store_bytes());
    let written_before = relay::written_bytes(relay.pid());
    let mut fill = load(s, &relay, Pace::FullSpeed, true);
    fill.max_requests = Some(s.backlog);
    fill.duration = s.fill_budget;
    let outcome = load::run(fill, clock).await;
    let accepted = outcome.with_status(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_with_backlog = relay.rss_bytes();
    let store_with_backlog = relay.store_bytes();
    let failed_attempts_during_fill = failed_attempts(&relay, "down").await;
    let written_filled = relay::written_bytes(relay.pid());

    let rss = RssSampler::start(relay.pid());
    let started_us = clock.now_us();
    let sink = Sink::start(down, Behaviour::Answer, clock).await?;
    let complete = wait_arrivals(&[&sink], accepted, s.drain_budget).await;
    let drained = sink.arrivals.count();
    let ended_us = if complete {
        sink.arrivals.last_us()
    } else {
        clock.now_us()
    };
    let drain_time = Duration::from_micros(ended_us.saturating_sub(started_us));
    let written_drained = relay::written_bytes(relay.pid());
    let drain_time = drain_time.max(Duration::from_millis(1));
    Ok(Backlog {
        requested: s.backlog,
        accepted,
        non_200: outcome.answered() - accepted + outcome.errors,
        fill_rate: outcome.rate(200),
        fill_time: outcome.elapsed,
        rss_before,
        rss_with_backlog,
        rss_drain_peak: rss.peak(),
        store_before,
        store_with_backlog,
        failed_attempts_during_fill,
        drained,
        drain_rate: drained as f64 / drain_time.as_secs_f64(),
        drain_time,
        drain_complete: complete,
        written_per_event_fill: written_filled.saturating_sub(written_before) as f64
            / accepted.max(1) as f64,
        written_per_delivery_drain: written_drained.saturating_sub(written_filled) as f64
            / drained.max(1) as f64,
    })
}

/// `relay_deliveries_total{target=..,outcome="retry"}` from `/metrics`.
async fn failed_attempts(relay: &Relay, target: &str) -> u64 {
    let Some(text) = relay.metrics_text().await else {
        return 0;
    };
    let prefix = format!("relay_deliveries_total{{target=\"{target}\",outcome=\"retry\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
