//! Mistakes in slack and crm targets, their templates and route conditions, and the
//! exact line a user sees for each.

use super::{assert_one, refused, with_target};

/// `with_target` for a slack target with `templates:` on line 6; entries start on line 7.
fn slack_with_templates(templates: &str) -> String {
    with_target(&format!(
        "    kind: slack\n    url: https://hooks.slack.com/x\n    templates:\n{templates}"
    ))
}

/// `with_target` for a crm target: kind on line 4, url on line 5, `rest` from line 6.
fn crm_with(rest: &str) -> String {
    with_target(&format!(
        "    kind: crm\n    url: https://x.example/{{{{ meta.id }}}}\n{rest}"
    ))
}

/// A valid file whose one route has `when` on line 5.
fn route_when(when: &str) -> String {
    format!(
        "source: {{ secrets: [x] }}\ntargets: {{ t: {{ kind: http, url: \"https://x.example\" }} }}\nroutes:\n  - events: [\"*\"]\n    when: {when}\n    to: [t]\n"
    )
}

#[test]
fn slack_template_keys_are_exact_event_types() {
    assert_one(
        &slack_with_templates("      \"contact.*\": { text: hi }\n"),
        "relay.yaml:7:7: targets.t.templates[\"contact.*\"]: ",
        "\"contact.*\" is a pattern, but templates are chosen by exact event type",
    );
    assert_one(
        &slack_with_templates("      Message.Received: { text: hi }\n"),
        "relay.yaml:7:7: targets.t.templates[\"Message.Received\"]: ",
        "invalid event type \"Message.Received\" (expected an event type such as message.received, or \"*\"",
    );
}

#[test]
fn slack_template_needs_text_or_blocks() {
    let yaml = slack_with_templates(
        "      message.received: {}\n      \"*\": { text: ~, blocks: ~ }\n      contact.opted_out:\n        txt: hi\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:7:25: targets.t.templates[\"message.received\"]: a template needs `text`, `blocks` or both",
            "relay.yaml:8:12: targets.t.templates[\"*\"]: a template needs `text`, `blocks` or both",
            "relay.yaml:10:9: targets.t.templates[\"contact.opted_out\"].txt: unknown key (expected one of: text, blocks)",
            "relay.yaml:10:9: targets.t.templates[\"contact.opted_out\"]: a template needs `text`, `blocks` or both",
        ]
    );
}

#[test]
fn slack_template_text_and_blocks_are_checked() {
    let yaml = slack_with_templates(
        "      message.received:\n        text: \"${EMPTY}\"\n        blocks: { type: section }\n      \"*\":\n        blocks: 42\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:8:15: targets.t.templates[\"message.received\"].text: text must not be empty (leave `text` out to send blocks only)",
            "relay.yaml:9:17: targets.t.templates[\"message.received\"].blocks: expected a list of blocks (or a template that renders to one), found a mapping",
            "relay.yaml:11:17: targets.t.templates[\"*\"].blocks: expected a list of blocks (or a template that renders to one), found a string",
        ]
    );
}

#[test]
fn crm_without_url_is_refused() {
    assert_eq!(
        refused(&with_target("    kind: crm\n    method: POST\n")),
        ["relay.yaml:4:5: targets.t.url: missing required key `url`"]
    );
}

#[test]
fn crm_url_must_start_with_http_outside_templates() {
    let yaml = with_target("    kind: crm\n    url: \"{{ event.base_url }}/contacts\"\n");
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:5:10: targets.t.url: invalid URL template \"{{ event.base_url }}/contacts\" (must start with http:// or https://, outside any `{{ }}`)"
        ]
    );
    assert_one(
        &with_target("    kind: crm\n    url: ftp://x.example/{{ meta.id }}\n"),
        "relay.yaml:5:10: targets.t.url: ",
        "invalid URL template \"ftp://x.example/{{ meta.id }}\"",
    );
}

#[test]
fn crm_url_from_the_environment_is_not_echoed() {
    let yaml = with_target("    kind: crm\n    url: \"${HOOK_TOKEN}/{{ meta.id }}\"\n");
    let lines = refused(&yaml);
    assert_eq!(
        lines,
        [
            "relay.yaml:5:10: targets.t.url: invalid URL template \"${HOOK_TOKEN}/{{ meta.id }}\" as expanded (must start with http:// or https://, outside any `{{ }}`)"
        ]
    );
    assert!(!lines[0].contains("t0k3n"));
}

