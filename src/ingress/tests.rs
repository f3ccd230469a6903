//! How often a body is parsed on its way from ingress to templated targets, counted on a real
//! SQLite store and real targets sending to a loopback receiver: once per request (envelope,
//! `when` condition, order key and every handed-over delivery share it), once per claim.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{IngressConfig, prepare};
use crate::app::build::{self, Built};
use crate::config::{Config, TargetId};
use crate::event::parses;
use crate::store::sqlite::SqliteStore;
use crate::store::{Ingested, Job, Queue};
use crate::support::sink::{Reply, Sink};
use crate::targets::Outcome;

const LEASE: Duration = Duration::from_secs(60);

/// A Slack target with a template, a CRM target, a plain http target, a `when` condition
/// and an order key: every reader of the event.
fn config(sink: &Sink) -> String {
    format!(
        r#"
source: {{ secrets: [s] }}
targets:
  chat:
    kind: slack
    url: "{slack}"
    templates:
      "*": {{ text: "{{{{ event.message.body }}}}" }}
  crm:
    kind: crm
    method: POST
    url: "{crm}"
    ordering: {{ key: "{{{{ event.conversation.id }}}}" }}
    body: {{ note: "{{{{ event.message.body }}}}" }}
  plain: {{ kind: http, url: "{plain}" }}
routes:
  - events: [message.received]
    when: "event.message.direction == 'in'"
    to: [chat, crm, plain]
"#,
        slack = sink.url("/slack"),
        crm = sink.url("/crm"),
        plain = sink.url("/plain"),
    )
}

fn compile(yaml: &str) -> (IngressConfig, Vec<Built>) {
    let config =
        Config::from_yaml_str(yaml, Path::new("test.yaml"), &|_| None).expect("valid config");
    let mut compiled = build::compile(&config).expect("templates compile");
    let built = build::targets(&config, &mut compiled).expect("targets build");
    let ingress = IngressConfig {
        source: config.source.clone(),
        router: compiled.router,
    };
    (ingress, built)
}

fn body(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","action":"message.received","conversation":{{"id":"/conversations/1"}},"message":{{"direction":"in","body":"hello"}}}}"#
    ))
}

/// Delivers `job` with the target named `name` and says that it went out.
async fn deliver(built: &[Built], name: &str, job: &Job) {
    let target = built
        .iter()
        .find(|b| b.config.name.as_str() == name)
        .expect("target built");
    let outcome = target.target.deliver(job, "msg_1").await;
    assert!(
        matches!(outcome, Outcome::Delivered { .. }),
        "{name}: {outcome:?}"
    );
}

#[tokio::test]
async fn a_body_is_parsed_once_per_request_and_once_per_claim() {
    let sink = Sink::start(Vec::new(), Reply::Status(200))
        .await
        .expect("sink");
    let (ingress, built) = compile(&config(&sink));
    assert!(ingress.router.parses_event());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("relay.db")).expect("open");

    // Handed over as stored: the parse of the request is the only one.
    let chat = store.handoff(&TargetId(Arc::from("chat")));
    chat.offer(4, LEASE);
    let before = parses();
    let (event, targets) = prepare(&ingress, body("/e/1"), String::new(), SystemTime::now());
    assert_eq!(targets, 3, "the condition passed");
    assert_eq!(
        store.ingest(event).await.expect("ingest"),
        Ingested::Accepted
    );
    let jobs = store
        .handoff(&TargetId(Arc::from("chat")))
        .next_jobs()
        .await;
    assert_eq!(jobs.len(), 1);
    deliver(&built, "chat", &jobs[0]).await;
    deliver(&built, "chat", &jobs[0]).await;
    assert_eq!(
        parses() - before,
        1,
        "envelope, condition, order key and Slack render"
    );
    chat.offer(0, LEASE);

    // Claimed from the store: one parse for the claim, however many renders read it.
    let crm = store
        .claim(&TargetId(Arc::from("crm")), 10, LEASE)
        .await
        .expect("claim")
        .jobs;
    assert_eq!(crm.len(), 1);
    let before = parses();
    deliver(&built, "crm", &crm[0]).await;
    deliver(&built, "crm", &crm[0]).await;
    assert_eq!(parses() - before, 1);

    // A plain http target sends the bytes as they came, and parses nothing.
    let plain = store
        .claim(&TargetId(Arc::from("plain")), 10, LEASE)
        .await
        .expect("claim")
        .jobs;
    let before = parses();
    deliver(&built, "plain", &plain[0]).await;
    assert_eq!(parses(), before);
    let sent = sink.received();
    let raw = sent
        .iter()
        .find(|r| r.path == "/plain")
        .expect("plain sent");
    assert_eq!(raw.body, body("/e/1"));
    let slack = sent
        .iter()
        .find(|r| r.path == "/slack")
        .expect("slack sent");
    assert!(String::from_utf8_lossy(&slack.body).contains("hello"));
}

#[tokio::test]
async fn without_templates_or_conditions_only_the_envelope_is_read() {
    let sink = Sink::start(Vec::new(), Reply::Status(200))
        .await
        .expect("sink");
    let yaml = format!(
        "source: {{ secrets: [s] }}\ntargets:\n  plain: {{ kind: http, url: \"{}\" }}\nroutes:\n  - events: [\"*\"]\n    to: [plain]\n",
        sink.url("/plain")
    );
    let (ingress, _) = compile(&yaml);
    assert!(!ingress.router.parses_event());
    let before = parses();
    let (event, targets) = prepare(&ingress, body("/e/2"), String::new(), SystemTime::now());
    assert_eq!((targets, event.event_id.as_str()), (1, "/e/2"));
    assert!(event.parsed.get().is_none());
    assert_eq!(parses() - before, 1);
}
