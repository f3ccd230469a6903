//! The real relay binary as a child process: a generated config in a temporary folder (store
//! included), loopback ports, and the numbers the report reads from outside (RSS, file sizes).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The webhook secret every bench relay is configured with.
pub const SECRET: &str = "textus-benchsecret12345678";
pub const PATH: &str = "/webhooks/textus";

/// One http target of a bench relay.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub name: String,
    pub url: String,
    pub concurrency: usize,
    /// `retry:` and `timeout:` lines, already indented, or empty for the defaults.
    pub extra: String,
}

impl TargetSpec {
    pub fn new(name: &str, url: &str, concurrency: usize) -> TargetSpec {
        TargetSpec {
            name: name.into(),
            url: url.into(),
            concurrency,
            extra: String::new(),
        }
    }
}

/// A running relay; killed (SIGKILL) when dropped.
pub struct Relay {
    child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

impl Relay {
    /// Starts `bin` with every target routed every event, and waits until `/readyz` is 200.
    pub async fn start(bin: &Path, targets: &[TargetSpec]) -> anyhow::Result<Relay> {
        Relay::start_with_storage(bin, targets, None).await
    }

    /// As [`Relay::start`], with `storage` (a one-line `storage: {...}` mapping) instead of a
    /// SQLite file in the relay's folder.
    pub async fn start_with_storage(
        bin: &Path,
        targets: &[TargetSpec],
        storage: Option<&str>,
    ) -> anyhow::Result<Relay> {
        settle_disk().await;
        let dir = tempfile::Builder::new().prefix("textus-bench-").tempdir()?;
        let listen = free_port();
        let admin = free_port();
        let storage = storage.map_or_else(
            || {
                format!(
                    "storage: {{ kind: sqlite, path: \"{}\" }}",
                    dir.path().join("relay.db").display()
                )
            },
            str::to_owned,
        );
        let mut yaml = format!(
            "listen: {{ address: \"{listen}\" }}\nadmin: {{ address: \"{admin}\" }}\n\
             {storage}\n\
             source:\n  path: {PATH}\n  secrets: [ \"{SECRET}\" ]\ntargets:\n"
        );
        for t in targets {
            yaml.push_str(&format!(
                "  {}:\n    kind: http\n    url: \"{}\"\n    concurrency: {}\n{}",
                t.name, t.url, t.concurrency, t.extra
            ));
        }
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        yaml.push_str(&format!(
            "routes:\n  - events: [ \"*\" ]\n    to: [ {} ]\n",
            names.join(", ")
        ));
        let config = dir.path().join("relay.yaml");
        std::fs::write(&config, yaml)?;
        let log = std::fs::File::create(dir.path().join("relay.log"))?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let relay = Relay {
            child,
            listen,
            admin,
            dir,
        };
        relay.wait_ready().await?;
        Ok(relay)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get(self.admin, "/readyz")
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("relay not ready within 30 s; log:\n{}", self.log_tail())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the relay used so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.pid().to_string())
    }

    /// Resident set size in bytes (`VmRSS` of /proc/PID/status).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// Bytes of the store on disk: the database file plus its WAL.
    pub fn store_bytes(&self) -> u64 {
        ["relay.db", "relay.db-wal"]
            .iter()
            .map(|f| std::fs::metadata(self.dir.path().join(f)).map_or(0, |m| m.len()))
            .sum()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("relay.db")
    }

    /// The last lines of the relay's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Counts `WARN`/`ERROR` lines in the log, to flag a run that went wrong.
    pub fn log_problems(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("relay.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .count()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> Option<String> {
        let text = get(self.admin, "/metrics").await?;
        Some(text.split_once("\r\n\r\n")?.1.to_string())
    }

    /// `POST`s an empty body to an admin endpoint; fails unless the answer is 200.
    pub async fn admin_post(&self, path: &str) -> anyhow::Result<()> {
        let answer = request(self.admin, "POST", path)
            .await
            .with_context(|| format!("POST {path}: no answer"))?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("POST {path}: {answer}");
        }
        Ok(())
    }

    /// The admin API's JSON for `path`.
    pub async fn admin_json(&self, path: &str) -> Option<serde_json::Value> {
        let text = get(self.admin, path).await?;
        let body = text.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process used so far (0 if it cannot be read).
pub fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'. USER_HZ is 100
    // on every Linux this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes a process asked the kernel to write so far (`wchar` of /proc/PID/io: files and
/// sockets alike; 0 if it cannot be read).
pub fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A metric's value from Prometheus text (the first sample whose name and labels match).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Resident set size of a process in bytes (0 if it cannot be read).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// A one-shot `GET` (HTTP/1.1, `Connection: close`); the whole answer as text.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    request(addr, "GET", path).await
}

/// A one-shot request without a body (HTTP/1.1, `Connection: close`); the whole answer.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8(out).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()?
}

/// Flushes what earlier scenarios left to write back (their stores are deleted with their
/// folders) and lets the disk go quiet, so one scenario's writeback does not land in the next
/// one's fsync latencies: in one run the ack p99 at 1,000 events/s was 20 ms right after the
/// full-speed phases and 1.4 ms in the same build measured alone.
async fn settle_disk() {
    // Nothing to do if `sync` is missing: only the noise it removes comes back.
    let _ = tokio::task::spawn_blocking(|| Command::new("sync").status()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}
