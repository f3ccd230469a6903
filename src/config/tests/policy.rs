//! The delivery policy keys: `breaker`, `ordering`, `max_queue`, `on_full` on targets and
//! `priority` on routes, their defaults, and the lines a mistake in them produces.

use std::time::Duration;

use super::{assert_one, load, refused, with_target};
use crate::config::{BreakerPolicy, DeliveryOrder, OnFull, Priority, Rate};

const HTTP: &str = "    kind: http\n    url: https://x.example\n";

#[test]
fn defaults_are_an_always_on_breaker_no_order_and_no_quota() {
    let config = load(&with_target(HTTP)).expect("valid");
    let t = &config.targets[0];
    assert_eq!(
        t.breaker,
        BreakerPolicy {
            failures: 5,
            probe: Duration::from_secs(30)
        }
    );
    assert_eq!(t.ordering, DeliveryOrder::Unordered);
    assert_eq!(t.max_queue, None);
    assert_eq!(t.on_full, OnFull::Reject);
    assert_eq!(config.routes[0].priority, None);
}

#[test]
fn every_policy_key_is_read() {
    let yaml = with_target(&format!(
        "{HTTP}    breaker: {{ failures: 3, probe: 2s }}\n    ordering: fifo\n    max_queue: 1000\n    on_full: dead_letter\n"
    ));
    let config = load(&yaml).expect("valid");
    let t = &config.targets[0];
    assert_eq!(
        t.breaker,
        BreakerPolicy {
            failures: 3,
            probe: Duration::from_secs(2)
        }
    );
    assert_eq!(t.ordering, DeliveryOrder::Fifo);
    assert_eq!(t.max_queue, Some(1000));
    assert_eq!(t.on_full, OnFull::DeadLetter);
}

#[test]
fn slack_and_crm_targets_take_the_policy_keys_too() {
    let slack = with_target(
        "    kind: slack\n    url: https://hooks.slack.com/x\n    breaker: { probe: 1m }\n    ordering: { key: \"{{ event.conversation.id }}\" }\n",
    );
    let t = load(&slack).expect("valid").targets.remove(0);
    assert_eq!(t.breaker.failures, 5);
    assert_eq!(t.breaker.probe, Duration::from_secs(60));
    let DeliveryOrder::Key(key) = &t.ordering else {
        panic!("a keyed ordering: {:?}", t.ordering)
    };
    assert_eq!(key.text, "{{ event.conversation.id }}");
    assert_eq!(key.key, "targets.t.ordering.key");
    assert_eq!((key.line, key.column), (7, 22));
    let crm = with_target(
        "    kind: crm\n    url: https://api.example.com/x\n    max_queue: 5\n    ordering: unordered\n",
    );
    let t = load(&crm).expect("valid").targets.remove(0);
    assert_eq!(
        (t.max_queue, t.ordering),
        (Some(5), DeliveryOrder::Unordered)
    );
}

#[test]
fn route_priority_is_high_or_normal() {
    let yaml = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes:\n  - { events: [\"*\"], to: [t], priority: high }\n  - { events: [a.b], to: [t], priority: normal }\n";
    let config = load(yaml).expect("valid");
    assert_eq!(config.routes[0].priority, Some(Priority::High));
    assert_eq!(config.routes[1].priority, Some(Priority::Normal));
    let bad = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes:\n  - { events: [\"*\"], to: [t], priority: urgent }\n";
    assert_one(
        bad,
        "relay.yaml:4:41: routes[0].priority: ",
        "invalid priority \"urgent\" (expected high or normal)",
    );
}

#[test]
fn compliance_events_default_to_high_priority() {
    assert_eq!(Priority::default_for("contact.opted_out"), Priority::High);
    assert_eq!(Priority::default_for("contact.opted_in"), Priority::High);
    assert_eq!(Priority::default_for("message.received"), Priority::Normal);
    assert_eq!(Priority::default_for("contact.created"), Priority::Normal);
}

#[test]
fn every_policy_mistake_is_reported_in_one_pass() {
    let yaml = with_target(&format!(
        "{HTTP}    breaker: {{ failures: 0, probe: 0s, after: 1 }}\n    ordering: lifo\n    max_queue: 0\n    on_full: drop\n"
    ));
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:6:26: targets.t.breaker.failures: invalid failures \"0\" (expected a whole number from 1 to 1000000)",
            "relay.yaml:6:36: targets.t.breaker.probe: invalid duration \"0s\" (must be greater than zero)",
            "relay.yaml:6:40: targets.t.breaker.after: unknown key (expected one of: failures, probe)",
            "relay.yaml:7:15: targets.t.ordering: invalid ordering \"lifo\" (expected fifo, unordered, or { key: \"{{ event.conversation.id }}\" })",
            "relay.yaml:8:16: targets.t.max_queue: invalid max_queue \"0\" (expected a whole number from 1 to 1000000000)",
            "relay.yaml:9:14: targets.t.on_full: invalid on_full \"drop\" (expected reject or dead_letter)",
        ]
    );
}

#[test]
fn on_full_without_max_queue_is_refused() {
    let yaml = with_target(&format!("{HTTP}    on_full: dead_letter\n"));
    assert_one(
        &yaml,
        "relay.yaml:6:14: targets.t.on_full: ",
        "on_full only applies with max_queue",
    );
}

#[test]
fn ordering_keys_must_be_templates_that_vary() {
    let constant = with_target(&format!("{HTTP}    ordering: {{ key: conversation }}\n"));
    assert_one(
        &constant,
        "relay.yaml:6:22: targets.t.ordering.key: ",
        "write `ordering: fifo`",
    );
    let empty = with_target(&format!("{HTTP}    ordering: {{ key: \"  \" }}\n"));
    assert_one(
        &empty,
        "relay.yaml:6:22: targets.t.ordering.key: ",
        "ordering key is empty",
    );
    let unquoted = with_target(&format!("{HTTP}    ordering: {{{{ event.id }}}}\n"));
    assert_one(
        &unquoted,
        "relay.yaml:6:15: targets.t.ordering: ",
        "a key template goes under `key:`",
    );
    let missing = with_target(&format!("{HTTP}    ordering: {{ by: x }}\n"));
    let lines = refused(&missing);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        lines,
        [
            "relay.yaml:6:15: targets.t.ordering.key: missing required key `key`",
            "relay.yaml:6:17: targets.t.ordering.by: unknown key (expected one of: key)",
        ]
    );
}

#[test]
fn rates_display_as_written() {
    let rate = |count, ms| Rate {
        count,
        per: Duration::from_millis(ms),
    };
    assert_eq!(rate(1, 1_000).to_string(), "1/s");
    assert_eq!(rate(30, 60_000).to_string(), "30/m");
    assert_eq!(rate(100, 10_000).to_string(), "100/10s");
    assert_eq!(rate(10, 500).to_string(), "10/500ms");
    assert_eq!(rate(5, 7_200_000).to_string(), "5/2h");
}
