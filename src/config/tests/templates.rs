//! Slack and CRM targets, route conditions and their templates in valid files: what
//! the rest of the relay receives, and where each template was written.

use std::time::Duration;

use super::{load, with_target};
use crate::config::{
    BodyTemplate, CrmAuth, CrmSettings, Rate, SlackSettings, SlackTemplate, TargetKind,
    TemplateSource,
};

/// Slack targets with and without templates, and three CRM targets in the shapes of
/// design.md §4 and textus-webhooks.md §3–§4.
const FULL: &str = r#"source: { secrets: [x] }
targets:
  support-slack:
    kind: slack
    url: ${SLACK_WEBHOOK_URL}
  alerts:
    kind: slack
    url: https://hooks.slack.com/services/T0/B0/alerts
    rate_limit: 5/s
    templates:
      message.received:
        text: "New SMS from {{ event.conversation.phoneNumber }}"
        blocks:
          - type: section
            text: { type: mrkdwn, text: "{{ event.body }}" }
      "*":
        text: |
          TextUs event {{ meta.type }}
          id {{ meta.id }}
  hubspot:
    kind: crm
    method: POST
    url: https://api.hubapi.com/crm/v3/objects/contacts
    auth: { bearer: "${HUBSPOT_TOKEN}" }
    body:
      properties:
        phone: "{{ event.conversation.phoneNumber }}"
        unanswered: "{{ event.conversation.unanswered }}"
        lifecyclestage: lead
        score: 10
        ratio: 0.5
        active: true
        quoted: "true"
        nothing: ~
      tags: [sms, 3, false]
  salesforce:
    kind: crm
    method: patch
    url: https://${SF_DOMAIN}.my.salesforce.com/services/data/v62.0/sobjects/Contact/TextUs_Id__c/{{ event.contact.id | replace("/contacts/", "") }}
    headers:
      Sforce-Auto-Assign: "FALSE"
      X-Trace: "{{ meta.id }}"
    auth:
      oauth2:
        token_url: https://login.salesforce.com/services/oauth2/token
        client_id: ${SF_CLIENT_ID}
        client_secret: ${SF_CLIENT_SECRET}
        scope: api
    body: { LastName: "{{ event.contact.lastName }}", MobilePhone: "{{ event.contact.phoneNumber }}" }
  legacy:
    kind: crm
    method: get
    url: "http://127.0.0.1:9000/lookup?phone={{ event.conversation.phoneNumber | urlencode }}"
    auth: { basic: { username: relay, password: "${LEGACY_PASSWORD}" } }
routes:
  - events: [message.received]
    to: [support-slack, alerts]
  - events: ["contact.*"]
    when: "event.contact is defined"
    to: [hubspot, salesforce]
  - events: ["*"]
    to: [legacy]
"#;

fn tpl(text: &str, line: usize, column: usize, key: &str) -> TemplateSource {
    TemplateSource {
        text: text.to_owned(),
        line,
        column,
        key: key.to_owned(),
    }
}

fn leaf(text: &str, line: usize, column: usize, key: &str) -> BodyTemplate {
    BodyTemplate::String(tpl(text, line, column, key))
}

fn number(n: u64) -> BodyTemplate {
    BodyTemplate::Number(n.into())
}

