//! Counters for `/metrics`, rendered in the Prometheus text format.
//!
//! Label values are bounded: outcomes and target names come from code and config, and event
//! types outside the eight TextUs types are counted as `other`, so a sender cannot grow the
//! series without bound.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

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

const HELP: [(&str, &str); 3] = [
    ("relay_requests_total", "Inbound requests by outcome."),
    ("relay_events_total", "Signed events by type and outcome."),
    (
        "relay_deliveries_total",
        "Delivery attempts by target and outcome.",
    ),
];

/// Process-wide counters, shared by ingress, dispatchers and the admin service.
#[derive(Default)]
pub struct Metrics {
    /// metric name → rendered label set → value.
    counters: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
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

    fn inc(&self, name: &'static str, labels: String) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry(name).or_default().entry(labels).or_default() += 1;
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in counters.get(name).into_iter().flatten() {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
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
        let text = m.render();
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
}
