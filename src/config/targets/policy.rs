//! The delivery policy every target kind shares: `breaker`, `ordering`, `max_queue` and
//! `on_full` (design.md §5).
//!
//! An ordering key is stored as a template here and compiled with the others in
//! `app/build.rs`; ingress renders it once per event, so a key that never varies would make a
//! keyed target a slower spelling of `fifo`, and is refused with that advice.

use super::super::reader::{Ctx, Field, Mapping, child, integer};
use super::super::schema::keys;
use super::super::template;
use super::super::tree::{Node, Value};
use super::super::{BreakerPolicy, DeliveryOrder, OnFull};
use super::positive;

/// Largest `breaker.failures`: beyond this the breaker would never open in practice.
pub(in crate::config) const MAX_FAILURES: u64 = 1_000_000;
/// Largest `max_queue`: far beyond what one SQLite file should hold pending for one target.
pub(in crate::config) const MAX_QUEUE: u64 = 1_000_000_000;

/// The four policy keys of one target, each `None` when invalid (already reported).
pub(super) struct Policy {
    pub(super) breaker: Option<BreakerPolicy>,
    pub(super) ordering: Option<DeliveryOrder>,
    pub(super) max_queue: Option<Option<u64>>,
    pub(super) on_full: Option<OnFull>,
}

/// Reads `breaker`, `ordering`, `max_queue` and `on_full` of target mapping `m`.
pub(super) fn policy(ctx: &mut Ctx<'_>, m: &Mapping<'_>) -> Policy {
    let breaker = match m.present("breaker") {
        None => Some(BreakerPolicy::default()),
        Some(node) => breaker(ctx, node, child(&m.path, "breaker")),
    };
    let ordering = match m.present("ordering") {
        None => Some(DeliveryOrder::Unordered),
        Some(node) => ordering(ctx, node, &child(&m.path, "ordering")),
    };
    let max_queue = ctx
        .field(m, "max_queue", "max_queue", |s| integer(s, 1, MAX_QUEUE))
        .optional();
    let on_full_field = ctx.field(m, "on_full", "on_full", on_full);
    if matches!(on_full_field, Field::Valid(_)) && m.present("max_queue").is_none() {
        ctx.report(
            m.value_at("on_full"),
            &child(&m.path, "on_full"),
            "on_full only applies with max_queue: set max_queue or remove on_full",
        );
    }
    Policy {
        breaker,
        ordering,
        max_queue,
        on_full: on_full_field.or(OnFull::Reject),
    }
}

fn breaker(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<BreakerPolicy> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::BREAKER);
    let defaults = BreakerPolicy::default();
    let failures = ctx
        .field(&m, "failures", "failures", |s| {
            // At most MAX_FAILURES, so the conversion cannot fail.
            integer(s, 1, MAX_FAILURES).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        })
        .or(defaults.failures);
    let probe = ctx
        .field(&m, "probe", "duration", positive)
        .or(defaults.probe);
    Some(BreakerPolicy {
        failures: failures?,
        probe: probe?,
    })
}

fn ordering(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<DeliveryOrder> {
    if template::unquoted_template(node) {
        ctx.report(
            node.at,
            path,
            "a key template goes under `key:`, quoted: \
             ordering: { key: \"{{ event.conversation.id }}\" }",
        );
        return None;
    }
    if !matches!(node.value, Value::Map(_)) {
        return ctx.parse(node, path, "ordering", |text| match text {
            "fifo" => Ok(DeliveryOrder::Fifo),
            "unordered" => Ok(DeliveryOrder::Unordered),
            _ => Err(
                "expected fifo, unordered, or { key: \"{{ event.conversation.id }}\" }".to_owned(),
            ),
        });
    }
    let m = ctx.mapping(node, path.to_owned())?;
    ctx.check_keys(&m, keys::ORDERING_KEY);
    let key_node = ctx.required(&m, "key")?;
    let key_path = child(&m.path, "key");
    let key = template::non_empty_template(
        ctx,
        key_node,
        &key_path,
        "ordering key is empty (write `ordering: fifo` for one queue, or leave ordering out)",
    )?;
    if !key.text.contains("{{") && !key.text.contains("{%") {
        ctx.report(
            key_node.at,
            &key_path,
            "the key is the same for every event, which makes one queue: write \
             `ordering: fifo`, or use the event, e.g. \"{{ event.conversation.id }}\"",
        );
        return None;
    }
    Some(DeliveryOrder::Key(key))
}

fn on_full(text: &str) -> Result<OnFull, String> {
    match text {
        "reject" => Ok(OnFull::Reject),
        "dead_letter" => Ok(OnFull::DeadLetter),
        _ => Err("expected reject or dead_letter".to_owned()),
    }
}
