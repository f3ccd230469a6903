//! `textus-bench`: runs every scenario of issue 6 against a built relay binary and writes
//! `results.json`, `REPORT.md` and `latency.png` into the output folder. Started by
//! `bench/run`; see `textus-bench --help`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser as _;
use textus_bench::drain_ack::DrainAck;
use textus_bench::report::{Results, Round};
use textus_bench::scenarios::{self, Settings};
use textus_bench::sink::{Behaviour, Clock};

mod args;

use args::{Cli, Command, Scenario, SendArgs};

/// Alternating ceiling and ingest rounds in a full run.
const ROUNDS: usize = 2;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.run.report_only {
        // `--out` is required unless `--only` is given, and the two conflict.
        return textus_bench::report::redraw(&cli.run.out.unwrap_or_default());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Send(send)) => runtime.block_on(send_once(send)),
        Some(Command::Sinks { ports }) => runtime.block_on(sinks(ports)),
        None => {
            let (settings, out) = cli.run.settings()?;
            if cli.run.only.is_empty() {
                runtime.block_on(run(settings, out))
            } else {
                runtime.block_on(run_only(settings, cli.run.only, out))
            }
        }
    }
}

/// `send`: one generator run against a relay that is already running.
async fn send_once(args: SendArgs) -> anyhow::Result<()> {
    use textus_bench::load::{Load, Pace};
    let load = Load {
        target: args.to,
        path: textus_bench::relay::PATH.into(),
        connections: args.connections,
        pace: args.rate.map_or(Pace::FullSpeed, Pace::Rate),
        duration: Duration::from_secs(3600),
        max_requests: Some(args.requests),
        secret: textus_bench::relay::SECRET.into(),
        valid_signature: !args.wrong_signature,
        keep_samples: false,
    };
    let outcome = textus_bench::load::run(load, Clock::start()).await;
    let p = scenarios::Percentiles::of(&outcome.latency);
    println!(
        "statuses {:?}, no answer {}, {:.1} s, {:.0} req/s, latency {p:?}",
        outcome.statuses,
        outcome.errors,
        outcome.elapsed.as_secs_f64(),
        outcome.answered() as f64 / outcome.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `sinks`: answering sinks on the given ports until killed (for profiling).
async fn sinks(ports: Vec<u16>) -> anyhow::Result<()> {
    let clock = Clock::start();
    let mut sinks = Vec::new();
    for port in ports {
        let addr = ([127, 0, 0, 1], port).into();
        let sink = textus_bench::sink::Sink::start(addr, Behaviour::Answer, clock).await?;
        println!("{}", sink.url());
        sinks.push(sink);
    }
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let counts: Vec<u64> = sinks.iter().map(|s| s.arrivals.count()).collect();
        eprintln!("arrivals {counts:?}");
    }
}

/// `--only`: the named scenarios, their figures on stderr, no report (nats-shape's key of
/// results.json aside, which only it writes).
async fn run_only(s: Settings, only: Vec<Scenario>, out: PathBuf) -> anyhow::Result<()> {
    let clock = Clock::start();
    let yardstick = textus_bench::load::yardstick();
    eprintln!("machine speed: {yardstick:.0} HMAC-SHA256 of the fixture per second");
    for name in only {
        match name {
            Scenario::Ceiling => {
                let c = scenarios::ceiling(&s, clock).await?;
                eprintln!("ceiling: {:.0} req/s, {:?}", c.rate, c.cpu);
            }
            Scenario::Ingest => {
                let i = scenarios::ingest(&s, clock).await?;
                eprintln!(
                    "ingest: {:.0} events/s, fan-out {:.0} deliveries/s, {:?}, {:?}",
                    i.rate, i.fanout, i.cpu, i.commits
                );
            }
            Scenario::Cpu => {
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
            Scenario::DrainAck => {
                let d = textus_bench::drain_ack::run(&s, clock).await?;
                print_drain_ack(&d);
            }
            Scenario::Paced => {
                for rate in [1000.0, 5000.0] {
                    let p = scenarios::paced(&s, clock, rate).await?;
                    eprintln!("paced {rate}: ack {:?}\n  e2e {:?}", p.ack, p.e2e);
                }
            }
            Scenario::Isolation => {
                let i = scenarios::isolation(&s, clock).await?;
                eprintln!(
                    "isolation: healthy p99 {:.2} ms without, {:.2} ms with",
                    i.without.p99_ms, i.with_black_hole.p99_ms
                );
            }
            Scenario::Backlog => {
                let b = scenarios::backlog(&s, clock).await?;
                eprintln!(
                    "backlog: {} queued at {:.0} events/s, drain {:.0} events/s",
                    b.accepted, b.fill_rate, b.drain_rate
                );
            }
            Scenario::Nats => {
                let n = textus_bench::nats::run(&s, clock).await?;
                print_nats(&n);
                eprintln!("\n{}", n.markdown(cpu_info().0)?);
            }
            Scenario::NatsShape => {
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
    let stamp = textus_relay::templates::rfc3339_from_unix_ms(ms); // 2026-11-27T01:14:05.123Z
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}
