//! Counters and histograms for `/metrics`, kept and encoded by `prometheus-client` in the
//! Prometheus text format (version 0.0.4).
//!
//! Label values are bounded: outcomes and target names come from code and config, and event
//! types outside the eight TextUs types are counted as `other`, so a sender cannot grow the
//! series without bound. Gauges (queue depth, dead letters, store size) are read from the
//! store when scraped, so they cannot drift from the truth; the `process_*` gauges are read
//! from `/proc` when scraped, for the same reason.
//!
//! Counting takes no lock shared across metrics: a counter is one atomic add, found in its
//! family's map under a read lock (written only when a new label set first appears). Each
//! histogram has its own small lock, held for one observation, so the store writer's commits
//! and different targets' deliveries never wait on one another.
//!
//! The registry appends a period to every help text, so the texts below have none: the
//! exposed `# HELP` lines stay as they were when this text was written by hand. A family with
//! no series yet (no request counted, no target configured) is left out whole, as the Go
//! client does.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StorageStatus;

#[cfg(target_os = "linux")]
mod process;

/// The eight event types TextUs documents.
pub const EVENT_TYPES: [&str; 8] = [
    "message.received",
    "message.delivered",
    "message.failed",
    "message.unknown",
    "phone_call.completed",
    "contact.opted_out",
    "contact.opted_in",
    "contact.created",
];

