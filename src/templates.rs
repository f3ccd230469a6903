//! Jinja templates over events: Slack text, CRM request bodies and route
//! `when` conditions, compiled once at startup and rendered per delivery.
//!
//! Invariants a reader needs:
//! - Everything is compiled eagerly ([`Templates::text`], [`Templates::body`],
//!   [`Templates::condition`]), so a syntax error or an unknown filter or test
//!   is a config error with its relay.yaml line, never a failed delivery.
//! - A missing field is not an error: undefined values chain
//!   (`event.contact.firstName` on an event without `contact` is undefined)
//!   and render as `""`. JSON `null` also renders as `""` in text, since
//!   TextUs uses `null` for "absent" (`sender`, `assignedContact`), and
//!   booleans render as `true`/`false` (minijinja 3 says `True`/`False`).
//! - A body leaf that is exactly one `{{ expr }}` is *typed*: it keeps the
//!   expression's JSON type, except that undefined becomes `""`.
//! - Output is JSON strings or Slack mrkdwn, never HTML: auto-escaping is off
//!   for every template whatever its name. Use `slack_escape` for user text
//!   going to Slack.
//! - A hostile template cannot hang a dispatcher: each render has a fuel
//!   budget of [`FUEL`] and a recursion limit of [`RECURSION_LIMIT`], and
//!   the `include`/`import`/`macro` statements are not compiled in.
//! - Nothing here panics on any template text or event.

mod check;
mod datetime;
#[cfg(test)]
mod datetime_tests;
mod error;
#[cfg(test)]
mod filter_tests;
mod filters;
#[cfg(test)]
mod limit_tests;
pub mod mrkdwn;
#[cfg(test)]
mod tests;

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::config::{BodyTemplate, TemplateSource};
pub use error::{RenderError, TemplateError};
use error::{compile_error, locate, render_error, unknown_handle};

/// minijinja fuel per render or evaluation: one unit per instruction, one
/// per 64 bytes produced, and a quarter per byte `tojson` writes. Measured:
/// a Slack message over a fixture uses ~20, `{{ event | tojson }}` ~600;
/// over a 1 MiB event (the default `max_body`) tojson uses ~280,000, or
/// ~1,700,000 when the body is all `<&>` (escaped six-fold). 4,000,000 keeps
/// that worst case working (tested) while a runaway loop stops after about
/// 60 ms and a render cannot allocate much more than 256 MB. Raising
/// `max_body` well past 1 MiB may call for more.
pub const FUEL: u64 = 4_000_000;

/// minijinja recursion limit (nesting of `if`/`for` and of calls). Real
/// templates nest a few levels; minijinja's own cap without `stacker` is 500.
pub const RECURSION_LIMIT: usize = 64;

