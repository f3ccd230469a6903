//! The commands a new user runs first: `demo`, and `check` on templated targets.

use crate::support::*;

#[test]
fn the_demo_runs_end_to_end() {
    let (code, out, err) = cli(&["demo"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("forged signature       401"), "{out}");
    assert!(out.contains("\"status\":\"duplicate\""), "{out}");
    assert_eq!(out.matches("signature verified").count(), 8, "{out}");
    assert_eq!(
        out.matches("answered 503, relay retries").count(),
        2,
        "{out}"
    );
    assert!(out.contains("&lt;see pic&gt; &amp; thanks"), "{out}");
    assert!(out.contains("\"firstname\":\"Cordell\""), "{out}");
}

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    cli(&["check", "--config", &path.to_string_lossy()])
}

const CRM: &str = "source: { secrets: [s] }
targets:
  crm:
    kind: crm
    url: \"https://api.example.com/contacts/{{ event.contact.id | replace('/contacts/', '') }}\"
    body:
      name: \"{{ event.contact.name }}\"
      email: \"{{ event.contact.data.email }}\"
      ok: \"{{ event.contact.missing_field }}\"
routes:
  - events: [contact.created, contact.opted_out]
    to: [crm]
";

#[test]
fn check_renders_templates_against_the_samples_and_lists_empty_fields() {
    let (code, out, err) = check(CRM);
    assert_eq!(code, 0, "{out}{err}");
    let created = out
        .lines()
        .find(|l| l.contains("crm") && l.contains("contact.created") && l.contains("ok,"))
        .unwrap_or_default();
    assert!(
        created.contains("https://api.example.com/contacts/DQeeO69"),
        "{out}"
    );
    assert!(created.contains("empty fields: ok"), "{out}");
    let opted_out = out
        .lines()
        .find(|l| l.contains("crm") && l.contains("contact.opted_out") && l.contains("ok,"))
        .unwrap_or_default();
    assert!(opted_out.contains("empty fields: email, name, ok"), "{out}");
}

/// One target of each kind, every event routed to all three.
const EACH_KIND: &str = "source: { secrets: [s] }
targets:
  hook: { kind: http, url: \"https://ingest.example.com/textus\" }
  chat: { kind: slack, url: \"https://hooks.slack.com/services/T000/B000/s3cretPath\" }
  sync: { kind: crm, method: PATCH, url: \"https://api.example.com/c/{{ event.id }}\" }
routes:
  - events: [\"*\"]
    to: [hook, chat, sync]
";

#[test]
fn check_lists_each_target_by_kind_and_renders_only_the_templated_ones() {
    let (code, out, err) = check(EACH_KIND);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "    hook                 http  https://ingest.example.com/textus\n",
        "    chat                 slack https://hooks.slack.com/…\n",
        "    sync                 crm   PATCH https://api.example.com/c/{{ event.id }}\n",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // The webhook URL is the Slack credential: check never prints its path.
    assert!(!out.contains("s3cretPath"), "{out}");
    let rendered = |name: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("    {name} ")) && l.contains(" ok, "))
            .count()
    };
    // Eight samples each for the two kinds that render templates; http sends events as they are.
    assert_eq!(
        (rendered("chat"), rendered("sync"), rendered("hook")),
        (8, 8, 0),
        "{out}"
    );
}

#[test]
fn a_template_syntax_error_exits_2_naming_its_line() {
    let broken = CRM.replace("{{ event.contact.name }}", "{{ event.contact.name }");
    let (code, out, err) = check(&broken);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("relay.yaml:7:"), "{err}");
    assert!(err.contains("targets.crm.body.name"), "{err}");
}

#[test]
fn an_unknown_filter_exits_2_naming_its_line() {
    let broken = CRM.replace(
        "{{ event.contact.name }}",
        "{{ event.contact.name | shout }}",
    );
    let (code, _, err) = check(&broken);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("relay.yaml:7:") && err.contains("shout"),
        "{err}"
    );
}

#[test]
fn a_url_that_renders_empty_is_an_error() {
    let broken = CRM.replace(
        "\"https://api.example.com/contacts/{{ event.contact.id | replace('/contacts/', '') }}\"",
        "\"https://{{ event.nothing }}\"",
    );
    let (code, out, err) = check(&broken);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("ERROR: the url renders as"), "{out}");
}

#[test]
fn every_example_config_passes_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .env("TEXTUS_WEBHOOK_SECRET", "textus-x")
            .env("HUBSPOT_TOKEN", "pat-x")
            .env("SF_DOMAIN", "example.my.salesforce.com")
            .env("SF_CLIENT_ID", "id")
            .env("SF_CLIENT_SECRET", "s")
            .env(
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T0/B0/x",
            )
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("ERROR"), "{}: {stdout}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 3, "hubspot, salesforce and slack examples");
}

/// `textus-relay schema | head -1` and the like: a reader that goes away is an error message
/// and exit 1, never a panic.
#[test]
fn output_to_a_closed_pipe_is_exit_1_not_a_panic() {
    for args in [
        &["schema"][..],
        &["completions", "bash"],
        &["schema", "--markdown"],
        &["sign", "--secret", "s"],
    ] {
        // The reader is gone before the command starts. (Dropping it after spawning raced: a
        // short output such as sign's could land in the pipe buffer first, exit 0.)
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::process::Command::new(BIN)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains("standard output"), "{args:?}: {stderr}");
    }
}
