//! `bench/results.json` (one key per figure of issue 6) and `bench/REPORT.md` (the table
//! against the targets, the plot, then the hand-written analysis in `bench/analysis.md`,
//! which a re-run keeps). The report is drawn from results.json in [`markdown`], so
//! [`redraw`] can make it again without a run.

use std::path::Path;

use anyhow::Context as _;

use serde_json::{Value, json};

use crate::drain_ack::{self, DrainAck};
use crate::nats::{self, Nats};
use crate::scenarios::{Backlog, Ceiling, Ingest, Isolation, Paced, Percentiles};

mod markdown;

/// The target of design.md §10 for relay CPU per durable event ÷ per 401.
pub const CPU_RATIO_TARGET: f64 = 6.0;

/// One alternating round: a ceiling run, then a full-speed ingest run.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub ceiling_rate: f64,
    pub ingest_rate: f64,
    pub fanout: f64,
    /// Relay CPU per 401 of the ceiling run, µs.
    pub cpu_per_401_us: f64,
    /// Relay CPU per durable event with its 3 deliveries, first send to last delivery, µs.
    pub cpu_per_event_us: f64,
}

impl Round {
    pub fn of(ceiling: &Ceiling, ingest: &Ingest) -> Round {
        Round {
            ceiling_rate: ceiling.rate,
            ingest_rate: ingest.rate,
            fanout: ingest.fanout,
            cpu_per_401_us: ceiling.relay_cpu_us_per_401(),
            cpu_per_event_us: ingest.relay_cpu_us_per_event(),
        }
    }

    /// Relay CPU per durable event ÷ per 401, both measured in this round.
    pub fn cpu_ratio(&self) -> f64 {
        self.cpu_per_event_us / self.cpu_per_401_us.max(1e-9)
    }
}

/// Everything one `bench/run` measured.
pub struct Results {
    pub cpus: usize,
    pub cpu_model: String,
    pub connections: usize,
    pub phase_secs: f64,
    pub target_concurrency: usize,
    pub ceiling: Ceiling,
    pub ingest: Ingest,
    /// Each alternating round; the first is `ceiling` and `ingest` above. Their means are the
    /// headline figures.
    pub rounds: Vec<Round>,
    /// The ceiling and ingest runs again with more connections, if asked for:
    /// (connections, ceiling, ingest).
    pub wide: Option<(usize, Ceiling, Ingest)>,
    pub at_1000: Paced,
    pub drain_ack: DrainAck,
    pub at_5000: Paced,
    pub isolation: Isolation,
    pub backlog: Backlog,
    pub nats: Nats,
    pub started: String,
    pub took_secs: f64,
    /// [`crate::load::yardstick`] at the start and at the end of the run.
    pub yardstick: (f64, f64),
}

const MB: f64 = 1024.0 * 1024.0;

