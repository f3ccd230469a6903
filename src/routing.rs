//! Event type (and optional `when` condition) → targets, from the `routes` of the config, and
//! from there the deliveries ingress stores: with their priority, order key and quota.
//!
//! Every matching route applies and a target gets an event once, however many routes name it.
//! Unknown event types are routed like any other: only `*` (or a matching prefix) catches them.
//! A `when` condition that fails to evaluate lets the event through (and logs why): a broken
//! filter must not silently drop events. A delivery is high priority when any route that sends
//! it says so (a route without `priority` takes the event type's default), and an order key
//! that fails to render is the empty key (logged): the event is still delivered, in order with
//! the other events whose key is empty.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{EventPattern, Priority, TargetId};
use crate::event::ParsedBody;
use crate::store::{Quota, Routed};
use crate::templates::{ConditionId, Meta, RenderContext, Templates, TextId};

/// One route, with its condition compiled.
#[derive(Clone, Debug)]
pub struct CompiledRoute {
    pub events: Vec<EventPattern>,
    pub to: Vec<TargetId>,
    pub when: Option<ConditionId>,
    /// `None`: the event type's default ([`Priority::default_for`]).
    pub priority: Option<Priority>,
}

/// How one target's deliveries are queued, from its `ordering`, `max_queue` and `on_full`.
#[derive(Clone, Debug, Default)]
pub struct QueueRules {
    pub order: OrderRule,
    pub quota: Option<Quota>,
}

/// Which order key a target's deliveries get.
#[derive(Clone, Copy, Debug, Default)]
pub enum OrderRule {
    /// No key: unordered.
    #[default]
    Unordered,
    /// The same key for every delivery: one queue for the whole target.
    Fifo,
    /// The rendered template.
    Key(TextId),
}

/// The key every delivery of a fifo target gets.
const FIFO_KEY: &str = "";

/// The routing table, built once from a validated config.
#[derive(Clone)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    /// Target names in config order, so every answer lists targets in a stable order.
    order: Vec<TargetId>,
    templates: Arc<Templates>,
    /// Per target; a target without an entry is unordered and unlimited.
    rules: HashMap<TargetId, QueueRules>,
    /// Targets whose deliveries render the event.
    renderers: HashSet<TargetId>,
}

impl Router {
    pub fn new(
        routes: Vec<CompiledRoute>,
        order: Vec<TargetId>,
        templates: Arc<Templates>,
    ) -> Router {
        Router {
            routes,
            order,
            templates,
            rules: HashMap::new(),
            renderers: HashSet::new(),
        }
    }

    /// Sets how each target's deliveries are queued.
    pub fn with_rules(mut self, rules: HashMap<TargetId, QueueRules>) -> Router {
        self.rules = rules;
        self
    }

    /// Sets which targets render the event (templated kinds: Slack, CRM), so that ingress
    /// parses each body in full for them, once ([`Router::parses_event`]).
    pub fn with_renderers(mut self, targets: impl IntoIterator<Item = TargetId>) -> Router {
        self.renderers = targets.into_iter().collect();
        self
    }

    /// Whether ingress parses each body in full: routing needs the event, or some target
    /// renders it. Otherwise only `id` and `action` are read, and a plain http target sends the
    /// bytes without the event ever being parsed.
    pub fn parses_event(&self) -> bool {
        self.needs_event() || !self.renderers.is_empty()
    }

    /// Whether any route has a `when` condition or any target an order key template, i.e.
    /// whether routing needs the parsed event.
    pub fn needs_event(&self) -> bool {
        self.routes.iter().any(|r| r.when.is_some())
            || self
                .rules
                .values()
                .any(|r| matches!(r.order, OrderRule::Key(_)))
    }

    /// Whether some route sends some events of this type to a target: its `events` match,
    /// whatever its `when:` makes of one event. A source must deliver every such type, since a
    /// condition can only pass on events that arrive (`textus subscribe`, `check`'s notes).
    pub fn routes_type(&self, event_type: &str) -> bool {
        self.routes
            .iter()
            .any(|r| !r.to.is_empty() && r.events.iter().any(|p| p.matches(event_type)))
    }

    /// The targets an event of this type goes to, each once, in config order. `event` is the
    /// parsed event for `when` conditions; without it, routes with a condition do not apply.
    pub fn route(&self, event_type: &str, event: Option<&RenderContext>) -> Vec<TargetId> {
        self.route_with_priority(event_type, event)
            .into_iter()
            .map(|(target, _)| target)
            .collect()
    }

