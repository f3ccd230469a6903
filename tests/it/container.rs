//! The container image's runtime (issue 7, part 1), without a container engine: the binary runs
//! as the image's non-root user, with the image's exact ENTRYPOINT, CMD and HEALTHCHECK (read
//! from the Dockerfile, so they cannot drift apart) and the config the image copies, in a
//! folder laid out like the image's, with a `/data`-like volume owned by that user.
//!
//! Needs root (to switch user) and `setpriv` (util-linux, installed by scripts/prereqs): the test
//! is `#[ignore]`d and named `as_root_`, scripts/test runs it as root, and it fails without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use textus_relay::support::sink::{Reply, Sink};

use crate::support::*;

/// What the final stage of the Dockerfile says.
pub struct Image {
    uid: u32,
    gid: u32,
    /// ENTRYPOINT followed by CMD.
    pub command: Vec<String>,
    healthcheck: Vec<String>,
    /// `(source in the repository, path in the image)` of each COPY from the build context.
    copies: Vec<(String, String)>,
    /// `(path in the build stage, path in the image)` of each COPY --from.
    from_build: Vec<(String, String)>,
    volume: String,
    workdir: String,
}

fn json_args(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON array: {text}: {e}"))
}

pub fn read_dockerfile() -> Image {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let stage = &lines[last_from + 1..];
    let one = |instruction: &str| -> &str {
        let found: Vec<&str> = stage
            .iter()
            .filter_map(|l| l.strip_prefix(instruction))
            .collect();
        assert_eq!(found.len(), 1, "one {instruction}in the final stage");
        found[0]
    };
    let user = one("USER ");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let healthcheck = one("HEALTHCHECK ");
    let (_, probe) = healthcheck
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let mut command = json_args(one("ENTRYPOINT "));
    command.extend(json_args(one("CMD ")));
    let mut copies = Vec::new();
    let mut from_build = Vec::new();
    for copy in stage.iter().filter_map(|l| l.strip_prefix("COPY ")) {
        let words: Vec<&str> = copy.split_whitespace().collect();
        let from = words.iter().any(|w| w.starts_with("--from="));
        let paths: Vec<String> = words
            .iter()
            .filter(|w| !w.starts_with("--"))
            .map(|w| w.to_string())
            .collect();
        assert_eq!(paths.len(), 2, "COPY SRC DEST: {copy}");
        let pair = (paths[0].clone(), paths[1].clone());
        if from {
            from_build.push(pair);
        } else {
            copies.push(pair);
        }
    }
    Image {
        uid: uid.parse().expect("numeric uid"),
        gid: gid.parse().expect("numeric gid"),
        command,
        healthcheck: json_args(probe),
        copies,
        from_build,
        volume: json_args(one("VOLUME "))[0].clone(),
        workdir: one("WORKDIR ").to_owned(),
    }
}

/// Why the test cannot run here, if it cannot.
fn cannot_switch_user() -> Option<&'static str> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Some("not running as root, so cannot switch to the image's user");
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        return Some("setpriv (util-linux) is not installed");
    }
    None
}

/// The image's file system, rooted in a temporary folder: each image path maps to a path here.
struct Root {
    dir: tempfile::TempDir,
    image: Image,
}

impl Root {
    fn path(&self, in_image: &str) -> PathBuf {
        self.dir.path().join(in_image.trim_start_matches('/'))
    }

    /// An argument with every image path it mentions mapped into the root.
    fn arg(&self, arg: &str) -> String {
        let paths = self
            .image
            .copies
            .iter()
            .chain(&self.image.from_build)
            .map(|(_, dest)| dest.as_str())
            .chain([self.image.volume.as_str()]);
        for path in paths {
            if arg == path || arg.starts_with(&format!("{path}/")) {
                return format!("{}{}", self.dir.path().display(), arg);
            }
        }
        arg.to_owned()
    }

    /// `setpriv` to the image's user, running an image command line.
    fn command(&self, args: &[String], env: &[(&str, String)]) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.image.uid))
            .arg(format!("--regid={}", self.image.gid))
            .arg("--clear-groups")
            .args(args.iter().map(|a| self.arg(a)))
            .current_dir(self.path(&self.image.workdir))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)));
        command
    }
}