/// Seconds: from a fast loopback answer to a target timing out.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Events per transaction: one fsync acknowledges this many.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// A label set of fixed keys, in the order they are exposed.
type Labels<const N: usize> = [(&'static str, String); N];
type Counters<const N: usize> = Family<Labels<N>, Counter>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Process-wide metrics, shared by ingress, the store writer, dispatchers and the admin API.
pub struct Metrics {
    /// Everything counted as it happens; read-only once built, so scrapes share it freely.
    registry: Registry,
    requests: Counters<1>,
    events: Counters<2>,
    deliveries: Counters<2>,
    reloads: Counters<1>,
    delivery_durations: Family<Labels<1>, Histogram, fn() -> Histogram>,
    commit_durations: Histogram,
    commit_batches: Histogram,
}

/// Values read at scrape time for one target.
#[derive(Clone, Debug, Default)]
pub struct TargetGauges {
    pub target: String,
    pub queued: u64,
    pub dead: u64,
    pub breaker_open: bool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            events: Family::default(),
            deliveries: Family::default(),
            reloads: Family::default(),
            delivery_durations: Family::new_with_constructor(duration_histogram),
            commit_durations: duration_histogram(),
            commit_batches: Histogram::new(BATCH_BUCKETS),
        };
        let mut registry = Registry::default();
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "relay_requests",
            "Inbound requests by outcome",
            m.requests.clone(),
        );
        registry.register(
            "relay_events",
            "Signed events by type and outcome",
            m.events.clone(),
        );
        registry.register(
            "relay_deliveries",
            "Delivery attempts by target and outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "relay_config_reloads",
            "Config reloads by outcome (ok, error)",
            m.reloads.clone(),
        );
        registry.register(
            "relay_delivery_duration_seconds",
            "Time one delivery attempt took",
            m.delivery_durations.clone(),
        );
        registry.register(
            "relay_commit_duration_seconds",
            "Time one store transaction took, fsync included",
            m.commit_durations.clone(),
        );
        registry.register(
            "relay_commit_batch_size",
            "Operations per store transaction (group commit)",
            m.commit_batches.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn request(&self, outcome: &str) {
        self.requests
            .get_or_create(&[("outcome", outcome.to_string())])
            .inc();
    }

    pub fn event(&self, event_type: &str, outcome: &str) {
        let t = if EVENT_TYPES.contains(&event_type) {
            event_type
        } else {
            "other"
        };
        self.events
            .get_or_create(&[("type", t.to_string()), ("outcome", outcome.to_string())])
            .inc();
    }

    pub fn delivery(&self, target: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&[
                ("target", target.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// A config reload was applied (`ok`) or rejected (`error`).
    pub fn reload(&self, outcome: &str) {
        self.reloads
            .get_or_create(&[("outcome", outcome.to_string())])
            .inc();
    }

    /// How long one attempt took, whatever its outcome.
    pub fn delivery_duration(&self, target: &str, took: Duration) {
        self.delivery_durations
            .get_or_create(&[("target", target.to_string())])
            .observe(took.as_secs_f64());
    }

    /// One store transaction: how long it took (fsync included) and how many operations it
    /// carried (the group-commit batch).
    pub fn commit(&self, took: Duration, batch: usize) {
        self.commit_durations.observe(took.as_secs_f64());
        self.commit_batches.observe(batch as f64);
    }

    /// The Prometheus text exposition: counters and histograms, then the gauges given, then
    /// the process's own.
    pub fn render(
        &self,
        targets: &[TargetGauges],
        store_bytes: Option<u64>,
        storage: Option<&StorageStatus>,
    ) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and the encoder returns no error of its own.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scraped(targets, store_bytes, storage));
        out
    }
}

/// Reads one per-target gauge's value.
type PerTarget = fn(&TargetGauges) -> u64;

/// The gauges read at scrape time, in a registry that lives for one scrape.
fn scraped(
    targets: &[TargetGauges],
    store_bytes: Option<u64>,
    storage: Option<&StorageStatus>,
) -> Registry {
    let mut registry = Registry::default();
    let per_target: [(&str, &str, PerTarget); 3] = [
        (
            "relay_queue_depth",
            "Deliveries waiting or in flight",
            |t| t.queued,
        ),
        ("relay_dead_letters", "Dead letters kept", |t| t.dead),
        (
            "relay_breaker_open",
            "1 while the target's circuit breaker is open",
            |t| u64::from(t.breaker_open),
        ),
    ];
    for (name, help, value) in per_target {
        let family = Family::<Labels<1>, Gauge<u64, AtomicU64>>::default();
        for t in targets {
            family
                .get_or_create(&[("target", t.target.clone())])
                .set(value(t));
        }
        registry.register(name, help, family);
    }
    let mut one = |name: &str, help: &str, value: u64| {
        let gauge = Gauge::<u64, AtomicU64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    if let Some(bytes) = store_bytes {
        one(
            "relay_store_bytes",
            "Size of the store on disk (database, WAL and reserve file)",
            bytes,
        );
    }
    if let Some(s) = storage {
        storage_gauges(&mut one, s);
    }
    #[cfg(target_os = "linux")]
    registry.register_collector(Box::new(process::ProcessCollector));
    registry
}

/// The storage budget's gauges (README, "Storage budget").
fn storage_gauges(one: &mut impl FnMut(&str, &str, u64), s: &StorageStatus) {
    one(
        "relay_store_used_bytes",
        "What the store's data takes, less free pages inside its file",
        s.used_bytes,
    );
    one(
        "relay_store_reserve_bytes",
        "Room kept for draining the queue once ingest stops",
        s.reserve_bytes,
    );
    one(
        "relay_store_ingest_room_bytes",
        "How much more ingest may store before it stops (0 while stopped)",
        s.ingest_room_bytes,
    );
    one(
        "relay_store_ingest_stopped",
        "1 while new events are answered 504 store_full",
        u64::from(s.stopped_by.is_some()),
    );
    if let Some(max) = s.max_bytes {
        one(
            "relay_store_max_bytes",
            "storage.max_bytes: the most the store's files may take",
            max,
        );
    }
    one(
        "relay_store_min_free_bytes",
        "storage.min_free: free space left on the store's file system",
        s.min_free_bytes,
    );
    one(
        "relay_store_filesystem_free_bytes",
        "Free space of the store's file system",
        s.free_bytes,
    );
    one(
        "relay_store_filesystem_bytes",
        "Size of the store's file system",
        s.filesystem_bytes,
    );
}

#[cfg(test)]
mod tests;