    /// The deliveries to store for one verified event: each routed target with its priority,
    /// order key and quota. `parsed` is `body` as JSON if ingress parsed it; it is parsed here
    /// (once) only if routing needs it and ingress did not.
    pub fn plan(
        &self,
        event_type: &str,
        event_id: &str,
        body: &[u8],
        parsed: &ParsedBody,
        received_at: SystemTime,
    ) -> Vec<Routed> {
        let event = self.needs_event().then(|| parsed.value(body));
        let meta = |target: &str| Meta {
            event_type: event_type.to_string(),
            event_id: event_id.to_string(),
            received_at: crate::templates::rfc3339_from_unix_ms(crate::store::unix_ms(received_at)),
            target: target.to_string(),
        };
        let routing_ctx = event.map(|e| RenderContext::new(e, meta("")));
        self.route_with_priority(event_type, routing_ctx.as_ref())
            .into_iter()
            .map(|(target, priority)| {
                let rules = self.rules.get(&target).cloned().unwrap_or_default();
                let order_key = match rules.order {
                    OrderRule::Unordered => None,
                    OrderRule::Fifo => Some(FIFO_KEY.to_owned()),
                    OrderRule::Key(template) => {
                        let event = event.unwrap_or(&serde_json::Value::Null);
                        let ctx = RenderContext::new(event, meta(target.as_str()));
                        Some(self.templates.render_text(template, &ctx).unwrap_or_else(|e| {
                            tracing::warn!(target = %target, event_id, error = %e, "order key failed to render; using the empty key");
                            String::new()
                        }))
                    }
                };
                Routed {
                    target,
                    priority,
                    order_key,
                    quota: rules.quota,
                }
            })
            .collect()
    }

