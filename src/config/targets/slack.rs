//! `kind: slack`: an incoming webhook URL and optional message templates per event
//! type.
//!
//! Templates are looked up by exact event type, then `*`; patterns such as `contact.*`
//! are refused rather than guessed at, so which template an event gets never depends on
//! the order of the entries.

use super::super::reader::{Ctx, Mapping, child};
use super::super::schema::keys;
use super::super::template::{self, BodyTemplate};
use super::super::tree::{Node, Value};
use super::super::{EventPattern, SlackSettings, SlackTemplate};
use super::http_url;

pub(super) fn slack_target(ctx: &mut Ctx<'_>, m: &Mapping<'_>) -> Option<SlackSettings> {
    let url = ctx
        .required(m, "url")
        .and_then(|node| ctx.parse(node, &child(&m.path, "url"), "URL", http_url));
    let templates = match m.present("templates") {
        None => Some(Vec::new()),
        Some(node) => templates(ctx, node, child(&m.path, "templates")),
    };
    Some(SlackSettings {
        url: url?,
        templates: templates?,
    })
}

fn templates(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<Vec<(String, SlackTemplate)>> {
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

fn slack_template(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<SlackTemplate> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::SLACK_TEMPLATE);
    let text = m.present("text").map(|node| {
        template::non_empty_template(
            ctx,
            node,
            &child(&m.path, "text"),
            "text must not be empty (leave `text` out to send blocks only)",
        )
    });
    let blocks = m
        .present("blocks")
        .map(|node| blocks(ctx, node, &child(&m.path, "blocks")));
    if text.is_none() && blocks.is_none() {
        ctx.report(m.at, &m.path, "a template needs `text`, `blocks` or both");
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