fn mb(bytes: u64) -> f64 {
    round(bytes as f64 / MB, 1)
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn pct(p: &Percentiles) -> Value {
    json!({
        "count": p.count,
        "p50_ms": round(p.p50_ms, 3),
        "p99_ms": round(p.p99_ms, 3),
        "p99_9_ms": round(p.p999_ms, 3),
        "max_ms": round(p.max_ms, 3),
    })
}

/// CPU seconds per wall second (2.0 = both cores of this machine).
fn cpu(c: &crate::scenarios::CpuUse) -> Value {
    json!({ "relay": round(c.relay, 2), "generator_and_sinks": round(c.harness, 2) })
}

fn commits(c: &crate::scenarios::Commits) -> Value {
    json!({
        "transactions": c.transactions,
        "mean_operations_per_transaction": round(c.mean_batch, 1),
        "mean_transaction_ms": round(c.mean_commit_ms, 3),
    })
}

fn statuses(o: &crate::load::Outcome) -> Value {
    let mut m = serde_json::Map::new();
    for (s, n) in &o.statuses {
        m.insert(s.to_string(), json!(n));
    }
    m.insert("no_answer".into(), json!(o.errors));
    Value::Object(m)
}

impl Results {
    /// Backlog bytes per queued event, from the store's growth during the fill.
    fn bytes_per_event(&self) -> f64 {
        let b = &self.backlog;
        b.store_with_backlog.saturating_sub(b.store_before) as f64 / (b.accepted.max(1) as f64)
    }

    /// RSS with the backlog, extrapolated linearly to 1,000,000 events when fewer fitted.
    fn rss_at_million(&self) -> f64 {
        let b = &self.backlog;
        let per = b.rss_with_backlog.saturating_sub(b.rss_before) as f64 / b.accepted.max(1) as f64;
        b.rss_before as f64 + per * 1_000_000.0
    }

    /// Mean ceiling over the alternating rounds.
    fn ceiling_rate(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.ceiling_rate)).unwrap_or(self.ceiling.rate)
    }

    /// Mean durable ingest rate over the alternating rounds.
    fn ingest_rate(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.ingest_rate)).unwrap_or(self.ingest.rate)
    }

    /// Mean fan-out over the alternating rounds.
    fn fanout_rate(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.fanout)).unwrap_or(self.ingest.fanout)
    }

    /// Mean relay CPU per 401 over the rounds, µs.
    fn cpu_per_401(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.cpu_per_401_us))
            .unwrap_or_else(|| self.ceiling.relay_cpu_us_per_401())
    }

    /// Mean relay CPU per durable event with its 3 deliveries over the rounds, µs.
    fn cpu_per_event(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.cpu_per_event_us))
            .unwrap_or_else(|| self.ingest.relay_cpu_us_per_event())
    }

    /// Mean of the rounds' CPU ratios: each pair was measured back to back, so a drift of the
    /// machine between rounds moves both sides of a round's ratio alike.
    fn cpu_ratio(&self) -> f64 {
        mean(self.rounds.iter().map(Round::cpu_ratio))
            .unwrap_or_else(|| Round::of(&self.ceiling, &self.ingest).cpu_ratio())
    }

    /// The backlog fill's rate (one target, down, its breaker open: ingest without fan-out)
    /// over the ceiling.
    fn fill_ratio(&self) -> f64 {
        self.backlog.fill_rate / self.ceiling_rate().max(1e-9)
    }

    fn isolation_ratio(&self) -> f64 {
        let i = &self.isolation;
        i.with_black_hole.p99_ms / i.without.p99_ms.max(1e-9)
    }

    pub fn json(&self) -> Value {
        let b = &self.backlog;
        json!({
            "machine": {
                "cpus": self.cpus,
                "cpu_model": self.cpu_model,
                "hmac_sha256_of_fixture_per_s_at_start": round(self.yardstick.0, 0),
                "hmac_sha256_of_fixture_per_s_at_end": round(self.yardstick.1, 0),
            },
            "setup": {
                "connections": self.connections,
                "phase_seconds": self.phase_secs,
                "target_concurrency": self.target_concurrency,
                "started": self.started,
                "took_seconds": round(self.took_secs, 1),
            },
            "ceiling_requests_per_s": round(self.ceiling_rate(), 0),
            "rounds": self.rounds.iter().map(|r| json!({
                "ceiling_requests_per_s": round(r.ceiling_rate, 0),
                "ingest_events_per_s": round(r.ingest_rate, 0),
                "fanout_deliveries_per_s": round(r.fanout, 0),
                "ingest_over_ceiling": round(r.ingest_rate / r.ceiling_rate.max(1e-9), 3),
                "relay_cpu_us_per_401": round(r.cpu_per_401_us, 1),
                "relay_cpu_us_per_event_with_3_deliveries": round(r.cpu_per_event_us, 1),
                "relay_cpu_per_event_over_per_401": round(r.cpu_ratio(), 2),
            })).collect::<Vec<_>>(),
            "ceiling_cpu": cpu(&self.ceiling.cpu),
            "ceiling_statuses": statuses(&self.ceiling.outcome),
            "ingest_events_per_s": round(self.ingest_rate(), 0),
            "ingest_statuses": statuses(&self.ingest.outcome),
            "ingest_cpu": cpu(&self.ingest.cpu),
            "ingest_commits": commits(&self.ingest.commits),
            "ingest_relay_bytes_written_per_event": round(self.ingest.written_per_event, 0),
            "ingest_over_ceiling": round(self.ingest_rate() / self.ceiling_rate().max(1e-9), 3),
            "ingest_without_fanout_over_ceiling": round(self.fill_ratio(), 3),
            "connections_sensitivity": self.wide.as_ref().map(|(n, c, i)| json!({
                "connections": n,
                "ceiling_requests_per_s": round(c.rate, 0),
                "ingest_events_per_s": round(i.rate, 0),
                "ingest_over_ceiling": round(i.rate / c.rate.max(1e-9), 3),
                "ingest_commits": commits(&i.commits),
                "ingest_cpu": cpu(&i.cpu),
                "ingest_statuses": statuses(&i.outcome),
                "fanout_deliveries_per_s": round(i.fanout, 0),
                "fanout_deliveries": i.deliveries,
                "fanout_expected": 3 * i.outcome.with_status(200),
            })),
            "relay_cpu_us_per_401": round(self.cpu_per_401(), 1),
            "relay_cpu_us_per_event_with_3_deliveries": round(self.cpu_per_event(), 1),
            "relay_cpu_per_event_over_per_401": round(self.cpu_ratio(), 2),
            "relay_cpu_per_event_over_per_401_target": CPU_RATIO_TARGET,
            "relay_cpu_us_per_request_ceiling": round(self.ceiling.cpu.relay * 1e6 / self.ceiling.rate.max(1e-9), 1),
            "relay_cpu_us_per_event_ingest_with_fanout": round(self.ingest.cpu.relay * 1e6 / self.ingest.rate.max(1e-9), 1),
            "ack_latency_at_1000": pct(&self.at_1000.ack),
            "ack_latency_at_1000_statuses": statuses(&self.at_1000.outcome),
            "ack_latency_at_1000_cpu": cpu(&self.at_1000.cpu),
            "ack_latency_at_1000_commits": commits(&self.at_1000.commits),
            "ack_latency_at_1000_while_backlog_drains": self.drain_ack_json(),
            "ack_latency_at_5000": pct(&self.at_5000.ack),
            "ack_latency_at_5000_statuses": statuses(&self.at_5000.outcome),
            "ack_latency_at_5000_cpu": cpu(&self.at_5000.cpu),
            "ack_latency_at_5000_commits": commits(&self.at_5000.commits),
            "fanout_deliveries_per_s": round(self.fanout_rate(), 0),
            "fanout_detail": {
                "deliveries": self.ingest.deliveries,
                "expected": 3 * self.ingest.outcome.with_status(200),
                "last_delivery_after_load_stopped_s": round(self.ingest.delivery_tail.as_secs_f64(), 2),
            },
            "end_to_end_latency_at_1000": pct(&self.at_1000.e2e),
            "end_to_end_latency_at_5000": pct(&self.at_5000.e2e),
            "isolation_healthy_p99_ms_without": round(self.isolation.without.p99_ms, 3),
            "isolation_healthy_p99_ms_with_black_hole": round(self.isolation.with_black_hole.p99_ms, 3),
            "isolation_ratio": round(self.isolation_ratio(), 3),
            "isolation_detail": {
                "healthy_without": pct(&self.isolation.without),
                "healthy_with_black_hole": pct(&self.isolation.with_black_hole),
                "ack_without": pct(&self.isolation.ack_without),
                "ack_with_black_hole": pct(&self.isolation.ack_with),
                "healthy_p99_ms_per_run_without": self.isolation.p99_per_run[0],
                "healthy_p99_ms_per_run_with_black_hole": self.isolation.p99_per_run[1],
            },
            "rss_idle_mb": mb(self.ceiling.rss_idle),
            "rss_full_load_mb": mb(self.ingest.rss_peak),
            "rss_backlog_mb": mb(b.rss_with_backlog),
            "rss_backlog_events": b.accepted,
            "rss_backlog_extrapolated_to_1m_mb": round(self.rss_at_million() / MB, 1),
            "db_bytes_per_queued_event": round(self.bytes_per_event(), 0),
            "drain_events_per_s": round(b.drain_rate, 0),
            "backlog_detail": {
                "requested": b.requested,
                "accepted": b.accepted,
                "not_accepted": b.non_200,
                "fill_events_per_s": round(b.fill_rate, 0),
                "fill_seconds": round(b.fill_time.as_secs_f64(), 1),
                "store_bytes_before": b.store_before,
                "store_bytes_with_backlog": b.store_with_backlog,
                "failed_attempts_during_fill": b.failed_attempts_during_fill,
                "rss_before_mb": mb(b.rss_before),
                "rss_drain_peak_mb": mb(b.rss_drain_peak),
                "drained": b.drained,
                "drain_seconds": round(b.drain_time.as_secs_f64(), 1),
                "drain_complete": b.drain_complete,
                "relay_bytes_written_per_event_during_fill": round(b.written_per_event_fill, 0),
                "relay_bytes_written_per_delivery_during_drain": round(b.written_per_delivery_drain, 0),
            },
            "nats_jetstream": nats_json(&self.nats),
        })
    }

    fn drain_ack_json(&self) -> Value {
        let d = &self.drain_ack;
        json!({
            "during_drain": pct(&d.during_drain),
            "valid": d.window.valid,
            "target_p99_ms": drain_ack::TARGET_P99_MS,
            "window_seconds": round(d.window.secs, 2),
            "drained_after_seconds": d.window.drained_after_secs.map(|s| round(s, 2)),
            "drained_within_phase": d.window.drained_within_phase,
            "backlog_deliveries_pending_at_start": d.pending_at_start,
            "backlog_deliveries_pending_at_end": d.pending_at_end,
            "whole_phase": pct(&d.whole_phase),
            "statuses": statuses(&d.outcome),
            "cpu": cpu(&d.cpu),
            "burst_requested": d.burst_requested,
            "burst_accepted": d.burst_accepted,
            "burst_events_per_s": round(d.burst_rate, 0),
            "burst_statuses": statuses(&d.burst_outcome),
            "delivered_while_paused": d.delivered_while_paused,
        })
    }

    /// The curves of the plot, in colour order.
    pub fn curves(&self) -> Vec<(&'static str, &hdrhistogram::Histogram<u64>)> {
        let labels = plot_labels();
        vec![
            (labels[0], &self.at_1000.ack_curve),
            (labels[1], &self.at_5000.ack_curve),
            (labels[2], &self.at_1000.e2e_curve),
            (labels[3], &self.isolation.without_curve),
            (labels[4], &self.isolation.with_curve),
        ]
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut doc = self.json();
        // A full run does not measure the store's shape; what `--only nats-shape` wrote
        // stays, with its own date.
        if let (Some(kept), Some(map)) = (
            read_results(dir)?.and_then(|mut old| old.get_mut(NATS_SHAPE_KEY).map(Value::take)),
            doc.as_object_mut(),
        ) {
            map.insert(NATS_SHAPE_KEY.into(), kept);
        }
        let json = serde_json::to_string_pretty(&doc)?;
        std::fs::write(dir.join("results.json"), json + "\n")?;
        crate::plot::percentiles(&dir.join("latency.png"), &self.curves())?;
        write_report(dir, &doc)
    }
}

