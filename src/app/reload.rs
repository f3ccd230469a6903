//! Config reload without a restart: on SIGHUP or `POST /api/v1/reload` the relay reads its
//! config file again and, when the new config is valid, swaps routes, targets and templates.
//!
//! The new config is loaded, validated and compiled in full before anything changes, so an
//! invalid one changes nothing: its errors are logged (and returned to the API caller) and the
//! running config stays. A valid one is applied in this order:
//!
//! 1. ingress and the admin API switch to the new source settings (path, secrets, limits),
//!    routes and target list in one step: each request uses one snapshot throughout, so none
//!    sees half of each config;
//! 2. dispatchers of added targets start;
//! 3. dispatchers of changed and removed targets stop, letting their in-flight attempts finish
//!    and giving back what they had claimed; the changed ones start again with their new
//!    settings. Unchanged targets keep running untouched (their breaker and health too).
//!
//! Nothing queued is deleted: deliveries of a removed target stay in the store under its name,
//! are listed by `/api/v1/targets` and the metrics, and go out if a target of that name is
//! configured again. The listener, the admin address and the store are bound once at start:
//! changing them needs a restart (`run --upgrade` + SIGQUIT hands over without dropping a
//! request), and a reload that changes them is refused.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tracing::{error, info, warn};

use crate::admin::{AdminConfig, AdminTarget, Orphan, orphans};
use crate::app::build::{self, Built};
use crate::app::live::Live;
use crate::config::{Config, ConfigError, TargetId};
use crate::delivery::fleet::{Fleet, FleetError};
use crate::ingress::IngressConfig;
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Build(#[from] build::BuildError),
    #[error(
        "{file}: {} changed; {} bound once at start: restart the relay to change {} (run --upgrade + SIGQUIT restarts without dropping a request)",
        .keys.join(", "),
        if .keys.len() == 1 { "it is" } else { "they are" },
        if .keys.len() == 1 { "it" } else { "them" }
    )]
    RestartRequired {
        file: String,
        keys: Vec<&'static str>,
    },
    #[error("{0}")]
    Fleet(#[from] FleetError),
    #[error("reloading failed: {0}")]
    Internal(String),
}

impl ReloadError {
    /// A short stable code for the admin API's JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::Config(_) | ReloadError::Build(_) => "invalid_config",
            ReloadError::RestartRequired { .. } => "restart_required",
            ReloadError::Fleet(FleetError::Closed) => "shutting_down",
            ReloadError::Fleet(_) | ReloadError::Internal(_) => "reload_failed",
        }
    }
}

/// What a reload changed, for the log and the API.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Targets in the store that no longer have a config, with what waits for them.
    pub orphaned: Vec<Orphan>,
}

/// Reloads the running relay's config; one reload at a time.
pub struct Reloader {
    path: PathBuf,
    /// The config in force. Held for a whole reload, which serialises reloads.
    current: tokio::sync::Mutex<Config>,
    ingress: Arc<Live<IngressConfig>>,
    admin: Arc<Live<AdminConfig>>,
    fleet: Arc<Fleet>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

/// The shared parts a reloader swaps.
pub struct Parts {
    pub ingress: Arc<Live<IngressConfig>>,
    pub admin: Arc<Live<AdminConfig>>,
    pub fleet: Arc<Fleet>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    /// `config` is the one running now, read from `config.file`.
    pub fn new(config: Config, parts: Parts) -> Reloader {
        Reloader {
            path: config.file.clone(),
            current: tokio::sync::Mutex::new(config),
            ingress: parts.ingress,
            admin: parts.admin,
            fleet: parts.fleet,
            store: parts.store,
            metrics: parts.metrics,
        }
    }

    /// Reloads and logs the outcome; `trigger` says what asked (for the log).
    pub async fn reload_logged(&self, trigger: &str) -> Result<ReloadReport, ReloadError> {
        let result = self.reload().await;
        match &result {
            Ok(r) => {
                self.metrics.reload("ok");
                info!(trigger, file = %self.path.display(), added = ?r.added, changed = ?r.changed,
                    removed = ?r.removed, unchanged = r.unchanged.len(), "config reloaded");
                for o in &r.orphaned {
                    warn!(target = %o.target, queued = o.queued, dead = o.dead,
                        "target is not in the config: its deliveries stay in the store until a target with this name is configured again");
                }
            }
            Err(e) => {
                self.metrics.reload("error");
                error!(trigger, file = %self.path.display(), "config reload rejected; the running config stays:\n{e}");
            }
        }
        result
    }

    /// Reads the file again and applies it, or changes nothing and says why.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut current = self.current.lock().await;
        let path = self.path.clone();
        // Reading and compiling touch the disk and take milliseconds: off the async threads.
        let loaded = tokio::task::spawn_blocking(move || prepare(&path)).await;
        let (config, router, built) = match loaded {
            Ok(r) => r?,
            Err(e) => return Err(ReloadError::Internal(e.to_string())),
        };
        let keys = restart_only_changes(&current, &config);
        if !keys.is_empty() {
            return Err(ReloadError::RestartRequired {
                file: self.path.display().to_string(),
                keys,
            });
        }

        let old = self.admin.get();
        let mut report = ReloadReport::default();
        let mut targets = Vec::new();
        let mut start = Vec::new();
        let mut stop = Vec::new();
        for b in built {
            let name = b.config.name.clone();
            match old.targets.iter().find(|t| t.config.name == name) {
                Some(t) if t.config == b.config => {
                    report.unchanged.push(name.to_string());
                    targets.push(AdminTarget {
                        config: t.config.clone(),
                        health: t.health.clone(),
                    });
                }
                found => {
                    if found.is_some() {
                        report.changed.push(name.to_string());
                        stop.push(name.clone());
                    } else {
                        report.added.push(name.to_string());
                    }
                    targets.push(AdminTarget {
                        config: b.config.clone(),
                        health: b.health.clone(),
                    });
                    start.push(b);
                }
            }
        }
        let names: HashSet<&TargetId> = targets.iter().map(|t| &t.config.name).collect();
        for t in &old.targets {
            if !names.contains(&t.config.name) {
                report.removed.push(t.config.name.to_string());
                stop.push(t.config.name.clone());
            }
        }

        self.ingress.set(IngressConfig {
            source: config.source.clone(),
            router,
        });
        self.admin.set(AdminConfig {
            targets,
            token: config.admin.token.clone(),
        });
        // Stopped first, so a changed target never has two dispatchers at once.
        self.fleet.stop(&stop).await;
        let mut failed = None;
        for b in start {
            if let Err(e) = self.fleet.start(b) {
                error!(error = %e, "cannot start a dispatcher after the reload");
                failed.get_or_insert(e);
            }
        }
        *current = config;
        drop(current);
        report.orphaned = self.orphans().await;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(report),
        }
    }

    /// Targets with deliveries in the store but no config (best effort: a store that cannot
    /// answer reports none).
    pub async fn orphans(&self) -> Vec<Orphan> {
        orphans(self.store.as_ref(), &self.admin.get()).await
    }
}

/// Loads, validates and compiles the file: everything that can fail before anything changes.
fn prepare(path: &std::path::Path) -> Result<(Config, Router, Vec<Built>), ReloadError> {
    let config = Config::load(path)?;
    let mut compiled = build::compile(&config)?;
    let built = build::targets(&config, &mut compiled)?;
    Ok((config, compiled.router, built))
}

/// The keys whose change needs a restart, in file order.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen");
    }
    if old.admin.address != new.admin.address {
        keys.push("admin.address");
    }
    if old.storage != new.storage {
        keys.push("storage");
    }
    keys
}
