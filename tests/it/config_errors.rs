//! `textus-relay check`: valid configs are described, mistakes exit 2 naming file, line and key.

use crate::support::*;

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    let path = path.to_string_lossy().into_owned();
    cli(&["check", "--config", &path])
}

const VALID: &str = r#"source:
  secrets: [s]
targets:
  w:
    kind: http
    url: "http://127.0.0.1:9/w"
routes:
  - events: [message.received, "contact.*"]
    to: [w]
"#;

#[test]
fn a_valid_config_shows_which_events_reach_which_targets() {
    let (code, out, err) = check(VALID);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("message.received"), "{out}");
    let line = |ty: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(ty))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("message.received").ends_with("-> w"), "{out}");
    assert!(line("contact.opted_out").ends_with("-> w"), "{out}");
    assert!(line("message.failed").contains("none"), "{out}");
}

#[test]
fn each_kind_of_mistake_exits_2_with_its_line_and_key() {
    let cases: [(&str, String, &str, &str); 6] = [
        (
            "unknown key",
            VALID.replace("  secrets: [s]\n", "  secrets: [s]\n  secretz: [t]\n"),
            ":3:",
            "secretz",
        ),
        (
            "bad duration",
            VALID.replace(
                "    kind: http\n",
                "    kind: http\n    timeout: 10 seconds\n",
            ),
            ":6:",
            "timeout",
        ),
        (
            "unknown target",
            VALID.replace("    to: [w]", "    to: [w, nowhere]"),
            ":9:",
            "nowhere",
        ),
        (
            "bad pattern",
            VALID.replace("\"contact.*\"", "\"con*\""),
            ":8:",
            "con*",
        ),
        (
            "empty secrets",
            VALID.replace("  secrets: [s]", "  secrets: []"),
            ":2:",
            "secrets",
        ),
        (
            "bad url",
            VALID.replace("http://127.0.0.1:9/w", "ftp://x/w"),
            ":6:",
            "url",
        ),
    ];
    for (what, yaml, line, key) in cases {
        let (code, out, err) = check(&yaml);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(err.contains("relay.yaml"), "{what}: {err}");
        assert!(err.contains(line), "{what}: expected line {line} in {err}");
        assert!(err.contains(key), "{what}: expected {key} in {err}");
    }
}

#[test]
fn a_missing_environment_variable_is_named() {
    let (code, _, err) = check(&VALID.replace("[s]", "[\"${TEXTUS_RELAY_TEST_UNSET_VAR}\"]"));
    assert_eq!(code, 2);
    assert!(err.contains("TEXTUS_RELAY_TEST_UNSET_VAR"), "{err}");
    assert!(err.contains(":2:"), "{err}");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let (code, _, err) = cli(&["check", "--config", "/nonexistent/relay.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/relay.yaml"), "{err}");
}

#[test]
fn sign_prints_what_textus_would_send() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .args(["sign", "--secret", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&fixture("message.received"))
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let sigs = std::fs::read_to_string(format!(
        "{}/fixtures/signatures.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("signatures");
    let expected = sigs
        .lines()
        .find(|l| l.starts_with("message.received.json"))
        .and_then(|l| l.split('\t').nth(1))
        .expect("listed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
}

#[test]
fn the_shipped_relay_yaml_is_valid_once_its_secrets_are_set() {
    let out = std::process::Command::new(BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/relay.yaml"),
        ])
        .env("TEXTUS_WEBHOOK_SECRET", "textus-abcdefgh12345678")
        .env(
            "WAREHOUSE_SIGNING_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("contact.opted_out      -> warehouse, compliance"),
        "{stdout}"
    );
}

#[test]
fn run_refuses_a_bad_config_with_exit_2_before_binding_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, VALID.replace("kind: http", "kind: carrier-pigeon")).expect("write");
    let (code, _, err) = cli(&["run", "--config", &path.to_string_lossy()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(":5:") && err.contains("carrier-pigeon"),
        "{err}"
    );
}

#[test]
fn an_admin_api_open_to_the_network_without_a_token_is_refused() {
    let yaml = format!("admin: {{ address: \"0.0.0.0:9\" }}\n{VALID}");
    let (code, _, err) = check(&yaml);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(":1:") && err.contains("admin"), "{err}");
    assert!(err.contains("token"), "{err}");
    let with_token = format!("admin: {{ address: \"0.0.0.0:9\", token: t0ken }}\n{VALID}");
    assert_eq!(check(&with_token).0, 0);
}

/// `storage` of `kind: nats` in front of [`VALID`]; the token comes from `NATS_TOKEN`.
fn nats_config(storage: &str) -> String {
    format!("storage:\n  kind: nats\n{storage}{VALID}")
}

/// `textus-relay ARGS` on a config file holding `yaml`, with `NATS_TOKEN` set.
fn with_nats_token(args: &[&str], yaml: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    std::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("NATS_TOKEN", "nats-S3cret-token")
        .output()
        .expect("run textus-relay")
}

#[test]
fn check_shows_a_nats_store_without_its_secrets() {
    let yaml = nats_config(
        "  urls: [ nats://nats-1:4222, nats://nats-2:4222, nats-3:4222 ]\n  auth: { token: \"${NATS_TOKEN}\" }\n",
    );
    let out = with_nats_token(&["check"], &yaml);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("store nats (3 servers, replicas 3, prefix textus-relay, token)"),
        "{stdout}"
    );
    assert!(!stdout.contains("S3cret"), "{stdout}");
}

#[test]
fn check_refuses_a_bad_nats_store_naming_each_mistake() {
    let yaml = nats_config(
        "  urls: [ \"nats://relay:${NATS_TOKEN}@nats-1:4222\" ]\n  replicas: 9\n  prefix: textus.relay\n  path: ./data/relay.db\n  auth: { token: \"${NATS_TOKEN}\", user: relay }\n",
    );
    let out = with_nats_token(&["check"], &yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "relay.yaml:3:11: storage.urls[0]: a server URL must not hold a user",
        "relay.yaml:4:13: storage.replicas: invalid replicas \"9\"",
        "relay.yaml:5:11: storage.prefix: invalid prefix \"textus.relay\"",
        "relay.yaml:6:3: storage.path: a key of `kind: sqlite`, and this storage is `kind: nats`",
        "relay.yaml:7:9: storage.auth.password: missing required key `password`",
        "relay.yaml:7:35: storage.auth.user: only one auth form is allowed",
    ] {
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 6, "{stderr}");
    assert!(!stderr.contains("S3cret"), "{stderr}");
    let unknown = with_nats_token(
        &["check"],
        &VALID.replace("source:", "storage: { kind: redis }\nsource:"),
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("relay.yaml:1:18: storage.kind: unknown storage kind \"redis\" (expected one of: sqlite, nats)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn run_with_unreachable_nats_servers_exits_1_naming_them() {
    let listen = free_port();
    let admin = free_port();
    // A port nothing listens on.
    let nats = free_port();
    let yaml = format!(
        "listen: {{ address: \"{listen}\" }}\nadmin: {{ address: \"{admin}\" }}\n{}",
        nats_config(&format!("  urls: [ nats://{nats} ]\n"))
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    // It must fail at once; a relay that started instead is killed when dropped (the wait
    // gives up), and the test fails.
    let child = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("run with kind: nats is still running")
        .expect("output");
    let status = out.status;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("connecting to nats://{nats}")),
        "{stderr}"
    );
    // Nothing was bound: the ports are free.
    std::net::TcpListener::bind(listen).expect("the listen port is free");
    std::net::TcpListener::bind(admin).expect("the admin port is free");
}
