//! `listen.tls` (issue 5, item 5): HTTPS with a real chain (a CA made at test time and a leaf
//! it signed), and wrong files refused at startup with the file named (exit 2).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use textus_relay::ingress::signature;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

/// A CA, and a leaf for localhost and 127.0.0.1 that it signed, written as PEM files.
pub struct Chain {
    pub ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn make_chain(dir: &Path) -> Chain {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "textus-relay test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");
    let cert = dir.join("relay.crt");
    let key = dir.join("relay.key");
    // The chain as a server sends it: leaf first, then the CA that signed it.
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).expect("write cert");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
    Chain {
        ca_pem: ca.pem(),
        cert,
        key,
    }
}

/// A relay in `dir` serving HTTPS with a fresh chain (`rest` as for [`TestRelay::start`]).
pub async fn relay_with_tls(dir: &Path, rest: &str) -> (TestRelay, Chain) {
    let chain = make_chain(dir);
    let listen_extra = format!(
        ", tls: {{ cert: \"{}\", key: \"{}\" }}",
        chain.cert.display(),
        chain.key.display()
    );
    let relay = TestRelay::launch_with(Layout {
        dir,
        store: &dir.join("relay.db"),
        listen_extra: &listen_extra,
        admin_extra: "",
        storage_extra: "",
        rest,
    })
    .await;
    (relay, chain)
}

fn rest(sink: &Sink) -> String {
    format!(
        "source: {{ secrets: [\"{SECRET}\"] }}\ntargets:\n{}routes:\n  - events: [\"*\"]\n    to: [t]\n",
        http_target("t", &sink.url("/t"), "")
    )
}

#[tokio::test]
async fn https_works_with_a_certificate_chain_from_a_private_ca() {
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, chain) = relay_with_tls(dir.path(), &rest(&sink)).await;

    let body = fixture("message.received");
    let ca = reqwest::Certificate::from_pem(chain.ca_pem.as_bytes()).expect("CA pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(PATIENCE)
        .build()
        .expect("client");
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/webhooks/textus", relay.listen.port());
        let answer = client
            .post(&url)
            .header("X-TextUs-Signature", signature::sign(SECRET, &body))
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}; log:\n{}", relay.log()));
        assert_eq!(answer.status().as_u16(), 200, "{url}");
    }
    sink.wait_for(1, PATIENCE).await.expect("delivered");

    // A client that does not trust the CA refuses the relay's certificate.
    let untrusting = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/webhooks/textus", relay.listen.port());
    assert!(untrusting.post(&url).body("{}").send().await.is_err());
    // And plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("client")
        .post(relay.url("/webhooks/textus"))
        .body("{}")
        .send()
        .await;
    if let Ok(answer) = plain {
        assert_eq!(answer.status().as_u16(), 400, "plain HTTP on the TLS port");
    }
}

/// `check` and `run` on a config whose `listen.tls` names `cert` and `key`.
fn both_commands(dir: &Path, cert: &Path, key: &Path) -> Vec<(i32, String)> {
    let config = dir.join("relay.yaml");
    let yaml = format!(
        r#"listen: {{ address: "{}", tls: {{ cert: "{}", key: "{}" }} }}
admin: {{ address: "{}" }}
storage: {{ kind: sqlite, path: "{}" }}
source: {{ secrets: ["{SECRET}"] }}
targets:
{}routes:
  - events: ["*"]
    to: [t]
"#,
        free_port(),
        cert.display(),
        key.display(),
        free_port(),
        dir.join("relay.db").display(),
        http_target("t", "http://127.0.0.1:9/t", "")
    );
    std::fs::write(&config, yaml).expect("config");
    let config = config.to_string_lossy().into_owned();
    ["check", "run"]
        .iter()
        .map(|command| {
            let (code, _, stderr) = cli(&[command, "--config", &config]);
            (code, stderr)
        })
        .collect()
}

#[test]
fn wrong_tls_files_are_config_errors_that_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = make_chain(dir.path());
    let missing = dir.path().join("missing.crt");
    let not_pem = dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let cases = [
        (&missing, &chain.key, "missing.crt"),
        (&chain.cert, &dir.path().join("missing.key"), "missing.key"),
        (&not_pem, &chain.key, "not-pem.crt"),
        (&chain.cert, &not_pem, "not-pem.crt"),
    ];
    for (cert, key, named) in cases {
        for (code, stderr) in both_commands(dir.path(), cert, key) {
            assert_eq!(code, 2, "{named}: {stderr}");
            assert!(
                stderr.contains(named) && stderr.contains("listen.tls."),
                "{named}: {stderr}"
            );
        }
    }
}
