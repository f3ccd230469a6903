//! Turns a validated config into the parts that run: compiled templates, routes with their
//! conditions, and one target implementation per configured target.
//!
//! `run` and `check` share this, so a template that `check` accepts is exactly one that `run`
//! accepts. Every template is compiled before anything starts, and every error is reported
//! with the file, line and key it came from.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, DeliveryOrder, Storage, Target as TargetConfig, TargetId, TargetKind};
use crate::delivery::health::TargetHealth;
use crate::routing::{CompiledRoute, OrderRule, QueueRules, Router};
use crate::store::Quota;
use crate::targets::Target;
use crate::targets::crm::{CompiledRequest, CrmTarget};
use crate::targets::http::{HttpTarget, HttpTargetError};
use crate::targets::slack::{CompiledMessage, SlackTarget};
use crate::templates::{TemplateError, Templates};

/// Everything compiled from a config's templates.
pub struct Compiled {
    pub templates: Arc<Templates>,
    pub router: Router,
    pub slack: HashMap<TargetId, Vec<(String, CompiledMessage)>>,
    pub crm: HashMap<TargetId, CompiledRequest>,
}

/// A target ready to dispatch to.
pub struct Built {
    pub config: TargetConfig,
    pub target: Arc<dyn Target>,
    pub health: Arc<TargetHealth>,
    /// The concrete kind, for `check`, which renders requests without sending them.
    pub kind: BuiltKind,
}

/// The concrete target behind [`Built::target`].
pub enum BuiltKind {
    Http,
    Slack(Arc<SlackTarget>),
    Crm(Arc<CrmTarget>),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", templates_text(.file, .errors))]
    Templates {
        file: PathBuf,
        errors: Vec<TemplateError>,
    },
    #[error("building the HTTP client for target {target}: {source}")]
    Client {
        target: String,
        #[source]
        source: HttpTargetError,
    },
}

fn templates_text(file: &std::path::Path, errors: &[TemplateError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}: {}: {}",
                file.display(),
                e.line,
                e.column,
                e.key,
                e.message
            )
        })
        .collect();
    lines.join("\n")
}

/// The compiled value, or `None` with the error kept for the report.
/// A target's queue limits: its `max_queue`, and its share of the storage budget when it
/// shares the store with other targets (alone, it has no one to leave room for).
fn queue_quota(config: &Config, target: &TargetConfig) -> Option<Quota> {
    let share_percent = match &config.storage {
        Storage::Sqlite { budget, .. } => {
            (config.targets.len() > 1 && budget.target_share < 100).then_some(budget.target_share)
        }
        // The share divides the relay's own disk budget; a NATS store has none.
        Storage::Nats(_) => None,
    };
    (target.max_queue.is_some() || share_percent.is_some()).then_some(Quota {
        max_queue: target.max_queue,
        share_percent,
        on_full: target.on_full,
    })
}

fn keep<T>(errors: &mut Vec<TemplateError>, result: Result<T, TemplateError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// Compiles every template of `config` (all errors at once).
pub fn compile(config: &Config) -> Result<Compiled, BuildError> {
    let mut templates = Templates::new();
    let mut errors = Vec::new();

    let mut routes = Vec::new();
    for route in &config.routes {
        let when = route
            .when
            .as_ref()
            .and_then(|w| keep(&mut errors, templates.condition(w)));
        routes.push(CompiledRoute {
            events: route.events.clone(),
            to: route.to.clone(),
            when,
            priority: route.priority,
        });
    }
    let mut slack = HashMap::new();
    let mut crm = HashMap::new();
    let mut rules = HashMap::new();
    for target in &config.targets {
        let order = match &target.ordering {
            DeliveryOrder::Unordered => OrderRule::Unordered,
            DeliveryOrder::Fifo => OrderRule::Fifo,
            DeliveryOrder::Key(src) => {
                keep(&mut errors, templates.text(src)).map_or(OrderRule::Unordered, OrderRule::Key)
            }
        };
        let quota = queue_quota(config, target);
        rules.insert(target.name.clone(), QueueRules { order, quota });
        match &target.kind {
            TargetKind::Http(_) => {}
            TargetKind::Slack(s) => {
                let mut messages = Vec::new();
                for (event_type, t) in &s.templates {
                    let text = t
                        .text
                        .as_ref()
                        .and_then(|x| keep(&mut errors, templates.slack_text(x)));
                    let blocks = t
                        .blocks
                        .as_ref()
                        .and_then(|b| keep(&mut errors, templates.slack_body(b)));
                    messages.push((event_type.clone(), CompiledMessage { text, blocks }));
                }
                slack.insert(target.name.clone(), messages);
            }
            TargetKind::Crm(c) => {
                let url = keep(&mut errors, templates.text(&c.url));
                let mut headers = Vec::new();
                for (name, value) in &c.headers {
                    if let Some(id) = keep(&mut errors, templates.text(value)) {
                        headers.push((name.clone(), id));
                    }
                }
                let body = c
                    .body
                    .as_ref()
                    .and_then(|b| keep(&mut errors, templates.body(b)));
                if let Some(url) = url {
                    let request = CompiledRequest {
                        method: c.method.clone(),
                        url,
                        headers,
                        body,
                    };
                    crm.insert(target.name.clone(), request);
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(BuildError::Templates {
            file: config.file.clone(),
            errors,
        });
    }
    let templates = Arc::new(templates);
    let order = config.targets.iter().map(|t| t.name.clone()).collect();
    Ok(Compiled {
        router: Router::new(routes, order, templates.clone())
            .with_rules(rules)
            .with_renderers(slack.keys().chain(crm.keys()).cloned()),
        templates,
        slack,
        crm,
    })
}

/// Builds one target implementation per configured target.
pub fn targets(config: &Config, compiled: &mut Compiled) -> Result<Vec<Built>, BuildError> {
    let mut built = Vec::new();
    for t in &config.targets {
        let name = t.name.as_str();
        let client_err = |source: HttpTargetError| BuildError::Client {
            target: name.to_string(),
            source,
        };
        let health = Arc::new(TargetHealth::default());
        let (target, kind): (Arc<dyn Target>, BuiltKind) = match &t.kind {
            TargetKind::Http(h) => (
                Arc::new(HttpTarget::try_new(h.clone(), t.timeout).map_err(client_err)?),
                BuiltKind::Http,
            ),
            TargetKind::Slack(s) => {
                let messages = compiled.slack.remove(&t.name).unwrap_or_default();
                let slack = Arc::new(
                    SlackTarget::try_new(
                        name,
                        s.url.clone(),
                        t.timeout,
                        compiled.templates.clone(),
                        messages,
                        health.clone(),
                    )
                    .map_err(|e| client_err(e.into()))?,
                );
                (slack.clone(), BuiltKind::Slack(slack))
            }
            TargetKind::Crm(c) => {
                // compile() inserted a request for every crm target or returned an error.
                let Some(request) = compiled.crm.remove(&t.name) else {
                    continue;
                };
                let crm = Arc::new(
                    CrmTarget::try_new(
                        name,
                        request,
                        compiled.templates.clone(),
                        c.auth.clone(),
                        t.timeout,
                    )
                    .map_err(|e| client_err(e.into()))?,
                );
                (crm.clone(), BuiltKind::Crm(crm))
            }
        };
        built.push(Built {
            config: t.clone(),
            target,
            health,
            kind,
        });
    }
    Ok(built)
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("slack", &self.slack.len())
            .field("crm", &self.crm.len())
            .finish()
    }
}