fn map(entries: Vec<(&str, BodyTemplate)>) -> BodyTemplate {
    BodyTemplate::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn kind(yaml: &str, target: &str) -> TargetKind {
    let config = load(yaml).expect("valid config");
    let found = config.targets.iter().find(|t| t.name.as_str() == target);
    found.expect("target defined").kind.clone()
}

fn slack(yaml: &str, target: &str) -> SlackSettings {
    match kind(yaml, target) {
        TargetKind::Slack(slack) => slack,
        other => panic!("expected a slack target, got {other:?}"),
    }
}

fn crm(yaml: &str, target: &str) -> CrmSettings {
    match kind(yaml, target) {
        TargetKind::Crm(crm) => crm,
        other => panic!("expected a crm target, got {other:?}"),
    }
}

#[test]
fn slack_targets_with_and_without_templates() {
    let plain = slack(FULL, "support-slack");
    assert_eq!(
        plain.url.as_str(),
        "https://hooks.slack.com/services/T000/B000/sl4ckS3cret"
    );
    assert!(plain.templates.is_empty());
    let alerts = slack(FULL, "alerts");
    assert_eq!(
        alerts.url.as_str(),
        "https://hooks.slack.com/services/T0/B0/alerts"
    );
    let received = "targets.alerts.templates[\"message.received\"]";
    let expected = vec![
        (
            "message.received".to_owned(),
            SlackTemplate {
                text: Some(tpl(
                    "New SMS from {{ event.conversation.phoneNumber }}",
                    12,
                    15,
                    &format!("{received}.text"),
                )),
                blocks: Some(BodyTemplate::List(vec![map(vec![
                    (
                        "type",
                        leaf("section", 14, 19, &format!("{received}.blocks[0].type")),
                    ),
                    (
                        "text",
                        map(vec![
                            (
                                "type",
                                leaf("mrkdwn", 15, 27, &format!("{received}.blocks[0].text.type")),
                            ),
                            (
                                "text",
                                leaf(
                                    "{{ event.body }}",
                                    15,
                                    41,
                                    &format!("{received}.blocks[0].text.text"),
                                ),
                            ),
                        ]),
                    ),
                ])])),
            },
        ),
        (
            "*".to_owned(),
            SlackTemplate {
                text: Some(tpl(
                    "TextUs event {{ meta.type }}\nid {{ meta.id }}\n",
                    18,
                    11,
                    "targets.alerts.templates[\"*\"].text",
                )),
                blocks: None,
            },
        ),
    ];
    assert_eq!(alerts.templates, expected);
}

#[test]
fn slack_rate_limit_defaults_to_one_per_second() {
    let config = load(FULL).expect("valid config");
    let rate = |name: &str| {
        let target = config.targets.iter().find(|t| t.name.as_str() == name);
        target.expect("target defined").rate_limit
    };
    assert_eq!(
        rate("support-slack"),
        Some(Rate {
            count: 1,
            per: Duration::from_secs(1)
        })
    );
    assert_eq!(
        rate("alerts"),
        Some(Rate {
            count: 5,
            per: Duration::from_secs(1)
        })
    );
    // Other kinds keep "no limit" as their default.
    assert_eq!(rate("hubspot"), None);
    let yaml =
        with_target("    kind: slack\n    url: https://hooks.slack.com/x\n    rate_limit: 30/m\n");
    let config = load(&yaml).expect("valid config");
    assert_eq!(
        config.targets[0].rate_limit,
        Some(Rate {
            count: 30,
            per: Duration::from_secs(60)
        })
    );
}

#[test]
fn hubspot_like_target_keeps_typed_leaves() {
    let props = "targets.hubspot.body.properties";
    let expected = CrmSettings {
        method: http::Method::POST,
        url: tpl(
            "https://api.hubapi.com/crm/v3/objects/contacts",
            23,
            10,
            "targets.hubspot.url",
        ),
        headers: vec![],
        body: Some(map(vec![
            (
                "properties",
                map(vec![
                    (
                        "phone",
                        leaf(
                            "{{ event.conversation.phoneNumber }}",
                            27,
                            16,
                            &format!("{props}.phone"),
                        ),
                    ),
                    (
                        "unanswered",
                        leaf(
                            "{{ event.conversation.unanswered }}",
                            28,
                            21,
                            &format!("{props}.unanswered"),
                        ),
                    ),
                    (
                        "lifecyclestage",
                        leaf("lead", 29, 25, &format!("{props}.lifecyclestage")),
                    ),
                    ("score", number(10)),
                    (
                        "ratio",
                        BodyTemplate::Number(serde_json::Number::from_f64(0.5).expect("finite")),
                    ),
                    ("active", BodyTemplate::Bool(true)),
                    ("quoted", leaf("true", 33, 17, &format!("{props}.quoted"))),
                    ("nothing", BodyTemplate::Null),
                ]),
            ),
            (
                "tags",
                BodyTemplate::List(vec![
                    leaf("sms", 35, 14, "targets.hubspot.body.tags[0]"),
                    number(3),
                    BodyTemplate::Bool(false),
                ]),
            ),
        ])),
        auth: Some(CrmAuth::Bearer("pat-na1-hubS3cret".into())),
    };
    assert_eq!(crm(FULL, "hubspot"), expected);
}

#[test]
fn salesforce_like_target_has_a_url_template_and_oauth2() {
    let header = |name: &str, value: TemplateSource| {
        (
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            value,
        )
    };
    let expected = CrmSettings {
        method: http::Method::PATCH,
        // `${SF_DOMAIN}` is expanded; the `{{ }}` part is left to rendering.
        url: tpl(
            "https://acme.my.salesforce.com/services/data/v62.0/sobjects/Contact/TextUs_Id__c/{{ event.contact.id | replace(\"/contacts/\", \"\") }}",
            39,
            10,
            "targets.salesforce.url",
        ),
        headers: vec![
            header(
                "sforce-auto-assign",
                tpl(
                    "FALSE",
                    41,
                    27,
                    "targets.salesforce.headers.Sforce-Auto-Assign",
                ),
            ),
            header(
                "x-trace",
                tpl(
                    "{{ meta.id }}",
                    42,
                    16,
                    "targets.salesforce.headers.X-Trace",
                ),
            ),
        ],
        body: Some(map(vec![
            (
                "LastName",
                leaf(
                    "{{ event.contact.lastName }}",
                    49,
                    23,
                    "targets.salesforce.body.LastName",
                ),
            ),
            (
                "MobilePhone",
                leaf(
                    "{{ event.contact.phoneNumber }}",
                    49,
                    68,
                    "targets.salesforce.body.MobilePhone",
                ),
            ),
        ])),
        auth: Some(CrmAuth::OAuth2 {
            token_url: "https://login.salesforce.com/services/oauth2/token"
                .parse()
                .expect("url"),
            client_id: "3MVG9client".to_owned(),
            client_secret: "sfS3cret".into(),
            scope: Some("api".to_owned()),
        }),
    };
    assert_eq!(crm(FULL, "salesforce"), expected);
}

#[test]
fn basic_auth_and_lower_case_get() {
    let legacy = crm(FULL, "legacy");
    assert_eq!(legacy.method, http::Method::GET);
    assert_eq!(
        legacy.url,
        tpl(
            "http://127.0.0.1:9000/lookup?phone={{ event.conversation.phoneNumber | urlencode }}",
            53,
            10,
            "targets.legacy.url"
        )
    );
    assert_eq!(
        legacy.auth,
        Some(CrmAuth::Basic {
            username: "relay".to_owned(),
            password: "p4ssS3cret".into(),
        })
    );
    assert_eq!(legacy.body, None);
    assert!(legacy.headers.is_empty());
}

#[test]
fn crm_defaults_and_empty_oauth2_scope() {
    let yaml = with_target(
        "    kind: crm\n    url: https://x.example/{{ meta.id }}\n    auth:\n      oauth2: { token_url: \"https://auth.example/token\", client_id: c, client_secret: s, scope: \"${EMPTY}\" }\n",
    );
    let target = crm(&yaml, "t");
    assert_eq!(target.method, http::Method::POST);
    assert_eq!(target.body, None);
    let Some(CrmAuth::OAuth2 { scope, .. }) = target.auth else {
        panic!("oauth2 expected")
    };
    assert_eq!(scope, None);
    let config = load(&yaml).expect("valid config");
    assert_eq!(config.targets[0].rate_limit, None);
}

#[test]
fn routes_keep_their_condition() {
    let config = load(FULL).expect("valid config");
    let when: Vec<Option<&TemplateSource>> =
        config.routes.iter().map(|r| r.when.as_ref()).collect();
    assert_eq!(
        when,
        [
            None,
            Some(&tpl("event.contact is defined", 59, 11, "routes[1].when")),
            None
        ]
    );
}

/// Line N of a template is on file line `line + N - 1`, whatever the style of scalar.
#[test]
fn block_scalar_templates_map_onto_file_lines() {
    let yaml = "source: { secrets: [x] }\n\
                targets:\n  \
                  t:\n    \
                    kind: crm\n    \
                    url: https://x.example\n    \
                    body:\n      \
                      literal: |\n        \
                        {{ a }}\n        \
                        {{ b }}\n      \
                      leading_empty: |+\n\n\n        \
                        {{ c }}\n      \
                      folded: >-  # a comment\n        \
                        {{ d }}\n      \
                      indented: |2\n          \
                        {{ e }}\n      \
                      list:\n        \
                        - |\n          \
                          {{ f }}\n\
                routes: [ { events: [\"*\"], to: [t] } ]\n";
    let file: Vec<&str> = yaml.lines().collect();
    let Some(BodyTemplate::Map(entries)) = crm(yaml, "t").body else {
        panic!("a mapping body")
    };
    let mut templates = Vec::new();
    for (key, value) in entries {
        match value {
            BodyTemplate::String(t) => templates.push((key, t)),
            BodyTemplate::List(items) => {
                for item in items {
                    let BodyTemplate::String(t) = item else {
                        panic!("a template")
                    };
                    templates.push((key.clone(), t));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let positions: Vec<(&str, usize, usize)> = templates
        .iter()
        .map(|(key, t)| (key.as_str(), t.line, t.column))
        .collect();
    assert_eq!(
        positions,
        [
            ("literal", 8, 9),
            ("leading_empty", 11, 9),
            ("folded", 15, 9),
            ("indented", 17, 9),
            ("list", 20, 11),
        ]
    );
    // Every non-empty line of each text is on the file line the formula gives.
    for (key, t) in &templates {
        for (n, text_line) in t.text.lines().enumerate() {
            let file_line = file[t.line + n - 1];
            assert!(
                file_line.contains(text_line.trim()),
                "{key}: template line {} is {text_line:?}, file line {} is {file_line:?}",
                n + 1,
                t.line + n
            );
        }
    }
    assert_eq!(templates[1].1.text, "\n\n{{ c }}\n");
    assert_eq!(templates[3].1.text, "  {{ e }}\n");
}

#[test]
fn slack_blocks_may_be_one_template() {
    let yaml = with_target(
        "    kind: slack\n    url: https://hooks.slack.com/x\n    templates:\n      contact.opted_out:\n        blocks: \"{{ event | opt_out_blocks }}\"\n",
    );
    let slack = slack(&yaml, "t");
    assert_eq!(
        slack.templates,
        [(
            "contact.opted_out".to_owned(),
            SlackTemplate {
                text: None,
                blocks: Some(leaf(
                    "{{ event | opt_out_blocks }}",
                    8,
                    17,
                    "targets.t.templates[\"contact.opted_out\"].blocks"
                )),
            }
        )]
    );
}

#[test]
fn debug_output_hides_webhook_urls_and_credentials() {
    let config = load(FULL).expect("valid config");
    let debug = format!("{config:?}");
    for secret in [
        "sl4ckS3cret",
        "/services/T0/B0/alerts",
        "pat-na1-hubS3cret",
        "sfS3cret",
        "p4ssS3cret",
        "FALSE",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    // What is not secret stays visible, for troubleshooting.
    for visible in [
        "hooks.slack.com",
        "3MVG9client",
        "username: \"relay\"",
        "sforce-auto-assign",
    ] {
        assert!(debug.contains(visible), "{visible} missing: {debug}");
    }
}