/// Unix milliseconds of an RFC 3339 timestamp (`2024-05-14T16:02:11.482Z`, any fraction, `Z`
/// or `±hh:mm`), the same parser the `date` and `timestamp_ms` filters use; `None` if invalid.
pub fn rfc3339_unix_ms(text: &str) -> Option<i64> {
    datetime::parse(text).map(|t| t.unix_millis())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2024-05-14T16:02:11.482Z`), the
/// form of `meta.received_at`; the inverse of [`rfc3339_unix_ms`].
pub fn rfc3339_from_unix_ms(ms: i64) -> String {
    datetime::format_utc_millis(ms)
}

/// Most `-` signs allowed in a row (whitespace between them allowed). minijinja parses each
/// `-` of `- - - 1` as one more nested unary minus, recursing without its own depth limit, so
/// `2>----…` with ~1,600 of them overflowed a 2 MiB thread stack (found by the templates fuzz
/// target). A text divider of up to 64 dashes still works.
const MAX_MINUS_RUN: usize = 64;

/// Refuses `text` before minijinja parses it if it holds a run of more than
/// [`MAX_MINUS_RUN`] `-` signs.
fn check_minus_runs(src: &TemplateSource, text: &str, offset: usize) -> Result<(), TemplateError> {
    let (mut run, mut start) = (0, 0);
    for (at, b) in text.bytes().enumerate() {
        match b {
            b'-' => {
                if run == 0 {
                    start = at;
                }
                run += 1;
                if run > MAX_MINUS_RUN {
                    let message = format!("more than {MAX_MINUS_RUN} `-` in a row");
                    return Err(locate(src, offset + start, message));
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => run = 0,
        }
    }
    Ok(())
}

/// Template names ending in this are Slack templates (mrkdwn auto-escaping).
const SLACK_SUFFIX: &str = ".slack";

/// The compiled templates of one config: a minijinja environment plus the
/// handles given out for it. Built once at startup, then shared read-only
/// behind an `Arc`.
pub struct Templates {
    env: Environment<'static>,
    /// Indexed by [`TextId`]: the template's name in `env`.
    texts: Vec<Slot>,
    /// Indexed by [`ConditionId`] and [`ExprId`]: the expression source.
    exprs: Vec<Slot>,
}

/// One compiled template or expression.
struct Slot {
    /// The template name in the environment, or the expression source.
    text: String,
    /// The relay.yaml key it came from, for render errors.
    key: String,
}

/// Handle to a compiled text template.
#[derive(Clone, Copy, Debug)]
pub struct TextId(usize);

/// Handle to a compiled `when` expression.
#[derive(Clone, Copy, Debug)]
pub struct ConditionId(usize);

/// Handle to the expression of a typed body leaf.
#[derive(Clone, Copy, Debug)]
pub struct ExprId(usize);

/// A [`BodyTemplate`] with its string leaves compiled.
#[derive(Clone, Debug)]
pub enum CompiledBody {
    /// YAML values that were not strings, passed through as they are.
    Null,
    Bool(bool),
    Number(serde_json::Number),
    /// A leaf rendered to a JSON string.
    Text(TextId),
    /// A leaf that is exactly one `{{ expr }}`: renders to the expression's
    /// JSON value.
    Typed(ExprId),
    /// Lists and maps keep their order and are rendered leaf by leaf.
    List(Vec<CompiledBody>),
    Map(Vec<(String, CompiledBody)>),
}

/// Metadata visible to templates as `meta`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Meta {
    /// The event type (`message.received`), as `meta.type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event id (the envelope `id`, or the body's digest), as `meta.id`.
    #[serde(rename = "id")]
    pub event_id: String,
    /// When the relay received the event, RFC 3339 ([`rfc3339_from_unix_ms`]).
    pub received_at: String,
    /// The target being rendered for.
    pub target: String,
}

/// What a render sees: `event` and `meta`. Built once per delivery; cloning
/// the inner value is cheap, so every leaf of a body shares it.
#[derive(Clone, Debug)]
pub struct RenderContext {
    root: Value,
}

impl RenderContext {
    /// Converts the event once; every template of the delivery reads it.
    pub fn new(event: &serde_json::Value, meta: Meta) -> RenderContext {
        let root = Value::from_pairs([
            ("event", Value::from(Serde(event))),
            ("meta", Value::from(Serde(&meta))),
        ]);
        RenderContext { root }
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An environment with the relay's filters and limits and no templates.
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        // The default picks HTML escaping from a `.html` template name, and
        // names here come from yaml keys.
        // Slack templates (named `*.slack`) escape every interpolated value for mrkdwn, so
        // event text cannot ping a channel or forge a link; `| safe` opts out.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(SLACK_SUFFIX) {
                AutoEscape::Custom("slack".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            // JSON spellings rather than minijinja's Python ones (`None`,
            // `True`), so a text leaf agrees with a typed leaf of the same
            // value.
            let slack = matches!(state.auto_escape(), AutoEscape::Custom(name) if name == "slack");
            match value.kind() {
                ValueKind::None => Ok(()),
                ValueKind::Bool => {
                    Ok(out.write_str(if value.is_true() { "true" } else { "false" })?)
                }
                _ if slack && !value.is_safe() => {
                    Ok(out.write_str(&mrkdwn::escape(&value.to_string()))?)
                }
                _ if slack => Ok(out.write_str(&value.to_string())?),
                _ => minijinja::escape_formatter(out, state, value),
            }
        });
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        filters::register(&mut env);
        Templates {
            env,
            texts: Vec::new(),
            exprs: Vec::new(),
        }
    }

    /// Compiles a text template (a URL, a header, a CRM body leaf).
    pub fn text(&mut self, src: &TemplateSource) -> Result<TextId, TemplateError> {
        self.named_text(src, "")
    }

    /// Compiles a Slack text template: interpolated values are escaped for mrkdwn.
    pub fn slack_text(&mut self, src: &TemplateSource) -> Result<TextId, TemplateError> {
        self.named_text(src, SLACK_SUFFIX)
    }

    /// Compiles Slack `blocks`: every string leaf is an escaped Slack text template (no typed
    /// leaves, since a typed leaf would insert event text unescaped).
    pub fn slack_body(&mut self, tree: &BodyTemplate) -> Result<CompiledBody, TemplateError> {
        Ok(match tree {
            BodyTemplate::String(src) => CompiledBody::Text(self.slack_text(src)?),
            BodyTemplate::List(items) => CompiledBody::List(
                items
                    .iter()
                    .map(|t| self.slack_body(t))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTemplate::Map(entries) => CompiledBody::Map(
                entries
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), self.slack_body(t)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => self.body(other)?,
        })
    }

    fn named_text(&mut self, src: &TemplateSource, suffix: &str) -> Result<TextId, TemplateError> {
        check_minus_runs(src, &src.text, 0)?;
        let name = format!("{}#{}{suffix}", src.key, self.texts.len());
        self.env
            .add_template_owned(name.clone(), src.text.clone())
            .map_err(|e| compile_error(src, 0, &e))?;
        if let Err(e) = self.check_names(src, &src.text, 0, false) {
            self.env.remove_template(&name);
            return Err(e);
        }
        self.texts.push(Slot {
            text: name,
            key: src.key.clone(),
        });
        Ok(TextId(self.texts.len() - 1))
    }

    /// Compiles a body tree: typed leaves, text leaves, and non-string YAML
    /// values passed through.
    pub fn body(&mut self, tree: &BodyTemplate) -> Result<CompiledBody, TemplateError> {
        Ok(match tree {
            BodyTemplate::Null => CompiledBody::Null,
            BodyTemplate::Bool(b) => CompiledBody::Bool(*b),
            BodyTemplate::Number(n) => CompiledBody::Number(n.clone()),
            BodyTemplate::String(src) => match self.typed(src)? {
                Some(id) => CompiledBody::Typed(id),
                None => CompiledBody::Text(self.text(src)?),
            },
            BodyTemplate::List(items) => CompiledBody::List(
                items
                    .iter()
                    .map(|t| self.body(t))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTemplate::Map(entries) => CompiledBody::Map(
                entries
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), self.body(t)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
        })
    }

    /// Compiles a `when` condition. It is an expression
    /// (`event.contact is defined`), not a template; written as one
    /// `{{ expr }}` anyway, it is taken as that expression.
    pub fn condition(&mut self, src: &TemplateSource) -> Result<ConditionId, TemplateError> {
        let (offset, expr) = single_expression(&src.text).unwrap_or((0, &src.text));
        check_minus_runs(src, expr, offset)?;
        self.env
            .compile_expression_owned(expr.to_owned())
            .map_err(|e| compile_error(src, offset, &e))?;
        self.check_names(src, expr, offset, true)?;
        self.exprs.push(Slot {
            text: expr.to_owned(),
            key: src.key.clone(),
        });
        Ok(ConditionId(self.exprs.len() - 1))
    }

    /// The typed-leaf expression of `src`, if it is exactly one `{{ expr }}`.
    fn typed(&mut self, src: &TemplateSource) -> Result<Option<ExprId>, TemplateError> {
        let Some((offset, expr)) = single_expression(&src.text) else {
            return Ok(None);
        };
        check_minus_runs(src, expr, offset)?;
        // `{{ a }} {{ b }}` also starts and ends with braces; its "inner
        // expression" does not parse, and it is compiled as text instead.
        if self.env.compile_expression_owned(expr.to_owned()).is_err() {
            return Ok(None);
        }
        self.check_names(src, expr, offset, true)?;
        self.exprs.push(Slot {
            text: expr.to_owned(),
            key: src.key.clone(),
        });
        Ok(Some(ExprId(self.exprs.len() - 1)))
    }

    /// Rejects filters and tests the environment does not have; see `check`.
    fn check_names(
        &self,
        src: &TemplateSource,
        text: &str,
        offset: usize,
        expression: bool,
    ) -> Result<(), TemplateError> {
        let mut state = self.env.empty_state();
        for used in check::names(text, expression) {
            let kind = match used.kind {
                check::NameKind::Filter => "filter",
                check::NameKind::Test => "test",
            };
            // `"name" is filter` asks the environment itself, so the check
            // can never disagree with what rendering will find.
            let known = state
                .perform_test(kind, &[Value::from(used.name)])
                .unwrap_or(false);
            if !known {
                let message = format!("unknown {kind}: {}", used.name);
                return Err(locate(src, offset + used.offset, message));
            }
        }
        Ok(())
    }

    /// Renders a text template. Missing fields render as `""`.
    pub fn render_text(&self, id: TextId, ctx: &RenderContext) -> Result<String, RenderError> {
        let slot = self.texts.get(id.0).ok_or_else(|| unknown_handle("text"))?;
        self.env
            .get_template(&slot.text)
            .and_then(|t| t.render(ctx.root.clone()))
            .map_err(|e| render_error(&slot.key, &e))
    }

    /// Renders a body to JSON: text leaves become strings, typed leaves keep
    /// their expression's type, the rest passes through.
    pub fn render_body(
        &self,
        body: &CompiledBody,
        ctx: &RenderContext,
    ) -> Result<serde_json::Value, RenderError> {
        use serde_json::Value as Json;
        Ok(match body {
            CompiledBody::Null => Json::Null,
            CompiledBody::Bool(b) => Json::Bool(*b),
            CompiledBody::Number(n) => Json::Number(n.clone()),
            CompiledBody::Text(id) => Json::String(self.render_text(*id, ctx)?),
            CompiledBody::Typed(id) => self.render_typed(*id, ctx)?,
            CompiledBody::List(items) => Json::Array(
                items
                    .iter()
                    .map(|b| self.render_body(b, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            CompiledBody::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, b)| Ok((k.clone(), self.render_body(b, ctx)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }

    /// Evaluates a `when` condition. Undefined (a missing field) is false.
    pub fn test(&self, id: ConditionId, ctx: &RenderContext) -> Result<bool, RenderError> {
        Ok(self.eval(id.0, ctx)?.is_true())
    }

    fn render_typed(
        &self,
        id: ExprId,
        ctx: &RenderContext,
    ) -> Result<serde_json::Value, RenderError> {
        let value = self.eval(id.0, ctx)?;
        if value.is_undefined() {
            return Ok(serde_json::Value::String(String::new()));
        }
        let key = self.exprs.get(id.0).map_or("", |s| s.key.as_str());
        serde_json::to_value(&value).map_err(|e| RenderError {
            key: key.to_owned(),
            message: format!("value is not representable as json: {e}"),
        })
    }

    /// Evaluates expression `index`. The expression was compiled and checked
    /// at startup; it is compiled again here (microseconds) because a
    /// compiled minijinja `Expression` borrows its environment and so cannot
    /// be stored next to it.
    fn eval(&self, index: usize, ctx: &RenderContext) -> Result<Value, RenderError> {
        let slot = self
            .exprs
            .get(index)
            .ok_or_else(|| unknown_handle("expression"))?;
        self.env
            .compile_expression_owned(slot.text.clone())
            .and_then(|e| e.eval(ctx.root.clone()))
            .map_err(|e| render_error(&slot.key, &e))
    }
}

/// If `text` is exactly one `{{ expr }}` (whitespace around it allowed),
/// the byte offset of `expr` in `text` and `expr` itself. Whitespace-control
/// markers (`{{-`, `-}}`, `+`) belong to the delimiters, as in minijinja.
fn single_expression(text: &str) -> Option<(usize, &str)> {
    let lead = text.len() - text.trim_start().len();
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let (skip, inner) = match inner.strip_prefix(['-', '+']) {
        Some(rest) => (3, rest),
        None => (2, inner),
    };
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    Some((lead + skip, inner))
}
