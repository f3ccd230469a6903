//! The command line of `textus-bench` (clap): a full run, `--only` scenarios, `--report-only`,
//! and the profiling helpers `send` and `sinks`.
//!
//! A flag given twice keeps its last value, so `bench/run`, which passes `--relay` and `--out`
//! before the caller's own arguments, lets the caller override them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use textus_bench::scenarios::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "textus-bench",
    about = "Runs the benchmark scenarios of issue 6 against a built relay binary and writes \
             results.json, REPORT.md and latency.png into the output folder (started by bench/run)",
    args_override_self = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One generator run against a relay that is already running, signed with the bench secret
    /// (for profiling a relay started by hand); prints statuses, rate and latency.
    Send(SendArgs),
    /// Answering sinks on 127.0.0.1 at the given ports until killed, with their arrival counts
    /// every 5 s on stderr (for profiling).
    Sinks {
        /// Ports to listen on, one sink each.
        #[arg(value_name = "PORT")]
        ports: Vec<u16>,
    },
}

/// A full run, chosen scenarios (`--only`), or the report again (`--report-only`).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The relay binary to measure (needed by every scenario but nats-shape).
    #[arg(long, value_name = "BIN")]
    pub relay: Option<PathBuf>,
    /// Folder for results.json, REPORT.md and latency.png (REPORT.md keeps DIR/analysis.md
    /// after the table). Needed unless --only is given.
    #[arg(long, value_name = "DIR", required_unless_present = "only")]
    pub out: Option<PathBuf>,
    /// Keep-alive connections of the load generator.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub connections: usize,
    /// Length of each timed phase, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub phase_secs: u64,
    /// Events queued for a down target in the backlog scenario.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub backlog: u64,
    /// Longest the backlog fill may take, in seconds.
    #[arg(long, value_name = "S", default_value_t = 150)]
    pub fill_budget_secs: u64,
    /// Longest the backlog drain may take, in seconds.
    #[arg(long, value_name = "S", default_value_t = 150)]
    pub drain_budget_secs: u64,
    /// `concurrency` of each http target in the relay's config.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub target_concurrency: usize,
    /// Also measure ceiling and ingest with N connections (~30 s more).
    #[arg(long, value_name = "N")]
    pub wide_connections: Option<usize>,
    /// Events of the burst whose 3 deliveries each are the backlog of drain-ack.
    #[arg(long, value_name = "EVENTS", default_value_t = 33_334)]
    pub drain_burst: u64,
    /// Run only these scenarios (comma-separated), print their figures on stderr and write no
    /// report, for comparing builds. nats-shape (the NATS store's message shapes of issue 15,
    /// measured without the relay, ~4 min, never part of a full run) needs no --relay and,
    /// given --out, sets its key `nats_store_shape` in DIR/results.json.
    #[arg(
        long,
        value_name = "SCENARIO,...",
        value_delimiter = ',',
        action = ArgAction::Set,
        num_args = 1
    )]
    pub only: Vec<Scenario>,
    /// Draw DIR/REPORT.md again from DIR/results.json and DIR/analysis.md (after editing either,
    /// or a template) and run nothing; needs only --out.
    #[arg(long, conflicts_with = "only")]
    pub report_only: bool,
}

/// A scenario `--only` can run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Ceiling,
    Ingest,
    Cpu,
    Paced,
    DrainAck,
    Isolation,
    Backlog,
    Nats,
    NatsShape,
}

impl RunArgs {
    /// The scenarios' settings and the output folder (empty with `--only` and no `--out`).
    pub fn settings(&self) -> anyhow::Result<(Settings, PathBuf)> {
        let relay_bin = self.relay.clone().unwrap_or_default();
        // Only nats-shape runs without a relay.
        let relay_needed =
            self.only.iter().any(|o| *o != Scenario::NatsShape) || self.only.is_empty();
        if relay_needed && !relay_bin.is_file() {
            bail!("--relay {}: no such binary", relay_bin.display());
        }
        let settings = Settings {
            relay_bin,
            connections: self.connections,
            phase: Duration::from_secs(self.phase_secs),
            backlog: self.backlog,
            fill_budget: Duration::from_secs(self.fill_budget_secs),
            drain_budget: Duration::from_secs(self.drain_budget_secs),
            target_concurrency: self.target_concurrency,
            wide_connections: self.wide_connections,
            drain_burst: self.drain_burst,
        };
        Ok((settings, self.out.clone().unwrap_or_default()))
    }
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Address of the relay's listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub to: SocketAddr,
    /// Requests to send in all.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub requests: u64,
    /// Keep-alive connections.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub connections: usize,
    /// Open loop at this many events per second over all connections (default: full speed,
    /// closed loop).
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate: Option<f64>,
    /// Sign with a wrong secret, so every request is answered 401.
    #[arg(long)]
    pub wrong_signature: bool,
}
