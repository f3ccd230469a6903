//! The deployment files (issue 7, parts 2 and 3) agree with the relay: every relay.yaml they
//! ship passes `check`, and the Kubernetes containers run what the image runs.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `check` on `yaml` with `env` and nothing else in the environment.
fn check(yaml: &str, env: &[(String, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("ERROR"), text)
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).expect("manifest");
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn kubernetes_env() -> Vec<(String, String)> {
    [
        ("TEXTUS_WEBHOOK_SECRET", "textus-k8s"),
        ("RELAY_ADMIN_TOKEN", "token"),
        ("TARGET_URL", "http://127.0.0.1:8080/textus"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

#[test]
fn the_configmaps_relay_yaml_passes_check() {
    let config_map = &documents("deploy/kubernetes/configmap.yaml")[0];
    let yaml = config_map["data"]["relay.yaml"]
        .as_str()
        .expect("data.relay.yaml");
    let (ok, out) = check(yaml, &kubernetes_env());
    assert!(ok, "{out}");
    // Without the Secret's values it does not start: the secret is required.
    let (ok, out) = check(yaml, &kubernetes_env()[2..]);
    assert!(!ok && out.contains("TEXTUS_WEBHOOK_SECRET"), "{out}");
}

#[test]
fn the_nats_relays_manifest_runs_several_relays_without_a_volume_on_a_valid_config() {
    let docs = documents("deploy/kubernetes/nats-relays.yaml");
    let yaml = docs[0]["data"]["relay.yaml"]
        .as_str()
        .expect("data.relay.yaml");
    let (ok, out) = check(yaml, &kubernetes_env());
    assert!(ok, "{out}");
    assert!(out.contains("store nats"), "{out}");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert!(
        deployment["spec"]["replicas"].as_u64() > Some(1),
        "several relays"
    );
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        !volumes.contains("persistentVolumeClaim"),
        "no state on disk: {volumes}"
    );
}

#[test]
fn the_systemd_sample_config_passes_check_with_the_sample_environment_file() {
    let env_file =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/systemd/env.example")).expect("env");
    let env: Vec<(String, String)> = env_file
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let yaml =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/systemd/relay.yaml")).expect("yaml");
    let (ok, out) = check(&yaml, &env);
    assert!(ok, "{out}");
}

#[test]
fn the_kubernetes_relay_containers_run_the_images_command() {
    let image = crate::container::read_dockerfile();
    for file in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/standalone.yaml",
    ] {
        let deployment = documents(file)
            .into_iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment");
        assert_eq!(
            deployment["spec"]["replicas"], 1,
            "{file}: the store is single-writer"
        );
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "{file}");
        let pod = &deployment["spec"]["template"]["spec"];
        let relay = pod["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "relay"))
            .expect("a relay container");
        // `args` replaces the image's CMD and keeps its ENTRYPOINT.
        let args: Vec<String> = serde_json::from_value(relay["args"].clone()).expect("args");
        assert_eq!(args, image.command[1..], "{file}");
        assert_eq!(
            relay["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{file}"
        );
        assert_eq!(
            relay["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{file}"
        );
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{file}");
    }
}
