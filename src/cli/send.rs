//! `textus-relay send`: posts signed sample events to a running relay, as TextUs would.
//!
//! It reads `listen:` and `source:` from the config ([`Endpoint::load`]): the address (a relay
//! on every address is reached on loopback), `https` when `listen.tls` is set, `source.path`
//! and the first of `source.secrets`. Each event gets a fresh envelope `id`, so de-duplication
//! never swallows a second send. Exit codes: 0 every event answered 2xx, 1 one did not (or the
//! relay could not be reached), 2 bad config or usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use clap::builder::PossibleValuesParser;
use serde_json::Value;

use crate::config::Endpoint;
use crate::ingress::signature;
use crate::support::samples::{SAMPLES, sample};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to send, and where.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The running relay's config: its listen address, source.path and first source secret.
    #[arg(long, short, default_value = "relay.yaml")]
    pub config: PathBuf,
    /// Event type of the sample to send; repeat for several.
    #[arg(long, short, value_name = "TYPE", required_unless_present = "all",
          value_parser = PossibleValuesParser::new(SAMPLES.map(|(t, _)| t)))]
    pub event: Vec<String>,
    /// Send all eight sample events.
    #[arg(long, conflicts_with = "event")]
    pub all: bool,
    /// Post here instead of the address and path in the config, e.g. when the relay is behind a
    /// proxy or its certificate names a host: https://relay.example.com/webhooks/textus
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Trust this PEM CA certificate too (a private CA, or a self-signed certificate).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the relay's TLS certificate. For development certificates only.
    #[arg(long)]
    pub insecure: bool,
}

/// Sends the events and prints each answer; see the module docs for the exit codes.
pub fn run(args: Args) -> ExitCode {
    let endpoint = match Endpoint::load(&args.config) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(secret) = endpoint.source.secrets.first().cloned() else {
        // Validation refuses an empty list; kept as an error rather than a panic all the same.
        eprintln!("{}: source.secrets is empty", args.config.display());
        return ExitCode::from(2);
    };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match endpoint_url(&endpoint) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let client = match client(&args) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let types: Vec<&str> = if args.all {
        SAMPLES.iter().map(|(t, _)| *t).collect()
    } else {
        args.event.iter().map(String::as_str).collect()
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .map(|rt| {
            rt.block_on(send_all(
                &client,
                &url,
                secrecy::ExposeSecret::expose_secret(&secret),
                &types,
            ))
        });
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!(
                "{failed} of {} event(s) were not accepted by {url}",
                types.len()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Sends each event in turn; returns how many were not answered 2xx.
async fn send_all(client: &reqwest::Client, url: &url::Url, secret: &str, types: &[&str]) -> usize {
    let mut failed = 0;
    for (sent, event_type) in types.iter().enumerate() {
        match send_one(client, url, secret, event_type).await {
            Ok((status, body)) => {
                // Ignoring a closed stdout (`send ... | head -1`): the event was sent and the
                // exit code still tells how it went.
                let line = format!("{event_type}: {status} {}\n", body.trim_end());
                let _ = std::io::stdout().write_all(line.as_bytes());
                if !status.is_success() {
                    failed += 1;
                    eprintln!("{event_type}: the relay answered {status}{}", hint(status));
                }
            }
            Err(e) => {
                // No answer at all: the others would only repeat the same error.
                eprintln!("{event_type}: {e:#}");
                let rest = types.len() - sent - 1;
                if rest > 0 {
                    eprintln!("not sending the other {rest} event(s)");
                }
                return failed + 1 + rest;
            }
        }
    }
    failed
}

async fn send_one(
    client: &reqwest::Client,
    url: &url::Url,
    secret: &str,
    event_type: &str,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let body = fresh_body(event_type)?;
    let response = client
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("X-TextUs-Signature", signature::sign(secret, &body))
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the relay at {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("reading the answer from {url}"))?;
    Ok((status, text))
}

/// The sample body of `event_type` with an envelope `id` no other send has used.
fn fresh_body(event_type: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = sample(event_type).ok_or_else(|| anyhow!("no sample for {event_type}"))?;
    let mut event: Value = serde_json::from_slice(bytes).context("sample is not JSON")?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Time and a random part: unique across processes started in the same instant too.
    let id = format!(
        "/integrations/textus-relay-send/deliveries/{nanos:x}-{:016x}",
        rand::random::<u64>()
    );
    let Some(fields) = event.as_object_mut() else {
        return Err(anyhow!("sample {event_type} is not a JSON object"));
    };
    fields.insert("id".to_owned(), Value::String(id));
    serde_json::to_vec_pretty(&event).context("serializing the event")
}

/// Where the config says the relay takes events.
fn endpoint_url(endpoint: &Endpoint) -> anyhow::Result<url::Url> {
    let scheme = if endpoint.tls { "https" } else { "http" };
    let address = super::dead_letters::reachable(endpoint.address);
    let text = format!("{scheme}://{address}{}", endpoint.source.path);
    url::Url::parse(&text).with_context(|| format!("the relay's address {text}"))
}

fn client(args: &Args) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto();
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("textus-relay-send/", env!("CARGO_PKG_VERSION")))
        .tls_danger_accept_invalid_certs(args.insecure);
    if let Some(path) = &args.ca_cert {
        let pem =
            std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-cert {} is not a PEM certificate", path.display()))?;
        if certs.is_empty() {
            return Err(anyhow!("--ca-cert {} holds no certificate", path.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

fn hint(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => {
            " (the signature was refused: is the config's first source secret one the running relay has?)"
        }
        404 => " (no such path: does source.path match the running relay's?)",
        504 => " (the relay could not store it right now; TextUs would retry)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_send_gets_a_new_envelope_id_and_keeps_the_event() {
        let first: Value =
            serde_json::from_slice(&fresh_body("contact.opted_out").expect("body")).expect("JSON");
        let second: Value =
            serde_json::from_slice(&fresh_body("contact.opted_out").expect("body")).expect("JSON");
        let sample: Value =
            serde_json::from_slice(sample("contact.opted_out").expect("sample")).expect("JSON");
        assert_ne!(first["id"], second["id"]);
        assert_ne!(first["id"], sample["id"]);
        assert_eq!(first["action"], "contact.opted_out");
        assert_eq!(first["optOut"], sample["optOut"]);
    }

    #[test]
    fn the_url_follows_listen_and_source() {
        let yaml = "listen: { address: \"0.0.0.0:8443\", tls: { cert: a, key: b } }\nsource: { path: /in, secrets: [s] }\n";
        let endpoint = Endpoint::from_yaml_str(yaml, std::path::Path::new("r.yaml"), &|_| None)
            .expect("valid");
        assert_eq!(
            endpoint_url(&endpoint).expect("url").as_str(),
            "https://127.0.0.1:8443/in"
        );
    }
}