    /// [`Router::route`] with each target's priority: high if any route sending the event
    /// there says so.
    pub fn route_with_priority(
        &self,
        event_type: &str,
        event: Option<&RenderContext>,
    ) -> Vec<(TargetId, Priority)> {
        let applies = |route: &CompiledRoute| {
            if !route.events.iter().any(|p| p.matches(event_type)) {
                return false;
            }
            match (route.when, event) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(cond), Some(ctx)) => self.templates.test(cond, ctx).unwrap_or_else(|e| {
                    tracing::warn!(event_type, error = %e, "route condition failed; routing the event anyway");
                    true
                }),
            }
        };
        let matching: Vec<&CompiledRoute> = self.routes.iter().filter(|r| applies(r)).collect();
        let default = Priority::default_for(event_type);
        self.order
            .iter()
            .filter_map(|name| {
                matching
                    .iter()
                    .filter(|r| r.to.contains(name))
                    .map(|r| r.priority.unwrap_or(default))
                    .max()
                    .map(|priority| (name.clone(), priority))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::Quota;
    use crate::templates::Meta;
    use std::path::Path;

    fn router(yaml: &str) -> Router {
        let cfg =
            Config::from_yaml_str(yaml, Path::new("test.yaml"), &|_| None).expect("valid config");
        crate::app::build::compile(&cfg)
            .expect("templates compile")
            .router
    }

    fn ctx(event: serde_json::Value) -> RenderContext {
        let meta = Meta {
            event_type: "message.received".into(),
            event_id: "x".into(),
            received_at: "2024-05-14T16:02:11Z".into(),
            target: String::new(),
        };
        RenderContext::new(&event, meta)
    }

    const YAML: &str = r#"
source: { secrets: [s] }
targets:
  a: { kind: http, url: "http://127.0.0.1:1/a" }
  b: { kind: http, url: "http://127.0.0.1:1/b" }
  c: { kind: http, url: "http://127.0.0.1:1/c" }
routes:
  - events: [message.received]
    to: [b, a]
  - events: ["contact.*"]
    to: [c]
  - events: ["*"]
    to: [a]
"#;

    #[test]
    fn union_of_matching_routes_each_target_once() {
        let r = router(YAML);
        let names = |t: &str| {
            r.route(t, None)
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("message.received"), ["a", "b"]);
        assert_eq!(names("contact.opted_out"), ["a", "c"]);
        assert_eq!(names("brand.new.event"), ["a"]);
        assert!(!r.needs_event());
        assert!(r.routes_type("contact.created") && r.routes_type("brand.new.event"));
    }

    #[test]
    fn no_match_is_empty() {
        let r = router(
            "source: { secrets: [s] }\ntargets:\n  a: { kind: http, url: \"http://h/\" }\nroutes:\n  - events: [message.received]\n    to: [a]\n",
        );
        assert!(r.route("contact.created", None).is_empty());
        assert!(r.route("message", None).is_empty());
    }

    #[test]
    fn when_conditions_filter_on_the_event() {
        let r = router(
            "source: { secrets: [s] }\ntargets:\n  a: { kind: http, url: \"http://h/\" }\nroutes:\n  - events: [\"message.*\"]\n    when: \"event.message.direction == 'in'\"\n    to: [a]\n",
        );
        assert!(r.needs_event());
        let inbound = ctx(serde_json::json!({"message": {"direction": "in"}}));
        let outbound = ctx(serde_json::json!({"message": {"direction": "out"}}));
        let shapeless = ctx(serde_json::json!({}));
        assert_eq!(r.route("message.received", Some(&inbound)).len(), 1);
        assert!(r.route("message.received", Some(&outbound)).is_empty());
        assert!(r.route("message.received", Some(&shapeless)).is_empty());
        // A condition decides per event; the type itself is routed.
        assert!(r.routes_type("message.received") && !r.routes_type("contact.created"));
    }

    fn plan(yaml: &str, event_type: &str, body: serde_json::Value) -> Vec<Routed> {
        let body = serde_json::to_vec(&body).expect("json");
        router(yaml).plan(
            event_type,
            "ev-1",
            &body,
            &ParsedBody::default(),
            std::time::SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn high_priority_wins_when_several_routes_apply() {
        let yaml = "source: { secrets: [s] }\ntargets:\n  a: { kind: http, url: \"http://h/a\" }\n  b: { kind: http, url: \"http://h/b\" }\nroutes:\n  - events: [\"*\"]\n    to: [a, b]\n  - events: [message.failed]\n    to: [b]\n    priority: high\n  - events: [\"contact.*\"]\n    to: [a]\n    priority: normal\n";
        let r = router(yaml);
        let with = |t: &str| r.route_with_priority(t, None);
        let (a, b) = (TargetId(Arc::from("a")), TargetId(Arc::from("b")));
        assert_eq!(
            with("message.failed"),
            [(a.clone(), Priority::Normal), (b.clone(), Priority::High)]
        );
        // The `*` route keeps the opt-out's default (high) for a, over the route saying normal.
        assert_eq!(
            with("contact.opted_out"),
            [(a.clone(), Priority::High), (b.clone(), Priority::High)]
        );
        assert_eq!(
            with("contact.created"),
            [(a, Priority::Normal), (b, Priority::Normal)]
        );
    }

    #[test]
    fn plans_carry_order_keys_and_quotas() {
        let yaml = "source: { secrets: [s] }\ntargets:\n  keyed: { kind: http, url: \"http://h/a\", ordering: { key: \"{{ event.conversation.id }}/{{ meta.target }}\" } }\n  fifo: { kind: http, url: \"http://h/b\", ordering: fifo, max_queue: 3, on_full: dead_letter }\n  free: { kind: http, url: \"http://h/c\" }\nroutes:\n  - events: [\"*\"]\n    to: [keyed, fifo, free]\n";
        let body = serde_json::json!({"conversation": {"id": "/conversations/J"}});
        let planned = plan(yaml, "message.received", body);
        let keys: Vec<Option<&str>> = planned.iter().map(|p| p.order_key.as_deref()).collect();
        assert_eq!(keys, [Some("/conversations/J/keyed"), Some(""), None]);
        assert_eq!(
            planned[1].quota,
            Some(Quota {
                max_queue: Some(3),
                share_percent: Some(50),
                on_full: crate::config::OnFull::DeadLetter
            })
        );
        // Several targets share the store: each gets the default share of its budget.
        let share_only = Some(Quota {
            max_queue: None,
            share_percent: Some(50),
            on_full: crate::config::OnFull::Reject,
        });
        assert_eq!(planned[0].quota, share_only);
        assert_eq!(planned[2].quota, share_only);
        // A missing field renders empty: still a key, shared by every such event.
        let shapeless = plan(yaml, "message.received", serde_json::json!({}));
        assert_eq!(shapeless[0].order_key.as_deref(), Some("/keyed"));
        assert!(router(yaml).needs_event());
    }
}