/// Lays out the image: the binary and the config where the image has them, and the volume
/// owned by the image's user (0700, as the build stage makes it).
fn build_root(image: Image, listen: u16, admin: u16) -> Root {
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    let root = Root { dir, image };
    let binary = root
        .image
        .from_build
        .iter()
        .find(|(src, _)| src.ends_with("/textus-relay"))
        .map(|(_, dest)| root.path(dest))
        .expect("the image copies the binary");
    make_dirs(&root, binary.parent().expect("folder"));
    std::fs::hard_link(BIN, &binary)
        .or_else(|_| std::fs::copy(BIN, &binary).map(drop))
        .expect("binary into the image root");
    for (src, dest) in &root.image.copies {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(src))
            .expect("copied file");
        // The image's fixed ports are taken by nothing in a container; here, free ones.
        let text = text
            .replace(":8443", &format!(":{listen}"))
            .replace(":9090", &format!(":{admin}"))
            .replace(
                &format!("{}/", root.image.volume),
                &root.arg(&format!("{}/", root.image.volume)),
            );
        let dest = root.path(dest);
        make_dirs(&root, dest.parent().expect("folder"));
        std::fs::write(&dest, text).expect("write");
        set_mode(&dest, 0o644);
    }
    let volume = root.path(&root.image.volume);
    make_dirs(&root, &volume);
    set_mode(&volume, 0o700);
    std::os::unix::fs::chown(&volume, Some(root.image.uid), Some(root.image.gid)).expect("chown");
    root
}

fn make_dirs(root: &Root, dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut d = dir;
    while d != root.dir.path() {
        set_mode(d, 0o755);
        d = d.parent().expect("inside the root");
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn owner(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("exists").uid()
}

// Switching to the image's user needs root: `#[ignore]`d and named `as_root_`, run explicitly
// by scripts/test as root (as CI does), and failing rather than skipping when it cannot run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: runs the image command as the image's user (scripts/test runs it as root)"]
async fn as_root_the_image_command_runs_as_its_non_root_user_and_serves() {
    if let Some(reason) = cannot_switch_user() {
        panic!("cannot run: {reason}");
    }
    let image = read_dockerfile();
    assert_ne!(image.uid, 0, "the image runs as a non-root user");
    let sink = Sink::start(vec![], Reply::Status(200)).await.expect("sink");
    let (listen, admin) = (free_port().port(), free_port().port());
    let root = build_root(image, listen, admin);
    let env = [
        ("TEXTUS_WEBHOOK_SECRET", SECRET.to_owned()),
        ("RELAY_ADMIN_TOKEN", "container-admin-token".to_owned()),
        ("TARGET_URL", sink.url("/app")),
    ];
    let log = root.dir.path().join("relay.log");
    let mut relay = root
        .command(&root.image.command, &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start the image command");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The HEALTHCHECK, as the image's user, until it passes.
    let probe = eventually("the image's HEALTHCHECK to pass", async || {
        assert!(
            matches!(relay.try_wait(), Ok(None)),
            "the relay exited; log:\n{}",
            read_log()
        );
        let probe = root
            .command(&root.image.healthcheck, &env)
            .output()
            .expect("run the health check");
        if probe.status.success() {
            Ok(probe)
        } else {
            Err(format!(
                "{}\nlog:\n{}",
                String::from_utf8_lossy(&probe.stderr),
                read_log()
            ))
        }
    })
    .await;
    assert!(String::from_utf8_lossy(&probe.stdout).contains("/healthz answered 200"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.id())).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == root.image.uid.to_string()),
        "{uid_line}"
    );

    let body = fixture("message.received");
    textus_relay::install_crypto();
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{listen}/webhooks/textus"))
        .header(
            "X-TextUs-Signature",
            textus_relay::ingress::signature::sign(SECRET, &body),
        )
        .body(body.clone())
        .timeout(PATIENCE)
        .send()
        .await
        .expect("relay answers");
    assert_eq!(answer.status().as_u16(), 200, "log:\n{}", read_log());
    let seen = sink
        .wait_for(1, PATIENCE)
        .await
        .expect("delivered to TARGET_URL");
    assert_eq!(seen[0].body, body);

    // The store is on the volume, owned by the image's user; logs are JSON (the CMD's flag).
    let store = root.path(&root.image.volume).join("relay.db");
    assert_eq!(owner(&store), root.image.uid);
    let first: Value = serde_json::from_str(read_log().lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("JSON logs: {e}\n{}", read_log()));
    assert!(first.get("level").is_some(), "{first}");

    signal(relay.id(), "-TERM");
    let exit = relay.wait().expect("exits");
    assert!(exit.success(), "{exit:?}\n{}", read_log());
    let probe = root
        .command(&root.image.healthcheck, &env)
        .output()
        .expect("probe");
    assert_eq!(probe.status.code(), Some(1), "unhealthy once stopped");
}
