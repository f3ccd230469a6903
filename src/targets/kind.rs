//! What every kind of target provides, and the list of kinds.
//!
//! A kind lives in one folder, `targets/<kind>/`: its settings (what the config validated), the
//! [`Kind`] those settings implement (its name, its line in `check`, the compile step for its
//! templates), its runtime ([`Target`]) and, if it renders anything, the [`Preview`] `check`
//! shows. `build` and `check` only loop over targets through these traits, so adding a kind is
//! its folder plus its variant in [`TargetKind`] (and its keys in `config/`: reader and schema).

use std::sync::Arc;
use std::time::Duration;

use super::Target;
use super::crm::CrmSettings;
use super::health::TargetHealth;
use super::http::{ClientError, HttpSettings};
use super::slack::SlackSettings;
use crate::store::Job;
use crate::templates::{TemplateError, Templates};

/// The kinds of target there are, each with its settings as validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `kind: http`.
    Http(HttpSettings),
    /// `kind: slack`.
    Slack(SlackSettings),
    /// `kind: crm`.
    Crm(CrmSettings),
}

impl TargetKind {
    /// The kind these settings are for.
    pub fn kind(&self) -> &dyn Kind {
        match self {
            TargetKind::Http(settings) => settings,
            TargetKind::Slack(settings) => settings,
            TargetKind::Crm(settings) => settings,
        }
    }
}

/// A kind of target, implemented by its settings.
pub trait Kind {
    /// Its `kind:` value in relay.yaml, also shown by the admin API.
    fn name(&self) -> &'static str;

    /// Where it sends, for `check`'s list of targets. Never shows a credential.
    fn summary(&self) -> String;

    /// Whether what it sends is rendered from the parsed event (a template or a built-in
    /// message), so that ingress parses each body routed to it in full, once. A kind that sends
    /// the raw bytes says no, and its events are never parsed past `id` and `action`.
    fn renders_event(&self) -> bool;

    /// Compiles its templates into `templates`, adding every problem to `errors` rather than
    /// stopping at the first, so that one run reports them all. `None` once one has failed.
    fn compile(&self, templates: &mut Templates, errors: &mut Vec<TemplateError>) -> Option<Start>;
}

/// Builds the runtime of a compiled target, once every template of the config has compiled
/// (so a config with a template error builds no HTTP client).
pub type Start = Box<dyn FnOnce(&Setup) -> Result<Arc<dyn Target>, ClientError> + Send>;

/// What a target's runtime gets besides its own settings.
pub struct Setup {
    /// Its key under `targets:`.
    pub name: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Every compiled template of the config, its own among them.
    pub templates: Arc<Templates>,
    /// Shared with its dispatcher and the admin API.
    pub health: Arc<TargetHealth>,
}

/// What `check` shows of a target that renders what it sends.
pub trait Preview {
    /// One line on what the target would send for `job`, or why that would fail (the
    /// failure counts as a mistake in the config).
    fn preview(&self, job: &Job) -> Result<String, String>;
}

/// The compiled value, or `None` with the error kept for the report.
pub fn keep<T>(errors: &mut Vec<TemplateError>, result: Result<T, TemplateError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// `text` on one line and at most 70 characters, for a line of `check`.
pub fn shorten(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    match one_line.char_indices().nth(70) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}
