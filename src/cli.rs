//! Command line: `run`, `check`, `demo`, `sign`, `send`, `health`, `dead-letters`,
//! `migrate`, `textus subscribe`, `completions`, `schema`. Errors are reported here, with context.
//!
//! Exit codes (design.md §7): 0 ok, 1 runtime failure, 2 bad config or usage.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

pub mod check;
pub mod completions;
pub mod dead_letters;
pub mod health;
mod help;
pub mod migrate;
pub mod send;
pub mod textus;

#[derive(Parser, Debug)]
#[command(
    name = "textus-relay",
    version,
    about = "Durable relay from TextUs webhooks to Slack, CRMs and HTTP endpoints",
    after_help = help::TOP
)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log pipelines. Filter with RUST_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay.
    #[command(after_help = help::RUN)]
    Run {
        #[arg(long, short, default_value = "relay.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from a running relay that was sent SIGQUIT.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config and show which event types reach which targets.
    #[command(after_help = help::CHECK)]
    Check {
        #[arg(long, short, default_value = "relay.yaml")]
        config: PathBuf,
    },
    /// Run a self-contained demonstration: a relay, local targets and the eight sample events.
    #[command(after_help = help::DEMO)]
    Demo,
    /// Print the X-TextUs-Signature that TextUs would send for the body on standard input.
    #[command(after_help = help::SIGN)]
    Sign {
        #[arg(long)]
        secret: String,
    },
    /// Inspect, replay and purge the dead letters of a running relay, through its admin API.
    #[command(subcommand, after_help = help::DEAD_LETTERS)]
    DeadLetters(dead_letters::Action),
    /// Send signed sample events to a running relay, as TextUs would (fresh ids: never deduped).
    #[command(after_help = help::SEND)]
    Send(send::Args),
    /// Ask a running relay whether it is alive (/healthz) or ready (/readyz); exit 0 or 1.
    #[command(after_help = help::HEALTH)]
    Health(health::Args),
    /// Move a SQLite store's pending deliveries, dead letters and remembered ids into NATS JetStream.
    #[command(after_help = help::MIGRATE)]
    Migrate(migrate::Args),
    /// Set up the TextUs side: subscribe TextUs to exactly the event types the routes send.
    #[command(subcommand, after_help = help::TEXTUS)]
    Textus(textus::Action),
    /// Print a shell completion script.
    #[command(after_help = help::COMPLETIONS)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of relay.yaml (for editors), or with --markdown its reference.
    #[command(after_help = help::SCHEMA)]
    Schema {
        /// Print the configuration reference (docs/config-reference.md) instead.
        #[arg(long)]
        markdown: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands whose output is the point log only warnings, so stderr stays readable.
    let quiet = matches!(
        cli.command,
        Command::Demo
            | Command::DeadLetters(_)
            | Command::Send(_)
            | Command::Health(_)
            | Command::Migrate(_)
            | Command::Textus(_)
            | Command::Completions { .. }
            | Command::Schema { .. }
    );
    init_logging(cli.log_format, quiet);
    match cli.command {
        Command::Run { config, upgrade } => run(&config, upgrade),
        Command::Check { config } => check(&config),
        Command::Demo => match crate::support::demo::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Sign { secret } => sign(&secret),
        Command::DeadLetters(action) => dead_letters::run(action),
        Command::Send(args) => send::run(args),
        Command::Health(args) => health::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Textus(action) => textus::run(action),
        Command::Completions { shell } => completions::run(shell),
        Command::Schema { markdown } => {
            let text = if markdown {
                crate::config::schema::markdown()
            } else {
                crate::config::schema::json()
            };
            write_out(text.as_bytes(), "the schema")
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn run(path: &Path, upgrade: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::app::run(config, crate::app::RunOptions { upgrade }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("textus-relay could not start: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::install_crypto();
    let built = crate::app::build::compile(&config).and_then(|mut compiled| {
        crate::app::build::targets(&config, &mut compiled).map(|b| (compiled, b))
    });
    let (compiled, built) = match built {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let report = crate::cli::check::report(&config, &compiled, &built);
    let written = write_out(report.text.as_bytes(), "the report");
    if written != ExitCode::SUCCESS {
        return written;
    }
    if report.errors > 0 {
        eprintln!(
            "{}: {} template error(s) with the sample events",
            config.file.display(),
            report.errors
        );
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn sign(secret: &str) -> ExitCode {
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("reading the body from standard input: {e}");
        return ExitCode::from(1);
    }
    let line = format!("{}\n", crate::ingress::signature::sign(secret, &body));
    write_out(line.as_bytes(), "the signature")
}

/// Writes a command's output to stdout: a closed pipe or a full disk is an error message and
/// exit 1, not the panic `print!` would raise.
pub(crate) fn write_out(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing {what} to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, quiet: bool) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::prelude::*;
    // pingora logs every service start at info; its warnings and errors are what matter here.
    let default = if quiet {
        "warn"
    } else {
        "info,pingora_core=warn,pingora=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Secrets and signatures are never logged, whatever RUST_LOG asks for: at trace, pingora
    // prints every request head, `Authorization` and `X-TextUs-Signature` included. So its
    // trace events are dropped even when RUST_LOG enables them.
    // Regression: #5
    let filter = filter.and(filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE && meta.target().starts_with("pingora"))
    }));
    // Colour only on a terminal: logs written to files and journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        // A failed log write must not take the relay down: by default tracing-subscriber reports
        // it with eprintln!, which panics when stderr's disk is full (found by the disk-full test).
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Text => registry.with(layer.with_filter(filter)).try_init(),
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).try_init(),
    };
}
