//! `textus-bench`: runs every scenario of issue 6 against a built relay binary and writes
//! `results.json`, `REPORT.md` and `latency.png` into the output folder. Started by
//! `bench/run`; see `textus-bench --help`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use textus_bench::drain_ack::DrainAck;
use textus_bench::report::{Results, Round};
use textus_bench::scenarios::{self, Settings};
use textus_bench::sink::{Behaviour, Clock};

const USAGE: &str = "usage: textus-bench --relay BIN --out DIR [--connections N] [--phase-secs S] \
[--backlog N] [--fill-budget-secs S] [--drain-budget-secs S] [--target-concurrency N] \
[--wide-connections N] [--drain-burst EVENTS] [--only SCENARIO,...]  (--wide-connections: also \
measure ceiling and ingest with N connections, ~30 s more)  (--drain-burst: events of the burst \
whose 3 deliveries each are the backlog of drain-ack, default 33334)  (--only: ceiling, ingest, \
cpu, paced, drain-ack, isolation, backlog, nats, nats-shape; prints the figures and writes no report, \
for comparing builds; nats-shape, the NATS store's message shapes of issue 15 measured without \
the relay (~4 min, never part of a full run), needs no --relay and, given --out, sets its key \
`nats_store_shape` in OUT/results.json)\n       textus-bench --report-only --out DIR  (DIR/REPORT.md again from \
DIR/results.json and DIR/analysis.md; runs nothing)";

/// Alternating ceiling and ingest rounds in a full run.
const ROUNDS: usize = 2;

const SEND_USAGE: &str = "usage: textus-bench send --to ADDR --requests N [--connections N] \
[--rate EVENTS_PER_S] [--wrong-signature]  (for profiling a relay started by hand with the \
bench secret)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().is_some_and(|a| a == "send") {
        let load = parse_send(args[1..].to_vec())?;
        let outcome = runtime.block_on(textus_bench::load::run(load, Clock::start()));
        let p = scenarios::Percentiles::of(&outcome.latency);
        println!(
            "statuses {:?}, no answer {}, {:.1} s, {:.0} req/s, latency {p:?}",
            outcome.statuses,
            outcome.errors,
            outcome.elapsed.as_secs_f64(),
            outcome.answered() as f64 / outcome.elapsed.as_secs_f64()
        );
        return Ok(());
    }
    if args.first().is_some_and(|a| a == "sinks") {
        // For profiling: answering sinks on the given ports until killed.
        return runtime.block_on(async {
            let clock = Clock::start();
            let mut sinks = Vec::new();
            for port in &args[1..] {
                let addr = format!("127.0.0.1:{port}").parse()?;
                let sink = textus_bench::sink::Sink::start(addr, Behaviour::Answer, clock).await?;
                println!("{}", sink.url());
                sinks.push(sink);
            }
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let counts: Vec<u64> = sinks.iter().map(|s| s.arrivals.count()).collect();
                eprintln!("arrivals {counts:?}");
            }
        });
    }
    if args.iter().any(|a| a == "--report-only") {
        let out = parse_report_only(&args)?;
        return textus_bench::report::redraw(&out);
    }
    let (settings, out, only) = parse(args)?;
    if !only.is_empty() {
        return runtime.block_on(run_only(settings, only, out));
    }
    runtime.block_on(run(settings, out))
}

/// `send`: one generator run against a relay that is already running.
fn parse_send(args: Vec<String>) -> anyhow::Result<textus_bench::load::Load> {
    use textus_bench::load::{Load, Pace};
    let mut load = Load {
        target: "127.0.0.1:8443".parse()?,
        path: textus_bench::relay::PATH.into(),
        connections: 32,
        pace: Pace::FullSpeed,
        duration: Duration::from_secs(3600),
        max_requests: Some(1000),
        secret: textus_bench::relay::SECRET.into(),
        valid_signature: true,
        keep_samples: false,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--wrong-signature" {
            load.valid_signature = false;
            continue;
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{SEND_USAGE}"))?;
        match flag.as_str() {
            "--to" => load.target = value.parse()?,
            "--requests" => load.max_requests = Some(value.parse()?),
            "--connections" => load.connections = value.parse()?,
            "--rate" => load.pace = Pace::Rate(value.parse()?),
            _ => bail!("unknown flag {flag}\n{SEND_USAGE}"),
        }
    }
    Ok(load)
}

