//! `textus-relay demo`: the whole path on one machine, with no account, secret or env var.
//!
//! Starts two local sink targets, writes a config into a temporary folder, runs the real relay
//! binary on it (`run`), sends the eight signed sample events plus a forged one and a repeat,
//! and shows what each target received. One target fails its first two requests, so a retry
//! with a stable `webhook-id` is visible.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::ingress::signature;
use crate::samples::SAMPLES;
use crate::sink::{Received, Reply, Sink};
use crate::targets::standard_webhooks;

const SECRET: &str = "textus-demo-secret";
/// A demo-only Standard Webhooks key (24 bytes of base64); never use it for real.
const SIGNING_KEY_B64: &str = "ZGVtby1zaWduaW5nLWtleS0xMjM0NTY3OA==";
const WAIT: Duration = Duration::from_secs(60);

/// Runs the demo and prints its story on standard output.
pub fn run() -> Result<()> {
    crate::install_crypto();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the demo runtime")?;
    runtime.block_on(demo())
}

async fn demo() -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let warehouse = Sink::start(vec![], Reply::Status(200)).await?;
    let crm = Sink::start(
        vec![Reply::Status(503), Reply::Status(503)],
        Reply::Status(200),
    )
    .await?;
    let listen = free_port()?;
    let admin = free_port()?;
    let config_path = dir.path().join("relay.yaml");
    std::fs::write(
        &config_path,
        config(dir.path(), listen, admin, &warehouse, &crm),
    )
    .context("writing the demo config")?;

    println!("textus-relay demo\n");
    println!(
        "  relay        http://{listen}/webhooks/textus  (admin http://{admin}, store {})",
        dir.path().join("relay.db").display()
    );
    println!(
        "  target       warehouse   -> {}  (kind http, Standard Webhooks signature, accepts everything)",
        warehouse.url("/ingest")
    );
    println!(
        "  target       crm-webhook -> {}  (kind http, answers 503 twice, then 200)",
        crm.url("/hooks/textus")
    );
    println!(
        "  routes       every event -> warehouse; message.received and contact.* -> crm-webhook\n"
    );

    let log_path = dir.path().join("relay.log");
    let log = std::fs::File::create(&log_path).context("creating the relay log")?;
    let mut relay =
        tokio::process::Command::new(std::env::current_exe().context("locating this binary")?)
            .args(["--log-format", "text", "run", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the relay")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let result = story(&client, listen, admin, &warehouse, &crm).await;
    stop(&mut relay).await;
    if let Err(e) = &result {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!("relay log:\n{log}");
        bail!("{e:#}");
    }
    println!("\nRelay log for crm-webhook (the retries an operator sees):");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("crm-webhook")) {
        println!("  {line}");
    }
    println!(
        "\nNext: `textus-relay check --config relay.yaml` validates your own config; see README.md."
    );
    Ok(())
}

async fn story(
    client: &reqwest::Client,
    listen: SocketAddr,
    admin: SocketAddr,
    warehouse: &Sink,
    crm: &Sink,
) -> Result<()> {
    wait_ready(client, admin).await?;
    let url = format!("http://{listen}/webhooks/textus");
    println!("1. TextUs sends the eight event types, each signed with the shared secret:");
    for (event_type, body) in SAMPLES {
        let (status, text) = post(client, &url, body, &signature::sign(SECRET, body)).await?;
        println!("   {event_type:<22} {status} {text}");
    }
    println!("\n2. Someone without the secret tries to inject an event:");
    let (status, text) = post(client, &url, SAMPLES[0].1, &"0".repeat(64)).await?;
    println!("   {:<22} {status} {text}", "forged signature");
    println!("\n3. TextUs sends message.received again (a retry on its side):");
    let body = SAMPLES[0].1;
    let (status, text) = post(client, &url, body, &signature::sign(SECRET, body)).await?;
    println!("   {:<22} {status} {text}", "same delivery id");

    let stored = warehouse
        .wait_for(8, WAIT)
        .await
        .context("waiting for warehouse deliveries")?;
    let tried = crm
        .wait_for(6, WAIT)
        .await
        .context("waiting for crm-webhook deliveries")?;
    println!("\n4. What the targets received (each from its own durable queue):");
    print!("{}", show("warehouse", &stored, 0));
    print!("{}", show("crm-webhook", &tried, 2));
    let targets = client
        .get(format!("http://{admin}/api/v1/targets"))
        .send()
        .await?
        .text()
        .await?;
    println!("\n5. Admin API, GET /api/v1/targets (nothing left queued):\n   {targets}");
    Ok(())
}

/// One line per request a sink received; the first `failed` were answered 503.
fn show(name: &str, received: &[Received], failed: usize) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SIGNING_KEY_B64)
        .unwrap_or_default();
    let mut out = String::new();
    for (i, r) in received.iter().enumerate() {
        let header = |h: &str| {
            r.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let action = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let id = header("webhook-id");
        let answered = if i < failed {
            "answered 503, relay retries"
        } else {
            "answered 200"
        };
        let verified = match header("webhook-timestamp").parse::<i64>() {
            Ok(ts)
                if header("webhook-signature")
                    == standard_webhooks::sign(&key, &id, ts, &r.body) =>
            {
                ", signature verified"
            }
            _ => "",
        };
        let _ = writeln!(
            out,
            "   {name:<12} {action:<22} webhook-id {id}  {answered}{verified}"
        );
    }
    out
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &'static [u8],
    sig: &str,
) -> Result<(u16, String)> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-textus-signature", sig)
        .body(body)
        .send()
        .await
        .context("sending to the relay")?;
    Ok((
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    ))
}

async fn wait_ready(client: &reqwest::Client, admin: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("http://{admin}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the relay did not become ready within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM (graceful) through `kill`, falling back to SIGKILL; nothing acknowledged is lost either way.
async fn stop(relay: &mut tokio::process::Child) {
    if let Some(pid) = relay.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), relay.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = relay.kill().await;
}

fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

fn config(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    warehouse: &Sink,
    crm: &Sink,
) -> String {
    format!(
        r#"listen: {{ address: "{listen}" }}
admin: {{ address: "{admin}" }}
storage: {{ kind: sqlite, path: "{db}" }}
source:
  secrets: ["{SECRET}"]
targets:
  warehouse:
    kind: http
    url: "{w}"
    signing: {{ secret: "whsec_{SIGNING_KEY_B64}" }}
  crm-webhook:
    kind: http
    url: "{c}"
    retry: {{ initial: 300ms, max_delay: 2s }}
routes:
  - events: ["*"]
    to: [warehouse]
  - events: [message.received, "contact.*"]
    to: [crm-webhook]
"#,
        db = dir.join("relay.db").display(),
        w = warehouse.url("/ingest"),
        c = crm.url("/hooks/textus"),
    )
}
