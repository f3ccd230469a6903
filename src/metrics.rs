//! Counters and histograms for `/metrics`, rendered in the Prometheus text format.
//!
//! Label values are bounded: outcomes and target names come from code and config, and event
//! types outside the eight TextUs types are counted as `other`, so a sender cannot grow the
//! series without bound. Gauges (queue depth, dead letters, store size) are read from the
//! store when scraped, so they cannot drift from the truth.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::StorageStatus;

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

const COUNTERS: [(&str, &str); 4] = [
    ("relay_requests_total", "Inbound requests by outcome."),
    ("relay_events_total", "Signed events by type and outcome."),
    (
        "relay_deliveries_total",
        "Delivery attempts by target and outcome.",
    ),
    (
        "relay_config_reloads_total",
        "Config reloads by outcome (ok, error).",
    ),
];

/// Seconds: from a fast loopback answer to a target timing out.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Events per transaction: one fsync acknowledges this many.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// A fixed-bucket histogram.
#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Count per bucket (not cumulative); one more for `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += self.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct State {
    /// metric name → rendered label set → value.
    counters: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// target → delivery attempt durations.
    delivery_durations: BTreeMap<String, Histogram>,
    commit_durations: Histogram,
    commit_batches: Histogram,
}

/// Process-wide metrics, shared by ingress, the store writer, dispatchers and the admin API.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// Values read at scrape time for one target.
#[derive(Clone, Debug, Default)]
pub struct TargetGauges {
    pub target: String,
    pub queued: u64,
    pub dead: u64,
    pub breaker_open: bool,
}

impl Metrics {
    pub fn request(&self, outcome: &str) {
        self.inc("relay_requests_total", format!("outcome=\"{outcome}\""));
    }

    pub fn event(&self, event_type: &str, outcome: &str) {
        let t = if EVENT_TYPES.contains(&event_type) {
            event_type
        } else {
            "other"
        };
        self.inc(
            "relay_events_total",
            format!("type=\"{t}\",outcome=\"{outcome}\""),
        );
    }

    pub fn delivery(&self, target: &str, outcome: &str) {
        self.inc(
            "relay_deliveries_total",
            format!("target=\"{target}\",outcome=\"{outcome}\""),
        );
    }

    /// A config reload was applied (`ok`) or rejected (`error`).
    pub fn reload(&self, outcome: &str) {
        self.inc(
            "relay_config_reloads_total",
            format!("outcome=\"{outcome}\""),
        );
    }

    /// How long one attempt took, whatever its outcome.
    pub fn delivery_duration(&self, target: &str, took: Duration) {
        self.with(|s| {
            s.delivery_durations
                .entry(target.to_string())
                .or_default()
                .observe(&DURATION_BUCKETS, took.as_secs_f64())
        });
    }

    /// One store transaction: how long it took (fsync included) and how many operations it
    /// carried (the group-commit batch).
    pub fn commit(&self, took: Duration, batch: usize) {
        self.with(|s| {
            s.commit_durations
                .observe(&DURATION_BUCKETS, took.as_secs_f64());
            s.commit_batches.observe(&BATCH_BUCKETS, batch as f64);
        });
    }

    fn inc(&self, name: &'static str, labels: String) {
        self.with(|s| {
            *s.counters
                .entry(name)
                .or_default()
                .entry(labels)
                .or_default() += 1
        });
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The Prometheus text exposition: counters and histograms, then the gauges given.
    pub fn render(
        &self,
        targets: &[TargetGauges],
        store_bytes: Option<u64>,
        storage: Option<&StorageStatus>,
    ) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in s.counters.get(name).into_iter().flatten() {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        let name = "relay_delivery_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time one delivery attempt took.\n# TYPE {name} histogram"
        );
        for (target, h) in &s.delivery_durations {
            h.render(
                &mut out,
                name,
                &format!("target=\"{target}\""),
                &DURATION_BUCKETS,
            );
        }
        let name = "relay_commit_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time one store transaction took, fsync included.\n# TYPE {name} histogram"
        );
        s.commit_durations
            .render(&mut out, name, "", &DURATION_BUCKETS);
        let name = "relay_commit_batch_size";
        let _ = writeln!(
            out,
            "# HELP {name} Operations per store transaction (group commit).\n# TYPE {name} histogram"
        );
        s.commit_batches.render(&mut out, name, "", &BATCH_BUCKETS);
        drop(s);
        gauge(
            &mut out,
            "relay_queue_depth",
            "Deliveries waiting or in flight.",
            targets,
            |t| t.queued,
        );
        gauge(
            &mut out,
            "relay_dead_letters",
            "Dead letters kept.",
            targets,
            |t| t.dead,
        );
        gauge(
            &mut out,
            "relay_breaker_open",
            "1 while the target's circuit breaker is open.",
            targets,
            |t| u64::from(t.breaker_open),
        );
        if let Some(bytes) = store_bytes {
            let name = "relay_store_bytes";
            let _ = writeln!(
                out,
                "# HELP {name} Size of the store on disk (database, WAL and reserve file).\n# TYPE {name} gauge\n{name} {bytes}"
            );
        }
        if let Some(s) = storage {
            render_storage(&mut out, s);
        }
        out
    }
}

