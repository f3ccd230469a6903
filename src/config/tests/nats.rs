//! `storage.kind: nats`: a full and a minimal file, each rule's mistake with its location,
//! keys of one kind under the other, and secrets kept out of messages and `Debug`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CERT, KEY, assert_one, load, refused};
use crate::config::{NatsAuth, NatsStorage, NatsTls, Storage};

const TAIL: &str = "source: { secrets: [x] }\ntargets: { t: { kind: http, url: \"https://x.example\" } }\nroutes: [ { events: [\"*\"], to: [t] } ]\n";

/// A `.creds` file laid out as `nsc` writes one. The JWT and seed are placeholders: the config
/// checks the file's shape, the client checks the keys.
const CREDS: &str = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.placeholder\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\nSUAPLACEHOLDERPLACEHOLDERPLACEHOLDERPLACEHOLDERPLACEHOLDER\n------END USER NKEY SEED------\n";

fn storage_of(yaml: &str) -> NatsStorage {
    match load(&format!("{yaml}{TAIL}")) {
        Ok(config) => match config.storage {
            Storage::Nats(nats) => nats,
            other => panic!("expected a nats store, got {other:?}"),
        },
        Err(e) => panic!("{e}"),
    }
}

fn creds_file(dir: &Path) -> PathBuf {
    let path = dir.join("relay.creds");
    std::fs::write(&path, CREDS).expect("write creds");
    path
}

#[test]
fn a_full_nats_storage_is_read_as_written() {
    let yaml = format!(
        "storage:\n  kind: nats\n  urls: [ nats://nats-1:4222, \"tls://nats-2:4222\", nats-3:4222 ]\n  replicas: 5\n  prefix: relay_EU-1\n  publish_timeout: 750ms\n  auth: {{ token: \"${{NATS_TOKEN}}\" }}\n  tls: {{ ca: {CERT}, cert: {CERT}, key: {KEY} }}\n  dead_letter_retention: 3d\n"
    );
    assert_eq!(
        storage_of(&yaml),
        NatsStorage {
            urls: vec![
                "nats://nats-1:4222".to_owned(),
                "tls://nats-2:4222".to_owned(),
                // A bare HOST:PORT is what the client reads as nats://HOST:PORT.
                "nats://nats-3:4222".to_owned(),
            ],
            replicas: 5,
            prefix: "relay_EU-1".to_owned(),
            publish_timeout: Duration::from_millis(750),
            auth: NatsAuth::Token("nats-t0ken-S3cret".into()),
            tls: Some(NatsTls {
                ca: Some(PathBuf::from(CERT)),
                cert: Some(PathBuf::from(CERT)),
                key: Some(PathBuf::from(KEY)),
            }),
            dead_letter_retention: Duration::from_secs(3 * 86_400),
        }
    );
}

#[test]
fn a_minimal_nats_storage_gets_the_defaults() {
    let nats = storage_of("storage: { kind: nats, urls: [ \"nats://127.0.0.1:4222\" ] }\n");
    assert_eq!(
        nats,
        NatsStorage {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            replicas: 3,
            prefix: "textus-relay".to_owned(),
            publish_timeout: Duration::from_secs(5),
            auth: NatsAuth::None,
            tls: None,
            dead_letter_retention: Duration::from_secs(14 * 86_400),
        }
    );
    // `tls: {}` asks for TLS with the system's roots.
    let nats = storage_of("storage: { kind: nats, urls: [ \"nats://[::1]\" ], tls: {} }\n");
    assert_eq!(nats.tls, Some(NatsTls::default()));
}

#[test]
fn each_auth_form_is_read_and_relative_paths_stay_relative() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = creds_file(dir.path());
    let nats = storage_of(&format!(
        "storage: {{ kind: nats, urls: [ a:4222 ], auth: {{ credentials: \"{}\" }} }}\n",
        creds.display()
    ));
    assert_eq!(nats.auth, NatsAuth::Credentials(creds));
    let nats = storage_of(
        "storage: { kind: nats, urls: [ a:4222 ], auth: { user: relay, password: \"${NATS_PASSWORD}\" } }\n",
    );
    assert_eq!(
        nats.auth,
        NatsAuth::UserPassword {
            user: "relay".to_owned(),
            password: "nats-p4ss-S3cret".into()
        }
    );
    // Relative to the working directory, like every path in the file (this one is in the
    // repository, and tests run from its root).
    let nats = storage_of(
        "storage: { kind: nats, urls: [ a:4222 ], tls: { ca: tests/data/tls/localhost.crt } }\n",
    );
    assert_eq!(
        nats.tls.and_then(|t| t.ca),
        Some(PathBuf::from("tests/data/tls/localhost.crt"))
    );
}