/// `--report-only --out DIR`: REPORT.md again from DIR/results.json, nothing run.
fn parse_report_only(args: &[String]) -> anyhow::Result<PathBuf> {
    match args {
        [a, b, dir] | [b, dir, a] if a == "--report-only" && b == "--out" => Ok(dir.into()),
        _ => bail!("--report-only takes only --out DIR\n{USAGE}"),
    }
}

fn parse(args: Vec<String>) -> anyhow::Result<(Settings, PathBuf, Vec<String>)> {
    let mut s = Settings {
        relay_bin: PathBuf::new(),
        connections: 32,
        phase: Duration::from_secs(10),
        backlog: 1_000_000,
        fill_budget: Duration::from_secs(150),
        drain_budget: Duration::from_secs(150),
        target_concurrency: 32,
        wide_connections: None,
        drain_burst: 33_334,
    };
    let mut out = None;
    let mut only = Vec::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--relay" => s.relay_bin = PathBuf::from(&value),
            "--out" => out = Some(PathBuf::from(&value)),
            "--connections" => s.connections = number()? as usize,
            "--phase-secs" => s.phase = Duration::from_secs(number()?),
            "--backlog" => s.backlog = number()?,
            "--fill-budget-secs" => s.fill_budget = Duration::from_secs(number()?),
            "--drain-budget-secs" => s.drain_budget = Duration::from_secs(number()?),
            "--target-concurrency" => s.target_concurrency = number()? as usize,
            "--wide-connections" => s.wide_connections = Some(number()? as usize),
            "--drain-burst" => s.drain_burst = number()?,
            "--only" => only = value.split(',').map(str::to_owned).collect(),
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    let out = match (out, only.is_empty()) {
        (Some(out), _) => out,
        (None, false) => PathBuf::new(),
        (None, true) => bail!("--out is required\n{USAGE}"),
    };
    // Only nats-shape runs without a relay.
    let relay_needed = only.is_empty() || only.iter().any(|o| o != "nats-shape");
    if relay_needed && !s.relay_bin.is_file() {
        bail!("--relay {}: no such binary\n{USAGE}", s.relay_bin.display());
    }
    Ok((s, out, only))
}

/// `--only`: the named scenarios, their figures on stderr, no report (nats-shape's key of
/// results.json aside, which only it writes).
async fn run_only(s: Settings, only: Vec<String>, out: PathBuf) -> anyhow::Result<()> {
    let clock = Clock::start();
    let yardstick = textus_bench::load::yardstick();
    eprintln!("machine speed: {yardstick:.0} HMAC-SHA256 of the fixture per second");
    for name in only {
        match name.as_str() {
            "ceiling" => {
                let c = scenarios::ceiling(&s, clock).await?;
                eprintln!("ceiling: {:.0} req/s, {:?}", c.rate, c.cpu);
            }
            "ingest" => {
                let i = scenarios::ingest(&s, clock).await?;
                eprintln!(
                    "ingest: {:.0} events/s, fan-out {:.0} deliveries/s, {:?}, {:?}",
                    i.rate, i.fanout, i.cpu, i.commits
                );
            }
            "cpu" => {
                let c = scenarios::ceiling(&s, clock).await?;
                let i = scenarios::ingest(&s, clock).await?;
                let round = Round::of(&c, &i);
                eprintln!(
                    "cpu: relay {:.1} µs per 401, {:.1} µs per durable event with 3 deliveries \
                     (first send to last delivery), ratio {:.1}",
                    round.cpu_per_401_us,
                    round.cpu_per_event_us,
                    round.cpu_ratio()
                );
            }
            "drain-ack" => {
                let d = textus_bench::drain_ack::run(&s, clock).await?;
                print_drain_ack(&d);
            }
            "paced" => {
                for rate in [1000.0, 5000.0] {
                    let p = scenarios::paced(&s, clock, rate).await?;
                    eprintln!("paced {rate}: ack {:?}\n  e2e {:?}", p.ack, p.e2e);
                }
            }
            "isolation" => {
                let i = scenarios::isolation(&s, clock).await?;
                eprintln!(
                    "isolation: healthy p99 {:.2} ms without, {:.2} ms with",
                    i.without.p99_ms, i.with_black_hole.p99_ms
                );
            }
            "backlog" => {
                let b = scenarios::backlog(&s, clock).await?;
                eprintln!(
                    "backlog: {} queued at {:.0} events/s, drain {:.0} events/s",
                    b.accepted, b.fill_rate, b.drain_rate
                );
            }
            "nats" => {
                let n = textus_bench::nats::run(&s, clock).await?;
                print_nats(&n);
                eprintln!("\n{}", n.markdown(cpu_info().0)?);
            }
            "nats-shape" => {
                eprintln!(
                    "NATS store shapes: 3 nodes, 3 replicas, N = 1, 3, 8 targets, full speed and \
                     1,000 events/s"
                );
                let n = textus_bench::nats_shape::run(&s, clock).await?;
                eprintln!("\n{}", n.markdown());
                if !out.as_os_str().is_empty() {
                    let key = textus_bench::report::NATS_SHAPE_KEY;
                    textus_bench::report::merge_key(&out, key, n.json(&utc_now()))?;
                    eprintln!("wrote {key} into {}", out.join("results.json").display());
                }
            }
            other => bail!("--only: unknown scenario {other}\n{USAGE}"),
        }
    }
    Ok(())
}

