//! A relay process under test: started on its own loopback ports and temporary folder,
//! restarted, upgraded, signalled and killed as an operator would.

use super::*;

/// What to record with strace, and where.
#[derive(Clone)]
pub struct Trace {
    /// For `strace -e`, e.g. `trace=fsync,fdatasync`.
    pub expr: &'static str,
    pub out: PathBuf,
}

/// A running relay process.
pub struct TestRelay {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The relay.yaml it runs with, for CLI commands that talk to it.
    pub config: PathBuf,
    /// One log file per process started on this config (restarts and upgrades add one).
    logs: Vec<PathBuf>,
    /// `RUST_LOG` for every process started on this config.
    rust_log: String,
    /// `--log-format json` instead of the default text.
    json_logs: bool,
    /// Runs the relay under `strace -f`, writing the syscalls it was asked for to this file.
    trace: Option<Trace>,
    /// Environment variables set for every process started on this config (`None`: removed).
    env: Vec<(String, Option<String>)>,
    client: reqwest::Client,
    _owned: Option<tempfile::TempDir>,
}

impl TestRelay {
    /// Starts a relay whose config is `listen`/`admin`/`storage` (chosen here) plus `rest`.
    pub async fn start(rest: &str) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut relay = TestRelay::start_in(&path, rest).await;
        relay._owned = Some(dir);
        relay
    }

    /// Starts a relay whose admin API requires `Authorization: Bearer <token>` on `/api/`.
    pub async fn start_with_token(token: &str, rest: &str) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut relay = TestRelay::launch(&path, &format!(", token: \"{token}\""), rest).await;
        relay._owned = Some(dir);
        relay
    }

    /// Starts a relay with its store in `dir` (kept by the caller, e.g. across a restart).
    pub async fn start_in(dir: &Path, rest: &str) -> TestRelay {
        TestRelay::launch(dir, "", rest).await
    }

    /// `admin` is written inside the `admin:` mapping after its address.
    async fn launch(dir: &Path, admin_extra: &str, rest: &str) -> TestRelay {
        TestRelay::launch_in(dir, admin_extra, rest, "info", false).await
    }

    /// A relay with its store `relay.db` in `dir`, and nothing else in its layout.
    async fn launch_in(
        dir: &Path,
        admin_extra: &str,
        rest: &str,
        rust_log: &str,
        json_logs: bool,
    ) -> TestRelay {
        let layout = Layout {
            dir,
            store: &dir.join("relay.db"),
            listen_extra: "",
            admin_extra,
            storage_extra: "",
            rest,
        };
        TestRelay::launch_full(layout, rust_log, json_logs, None).await
    }

    /// Like [`TestRelay::start_in`] with admin settings and a `RUST_LOG` filter of its own.
    pub async fn launch_logged(
        dir: &Path,
        admin_extra: &str,
        rest: &str,
        rust_log: &str,
    ) -> TestRelay {
        TestRelay::launch_in(dir, admin_extra, rest, rust_log, false).await
    }

    /// Starts a relay laid out as `layout` says (store elsewhere, TLS, ...).
    pub async fn launch_with(layout: Layout<'_>) -> TestRelay {
        TestRelay::launch_full(layout, "info", false, None).await
    }

    /// Starts a relay under strace (installed by scripts/prereqs); [`TestRelay::pid`] is still
    /// the relay's, and the trace is complete once it has stopped.
    pub async fn start_traced(rest: &str, trace: Trace) -> TestRelay {
        TestRelay::launch_owned(rest, "info", false, Some(trace)).await
    }

    /// A relay on `rest` with its store in a temporary folder it owns.
    async fn launch_owned(
        rest: &str,
        rust_log: &str,
        json_logs: bool,
        trace: Option<Trace>,
    ) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout {
            dir: dir.path(),
            store: &dir.path().join("relay.db"),
            listen_extra: "",
            admin_extra: "",
            storage_extra: "",
            rest,
        };
        let mut relay = TestRelay::launch_full(layout, rust_log, json_logs, trace).await;
        relay._owned = Some(dir);
        relay
    }

    async fn launch_full(
        layout: Layout<'_>,
        rust_log: &str,
        json_logs: bool,
        trace: Option<Trace>,
    ) -> TestRelay {
        let Layout {
            dir,
            store,
            listen_extra,
            admin_extra,
            storage_extra,
            rest,
        } = layout;
        let storage = storage_yaml(store, storage_extra);
        TestRelay::launch_storage(
            dir,
            &storage,
            (listen_extra, admin_extra),
            rest,
            rust_log,
            json_logs,
            trace,
        )
        .await
    }

    /// Starts a relay whose `storage:` line is `storage` (e.g. a NATS cluster of a test's
    /// own), with relay.yaml and its log in `dir`.
    pub async fn start_with_storage(dir: &Path, storage: &str, rest: &str) -> TestRelay {
        TestRelay::launch_storage(dir, storage, ("", ""), rest, "info", false, None).await
    }

    async fn launch_storage(
        dir: &Path,
        storage: &str,
        extras: (&str, &str),
        rest: &str,
        rust_log: &str,
        json_logs: bool,
        trace: Option<Trace>,
    ) -> TestRelay {
        let mut relay = TestRelay::prepare(dir, storage, extras, rest, rust_log, json_logs, trace);
        relay.child = Some(relay.spawn(false));
        relay.wait_ready().await;
        relay
    }

    /// Writes the config and sets the relay up without starting a process.
    fn prepare(
        dir: &Path,
        storage: &str,
        (listen_extra, admin_extra): (&str, &str),
        rest: &str,
        rust_log: &str,
        json_logs: bool,
        trace: Option<Trace>,
    ) -> TestRelay {
        textus_relay::install_crypto();
        let listen = free_port();
        let admin = free_port();
        let config = dir.join("relay.yaml");
        let yaml = format!(
            "listen: {{ address: \"{listen}\"{listen_extra} }}\nadmin: {{ address: \"{admin}\"{admin_extra} }}\n{storage}\n{rest}"
        );
        std::fs::write(&config, yaml).expect("write config");
        TestRelay {
            child: None,
            listen,
            admin,
            config,
            logs: Vec::new(),
            rust_log: rust_log.to_string(),
            json_logs,
            trace,
            env: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("client"),
            _owned: None,
        }
    }

    /// Starts a relay (store in a temporary folder) with these environment variables set
    /// (`Some`) or removed (`None`), e.g. `HTTP_PROXY`; restarts keep them.
    pub async fn start_with_env(rest: &str, env: &[(&str, Option<&str>)]) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = storage_yaml(&dir.path().join("relay.db"), "");
        let mut relay =
            TestRelay::prepare(dir.path(), &storage, ("", ""), rest, "info", false, None);
        relay.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        relay._owned = Some(dir);
        relay.child = Some(relay.spawn(false));
        relay.wait_ready().await;
        relay
    }

    /// [`TestRelay::launch_logged`] with `--log-format json`.
    pub async fn launch_json_logged(
        dir: &Path,
        admin_extra: &str,
        rest: &str,
        rust_log: &str,
    ) -> TestRelay {
        TestRelay::launch_in(dir, admin_extra, rest, rust_log, true).await
    }

    /// Starts a relay (store in a temporary folder) that logs JSON, filtered by `rust_log`.
    pub async fn start_json_logs(rest: &str, rust_log: &str) -> TestRelay {
        TestRelay::launch_owned(rest, rust_log, true, None).await
    }

    /// Starts one more process on this config, logging to a file of its own.
    fn spawn(&mut self, upgrade: bool) -> Child {
        let dir = self.config.parent().expect("config has a folder");
        let log = dir.join(format!(
            "relay-{}-{}.log",
            self.listen.port(),
            self.logs.len()
        ));
        let mut command = match &self.trace {
            None => Command::new(BIN),
            Some(trace) => {
                let mut strace = Command::new("strace");
                strace
                    .args(["-f", "-qq", "-e", trace.expr, "-o"])
                    .arg(&trace.out)
                    .arg(BIN);
                strace
            }
        };
        if self.json_logs {
            command.args(["--log-format", "json"]);
        }
        command.args(["run", "--config"]).arg(&self.config);
        if upgrade {
            command.arg("--upgrade");
        }
        for (name, value) in &self.env {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let child = command
            .env("RUST_LOG", &self.rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start relay");
        self.logs.push(log);
        child
    }

    /// Starts the relay again on the same config, store and ports (after [`TestRelay::kill9`]
    /// or an exit) and waits until it is ready.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "the previous process is still running"
        );
        self.child = Some(self.spawn(false));
        self.wait_ready().await;
    }

    /// Zero-downtime restart: starts `run --upgrade` on the same config, sends the running
    /// process SIGQUIT and waits for it to exit (after handing its sockets over and its grace
    /// period). Returns the old process's exit status.
    pub async fn upgrade(&mut self) -> ExitStatus {
        let mut old = self.child.take().expect("relay is running");
        // The new process first: it waits on the upgrade socket for the listeners, and the
        // old one sends them on SIGQUIT (each side retries for a few seconds, so the order is
        // not critical, but this one needs no retry).
        self.child = Some(self.spawn(true));
        signal(old.id(), "-QUIT");
        let status = tokio::task::spawn_blocking(move || old.wait().expect("old relay exits"))
            .await
            .expect("wait for the old relay");
        self.wait_ready().await;
        status
    }

    /// The first half of [`TestRelay::upgrade`]: starts `run --upgrade` and sends the running
    /// process SIGQUIT, without waiting for anything. The new process is this relay's from now
    /// on; the old one is returned, still running, for the test to watch or kill.
    pub fn begin_upgrade(&mut self) -> Child {
        let old = self.child.take().expect("relay is running");
        self.child = Some(self.spawn(true));
        signal(old.id(), "-QUIT");
        old
    }

    /// Waits until the relay answers `/readyz` with 200.
    pub async fn wait_ready(&self) {
        let ready = poll_within(PATIENCE, async || {
            match self.client.get(self.admin_url("/readyz")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("/readyz answered {}", r.status())),
                Err(e) => Err(format!("/readyz: {e}")),
            }
        })
        .await;
        if let Err(seen) = ready {
            panic!("relay not ready ({seen}); log:\n{}", self.log());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Everything every process on this config logged, oldest first.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect()
    }

    /// The log of the process started last.
    pub fn current_log(&self) -> String {
        self.logs
            .last()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default()
    }

    /// POSTs `body` with `signature` (None: no header) to the TextUs path.
    pub async fn post_with(&self, body: &[u8], signature: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/webhooks/textus"))
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("X-TextUs-Signature", sig);
        }
        let response = req.send().await.expect("relay answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` signed with [`SECRET`], as TextUs would.
    pub async fn post_signed(&self, body: &[u8]) -> (u16, Value) {
        self.post_with(body, Some(&signature::sign(SECRET, body)))
            .await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin answers");
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// Any admin call: `(status, JSON answer)`, with a bearer token and a JSON body if given.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.admin_url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("admin answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Dead letters as listed by the admin API.
    pub async fn dead_letters(&self) -> Vec<Value> {
        let (status, body) = self.admin_get("/api/v1/dead-letters").await;
        assert_eq!(status, 200, "{body}");
        body["dead_letters"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the admin API lists at least `n` dead letters.
    pub async fn wait_dead_letters(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} dead letters"), async || {
            let list = self.dead_letters().await;
            if list.len() >= n {
                Ok(list)
            } else {
                Err(Value::Array(list))
            }
        })
        .await
    }

    /// The relay's process id (under strace, strace's child).
    pub fn pid(&self) -> u32 {
        let id = self.child.as_ref().map_or(0, Child::id);
        if self.trace.is_none() || id == 0 {
            return id;
        }
        std::fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The relay's resident memory (`VmRSS` from /proc), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("relay is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Whether the process is still running (it has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the relay to exit (after a signal sent by the test).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("relay is running");
        child.wait().expect("relay exits")
    }

    /// Replaces everything in relay.yaml after `listen`, `admin` and `storage` (the first three
    /// lines, which a reload cannot change) with `rest`, as an operator editing the file would.
    pub fn rewrite_config(&self, rest: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let head: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&self.config, format!("{}\n{rest}", head.join("\n"))).expect("write config");
    }

    /// `POST /api/v1/reload`.
    pub async fn reload(&self) -> (u16, Value) {
        self.admin_call(reqwest::Method::POST, "/api/v1/reload", None, None)
            .await
    }

    /// Waits until `/api/v1/targets` lists exactly `names` (in config order): the sign that a
    /// reload (e.g. after SIGHUP) has been applied.
    pub async fn wait_targets(&self, names: &[&str]) {
        let listed = poll_within(PATIENCE, async || {
            let (_, list) = self.admin_get("/api/v1/targets").await;
            let have: Vec<String> = list["targets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if have == names { Ok(()) } else { Err(have) }
        })
        .await;
        if let Err(have) = listed {
            panic!(
                "expected targets {names:?}, have {have:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        // strace leaves its tracee running when it is killed itself. (`pid` is 0 once the
        // child is gone, and `kill 0` would signal the whole process group.)
        let relay = self.pid();
        if self.trace.is_some() && relay != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &relay.to_string()])
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let relay = self.pid();
        let mut child = self.child.take().expect("relay is running");
        assert_ne!(relay, 0, "the relay's process id is known");
        signal(relay, "-TERM");
        child.wait().expect("relay exits")
    }
}

/// Sends a signal (`-TERM`, `-QUIT`, ...) to a process.
pub fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {which} {pid}");
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A relay whose one target `t` always answers 503 and gives up after three quick attempts.
pub async fn relay_giving_up_after_three_503s() -> (TestRelay, textus_relay::support::sink::Sink) {
    use textus_relay::support::sink::{Reply, Sink};
    let sink = Sink::start(vec![], Reply::Status(503)).await.expect("sink");
    let yaml = format!(
        r#"source: {{ secrets: ["{SECRET}"] }}
targets:
  t:
    kind: http
    url: "{}"
    retry: {{ initial: 50ms, max_delay: 100ms, max_attempts: 3 }}
routes:
  - events: ["*"]
    to: [t]
"#,
        sink.url("/t")
    );
    (TestRelay::start(&yaml).await, sink)
}
