//! Event type → targets, from the `routes` of the config.
//!
//! Every matching route applies and a target gets an event once, however many routes name it.
//! Unknown event types are routed like any other: only `*` (or a matching prefix) catches them.

use crate::config::{EventPattern, Route, Target, TargetId};

/// The routing table, built once from a validated config.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<(Vec<EventPattern>, Vec<TargetId>)>,
    /// Target names in config order, so every answer lists targets in a stable order.
    order: Vec<TargetId>,
}

impl Router {
    pub fn new(routes: &[Route], targets: &[Target]) -> Router {
        Router {
            routes: routes
                .iter()
                .map(|r| (r.events.clone(), r.to.clone()))
                .collect(),
            order: targets.iter().map(|t| t.name.clone()).collect(),
        }
    }

    /// The targets an event of this type goes to, each once, in config order.
    pub fn route(&self, event_type: &str) -> Vec<TargetId> {
        let wanted = |name: &TargetId| {
            self.routes.iter().any(|(patterns, to)| {
                to.contains(name) && patterns.iter().any(|p| p.matches(event_type))
            })
        };
        self.order.iter().filter(|n| wanted(n)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn router(yaml: &str) -> Router {
        let cfg =
            Config::from_yaml_str(yaml, Path::new("test.yaml"), &|_| None).expect("valid config");
        Router::new(&cfg.routes, &cfg.targets)
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
        let names = |t: &str| r.route(t).iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names("message.received"), ["a", "b"]);
        assert_eq!(names("contact.opted_out"), ["a", "c"]);
        assert_eq!(names("brand.new.event"), ["a"]);
    }

    #[test]
    fn no_match_is_empty() {
        let r = router(
            "source: { secrets: [s] }\ntargets:\n  a: { kind: http, url: \"http://h/\" }\nroutes:\n  - events: [message.received]\n    to: [a]\n",
        );
        assert!(r.route("contact.created").is_empty());
        assert!(r.route("message").is_empty());
    }
}