async fn run(s: Settings, out: PathBuf) -> anyhow::Result<()> {
    // Checked first: the NATS scenario runs last, and a missing server should not cost the
    // minutes of everything before it.
    textus_bench::nats::server_version()?;
    let clock = Clock::start();
    let began = Instant::now();
    let started = utc_now();
    let step = |name: &str| eprintln!("[{:>5.1}s] {name}", began.elapsed().as_secs_f64());

    // Ceiling and ingest alternate, twice: the machine's speed drifts (other VMs, the disk),
    // and measuring the two sides of the ratio back to back, in both orders, keeps a drift
    // from landing on one side only.
    let yardstick_start = textus_bench::load::yardstick();
    let mut rounds = Vec::new();
    let mut first = None;
    for round in 1..=ROUNDS {
        step(&format!(
            "round {round}/{ROUNDS}: ceiling (wrong signature → 401) and idle RSS"
        ));
        let ceiling = scenarios::ceiling(&s, clock).await?;
        eprintln!(
            "        {:.0} req/s, statuses {:?}, {:?}",
            ceiling.rate, ceiling.outcome.statuses, ceiling.cpu
        );
        step(&format!(
            "round {round}/{ROUNDS}: ingest at full speed, 3 targets"
        ));
        let ingest = scenarios::ingest(&s, clock).await?;
        eprintln!(
            "        {:.0} events/s, statuses {:?}, fan-out {:.0} deliveries/s, {:?}, {:?}",
            ingest.rate, ingest.outcome.statuses, ingest.fanout, ingest.cpu, ingest.commits
        );
        let r = Round::of(&ceiling, &ingest);
        eprintln!(
            "        relay CPU {:.1} µs per 401, {:.1} µs per event, ratio {:.1}",
            r.cpu_per_401_us,
            r.cpu_per_event_us,
            r.cpu_ratio()
        );
        rounds.push(r);
        first.get_or_insert((ceiling, ingest));
    }
    let Some((ceiling, ingest)) = first else {
        bail!("no ceiling and ingest rounds ran");
    };
    let mut wide = None;
    if let Some(connections) = s.wide_connections {
        step(&format!(
            "ceiling and ingest again with {connections} connections (sensitivity)"
        ));
        let settings = Settings {
            connections,
            ..s.clone()
        };
        let wide_ceiling = scenarios::ceiling(&settings, clock).await?;
        let wide_ingest = scenarios::ingest(&settings, clock).await?;
        eprintln!(
            "        {connections} connections: ceiling {:.0} req/s, ingest {:.0} events/s",
            wide_ceiling.rate, wide_ingest.rate
        );
        wide = Some((connections, wide_ceiling, wide_ingest));
    }
    step("ack latency at 1,000 events/s");
    let at_1000 = scenarios::paced(&s, clock, 1000.0).await?;
    eprintln!(
        "        ack {:?}\n        e2e {:?}",
        at_1000.ack, at_1000.e2e
    );
    step("ack latency at 1,000 events/s while a backlog of deliveries drains");
    let drain_ack = textus_bench::drain_ack::run(&s, clock).await?;
    print_drain_ack(&drain_ack);
    step("ack latency at 5,000 events/s");
    let at_5000 = scenarios::paced(&s, clock, 5000.0).await?;
    eprintln!(
        "        ack {:?}\n        e2e {:?}",
        at_5000.ack, at_5000.e2e
    );
    step("isolation: black-holed second target");
    let isolation = scenarios::isolation(&s, clock).await?;
    eprintln!(
        "        healthy p99 {:.2} ms without, {:.2} ms with",
        isolation.without.p99_ms, isolation.with_black_hole.p99_ms
    );
    step("backlog for a down target, then drain");
    let backlog = scenarios::backlog(&s, clock).await?;
    eprintln!(
        "        {} queued, drain {:.0} events/s",
        backlog.accepted, backlog.drain_rate
    );
    step("NATS JetStream: 3 nodes, 1 then 2 relays, full speed and 1,000 events/s");
    let nats = textus_bench::nats::run(&s, clock).await?;
    print_nats(&nats);
    let (cpus, cpu_model) = cpu_info();
    let results = Results {
        cpus,
        cpu_model,
        connections: s.connections,
        phase_secs: s.phase.as_secs_f64(),
        target_concurrency: s.target_concurrency,
        ceiling,
        ingest,
        rounds,
        yardstick: (yardstick_start, textus_bench::load::yardstick()),
        wide,
        at_1000,
        drain_ack,
        at_5000,
        isolation,
        backlog,
        nats,
        started,
        took_secs: began.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&out)?;
    results.write(&out)?;
    step("done");
    Ok(())
}

