//! Waiting for the relay to do something: the one polling loop of the suite, and the waits
//! built on it.

use super::*;

/// How often [`poll_within`] looks again.
const POLL: Duration = Duration::from_millis(25);

/// Asks `probe` until it answers `Ok`, for at most `patience`; on giving up, its last `Err`
/// (what it saw). The one polling loop of the suite: everything that waits for the relay to do
/// something goes through here, so no test sleeps a fixed time and hopes.
pub async fn poll_within<T, E>(
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(seen) if tokio::time::Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits up to [`PATIENCE`] for `probe` to answer `Ok`; gives up with a panic naming `what` and
/// the probe's last `Err`, what it saw instead.
pub async fn eventually<T, E: std::fmt::Display>(
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    eventually_within(PATIENCE, what, probe).await
}

/// [`eventually`] with a patience of its own (a cluster's election, a long backlog).
pub async fn eventually_within<T, E: std::fmt::Display>(
    patience: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match poll_within(patience, probe).await {
        Ok(done) => done,
        Err(seen) => panic!("gave up after {patience:?} waiting for {what}; last seen: {seen}"),
    }
}

/// Waits until target `name` has nothing queued or in flight; the target as it was then.
pub async fn wait_drained(relay: &TestRelay, name: &str) -> Value {
    eventually(&format!("target {name} drained"), async || {
        let t = target(relay, name).await;
        if t["queued"] == 0 && t["in_flight"] == 0 {
            Ok(t)
        } else {
            Err(t)
        }
    })
    .await
}

/// Target `name` as `GET /api/v1/targets` on `relay` shows it.
pub async fn target(relay: &TestRelay, name: &str) -> Value {
    let (status, body) = relay.admin_get("/api/v1/targets").await;
    assert_eq!(status, 200, "{body}");
    body["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no target {name} in {body}"))
}