/// Draws `dir/REPORT.md` again from `dir/results.json` and `dir/analysis.md` (after editing
/// either, or the templates), without running anything; the plot stays as it is, since
/// results.json keeps percentiles rather than the curves.
pub fn redraw(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("results.json");
    let Some(doc) = read_results(dir)? else {
        anyhow::bail!("{}: no such file", path.display());
    };
    write_report(dir, &doc).with_context(|| format!("drawing the report from {}", path.display()))
}

fn write_report(dir: &Path, doc: &Value) -> anyhow::Result<()> {
    let analysis = std::fs::read_to_string(dir.join("analysis.md")).unwrap_or_default();
    let path = dir.join("REPORT.md");
    std::fs::write(&path, markdown::render(doc, &analysis)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The key of results.json that `--only nats-shape` writes ([`crate::nats_shape`]).
pub const NATS_SHAPE_KEY: &str = "nats_store_shape";

/// `dir/results.json`, if there is one.
fn read_results(dir: &Path) -> anyhow::Result<Option<Value>> {
    let path = dir.join("results.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// Sets one key of `dir/results.json` and keeps the others (for a scenario that a full run
/// does not measure).
pub fn merge_key(dir: &Path, key: &str, value: Value) -> anyhow::Result<()> {
    let path = dir.join("results.json");
    let mut doc = read_results(dir)?.unwrap_or_else(|| json!({}));
    let Some(map) = doc.as_object_mut() else {
        anyhow::bail!("{}: not a JSON object", path.display());
    };
    map.insert(key.into(), value);
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

/// `nats_jetstream` of results.json: per relay count, the full-speed and the paced phase.
pub fn nats_json(n: &Nats) -> Value {
    let phase = |p: &nats::Phase| {
        json!({
            "acks_per_s": round(p.rate, 0),
            "statuses": statuses(&p.outcome),
            "ack_latency": pct(&p.ack),
            "deliveries": p.deliveries,
            "deliveries_expected": p.expected(),
            "relay_cpu_us_per_event": round(p.relay_us_per_event, 1),
            "nats_cpu_us_per_event": round(p.nats_us_per_event, 1),
            "cores": {
                "relays": round(p.relay_cores, 2),
                "nats_servers": round(p.nats_cores, 2),
                "nats_servers_each": p.nats_cores_per_node.iter().map(|c| round(*c, 2)).collect::<Vec<_>>(),
                "generator_and_sinks": round(p.harness_cores, 2),
            },
            "idle_cores": {
                "relays": round(p.idle_relay_cores, 3),
                "nats_servers": round(p.idle_nats_cores, 3),
            },
            "relay_log_warnings": p.warnings,
        })
    };
    json!({
        "server": n.version,
        "nodes": 3,
        "replicas": 3,
        "paced_events_per_s": nats::PACED_RATE,
        "fleets": n.fleets.iter().map(|f| json!({
            "relays": f.relays,
            "full_speed": phase(&f.full_speed),
            "paced": phase(&f.paced),
        })).collect::<Vec<_>>(),
    })
}

fn plot_labels() -> [&'static str; 5] {
    [
        "ack latency at 1,000 events/s",
        "ack latency at 5,000 events/s",
        "end-to-end (3 targets) at 1,000 events/s",
        "isolation: healthy end-to-end, other target answering",
        "isolation: healthy end-to-end, other target black-holed",
    ]
}

#[cfg(test)]
mod tests {
    use super::{merge_key, read_results};
    use serde_json::json;

    #[test]
    fn merging_a_key_keeps_the_others_and_starts_a_missing_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        merge_key(dir.path(), "nats_store_shape", json!({"run": 1})).expect("new file");
        assert_eq!(
            read_results(dir.path()).expect("readable"),
            Some(json!({"nats_store_shape": {"run": 1}}))
        );
        let full = json!({"ingest_events_per_s": 9000, "nats_store_shape": {"run": 1}});
        std::fs::write(dir.path().join("results.json"), full.to_string()).expect("write");
        merge_key(dir.path(), "nats_store_shape", json!({"run": 2})).expect("merge");
        assert_eq!(
            read_results(dir.path()).expect("readable"),
            Some(json!({"ingest_events_per_s": 9000, "nats_store_shape": {"run": 2}}))
        );
        std::fs::write(dir.path().join("results.json"), "[1]").expect("write");
        let err = merge_key(dir.path(), "k", json!(1)).expect_err("not an object");
        assert!(err.to_string().contains("not a JSON object"), "{err}");
    }
}
