//! How a commit reaches the disk. The bundled SQLite is compiled without a configure step, so
//! on its own it syncs with fsync(2), which also pushes the log file's inode (its mtime moves on
//! every write) through the file system's journal. `.cargo/config.toml` gives it
//! `HAVE_FDATASYNC`, as SQLite's own Linux builds have: fdatasync(2) still syncs the data and
//! the file's size. This test watches the real binary's system calls with strace.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, BIN, PATIENCE, SECRET};

#[tokio::test]
async fn commits_are_synced_with_fdatasync_not_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, admin) = (support::free_port(), support::free_port());
    let config = dir.path().join("relay.yaml");
    let yaml = format!(
        "listen: {{ address: \"{listen}\" }}\nadmin: {{ address: \"{admin}\" }}\nstorage: {{ kind: sqlite, path: \"{}\" }}\nsource: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        dir.path().join("relay.db").display(),
        support::http_target("t", &format!("http://{}/hook", support::free_port()), ""),
    );
    std::fs::write(&config, yaml).expect("write config");
    let trace = dir.path().join("syncs.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args([BIN, "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("relay.log")).expect("log file"))
        .spawn()
        .expect("strace runs (scripts/prereqs installs it)");
    textus_relay::install_crypto();
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(tokio::time::Instant::now() < deadline, "relay not ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let body = support::fixture("message.received");
    let status = client
        .post(format!("http://{listen}/webhooks/textus"))
        .header(
            "X-TextUs-Signature",
            textus_relay::ingress::signature::sign(SECRET, &body),
        )
        .body(body)
        .send()
        .await
        .expect("relay answers")
        .status();
    assert_eq!(status, 200, "the event is stored");

    // strace's child is the relay; stopping it ends the trace.
    let children = format!("/proc/{0}/task/{0}/children", strace.id());
    let relay: u32 = std::fs::read_to_string(&children)
        .expect("strace's children")
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("the relay runs under strace");
    support::signal(relay, "-TERM");
    assert!(strace.wait().expect("strace exits").success());

    let syncs = std::fs::read_to_string(&trace).expect("trace written");
    assert!(
        syncs.contains("fdatasync("),
        "the acknowledged commit was synced:\n{syncs}"
    );
    assert!(
        !syncs.contains("fsync("),
        "no full fsync: SQLite was built without HAVE_FDATASYNC:\n{syncs}"
    );
}