#[test]
fn problems_in_block_scalars_point_at_their_text() {
    let yaml = with_target("    kind: crm\n    url: |-\n      {{ base }}/x\n");
    assert_one(
        &yaml,
        "relay.yaml:6:7: targets.t.url: ",
        "invalid URL template \"{{ base }}/x\"",
    );
}

#[test]
fn unknown_method_is_refused() {
    assert_eq!(
        refused(&crm_with("    method: FETCH\n")),
        [
            "relay.yaml:6:13: targets.t.method: invalid method \"FETCH\" (expected one of: GET, POST, PUT, PATCH, DELETE)"
        ]
    );
}

#[test]
fn auth_takes_exactly_one_scheme() {
    assert_eq!(
        refused(&crm_with(
            "    auth: { bearer: x, basic: { username: u, password: p } }\n"
        )),
        [
            "relay.yaml:6:24: targets.t.auth.basic: only one auth scheme is allowed (`bearer` is set at line 6)"
        ]
    );
    assert_eq!(
        refused(&crm_with("    auth: {}\n")),
        ["relay.yaml:6:11: targets.t.auth: expected one of: bearer, basic, oauth2"]
    );
    assert_eq!(
        refused(&crm_with("    auth: { token: x }\n")),
        [
            "relay.yaml:6:13: targets.t.auth.token: unknown key (expected one of: bearer, basic, oauth2)"
        ]
    );
}

#[test]
fn oauth2_needs_a_client_secret() {
    let yaml = crm_with(
        "    auth:\n      oauth2:\n        token_url: https://login.salesforce.com/services/oauth2/token\n        client_id: abc\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:8:9: targets.t.auth.oauth2.client_secret: missing required key `client_secret`"
        ]
    );
    let yaml = crm_with(
        "    auth:\n      oauth2: { token_url: \"login.example/token\", client_id: \"\", client_secret: \"${EMPTY}\", scop: x }\n",
    );
    let lines = refused(&yaml);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "targets.t.auth.oauth2.token_url",
            "targets.t.auth.oauth2.client_id",
            "targets.t.auth.oauth2.client_secret",
            "targets.t.auth.oauth2.scop",
        ],
        "{lines:#?}"
    );
}

#[test]
fn empty_or_malformed_bearer_tokens_are_refused_without_echo() {
    assert_eq!(
        refused(&crm_with("    auth: { bearer: \"${EMPTY:-}\" }\n")),
        ["relay.yaml:6:21: targets.t.auth.bearer: secret is empty"]
    );
    assert_eq!(
        refused(&crm_with("    auth: { bearer: \"${NOT_SET_TOKEN:-}\" }\n")),
        ["relay.yaml:6:21: targets.t.auth.bearer: secret is empty"]
    );
    let lines = refused(&crm_with("    auth: { bearer: \"Bearer hunter2\" }\n"));
    assert_eq!(
        lines,
        [
            "relay.yaml:6:21: targets.t.auth.bearer: write the token alone: `Bearer ` is added by the relay"
        ]
    );
    let lines = refused(&crm_with("    auth: { bearer: \"hunter2\\n\" }\n"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("relay.yaml:6:21: targets.t.auth.bearer: token contains characters"),
        "{lines:#?}"
    );
    assert!(!lines[0].contains("hunter2"), "{lines:#?}");
}

#[test]
fn basic_auth_needs_a_username_and_a_password() {
    let yaml = crm_with("    auth:\n      basic: { username: \"a:b\", password: \"${EMPTY}\" }\n");
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:7:26: targets.t.auth.basic.username: username \"a:b\" must not contain `:`",
            "relay.yaml:7:43: targets.t.auth.basic.password: secret is empty",
        ]
    );
}

#[test]
fn crm_headers_are_checked_like_http_ones() {
    let yaml = crm_with(
        "    auth: { bearer: \"${HOOK_TOKEN}\" }\n    headers:\n      Authorization: \"Bearer {{ meta.id }}\"\n      Webhook-Signature: x\n      X-Bad: \"a\\u0001{{ b }}\"\n      X-Ok: \"{{ meta.id }}\"\n      x-ok: y\n",
    );
    assert_eq!(
        refused(&yaml),
        [
            "relay.yaml:8:7: targets.t.headers.Authorization: header `authorization` is set by `auth`; remove one of the two",
            "relay.yaml:9:7: targets.t.headers.Webhook-Signature: header `webhook-signature` is set by the relay",
            "relay.yaml:10:14: targets.t.headers.X-Bad: invalid header value (control characters are not allowed; value not shown)",
            "relay.yaml:12:7: targets.t.headers.x-ok: header `x-ok` is set twice",
        ]
    );
}