fn print_drain_ack(d: &DrainAck) {
    let w = &d.window;
    eprintln!(
        "        burst {} of {} events accepted at {:.0}/s, {} delivered while paused; backlog \
         pending {} at the paced start, {} at its end; drained after {}; window {:.1} s{}\n        \
         ack while draining {:?}\n        ack whole phase {:?}",
        d.burst_accepted,
        d.burst_requested,
        d.burst_rate,
        d.delivered_while_paused,
        d.pending_at_start,
        d.pending_at_end,
        w.drained_after_secs
            .map_or("unknown (not within 60 s)".into(), |s| format!("{s:.1} s")),
        w.secs,
        if w.valid {
            ""
        } else {
            " (too short: not valid)"
        },
        d.during_drain,
        d.whole_phase
    );
}

fn print_nats(n: &textus_bench::nats::Nats) {
    for f in &n.fleets {
        for (what, p) in [("full speed", &f.full_speed), ("1,000/s", &f.paced)] {
            eprintln!(
                "        nats, {} relay(s), {what}: {:.0} acks/s, statuses {:?} (no answer {}), ack \
                 {:?}\n          deliveries {} of {}; CPU per event: relays {:.0} µs, servers {:.0} \
                 µs; cores: relays {:.2}, servers {:.2} {:.2?}, harness {:.2}; idle: relays \
                 {:.2}, servers {:.2}; {} warnings",
                f.relays,
                p.rate,
                p.outcome.statuses,
                p.outcome.errors,
                p.ack,
                p.deliveries,
                p.expected(),
                p.relay_us_per_event,
                p.nats_us_per_event,
                p.relay_cores,
                p.nats_cores,
                p.nats_cores_per_node,
                p.harness_cores,
                p.idle_relay_cores,
                p.idle_nats_cores,
                p.warnings
            );
        }
    }
}

/// CPU count and model name from /proc/cpuinfo.
fn cpu_info() -> (usize, String) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = text.lines().filter(|l| l.starts_with("processor")).count();
    let model = text
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_string());
    (cpus, model)
}

/// Now as `YYYY-MM-DD HH:MM UTC`, from the relay's own RFC 3339 formatter.
fn utc_now() -> String {
    let ms = textus_relay::store::unix_ms(std::time::SystemTime::now());
    let stamp = textus_relay::targets::rfc3339(ms); // 2026-11-27T01:14:05.123Z
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}
