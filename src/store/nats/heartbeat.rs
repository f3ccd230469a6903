//! Which relays are alive: each puts a key of its own into the KV bucket `{prefix}-relays`
//! every [`BEAT`], and the bucket forgets keys older than [`FORGET_AFTER`], so the number of
//! keys is the number of live relays, give or take a relay that died in the last seconds.
//! Relays divide a target's `rate_limit` by it (README, "Several relays on NATS JetStream").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;

pub(super) const BEAT: Duration = Duration::from_secs(3);
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(10);

/// Beats for this relay and counts the live ones, until the store's runtime stops.
pub(super) async fn run(bucket: kv::Store, me: String, live: Arc<AtomicUsize>) {
    let mut tick = tokio::time::interval(BEAT);
    loop {
        tick.tick().await;
        if let Err(e) = bucket.put(me.as_str(), bytes::Bytes::new()).await {
            tracing::debug!(error = %e, "heartbeat not stored; trying again");
            continue;
        }
        match count(&bucket).await {
            Ok(n) => live.store(n.max(1), Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "counting live relays failed"),
        }
    }
}

async fn count(bucket: &kv::Store) -> Result<usize, async_nats::Error> {
    let mut keys = bucket.keys().await?;
    let mut n = 0;
    while let Some(key) = keys.next().await {
        key?;
        n += 1;
    }
    Ok(n)
}
