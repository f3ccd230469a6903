//! The delivery policy every target kind shares: `breaker`, `ordering`, `max_queue` and
//! `on_full` (design.md §5).
//!
//! An ordering key is stored as a template here and compiled with the others in
//! `app/build.rs`; ingress renders it once per event, so a key that never varies would make a
//! keyed target a slower spelling of `fifo`, and is refused with that advice.

use super::super::de::Loc;
use super::super::reader::{Ctx, Field, integer};
use super::super::schema as raw;
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

/// Reads `breaker`, `ordering`, `max_queue` and `on_full` of a target.
pub(super) fn policy(ctx: &mut Ctx<'_>, d: &raw::Delivery) -> Policy {
    let breaker = breaker(ctx, d.breaker.as_ref());
    let ordering = match ctx.present(d.ordering.as_ref()) {
        None => ordering_word(raw::Delivery::ORDERING).ok(),
        Some((node, path)) => ordering(ctx, node, &path),
    };
    let max_queue = ctx
        .value(d.max_queue.as_ref(), "max_queue", |s| {
            integer(s, 1, MAX_QUEUE)
        })
        .optional();
    let on_full_field = ctx.value(d.on_full.as_ref(), "on_full", on_full);
    if let (Field::Valid(_), Some(loc)) = (&on_full_field, &d.on_full)
        && ctx.present(d.max_queue.as_ref()).is_none()
    {
        let (at, path) = (ctx.at(loc), ctx.path(loc));
        ctx.report(
            at,
            &path,
            "on_full only applies with max_queue: set max_queue or remove on_full",
        );
    }
    Policy {
        breaker,
        ordering,
        max_queue,
        on_full: on_full_field.or_else(|| on_full(raw::Delivery::ON_FULL).ok()),
    }
}

/// `breaker:`; `None` when left out.
fn breaker(ctx: &mut Ctx<'_>, raw: Option<&raw::Breaker>) -> Option<BreakerPolicy> {
    let failures = ctx
        .value(raw.and_then(|r| r.failures.as_ref()), "failures", |s| {
            // At most MAX_FAILURES, so the conversion cannot fail.
            integer(s, 1, MAX_FAILURES).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        })
        .or(raw::Breaker::FAILURES as u32);
    let probe = raw.and_then(|r| r.probe.as_ref());
    let probe = ctx.value_or(probe, "duration", raw::Breaker::PROBE, positive);
    Some(BreakerPolicy {
        failures: failures?,
        probe: probe?,
    })
}

fn ordering_word(text: &str) -> Result<DeliveryOrder, String> {
    match text {
        "fifo" => Ok(DeliveryOrder::Fifo),
        "unordered" => Ok(DeliveryOrder::Unordered),
        _ => {
            Err("expected fifo, unordered, or { key: \"{{ event.conversation.id }}\" }".to_owned())
        }
    }
}

fn ordering<'e>(ctx: &mut Ctx<'e>, node: &'e Node, path: &str) -> Option<DeliveryOrder> {
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
        return ctx.parse(node, path, "ordering", ordering_word);
    }
    let raw: raw::OrderingKey = ctx.read(node, path, false)?;
    let key: &Loc<_> = &raw.key;
    let (key_node, key_path) = ctx.require_at(key)?;
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
