//! `textus-relay health`: asks a running relay's admin API whether it is alive (`/healthz`) or
//! ready (`/readyz`), for probes that can only run a command: a container `HEALTHCHECK` in a
//! distroless image (no shell, no curl), a Kubernetes exec probe, a systemd `ExecStartPost`.
//!
//! Exit codes: 0 the relay answered 2xx, 1 it did not answer in time or answered otherwise,
//! 2 bad config or usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::config::Admin;

/// Short enough for a probe's own timeout (Docker's default is 30 s, Kubernetes' 1 s is raised
/// in the manifests), long enough for a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Which relay, and which check.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The running relay's config: its `admin.address` is asked.
    #[arg(long, short, default_value = "relay.yaml")]
    pub config: PathBuf,
    /// Check readiness (`/readyz`: store writable, every dispatcher running) instead of
    /// liveness (`/healthz`).
    #[arg(long)]
    pub ready: bool,
    /// Ask this admin base URL instead of the config's address, e.g. http://127.0.0.1:9090
    #[arg(long, conflicts_with = "config")]
    pub url: Option<url::Url>,
}

/// Runs the check; prints one line on stdout (ok) or stderr (not ok).
pub fn run(args: Args) -> ExitCode {
    let base = match &args.url {
        Some(url) => url.clone(),
        None => match Admin::load(&args.config) {
            Ok(admin) => {
                let address = super::dead_letters::reachable(admin.address);
                match url::Url::parse(&format!("http://{address}")) {
                    Ok(url) => url,
                    Err(e) => {
                        eprintln!("admin address {address}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let url = match base.join(path) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("{base}{path}: {e}");
            return ExitCode::from(2);
        }
    };
    match check(&url) {
        Ok(answer) => {
            // A closed stdout must not turn a healthy answer into a panic (exit 101).
            let _ = writeln!(std::io::stdout(), "ok: {url} answered {answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("not ok: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// GETs `url`; the status and body on 2xx, an error saying what went wrong otherwise.
fn check(url: &url::Url) -> anyhow::Result<String> {
    crate::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let response = client
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let answer = format!("{status} {}", body.trim());
        if status.is_success() {
            Ok(answer)
        } else {
            Err(anyhow!("{url} answered {answer}"))
        }
    })
}
