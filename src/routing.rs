//! Event type (and optional `when` condition) → targets, from the `routes` of the config.
//!
//! Every matching route applies and a target gets an event once, however many routes name it.
//! Unknown event types are routed like any other: only `*` (or a matching prefix) catches them.
//! A `when` condition that fails to evaluate lets the event through (and logs why): a broken
//! filter must not silently drop events.

use std::sync::Arc;

use crate::config::{EventPattern, TargetId};
use crate::templates::{ConditionId, RenderContext, Templates};

/// One route, with its condition compiled.
#[derive(Clone, Debug)]
pub struct CompiledRoute {
    pub events: Vec<EventPattern>,
    pub to: Vec<TargetId>,
    pub when: Option<ConditionId>,
}

/// The routing table, built once from a validated config.
#[derive(Clone)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    /// Target names in config order, so every answer lists targets in a stable order.
    order: Vec<TargetId>,
    templates: Arc<Templates>,
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
        }
    }

    /// Whether any route has a `when` condition, i.e. whether [`Router::route`] needs the
    /// parsed event (parsing is skipped otherwise).
    pub fn needs_event(&self) -> bool {
        self.routes.iter().any(|r| r.when.is_some())
    }

    /// The targets an event of this type goes to, each once, in config order. `event` is the
    /// parsed event for `when` conditions; without it, routes with a condition do not apply.
    pub fn route(&self, event_type: &str, event: Option<&RenderContext>) -> Vec<TargetId> {
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
        self.order
            .iter()
            .filter(|name| matching.iter().any(|r| r.to.contains(name)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::templates::Meta;
    use std::path::Path;

    fn router(yaml: &str) -> Router {
        let cfg =
            Config::from_yaml_str(yaml, Path::new("test.yaml"), &|_| None).expect("valid config");
        crate::build::compile(&cfg)
            .expect("templates compile")
            .router
    }

    fn ctx(event: serde_json::Value) -> RenderContext {
        let meta = Meta {
            event_type: "message.received".into(),
            id: "x".into(),
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
    }
}
