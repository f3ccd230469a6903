//! Test harness: the real `textus-relay` binary on loopback ports, with its store in a
//! temporary folder, and helpers to sign and send events the way TextUs does.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use textus_relay::ingress::signature;

mod relay;
mod wait;

pub use relay::*;
pub use wait::*;

pub const SECRET: &str = "textus-abcdefgh12345678";
pub const BIN: &str = env!("CARGO_BIN_EXE_textus-relay");
/// The longest any test waits for something that should happen; generous for a loaded CI box.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const EVENT_TYPES: [&str; 8] = textus_relay::metrics::EVENT_TYPES;

/// The bytes of a shared fixture, exactly as stored.
pub fn fixture(event_type: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/{event_type}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}

/// A fixture with its envelope `id` replaced, so several distinct events can be sent.
pub fn fixture_with_id(event_type: &str, id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(event_type)).expect("fixture is JSON");
    v["id"] = Value::String(id.to_string());
    serde_json::to_vec_pretty(&v).expect("serialize")
}

/// A loopback port for a relay to listen on, free when it is chosen.
///
/// Chosen below the kernel's ephemeral range (32768-60999 on Linux), from a counter: tests run
/// in parallel, and their sinks and clients bind port 0, which takes ports from that range. A
/// port picked there and released for the relay to bind could be handed to another test's sink
/// in between, so one test's relay would answer another's requests (seen in CI).
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Two test processes at once (rare) start far apart.
    let offset = std::process::id() % COUNT;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            n < COUNT,
            "no free loopback port left below the ephemeral range"
        );
        let port = u16::try_from(FIRST + (offset + n) % COUNT).expect("below 32000");
        if let Ok(addr) = TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr()) {
            return addr;
        }
    }
}

/// The backend the black-box suites run on: `RELAY_TEST_STORE=nats` puts every relay on one
/// JetStream server shared by the test process, each store under a prefix of its own (the
/// same for relays started on the same folder, so a restart finds its queue again).
pub fn nats_backend() -> bool {
    std::env::var("RELAY_TEST_STORE").is_ok_and(|v| v == "nats")
}

/// The `storage:` line of a relay whose SQLite file would be `store`.
pub fn storage_yaml(store: &Path, storage_extra: &str) -> String {
    if nats_backend() {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(store.to_string_lossy().as_bytes());
        let prefix = format!("t{}", &hex::encode(hash)[..16]);
        format!(
            "storage: {{ kind: nats, urls: [\"{}\"], replicas: 1, prefix: {prefix}{storage_extra} }}",
            shared_nats_url()
        )
    } else {
        format!(
            "storage: {{ kind: sqlite, path: \"{}\"{storage_extra} }}",
            store.display()
        )
    }
}

/// The one JetStream server of this test process, started on first use and left running
/// until the process ends (its nodes die with it: see `nats_server`).
pub fn shared_nats_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let cluster = runtime.block_on(crate::nats_server::NatsCluster::single());
            let url = cluster.urls()[0].clone();
            // Never dropped: every relay of the process shares it.
            std::mem::forget(cluster);
            url
        })
        .join()
        .expect("starting the shared nats-server")
    })
    .clone()
}

/// Where a relay keeps its files, and what its config says besides the addresses.
pub struct Layout<'a> {
    /// Holds relay.yaml and the log (stderr).
    pub dir: &'a Path,
    /// The SQLite file.
    pub store: &'a Path,
    /// Written inside `listen:` after its address, e.g. `, tls: { ... }`.
    pub listen_extra: &'a str,
    /// Written inside `admin:` after its address.
    pub admin_extra: &'a str,
    /// Written inside `storage:` after its path, e.g. `, max_bytes: 16MiB`.
    pub storage_extra: &'a str,
    /// The rest of the config (source, targets, routes).
    pub rest: &'a str,
}

/// Runs `textus-relay` with `args` to completion: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run textus-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A target block for an http target pointing at `url`, with fast retries for tests.
pub fn http_target(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"  {name}:
    kind: http
    url: "{url}"
    retry: {{ initial: 100ms, max_delay: 500ms }}
{extra}"#
    )
}