/// The storage budget's gauges (README, "Storage budget").
fn render_storage(out: &mut String, s: &StorageStatus) {
    let mut one = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    one(
        "relay_store_used_bytes",
        "What the store's data takes, less free pages inside its file.",
        s.used_bytes,
    );
    one(
        "relay_store_reserve_bytes",
        "Room kept for draining the queue once ingest stops.",
        s.reserve_bytes,
    );
    one(
        "relay_store_ingest_room_bytes",
        "How much more ingest may store before it stops (0 while stopped).",
        s.ingest_room_bytes,
    );
    one(
        "relay_store_ingest_stopped",
        "1 while new events are answered 504 store_full.",
        u64::from(s.stopped_by.is_some()),
    );
    if let Some(max) = s.max_bytes {
        one(
            "relay_store_max_bytes",
            "storage.max_bytes: the most the store's files may take.",
            max,
        );
    }
    one(
        "relay_store_min_free_bytes",
        "storage.min_free: free space left on the store's file system.",
        s.min_free_bytes,
    );
    one(
        "relay_store_filesystem_free_bytes",
        "Free space of the store's file system.",
        s.free_bytes,
    );
    one(
        "relay_store_filesystem_bytes",
        "Size of the store's file system.",
        s.filesystem_bytes,
    );
}

#[cfg(test)]
mod storage_tests {
    use super::*;

    #[test]
    fn the_storage_budget_is_a_set_of_gauges() {
        let status = StorageStatus {
            ingest: "stopped",
            stopped_by: Some(crate::store::SpaceLimit::MaxBytes),
            used_bytes: 900,
            reserve_bytes: 100,
            max_bytes: Some(1000),
            free_bytes: 5000,
            ..StorageStatus::default()
        };
        let text = Metrics::default().render(&[], Some(1200), Some(&status));
        for line in [
            "relay_store_bytes 1200\n",
            "relay_store_used_bytes 900\n",
            "relay_store_reserve_bytes 100\n",
            "relay_store_ingest_stopped 1\n",
            "relay_store_max_bytes 1000\n",
            "relay_store_filesystem_free_bytes 5000\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        let open = StorageStatus {
            max_bytes: None,
            ..StorageStatus::default()
        };
        let text = Metrics::default().render(&[], None, Some(&open));
        assert!(text.contains("relay_store_ingest_stopped 0\n"));
        assert!(!text.contains("relay_store_max_bytes"), "{text}");
    }
}

fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    targets: &[TargetGauges],
    value: impl Fn(&TargetGauges) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for t in targets {
        let _ = writeln!(out, "{name}{{target=\"{}\"}} {}", t.target, value(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_with_bounded_labels() {
        let m = Metrics::default();
        m.request("accepted");
        m.request("accepted");
        m.event("message.received", "accepted");
        m.event("made.up.by.sender", "accepted");
        m.delivery("warehouse", "delivered");
        let text = m.render(&[], None, None);
        assert!(
            text.contains("relay_requests_total{outcome=\"accepted\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("relay_events_total{type=\"other\",outcome=\"accepted\"} 1\n"));
        assert!(!text.contains("made.up"));
        assert!(
            text.contains("relay_deliveries_total{target=\"warehouse\",outcome=\"delivered\"} 1\n")
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.delivery_duration("w", Duration::from_millis(3));
        m.delivery_duration("w", Duration::from_millis(30));
        m.delivery_duration("w", Duration::from_secs(60));
        m.commit(Duration::from_millis(2), 40);
        let text = m.render(&[], None, None);
        assert!(
            text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"0.05\"} 2\n")
        );
        assert!(
            text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"10\"} 2\n")
        );
        assert!(
            text.contains("relay_delivery_duration_seconds_bucket{target=\"w\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("relay_delivery_duration_seconds_count{target=\"w\"} 3\n"));
        assert!(text.contains("relay_commit_batch_size_bucket{le=\"25\"} 0\n"));
        assert!(text.contains("relay_commit_batch_size_bucket{le=\"50\"} 1\n"));
        assert!(text.contains("relay_commit_batch_size_count 1\n"));
    }

    #[test]
    fn gauges_come_from_the_values_given() {
        let m = Metrics::default();
        let targets = [TargetGauges {
            target: "slack".into(),
            queued: 7,
            dead: 2,
            breaker_open: true,
        }];
        let text = m.render(&targets, Some(4096), None);
        assert!(
            text.contains("relay_queue_depth{target=\"slack\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("relay_dead_letters{target=\"slack\"} 2\n"));
        assert!(text.contains("relay_breaker_open{target=\"slack\"} 1\n"));
        assert!(text.contains("relay_store_bytes 4096\n"));
    }
}
