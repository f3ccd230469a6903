//! The scenario's figures as the `nats_store_shape` key of results.json and as a markdown
//! table.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{IN_FLIGHT, NatsShape, PACED_RATE, Phase};

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn phase_json(p: &Phase) -> Value {
    json!({
        "events_per_s": round(p.rate, 0),
        "events": p.events,
        "errors": p.errors,
        "first_error": p.first_error,
        "latency": {
            "count": p.latency.count,
            "p50_ms": round(p.latency.p50_ms, 3),
            "p99_ms": round(p.latency.p99_ms, 3),
            "p99_9_ms": round(p.latency.p999_ms, 3),
            "max_ms": round(p.latency.max_ms, 3),
        },
        "nats_cpu_us_per_event": round(p.nats_us_per_event, 1),
        "cores": {
            "nats_servers": round(p.nats_cores, 2),
            "nats_servers_each": p.nats_cores_each.iter().map(|c| round(*c, 2)).collect::<Vec<_>>(),
            "publishers": round(p.harness_cores, 2),
        },
        "messages_stored": p.stored,
        "messages_expected": p.expected,
    })
}

impl NatsShape {
    /// `nats_store_shape` of results.json.
    pub fn json(&self, measured_at: &str) -> Value {
        json!({
            "measured_at": measured_at,
            "server": self.version,
            "nodes": 3,
            "replicas": 3,
            "storage": "file",
            "events_in_flight_at_full_speed": self.in_flight,
            "paced_events_per_s": PACED_RATE,
            "phase_secs": self.phase_secs,
            "body_bytes": self.body_bytes,
            "atomic_batch_members_carry_msg_id": self.batch_msg_ids,
            "msg_id_in_atomic_batch": self.probe.steps.iter().map(|s| json!({
                "batch": s.what,
                "msg_ids": s.ids,
                "answer": s.answer,
                "accepted": s.accepted,
                "stream_messages_after": s.messages_after,
            })).collect::<Vec<_>>(),
            "cells": self.cells.iter().map(|c| json!({
                "shape": c.shape.name(),
                "targets": c.fanout,
                "full_speed": phase_json(&c.full_speed),
                "paced": phase_json(&c.paced),
            })).collect::<Vec<_>>(),
        })
    }

    /// The table of the measurements, and the probe's answers.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}, 3 nodes on loopback, streams with 3 replicas on file storage; {} B \
             body; full speed with {IN_FLIGHT} events in flight, latency open loop at \
             {PACED_RATE:.0} events/s; {:.0} s per phase. Server CPU is the 3 servers' together \
             per stored event.\n",
            self.version, self.body_bytes, self.phase_secs
        );
        s.push_str(
            "| targets | shape | events/s at full speed (messages/s) | servers' CPU per event, full \
             speed / 1,000/s | latency p50 / p99 / p99.9 at 1,000/s | errors (full; paced) | \
             stored / expected (full; paced) |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for c in &self.cells {
            let (f, p) = (&c.full_speed, &c.paced);
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ({:.0}) | {:.0} / {:.0} µs | {:.2} / {:.2} / {:.2} ms | {}; {} \
                 | {} / {}; {} / {} |",
                c.fanout,
                c.shape.name(),
                f.rate,
                f.rate * c.shape.messages(c.fanout) as f64,
                f.nats_us_per_event,
                p.nats_us_per_event,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.p999_ms,
                f.errors,
                p.errors,
                f.stored,
                f.expected,
                p.stored,
                p.expected
            );
        }
        let errors: Vec<String> = self
            .cells
            .iter()
            .flat_map(|c| {
                [("full speed", &c.full_speed), ("paced", &c.paced)]
                    .into_iter()
                    .filter_map(move |(what, p)| {
                        p.first_error
                            .as_ref()
                            .map(|e| format!("- {} N={} {what}: {e}", c.shape.name(), c.fanout))
                    })
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(s, "\nFirst error of each phase that had any:\n");
            s.push_str(&errors.join("\n"));
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\n`Nats-Msg-Id` inside an atomic batch (stream as the atomic-batch shape's; members \
             on distinct subjects):\n"
        );
        for step in &self.probe.steps {
            let _ = writeln!(
                s,
                "- {}: {} (stream holds {} messages after it)",
                step.what, step.answer, step.messages_after
            );
        }
        let _ = writeln!(
            s,
            "\nThe atomic-batch phases {} `Nats-Msg-Id` on their members.",
            if self.batch_msg_ids {
                "carried"
            } else {
                "carried no"
            }
        );
        s
    }
}
