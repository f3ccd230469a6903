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

use crate::config::{Config, DeliveryOrder, Storage, TargetId, TargetSettings};
use crate::routing::{CompiledRoute, OrderRule, QueueRules, Router};
use crate::store::Quota;
pub use crate::targets::Built;
use crate::targets::health::TargetHealth;
use crate::targets::http::ClientError;
use crate::targets::kind::{Setup, Start, keep};
use crate::templates::{TemplateError, Templates};

/// Everything compiled from a config's templates.
pub struct Compiled {
    pub templates: Arc<Templates>,
    pub router: Router,
    /// Per target, what builds its runtime (see [`targets`]).
    starts: HashMap<TargetId, Start>,
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
        source: ClientError,
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

/// A target's queue limits: its `max_queue`, and its share of the storage budget when it
/// shares the store with other targets (alone, it has no one to leave room for).
fn queue_quota(config: &Config, target: &TargetSettings) -> Option<Quota> {
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
    let mut starts = HashMap::new();
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
        if let Some(start) = target.kind.kind().compile(&mut templates, &mut errors) {
            starts.insert(target.name.clone(), start);
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
    let renderers = config
        .targets
        .iter()
        .filter(|t| t.kind.kind().renders_event())
        .map(|t| t.name.clone());
    Ok(Compiled {
        router: Router::new(routes, order, templates.clone())
            .with_rules(rules)
            .with_renderers(renderers),
        templates,
        starts,
    })
}

/// Builds one target implementation per configured target.
pub fn targets(config: &Config, compiled: &mut Compiled) -> Result<Vec<Built>, BuildError> {
    let mut built = Vec::new();
    for t in &config.targets {
        // compile() kept a start for every target or returned an error.
        let Some(start) = compiled.starts.remove(&t.name) else {
            continue;
        };
        let setup = Setup {
            name: t.name.to_string(),
            timeout: t.timeout,
            templates: compiled.templates.clone(),
            health: Arc::new(TargetHealth::default()),
        };
        let target = start(&setup).map_err(|source| BuildError::Client {
            target: setup.name.clone(),
            source,
        })?;
        built.push(Built {
            config: t.clone(),
            target,
            health: setup.health,
        });
    }
    Ok(built)
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("targets", &self.starts.len())
            .finish()
    }
}
