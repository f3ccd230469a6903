//! `textus-relay demo`: the whole path on one machine, with no account, secret or env var.
//!
//! Starts four local sink targets (a signed HTTP endpoint, a flaky one, a Slack-shaped and a
//! CRM-shaped one), writes a config into a temporary folder, runs the real relay binary on it
//! (`run`), sends the eight signed sample events plus a forged one and a repeat, and shows what
//! each target received. The flaky target fails its first two requests, so a retry with a
//! stable `webhook-id` is visible.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::ingress::signature;
use crate::support::samples::SAMPLES;
use crate::support::sink::{Received, Reply, Sink};
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

/// The local stand-ins for the systems a real deployment delivers to.
struct Sinks {
    warehouse: Sink,
    flaky: Sink,
    slack: Sink,
    crm: Sink,
}

impl Sinks {
    async fn start() -> Result<Sinks> {
        Ok(Sinks {
            warehouse: Sink::start(vec![], Reply::Status(200)).await?,
            flaky: Sink::start(
                vec![Reply::Status(503), Reply::Status(503)],
                Reply::Status(200),
            )
            .await?,
            slack: Sink::start(vec![], Reply::StatusWithBody(200, "ok".into())).await?,
            crm: Sink::start(vec![], Reply::StatusWithBody(200, "{}".into())).await?,
        })
    }
}

async fn demo() -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let sinks = Sinks::start().await?;
    let listen = free_port()?;
    let admin = free_port()?;
    let config_path = dir.path().join("relay.yaml");
    std::fs::write(&config_path, config(dir.path(), listen, admin, &sinks))
        .context("writing the demo config")?;

    println!("textus-relay demo\n");
    println!(
        "  relay    http://{listen}/webhooks/textus  (admin http://{admin}, store {})",
        dir.path().join("relay.db").display()
    );
    println!("  targets  warehouse  kind http   every event, Standard Webhooks signature");
    println!(
        "           flaky      kind http   message.received and contact.*; answers 503 twice, then 200"
    );
    println!(
        "           slack      kind slack  message.* and contact.opted_out, built-in messages"
    );
    println!("           hubspot    kind crm    contact.created, templated contact upsert");
    println!("  (each target is a local sink standing in for the real system)\n");

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
    let result = story(&client, listen, admin, &sinks).await;
    stop(&mut relay).await;
    if let Err(e) = &result {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!("relay log:\n{log}");
        bail!("{e:#}");
    }
    println!("\nRelay log for the flaky target (the retries an operator sees):");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("\"flaky\"")) {
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
    sinks: &Sinks,
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

    let wait = |sink: &Sink, n: usize, what: &'static str| {
        let sink = sink.clone();
        async move {
            sink.wait_for(n, WAIT)
                .await
                .with_context(|| format!("waiting for {what}"))
        }
    };
    let stored = wait(&sinks.warehouse, 8, "warehouse deliveries").await?;
    let tried = wait(&sinks.flaky, 6, "flaky deliveries").await?;
    let posted = wait(&sinks.slack, 5, "slack messages").await?;
    let upserts = wait(&sinks.crm, 1, "crm requests").await?;
    println!("\n4. What the targets received (each from its own durable queue):");
    print!("{}", show("warehouse", &stored, 0));
    print!("{}", show("flaky", &tried, 2));
    for r in &posted {
        let text = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default();
        println!("   {:<10} {}", "slack", one_line(&text, 100));
    }
    for r in &upserts {
        println!(
            "   {:<10} {} {} {}",
            "hubspot",
            r.method,
            r.path,
            one_line(&String::from_utf8_lossy(&r.body), 160)
        );
    }
    let targets = client
        .get(format!("http://{admin}/api/v1/targets"))
        .send()
        .await?
        .text()
        .await?;
    println!("\n5. Admin API, GET /api/v1/targets (nothing left queued):\n   {targets}");
    Ok(())
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
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
            "   {name:<10} {action:<22} webhook-id {id}  {answered}{verified}"
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

fn config(dir: &Path, listen: SocketAddr, admin: SocketAddr, sinks: &Sinks) -> String {
    format!(
        r#"listen: {{ address: "{listen}" }}
admin: {{ address: "{admin}" }}
storage: {{ kind: sqlite, path: "{db}" }}
source:
  secrets: ["{SECRET}"]
targets:
  warehouse:
    kind: http
    url: "{warehouse}"
    signing: {{ secret: "whsec_{SIGNING_KEY_B64}" }}
  flaky:
    kind: http
    url: "{flaky}"
    retry: {{ initial: 300ms, max_delay: 2s }}
  slack:
    kind: slack
    url: "{slack}"
    rate_limit: 20/s
  hubspot:
    kind: crm
    method: POST
    url: "{crm}"
    auth: {{ bearer: "demo-token" }}
    body:
      inputs:
        - idProperty: textus_contact_id
          id: "{{{{ event.contact.id | replace('/contacts/', '') }}}}"
          properties:
            firstname: "{{{{ event.contact.firstName }}}}"
            lastname: "{{{{ event.contact.lastName }}}}"
            phone: "{{{{ event.contact.phones.members[0].phoneNumber | e164 }}}}"
routes:
  - events: ["*"]
    to: [warehouse]
  - events: [message.received, "contact.*"]
    to: [flaky]
  - events: ["message.*", contact.opted_out]
    to: [slack]
  - events: [contact.created]
    to: [hubspot]
"#,
        db = dir.join("relay.db").display(),
        warehouse = sinks.warehouse.url("/ingest"),
        flaky = sinks.flaky.url("/hooks/textus"),
        slack = sinks.slack.url("/services/T000/B000/demo"),
        crm = sinks.crm.url("/crm/v3/objects/contacts/batch/upsert"),
    )
}