#[test]
fn debug_output_hides_tokens_and_passwords() {
    for auth in [
        "{ token: \"${NATS_TOKEN}\" }",
        "{ user: relay, password: \"${NATS_PASSWORD}\" }",
    ] {
        let nats = storage_of(&format!(
            "storage: {{ kind: nats, urls: [ a:4222 ], auth: {auth} }}\n"
        ));
        let shown = format!("{nats:?}");
        assert!(!shown.contains("S3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn every_rule_is_reported_in_one_pass_with_its_location() {
    let yaml = "storage:
  kind: nats
  urls: [ \"http://a:4222\", \"nats://\", \"ws://b:80\", \"nats://c:4222/x\", \"nats://c:4222\", \"nats://c:4222\", \"nats://d:0\" ]
  replicas: 7
  prefix: textus.relay
  publish_timeout: 0s
  auth: { token: \"${EMPTY}\" }
  tls: { cert: /nonexistent/client.pem }
  max_bytes: 1GiB
  dead_letter_retention: 0s
";
    assert_eq!(
        refused(&format!("{yaml}{TAIL}")),
        [
            "relay.yaml:3:11: storage.urls[0]: invalid server URL \"http://a:4222\" (scheme `http`; expected nats:// or tls://)",
            "relay.yaml:3:28: storage.urls[1]: invalid server URL \"nats://\" (no host)",
            "relay.yaml:3:39: storage.urls[2]: invalid server URL \"ws://b:80\" (WebSocket is not supported; use nats:// or tls://)",
            "relay.yaml:3:52: storage.urls[3]: invalid server URL \"nats://c:4222/x\" (a NATS server URL has no path, query or fragment)",
            "relay.yaml:3:88: storage.urls[5]: the same server as storage.urls[4]",
            "relay.yaml:3:105: storage.urls[6]: invalid server URL \"nats://d:0\" (port 0)",
            "relay.yaml:4:13: storage.replicas: invalid replicas \"7\" (expected a whole number from 1 to 5; JetStream keeps at most 5 copies)",
            "relay.yaml:5:11: storage.prefix: invalid prefix \"textus.relay\" (letters, digits, `-` and `_` only: it starts JetStream stream, consumer and bucket names, which cannot hold `.`, `*`, `>`, `/` or spaces)",
            "relay.yaml:6:20: storage.publish_timeout: invalid duration \"0s\" (must be greater than zero)",
            "relay.yaml:7:18: storage.auth.token: secret is empty",
            "relay.yaml:8:16: storage.tls.cert: cannot read \"/nonexistent/client.pem\": No such file or directory (os error 2)",
            "relay.yaml:9:3: storage.max_bytes: a key of `kind: sqlite`, and this storage is `kind: nats`",
            "relay.yaml:10:26: storage.dead_letter_retention: invalid duration \"0s\" (must be greater than zero)",
        ]
    );
}

#[test]
fn urls_need_a_server_and_no_credentials() {
    assert_one(
        &format!("storage: {{ kind: nats }}\n{TAIL}"),
        "relay.yaml:1:10: storage.urls: ",
        "missing required key `urls`",
    );
    assert_one(
        &format!("storage: {{ kind: nats, urls: [] }}\n{TAIL}"),
        "relay.yaml:1:30: storage.urls: ",
        "at least one server URL is required",
    );
    // The password is never repeated, not even in the message about it.
    let lines = refused(&format!(
        "storage: {{ kind: nats, urls: [ \"nats://relay:hunter2@a:4222\" ] }}\n{TAIL}"
    ));
    assert_eq!(
        lines,
        [
            "relay.yaml:1:32: storage.urls[0]: a server URL must not hold a user, password or token (it would show in logs and in `check`): set storage.auth instead"
        ]
    );
}

#[test]
fn replicas_prefix_and_timeout_have_bounds() {
    let cases = [
        ("replicas: 0", "1:49: storage.replicas: ", "from 1 to 5"),
        (
            "prefix: \"\"",
            "1:47: storage.prefix: ",
            "(must not be empty)",
        ),
        (
            "prefix: a-very-long-prefix-for-jetstream-names",
            "1:47: storage.prefix: ",
            "at most 32 characters",
        ),
        (
            "prefix: \"a b\"",
            "1:47: storage.prefix: ",
            "letters, digits",
        ),
        (
            "publish_timeout: 2m",
            "1:56: storage.publish_timeout: ",
            "at most 60s",
        ),
        (
            "publish_timeout: soon",
            "1:56: storage.publish_timeout: ",
            "expected a number and a unit",
        ),
    ];
    for (key, at, fragment) in cases {
        assert_one(
            &format!("storage: {{ kind: nats, urls: [ a:1 ], {key} }}\n{TAIL}"),
            &format!("relay.yaml:{at}"),
            fragment,
        );
    }
}

#[test]
fn auth_takes_exactly_one_form() {
    let at =
        |auth: &str| format!("storage:\n  kind: nats\n  urls: [ a:1 ]\n  auth: {auth}\n{TAIL}");
    assert_one(
        &at("{}"),
        "relay.yaml:4:9: storage.auth: ",
        "expected one of: credentials, token, or user and password",
    );
    assert_eq!(
        refused(&at("{ token: t, user: u, password: p, credentials: /x }")),
        [
            "relay.yaml:4:21: storage.auth.user: only one auth form is allowed (`token` is set at line 4)",
            "relay.yaml:4:43: storage.auth.credentials: only one auth form is allowed (`token` is set at line 4)",
            // Every form is still read, so its own mistakes show in the same pass.
            "relay.yaml:4:56: storage.auth.credentials: cannot read \"/x\": No such file or directory (os error 2)",
        ]
    );
    assert_one(
        &at("{ user: relay }"),
        "relay.yaml:4:9: storage.auth.password: ",
        "missing required key `password`",
    );
    assert_one(
        &at("{ password: \"${NATS_PASSWORD}\" }"),
        "relay.yaml:4:9: storage.auth.user: ",
        "missing required key `user`",
    );
    assert_one(
        &at("{ bearer: t }"),
        "relay.yaml:4:11: storage.auth.bearer: ",
        "unknown key (expected one of: credentials, token, user, password)",
    );
}

#[test]
fn credentials_and_tls_files_are_checked_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_creds = dir.path().join("user.creds");
    std::fs::write(&not_creds, "just a token\n").expect("write");
    let at = |key: &str| format!("storage:\n  kind: nats\n  urls: [ a:1 ]\n  {key}\n{TAIL}");
    assert_one(
        &at(&format!(
            "auth: {{ credentials: \"{}\" }}",
            not_creds.display()
        )),
        "relay.yaml:4:24: storage.auth.credentials: ",
        "is not a NATS credentials file",
    );
    assert_one(
        &at("auth: { credentials: /nonexistent/user.creds }"),
        "relay.yaml:4:24: storage.auth.credentials: ",
        "cannot read \"/nonexistent/user.creds\"",
    );
    assert_one(
        &at(&format!("tls: {{ key: {KEY} }}")),
        "relay.yaml:4:15: storage.tls.key: ",
        "`key` needs `cert`",
    );
    assert_one(
        &at(&format!("tls: {{ cert: {CERT} }}")),
        "relay.yaml:4:16: storage.tls.cert: ",
        "`cert` needs `key`",
    );
    assert_one(
        &at(&format!("tls: {{ ca: \"{}\" }}", not_creds.display())),
        "relay.yaml:4:14: storage.tls.ca: ",
        "holds no certificate",
    );
    let other_key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/other.key");
    assert_one(
        &at(&format!("tls: {{ cert: {CERT}, key: {other_key} }}")),
        "relay.yaml:4:",
        "does not fit the certificate",
    );
}

#[test]
fn keys_of_one_kind_under_the_other_say_where_they_belong() {
    assert_eq!(
        refused(&format!(
            "storage:\n  kind: nats\n  urls: [ a:1 ]\n  path: ./relay.db\n  min_free: 5%\n  target_share: 50%\n  colour: blue\n{TAIL}"
        )),
        [
            "relay.yaml:4:3: storage.path: a key of `kind: sqlite`, and this storage is `kind: nats`",
            "relay.yaml:5:3: storage.min_free: a key of `kind: sqlite`, and this storage is `kind: nats`",
            "relay.yaml:6:3: storage.target_share: a key of `kind: sqlite`, and this storage is `kind: nats`",
            "relay.yaml:7:3: storage.colour: unknown key (expected one of: kind, urls, replicas, prefix, publish_timeout, auth, tls, dead_letter_retention)",
        ]
    );
    assert_eq!(
        refused(&format!("storage:\n  urls: [ a:1 ]\n  replicas: 1\n{TAIL}")),
        [
            "relay.yaml:2:3: storage.urls: a key of `kind: nats`, and this storage is `kind: sqlite`, the default",
            "relay.yaml:3:3: storage.replicas: a key of `kind: nats`, and this storage is `kind: sqlite`, the default",
        ]
    );
    assert_one(
        &format!("storage: {{ kind: sqlite, auth: {{ token: t }} }}\n{TAIL}"),
        "relay.yaml:1:26: storage.auth: ",
        "a key of `kind: nats`, and this storage is `kind: sqlite`",
    );
}

#[test]
fn secrets_never_appear_in_messages() {
    // Every other key wrong, the secrets right: the report names keys, never their values.
    let yaml = format!(
        "storage:\n  kind: nats\n  urls: [ \"nats://relay:${{NATS_PASSWORD}}@a:1\" ]\n  replicas: x\n  auth: {{ user: relay, password: \"${{NATS_PASSWORD}}\", token: \"${{NATS_TOKEN}}\" }}\n{TAIL}"
    );
    let text = refused(&yaml).join("\n");
    assert!(text.contains("storage.urls[0]"), "{text}");
    assert!(text.contains("storage.auth.token"), "{text}");
    assert!(!text.contains("S3cret"), "{text}");
}
