//! How a commit reaches the disk. The bundled SQLite is compiled without a configure step, so
//! on its own it syncs with fsync(2), which also pushes the log file's inode (its mtime moves on
//! every write) through the file system's journal. `.cargo/config.toml` gives it
//! `HAVE_FDATASYNC`, as SQLite's own Linux builds have: fdatasync(2) still syncs the data and
//! the file's size. This test watches the real binary's system calls with strace.

use crate::support::{self, TestRelay, Trace};

#[tokio::test]
async fn commits_are_synced_with_fdatasync_not_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("syncs.txt");
    let target = support::http_target("t", &format!("http://{}/hook", support::free_port()), "");
    let mut relay = TestRelay::start_traced(
        &format!(
            "source: {{ secrets: [\"{}\"] }}\ntargets:\n{target}routes:\n  - events: [\"*\"]\n    to: [t]\n",
            support::SECRET
        ),
        Trace {
            expr: "trace=fsync,fdatasync",
            out: out.clone(),
        },
    )
    .await;
    let (status, _) = relay
        .post_signed(&support::fixture("message.received"))
        .await;
    assert_eq!(status, 200, "the event is stored");
    // The trace is complete once the relay (strace's tracee) has stopped.
    assert!(relay.terminate().success());

    let syncs = std::fs::read_to_string(&out).expect("trace written");
    assert!(
        syncs.contains("fdatasync("),
        "the acknowledged commit was synced:\n{syncs}"
    );
    assert!(
        !syncs.contains("fsync("),
        "no full fsync: SQLite was built without HAVE_FDATASYNC:\n{syncs}"
    );
}
