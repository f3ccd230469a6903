//! `kind: slack`: an incoming webhook URL and optional message templates per event
//! type.
//!
//! Templates are looked up by exact event type, then `*`; patterns such as `contact.*`
//! are refused rather than guessed at, so which template an event gets never depends on
//! the order of the entries.

use super::super::reader::{Ctx, child};
use super::super::schema as raw;
use super::super::template::{self, BodyTemplate};
use super::super::tree::{Node, Value};
use super::super::{EventPattern, SlackSettings, SlackTemplate};
use super::http_url;

pub(super) fn slack_target(ctx: &mut Ctx<'_>, t: &raw::SlackTarget) -> Option<SlackSettings> {
    let url = ctx
        .require_at(&t.url)
        .and_then(|(node, path)| ctx.parse(node, &path, "URL", http_url));
    let templates = match ctx.present(t.templates.as_ref()) {
        None => Some(Vec::new()),
        Some((node, path)) => templates(ctx, node, path),
    };
    Some(SlackSettings {
        url: url?,
        templates: templates?,
    })
}

fn templates<'e>(
    ctx: &mut Ctx<'e>,
    node: &'e Node,
    path: String,
) -> Option<Vec<(String, SlackTemplate)>> {
    let m = ctx.mapping(node, path)?;
    let templates: Vec<Option<(String, SlackTemplate)>> = m
        .entries
        .iter()
        .map(|entry| {
            let path = child(&m.path, entry.key);
            let key_problem = match EventPattern::parse(entry.key) {
                Ok(EventPattern::Any | EventPattern::Exact(_)) => None,
                Ok(EventPattern::Prefix(_)) => Some(format!(
                    "{:?} is a pattern, but templates are chosen by exact event type: \
                     write one entry per type (e.g. contact.opted_out), or \"*\" for \
                     every type without its own template",
                    entry.key
                )),
                Err(_) => Some(format!(
                    "invalid event type {:?} (expected an event type such as \
                     message.received, or \"*\" for every other type)",
                    entry.key
                )),
            };
            if let Some(message) = &key_problem {
                ctx.report(entry.key_at, &path, message.as_str());
            }
            // Read even under a bad key, so its own problems are found in this pass.
            let template = slack_template(ctx, entry.value, path);
            match key_problem {
                None => Some((entry.key.to_owned(), template?)),
                Some(_) => None,
            }
        })
        .collect();
    templates.into_iter().collect()
}

fn slack_template<'e>(ctx: &mut Ctx<'e>, node: &'e Node, path: String) -> Option<SlackTemplate> {
    let raw: raw::SlackTemplate = ctx.read(node, &path, false)?;
    ctx.section(&raw.at)?;
    let text = ctx.present(raw.text.as_ref()).map(|(node, path)| {
        template::non_empty_template(
            ctx,
            node,
            &path,
            "text must not be empty (leave `text` out to send blocks only)",
        )
    });
    let blocks = ctx
        .present(raw.blocks.as_ref())
        .map(|(node, path)| blocks(ctx, node, &path));
    if text.is_none() && blocks.is_none() {
        let at = ctx.at(&raw.at);
        ctx.report(at, &path, "a template needs `text`, `blocks` or both");
        return None;
    }
    Some(SlackTemplate {
        text: text.map_or(Some(None), |text| text.map(Some))?,
        blocks: blocks.map_or(Some(None), |blocks| blocks.map(Some))?,
    })
}

/// A list of blocks, or one string template that renders to the list.
fn blocks(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<BodyTemplate> {
    let valid = match node.value {
        Value::Seq(_) => true,
        Value::Scalar(_) => !node.typed,
        // An unquoted `{{ ... }}`: `body` explains.
        Value::Map(_) => template::unquoted_template(node),
        Value::Null => false,
    };
    if !valid {
        let message = format!(
            "expected a list of blocks (or a template that renders to one), found {}",
            node.kind()
        );
        ctx.report(node.at, path, message);
        return None;
    }
    template::body(ctx, node, path)
}
