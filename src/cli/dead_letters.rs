//! `textus-relay dead-letters list|show|replay|purge`: a client of a running relay's admin API.
//!
//! It reads only `admin:` from the config file (address and token; see
//! [`crate::config::Admin::load`]) and speaks plain HTTP to that address, so it needs neither
//! the webhook secrets nor the store file. Exit codes: 0 ok, 1 the relay could not be reached
//! or answered an error, 2 bad config or usage.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::admin::params::parse_time;
use crate::config::Admin;
use crate::store::unix_ms;
use render::{render_list, render_purge, render_replay, render_show};

mod render;

/// A replay or purge of very many letters runs in slices on the relay; give it time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Subcommand, Debug)]
pub enum Action {
    /// List dead letters, newest first.
    #[command(after_help = super::help::DEAD_LETTERS_LIST)]
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filters: Filters,
        /// At most this many (the relay caps it at 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter: its event body and every attempt.
    #[command(after_help = super::help::DEAD_LETTERS_SHOW)]
    Show {
        #[command(flatten)]
        common: Common,
        /// The dead letter's id, as `list` shows it.
        id: i64,
    },
    /// Put dead letters back in their targets' queues, due now, with attempts reset.
    #[command(after_help = super::help::DEAD_LETTERS_REPLAY)]
    Replay {
        #[command(flatten)]
        common: Common,
        /// Dead letter ids; combined with the filters, all must match.
        ids: Vec<i64>,
        #[command(flatten)]
        filters: Filters,
    },
    /// Delete dead letters (and their events once nothing else needs them).
    #[command(after_help = super::help::DEAD_LETTERS_PURGE)]
    Purge {
        #[command(flatten)]
        common: Common,
        /// Dead letter ids; combined with the filters, all must match.
        ids: Vec<i64>,
        #[command(flatten)]
        filters: Filters,
    },
}

/// What every action takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The running relay's config: its `admin.address` and `admin.token` are used.
    #[arg(long, short, default_value = "relay.yaml")]
    pub config: PathBuf,
    /// Print the admin API's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which dead letters; every one given must match.
#[derive(clap::Args, Debug)]
pub struct Filters {
    /// Only this target's.
    #[arg(long)]
    pub target: Option<String>,
    /// Only this event type (`action`), e.g. contact.created.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Dead at or after this time: RFC 3339 (2025-01-31T14:00:00Z) or Unix milliseconds.
    #[arg(long, value_parser = time_ms, value_name = "TIME")]
    pub since: Option<i64>,
    /// Dead before this time: RFC 3339 or Unix milliseconds.
    #[arg(long, value_parser = time_ms, value_name = "TIME")]
    pub until: Option<i64>,
}

fn time_ms(text: &str) -> Result<i64, String> {
    parse_time(text).map(unix_ms)
}

/// Why a run failed, which decides the exit code.
enum Failure {
    /// 2: the config or the command line is wrong.
    Usage(String),
    /// 1: the relay could not be reached or answered an error.
    Relay(anyhow::Error),
}

/// Runs one action and reports on stdout (results) and stderr (errors).
pub fn run(action: Action) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Relay(anyhow!("starting the runtime: {e}")))
        .and_then(|rt| rt.block_on(execute(action)));
    match result {
        Ok(out) => super::write_out(out.as_bytes(), "the answer"),
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Relay(e)) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn execute(action: Action) -> Result<String, Failure> {
    let common = match &action {
        Action::List { common, .. }
        | Action::Show { common, .. }
        | Action::Replay { common, .. }
        | Action::Purge { common, .. } => common,
    };
    let admin = Admin::load(&common.config).map_err(|e| Failure::Usage(e.to_string()))?;
    let api = Api::new(&admin).map_err(Failure::Relay)?;
    let json_out = common.json;
    let (answer, render): (Value, fn(&Value) -> String) = match &action {
        Action::List { filters, limit, .. } => {
            let mut query = filters.query();
            query.push(("limit", limit.to_string()));
            (api.get("", &query).await?, render_list)
        }
        Action::Show { id, .. } => (api.get(&format!("/{id}"), &[]).await?, render_show),
        Action::Replay { ids, filters, .. } => (
            api.post("/replay", filters.body(ids)?).await?,
            render_replay,
        ),
        Action::Purge { ids, filters, .. } => {
            (api.post("/purge", filters.body(ids)?).await?, render_purge)
        }
    };
    Ok(if json_out {
        format!("{answer}\n")
    } else {
        render(&answer)
    })
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        q.extend(self.target.clone().map(|t| ("target", t)));
        q.extend(self.event_type.clone().map(|t| ("type", t)));
        q.extend(self.since.map(|t| ("since", t.to_string())));
        q.extend(self.until.map(|t| ("until", t.to_string())));
        q
    }

    /// The replay/purge body; refuses to select everything by accident.
    fn body(&self, ids: &[i64]) -> Result<Value, Failure> {
        let mut body = serde_json::Map::new();
        if !ids.is_empty() {
            body.insert("ids".into(), json!(ids));
        }
        let fields = [
            ("target", self.target.as_ref().map(|t| json!(t))),
            ("type", self.event_type.as_ref().map(|t| json!(t))),
            ("since", self.since.map(|t| json!(t))),
            ("until", self.until.map(|t| json!(t))),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        }
        if body.is_empty() {
            return Err(Failure::Usage(
                "say which dead letters: give ids, or --target, --type, --since or --until"
                    .to_owned(),
            ));
        }
        Ok(Value::Object(body))
    }
}

/// The admin API of one relay.
struct Api {
    base: String,
    token: Option<crate::config::Secret>,
    client: reqwest::Client,
}

impl Api {
    fn new(admin: &Admin) -> anyhow::Result<Api> {
        crate::install_crypto();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: format!("http://{}/api/v1/dead-letters", reachable(admin.address)),
            token: admin.token.clone(),
            client,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Failure::Relay(anyhow!("admin API address {}: {e}", self.base)))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send(self.client.get(url)).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(secrecy::ExposeSecret::expose_secret(token));
        }
        let response = request.send().await.map_err(|e| {
            Failure::Relay(anyhow!(
                "cannot reach the relay's admin API at {}: {e}",
                self.base
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Relay(anyhow!("reading the answer from {}: {e}", self.base)))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let message = body["message"].as_str().unwrap_or("no message");
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            " (check admin.token in the config against the running relay's)"
        } else {
            ""
        };
        Err(Failure::Relay(anyhow!(
            "the relay answered {status}: {message}{hint}"
        )))
    }
}

/// A relay listening on every address (`0.0.0.0`, `[::]`) is reached on loopback (also used
/// by `send` and `health`).
pub(crate) fn reachable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_api_on_every_address_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9090".parse().expect("addr");
        assert_eq!(reachable(any), "127.0.0.1:9090".parse().expect("addr"));
        let any6: SocketAddr = "[::]:9090".parse().expect("addr");
        assert_eq!(reachable(any6), "[::1]:9090".parse().expect("addr"));
        let fixed: SocketAddr = "10.0.0.5:9090".parse().expect("addr");
        assert_eq!(reachable(fixed), fixed);
    }
}
