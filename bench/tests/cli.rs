//! The command line of the real `textus-bench` binary: what `--help` says, usage errors, and
//! the last-value-wins rule `bench/run` relies on to pass the caller's arguments through.

use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_textus-bench"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_says_what_each_flag_does_and_its_default() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for (flag, says) in [
        ("--relay <BIN>", "The relay binary to measure"),
        (
            "--out <DIR>",
            "Folder for results.json, REPORT.md and latency.png",
        ),
        (
            "--connections <N>",
            "Keep-alive connections of the load generator [default: 32]",
        ),
        (
            "--phase-secs <S>",
            "Length of each timed phase, in seconds [default: 10]",
        ),
        (
            "--backlog <N>",
            "Events queued for a down target in the backlog scenario [default: 1000000]",
        ),
        (
            "--fill-budget-secs <S>",
            "Longest the backlog fill may take, in seconds [default: 150]",
        ),
        (
            "--drain-budget-secs <S>",
            "Longest the backlog drain may take, in seconds [default: 150]",
        ),
        (
            "--target-concurrency <N>",
            "`concurrency` of each http target in the relay's config [default: 32]",
        ),
        (
            "--wide-connections <N>",
            "Also measure ceiling and ingest with N connections",
        ),
        (
            "--drain-burst <EVENTS>",
            "Events of the burst whose 3 deliveries each are the backlog of drain-ack [default: 33334]",
        ),
        ("--only <SCENARIO,...>", "Run only these scenarios"),
        (
            "--only <SCENARIO,...>",
            "[possible values: ceiling, ingest, cpu, paced, drain-ack, isolation, backlog, nats, nats-shape]",
        ),
        (
            "--report-only",
            "Draw DIR/REPORT.md again from DIR/results.json",
        ),
        (
            "send",
            "One generator run against a relay that is already running",
        ),
        ("sinks", "Answering sinks on 127.0.0.1 at the given ports"),
    ] {
        assert!(
            help.lines().any(|l| l.contains(flag) && l.contains(says)),
            "--help lacks {flag} {says:?}:\n{help}"
        );
    }
    let send = text(&bench(&["send", "--help"]).stdout);
    for (flag, says) in [
        (
            "--to <ADDR>",
            "Address of the relay's listener [default: 127.0.0.1:8443]",
        ),
        ("--requests <N>", "Requests to send in all [default: 1000]"),
        ("--connections <N>", "Keep-alive connections [default: 32]"),
        (
            "--rate <EVENTS_PER_S>",
            "Open loop at this many events per second",
        ),
        ("--wrong-signature", "Sign with a wrong secret"),
    ] {
        assert!(
            send.lines().any(|l| l.contains(flag) && l.contains(says)),
            "send --help lacks {flag} {says:?}:\n{send}"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let out = bench(&["--only", "ceiling,bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid value 'bogus' for '--only <SCENARIO,...>'"),
        "{stderr}"
    );
    let out = bench(&["--out", "x", "--connections", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'--connections <N>'"));
    // A full run needs --out; --only does not.
    let out = bench(&["--relay", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--out <DIR>"));
}

#[test]
fn a_scenario_that_needs_the_relay_is_refused_without_one() {
    let out = bench(&["--only", "nats-shape,ceiling", "--relay", "/no/such/relay"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--relay /no/such/relay: no such binary"),
        "{stderr}"
    );
}

// bench/run passes `--relay BIN --out bench` and then its own arguments: a flag given again
// must replace the earlier value, not be refused.
#[test]
fn a_flag_given_twice_keeps_its_last_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        bench_dir.join("results.json"),
        dir.path().join("results.json"),
    )
    .expect("copy");
    let out = dir.path().to_str().expect("utf-8 temp path");
    let run = bench(&[
        "--relay",
        "/no/such/relay",
        "--out",
        "/no/such/dir",
        "--report-only",
        "--out",
        out,
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(dir.path().join("REPORT.md").is_file());
}
