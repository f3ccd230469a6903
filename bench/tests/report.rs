//! `textus-bench --report-only`: bench/REPORT.md is what the templates draw from the committed
//! bench/results.json and bench/analysis.md, through the real binary, running nothing.

use std::path::Path;
use std::process::Command;

fn bench_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn report_only_redraws_the_committed_report_from_results_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["results.json", "analysis.md"] {
        std::fs::copy(bench_dir().join(file), dir.path().join(file)).expect("copy");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_textus-bench"))
        .args(["--report-only", "--out"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = std::fs::read_to_string(dir.path().join("REPORT.md")).expect("REPORT.md");
    let committed = std::fs::read_to_string(bench_dir().join("REPORT.md")).expect("REPORT.md");
    // After editing analysis.md or a template: `textus-bench --report-only --out bench`.
    assert!(
        drawn == committed,
        "bench/REPORT.md differs from what --report-only draws from bench/results.json"
    );
}

#[test]
fn report_only_without_results_json_says_which_file_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_textus-bench"))
        .args(["--report-only", "--out"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("results.json: no such file"), "{stderr}");
}
