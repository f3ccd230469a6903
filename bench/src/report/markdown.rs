//! The generated part of REPORT.md (the table against the targets, the plot's legend, the
//! backlog's details and the NATS section, before the hand-written analysis), rendered by
//! minijinja from results.json as written: the prose lives in `REPORT.md.j2` and `nats.md.j2`
//! beside this file, and every figure in the report is a figure of results.json.
//!
//! Because the report is a function of results.json, `textus-bench --report-only --out DIR` can
//! redraw it (after editing the analysis or the templates) without running the benchmark.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};
use serde_json::Value;

use super::plot_labels;
use crate::drain_ack;
use crate::nats::Nats;

const REPORT: &str = include_str!("REPORT.md.j2");
const NATS: &str = include_str!("nats.md.j2");

/// REPORT.md for the results document `doc` (results.json), followed by `analysis`.
pub fn render(doc: &Value, analysis: &str) -> anyhow::Result<String> {
    let env = environment()?;
    let nats = nats_section(
        &env,
        &doc["nats_jetstream"],
        &doc["machine"]["cpus"],
        &doc["setup"]["connections"],
        &doc["setup"]["phase_seconds"],
    )?;
    let legend: Vec<String> = plot_labels()
        .iter()
        .zip(crate::plot::COLOURS)
        .map(|(l, (c, _))| format!("{c}: {l}"))
        .collect();
    let report = env.template_from_named_str("REPORT.md.j2", REPORT)?;
    Ok(report.render(context! { r => Serde(doc), legend, nats, analysis })?)
}

impl Nats {
    /// The section "NATS JetStream (3 nodes on one machine)" of REPORT.md; `cpus` of the
    /// machine everything shared.
    pub fn markdown(&self, cpus: usize) -> anyhow::Result<String> {
        let doc = super::nats_json(self);
        nats_section(
            &environment()?,
            &doc,
            &cpus.into(),
            &self.connections.into(),
            &self.phase_secs.into(),
        )
    }
}

fn nats_section(
    env: &Environment<'_>,
    nats: &Value,
    cpus: &Value,
    connections: &Value,
    phase_secs: &Value,
) -> anyhow::Result<String> {
    let section = env.template_from_named_str("nats.md.j2", NATS)?;
    let ctx = context! {
        n => Serde(nats),
        cpus => Serde(cpus),
        connections => Serde(connections),
        phase_secs => Serde(phase_secs),
    };
    Ok(section.render(ctx)?)
}

fn environment() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    // A block tag on a line of its own leaves no line behind, so the templates can be laid
    // out as prose with one tag per line.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    // A key missing from results.json (or misspelt in a template) is an error, not a blank.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Rust's own `{:.N}`, so a figure reads as it did when this was format! calls.
    env.add_filter("fixed", |v: f64, digits: usize| format!("{v:.digits$}"));
    env.add_function("verdict", |ok: bool| if ok { "met" } else { "**missed**" });
    env.add_function("drain_verdict", drain_ack::verdict);
    Ok(env)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::render;

    /// The committed results.json of the last full run.
    fn committed() -> Value {
        let text = include_str!("../../results.json");
        serde_json::from_str(text).expect("bench/results.json parses")
    }

    fn line_with<'a>(report: &'a str, start: &str) -> &'a str {
        report
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{report}"))
    }

    // The branches the committed run does not take, each against the text the format! calls
    // before the templates wrote for it.
    #[test]
    fn the_branches_a_quiet_run_skips_render_as_before() {
        let mut doc = committed();
        doc["connections_sensitivity"] = json!({
            "connections": 128, "ceiling_requests_per_s": 70000.0,
            "ingest_events_per_s": 7000.0, "ingest_over_ceiling": 0.1,
        });
        // Every figure the assertions quote is set here, so they hold whatever run
        // bench/results.json holds.
        let d = &mut doc["ack_latency_at_1000_while_backlog_drains"];
        d["drained_within_phase"] = json!(false);
        d["valid"] = json!(false);
        d["drained_after_seconds"] = json!(4.3);
        d["window_seconds"] = json!(4.3);
        doc["rounds"][0]["fanout_deliveries_per_s"] = json!(20276.0);
        doc["rounds"][1]["fanout_deliveries_per_s"] = json!(23386.0);
        doc["fanout_detail"]["deliveries"] = json!(100);
        doc["fanout_detail"]["expected"] = json!(203_397);
        doc["backlog_detail"]["accepted"] = json!(200_000);
        doc["backlog_detail"]["drain_complete"] = json!(false);
        doc["backlog_detail"]["drain_seconds"] = json!(66.3);
        doc["rss_backlog_mb"] = json!(22.7);
        doc["rss_backlog_extrapolated_to_1m_mb"] = json!(70.04);
        let report = render(&doc, "").expect("renders");
        assert_eq!(
            line_with(&report, "| ceiling / ingest / ratio"),
            "| ceiling / ingest / ratio with 128 connections (sensitivity) | 70000 / 7000 / 0.10 | — |  |"
        );
        let drain = line_with(&report, "| ack latency at 1,000 events/s while");
        assert!(
            drain.contains("; still draining at the end (drained after 4.3 s): all 4.3 s; ")
                && drain.ends_with("| p99 ≤ 3 ms | not valid |"),
            "{drain}"
        );
        assert!(line_with(&report, "| fan-out").contains(
            "(20276, 23386; round 1: 100 of 203397 delivered within 30 s of the load stopping)"
        ));
        assert_eq!(
            line_with(&report, "| RSS with"),
            "| RSS with 200000 events queued for a down target | 22.7 MB; extrapolated to 1 M: 70.0 MB | ≤ 64 MB (1 M) | **missed** |"
        );
        assert!(
            line_with(&report, "Filled ")
                .ends_with("in 66.3 s (**incomplete**: drain budget exhausted).")
        );

        doc["ack_latency_at_1000_while_backlog_drains"]["drained_after_seconds"] = Value::Null;
        doc["nats_jetstream"]["fleets"] = json!([]);
        let report = render(&doc, "the analysis").expect("renders");
        assert!(
            line_with(&report, "| ack latency at 1,000 events/s while")
                .contains("; not drained within 60 s of the end: all 4.3 s; ")
        );
        // No fleet: the NATS table stays, without its extrapolation.
        assert!(
            report.ends_with("| --- | --- | --- | --- | --- | --- | --- | --- |\n\nthe analysis"),
            "{report}"
        );
    }

    #[test]
    fn a_figure_missing_from_results_json_is_an_error_that_names_the_template_line() {
        let mut doc = committed();
        doc.as_object_mut()
            .expect("an object")
            .remove("isolation_ratio");
        let err = render(&doc, "")
            .expect_err("a figure is missing")
            .to_string();
        assert!(
            err.contains("undefined") && err.contains("REPORT.md.j2"),
            "{err}"
        );
    }
}