#[test]
fn ambiguous_body_values_must_be_quoted() {
    let yaml = crm_with(
        "    body:\n      phone: +13035551234\n      zip: 02134\n      opted_in: yes\n      country: NO\n      count: 0x10\n      ok: [1, 2.5, true, ~, \"yes\"]\n",
    );
    let lines = refused(&yaml);
    assert_eq!(
        lines
            .iter()
            .map(|l| &l[..l.find(" (").unwrap_or(l.len())])
            .collect::<Vec<_>>(),
        [
            "relay.yaml:7:14: targets.t.body.phone: ambiguous value \"+13035551234\"",
            "relay.yaml:8:12: targets.t.body.zip: ambiguous value \"02134\"",
            "relay.yaml:9:17: targets.t.body.opted_in: ambiguous value \"yes\"",
            "relay.yaml:10:16: targets.t.body.country: ambiguous value \"NO\"",
            "relay.yaml:11:14: targets.t.body.count: ambiguous value \"0x10\"",
        ],
        "{lines:#?}"
    );
    assert!(
        lines[0].ends_with("quote it to send it as text, or write true, false, null or a JSON number such as 42 or 1.5)"),
        "{lines:#?}"
    );
}

#[test]
fn unquoted_templates_get_a_hint() {
    let hint = "a template starting with `{{` must be quoted, e.g. \"{{ event.id }}\" (unquoted, YAML reads it as a mapping)";
    let yaml = crm_with("    body:\n      phone: {{ event.conversation.phoneNumber }}\n");
    assert_eq!(
        refused(&yaml),
        [format!("relay.yaml:7:14: targets.t.body.phone: {hint}")]
    );
    let yaml = with_target("    kind: crm\n    url: {{ meta.url }}\n");
    assert_eq!(
        refused(&yaml),
        [format!("relay.yaml:5:10: targets.t.url: {hint}")]
    );
}

#[test]
fn when_must_be_a_non_empty_expression() {
    let empty = "condition is empty (leave `when` out to apply the route to every matching event)";
    assert_eq!(
        refused(&route_when("\"\"")),
        [format!("relay.yaml:5:11: routes[0].when: {empty}")]
    );
    assert_eq!(
        refused(&route_when("\"  ${EMPTY}\"")),
        [format!("relay.yaml:5:11: routes[0].when: {empty}")]
    );
    assert_one(
        &route_when("\"{{ event.contact is defined }}\""),
        "relay.yaml:5:11: routes[0].when: ",
        "`when` is an expression: write it without `{{ }}`",
    );
    assert_eq!(
        refused(&route_when("[a]")),
        ["relay.yaml:5:11: routes[0].when: expected a string, found a list"]
    );
}

#[test]
fn every_template_problem_is_reported_in_one_pass() {
    let yaml = "source: { secrets: [x] }\n\
                targets:\n  \
                  s:\n    \
                    kind: slack\n    \
                    url: hooks.slack.com\n    \
                    method: POST\n    \
                    templates: { \"contact.*\": { text: hi }, \"*\": {} }\n  \
                  c:\n    \
                    kind: crm\n    \
                    method: FETCH\n    \
                    url: /relative/{{ x }}\n    \
                    auth: { bearer: \"\", basic: ~ }\n    \
                    body: { n: 1_000 }\n\
                routes:\n  \
                  - { events: [\"*\"], to: [s, c, ghost], when: \"\" }\n";
    let lines = refused(yaml);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "targets.s.url",
            "targets.s.method",
            "targets.s.templates[\"contact.*\"]",
            "targets.s.templates[\"*\"]",
            "targets.c.method",
            "targets.c.url",
            "targets.c.auth.bearer",
            "targets.c.auth.basic",
            "targets.c.auth.basic.username",
            "targets.c.auth.basic.password",
            "targets.c.body.n",
            "routes[0].to[2]",
            "routes[0].when",
        ],
        "{lines:#?}"
    );
}
