//! `textus-relay check`: what a valid config does, shown before TextUs sends anything.
//!
//! Besides listing which event types reach which targets, it renders every target's templates
//! against each of the eight sample events that target would receive, so a typo in a field
//! name or a template that renders an empty URL shows up now rather than as dead letters.

use std::fmt::Write;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::Value;

use crate::build::{Built, BuiltKind, Compiled};
use crate::config::{Config, Storage, TargetKind};
use crate::samples::SAMPLES;
use crate::store::{DeliveryId, Job};
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
        let what = match &t.kind {
            TargetKind::Http(h) => format!("http  {}", h.url),
            TargetKind::Slack(s) => format!("slack {}", redact(&s.url)),
            TargetKind::Crm(c) => format!("crm   {} {}", c.method, c.url.text),
        };
        let _ = writeln!(out, "    {:<20} {what}", t.name.as_str());
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
    let templated: Vec<&Built> = built
        .iter()
        .filter(|b| !matches!(b.kind, BuiltKind::Http))
        .collect();
    if templated.is_empty() {
        return 0;
    }
    let _ = writeln!(out, "  templates rendered against the sample events:");
    for b in templated {
        let name = b.config.name.as_str();
        for (ty, body) in SAMPLES {
            if !routed(compiled, ty, body).iter().any(|t| t == name) {
                continue;
            }
            let job = sample_job(ty, body);
            let line = match &b.kind {
                BuiltKind::Slack(s) => match s.payload(&job) {
                    Ok(p) if slack_is_empty(&p) => {
                        Err("the message renders empty (no text and no blocks)".to_string())
                    }
                    Ok(p) => Ok(format!(
                        "ok, text: {}",
                        preview(
                            p.get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("(blocks only)")
                        )
                    )),
                    Err(e) => Err(e),
                },
                BuiltKind::Crm(c) => match c.render(&job) {
                    Ok(r) if url::Url::parse(r.url.trim()).is_err() => {
                        Err(format!("the url renders as {:?}, not a URL", r.url))
                    }
                    Ok(r) => {
                        let empty = empty_leaves(r.body.as_ref());
                        let note = if empty.is_empty() {
                            String::new()
                        } else {
                            format!("; empty fields: {}", empty.join(", "))
                        };
                        Ok(format!("ok, {}{note}", preview(&r.url)))
                    }
                    Err(e) => Err(e),
                },
                BuiltKind::Http => continue,
            };
            match line {
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

fn slack_is_empty(payload: &Value) -> bool {
    let text = payload
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .is_empty();
    let blocks = payload
        .get("blocks")
        .and_then(Value::as_array)
        .is_none_or(|b| b.is_empty());
    text && blocks
}

/// Dotted paths of the string leaves that rendered empty.
fn empty_leaves(body: Option<&Value>) -> Vec<String> {
    fn walk(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.trim().is_empty() => out.push(if path.is_empty() {
                "(body)".into()
            } else {
                path
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, format!("{path}[{i}]"), out)),
            Value::Object(map) => map.iter().for_each(|(k, x)| {
                walk(
                    x,
                    if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    },
                    out,
                )
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(b) = body {
        walk(b, String::new(), &mut out);
    }
    out
}

fn preview(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    match one_line.char_indices().nth(70) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A Slack webhook URL is a credential: show only its host.
fn redact(url: &url::Url) -> String {
    format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""))
}
