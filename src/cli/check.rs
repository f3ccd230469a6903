//! `textus-relay check`: what a valid config does, shown before TextUs sends anything.
//!
//! Besides listing which event types reach which targets, it renders every target's templates
//! against each of the eight sample events that target would receive, so a typo in a field
//! name or a template that renders an empty URL shows up now rather than as dead letters.

use std::fmt::Write;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::Value;

use crate::app::build::{Built, Compiled};
use crate::config::{Config, Storage};
use crate::store::{DeliveryId, Job};
use crate::support::samples::SAMPLES;
use crate::targets::kind::Preview;
use crate::templates::{Meta, RenderContext};

/// The report, and whether it found mistakes (`check` exits 2 when it did).
pub struct Report {
    pub text: String,
    pub errors: usize,
}

/// Describes `config` and renders its templates against the samples.
pub fn report(config: &Config, compiled: &Compiled, built: &[Built]) -> Report {
    let mut out = String::new();
    let tls = if config.listen.tls.is_some() {
        "HTTPS"
    } else {
        "plain HTTP"
    };
    let _ = writeln!(out, "{}: ok", config.file.display());
    let _ = writeln!(
        out,
        "  listen {} ({tls}) on {}, admin {}, store {}",
        config.listen.address,
        config.source.path,
        config.admin.address,
        store(&config.storage)
    );
    let _ = writeln!(out, "  targets:");
    for t in &config.targets {
        let kind = t.kind.kind();
        let _ = writeln!(
            out,
            "    {:<20} {:<5} {}",
            t.name.as_str(),
            kind.name(),
            kind.summary()
        );
    }
    let _ = writeln!(
        out,
        "  routes for the eight TextUs event types (sample events):"
    );
    for (ty, body) in SAMPLES {
        let to = routed(compiled, ty, body);
        let names = if to.is_empty() {
            "(none: answered 200 and counted as unrouted)".to_string()
        } else {
            to.join(", ")
        };
        let _ = writeln!(out, "    {ty:<22} -> {names}");
    }
    let other = compiled.router.route("x.unlisted", None);
    let other: Vec<String> = other.iter().map(|t| t.to_string()).collect();
    let other = match (other.is_empty(), compiled.router.needs_event()) {
        (false, _) => other.join(", "),
        (true, false) => "(none)".to_string(),
        // Without an event, no route with a condition applies; real events are evaluated.
        (true, true) => "(none by type alone; routes with `when:` decide per event)".to_string(),
    };
    let _ = writeln!(out, "    {:<22} -> {other}", "(any other type)");
    subscription_notes(compiled, &mut out);
    let unused: Vec<&str> = config
        .targets
        .iter()
        .filter(|t| !config.routes.iter().any(|r| r.to.contains(&t.name)))
        .map(|t| t.name.as_str())
        .collect();
    if !unused.is_empty() {
        let _ = writeln!(
            out,
            "  warning: no route sends anything to: {}",
            unused.join(", ")
        );
    }
    let errors = render_all(compiled, built, &mut out);
    Report { text: out, errors }
}

/// The store in a few words: the sqlite file, or the NATS servers and names (never a secret).
fn store(storage: &Storage) -> String {
    match storage {
        Storage::Sqlite { path, .. } => format!("sqlite {}", path.display()),
        Storage::Nats(nats) => {
            let servers = match nats.urls.len() {
                1 => "1 server".to_owned(),
                n => format!("{n} servers"),
            };
            let tls = if nats.tls.is_some() { ", TLS" } else { "" };
            format!(
                "nats ({servers}, replicas {}, prefix {}, {}{tls})",
                nats.replicas,
                nats.prefix,
                nats.auth.form()
            )
        }
    }
}

/// What a TextUs webhook integration sends without its `settings.actions` saying otherwise
/// (TextUs's setup guide: the web app can enable only these two).
pub const TEXTUS_DEFAULT_ACTIONS: [&str; 2] = ["message.received", "message.delivered"];

/// The eight event types in TextUs's order, each with whether TextUs must send it: the table
/// above shows it routed, or a route with a `when:` the sample does not satisfy matches it
/// (that condition can pass on a real event only if TextUs sends the type).
pub fn routed_actions(compiled: &Compiled) -> Vec<(&'static str, bool)> {
    SAMPLES
        .iter()
        .map(|(ty, body)| {
            let routed = !routed(compiled, ty, body).is_empty() || compiled.router.routes_type(ty);
            (*ty, routed)
        })
        .collect()
}

/// One line per routed type TextUs does not send by default: it must be enabled.
fn subscription_notes(compiled: &Compiled, out: &mut String) {
    let extra: Vec<&str> = routed_actions(compiled)
        .into_iter()
        .filter(|(ty, routed)| *routed && !TEXTUS_DEFAULT_ACTIONS.contains(ty))
        .map(|(ty, _)| ty)
        .collect();
    if extra.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  note: TextUs sends only {} unless the integration enables more; \
         `textus-relay textus subscribe` enables exactly the routed types:",
        TEXTUS_DEFAULT_ACTIONS.join(" and ")
    );
    for ty in extra {
        let _ = writeln!(
            out,
            "    {ty:<22} must be enabled in the integration's settings.actions"
        );
    }
}

fn routed(compiled: &Compiled, ty: &str, body: &[u8]) -> Vec<String> {
    let event: Value = serde_json::from_slice(body).unwrap_or_default();
    let ctx = RenderContext::new(&event, meta(ty, ""));
    compiled
        .router
        .route(ty, Some(&ctx))
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Renders each templated target for each sample it would receive; returns the error count.
fn render_all(compiled: &Compiled, built: &[Built], out: &mut String) -> usize {
    let mut errors = 0;
    let templated: Vec<(&str, &dyn Preview)> = built
        .iter()
        .filter_map(|b| Some((b.config.name.as_str(), b.target.previewer()?)))
        .collect();
    if templated.is_empty() {
        return 0;
    }
    let _ = writeln!(out, "  templates rendered against the sample events:");
    for (name, preview) in templated {
        for (ty, body) in SAMPLES {
            if !routed(compiled, ty, body).iter().any(|t| t == name) {
                continue;
            }
            match preview.preview(&sample_job(ty, body)) {
                Ok(text) => {
                    let _ = writeln!(out, "    {name:<20} {ty:<22} {text}");
                }
                Err(e) => {
                    errors += 1;
                    let _ = writeln!(out, "    {name:<20} {ty:<22} ERROR: {e}");
                }
            }
        }
    }
    errors
}

fn sample_job(ty: &str, body: &'static [u8]) -> Job {
    let key = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    Job {
        id: DeliveryId(0),
        event_id: key,
        event_type: Some(ty.to_string()),
        body: Bytes::from_static(body),
        parsed: Default::default(),
        signature: String::new(),
        received_at: SystemTime::now(),
        attempts: 0,
        created_at: SystemTime::now(),
    }
}

fn meta(ty: &str, target: &str) -> Meta {
    Meta {
        event_type: ty.to_string(),
        event_id: String::new(),
        received_at: crate::templates::rfc3339_from_unix_ms(crate::store::unix_ms(
            SystemTime::now(),
        )),
        target: target.to_string(),
    }
}
