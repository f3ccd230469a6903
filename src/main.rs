//! The `textus-relay` binary: parses the command line and hands over to [`textus_relay::cli`].
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_malloc();
    textus_relay::cli::main()
}

/// Keeps glibc from handing freed heap back to the kernel after almost every store batch.
///
/// Event bodies are allocated on one thread and freed on another (ingress → store writer →
/// dispatchers), and with glibc's default 128 KiB trim threshold each batch's frees shrank a
/// heap with `madvise` that the next batch faulted back in: about a third of the store
/// writer's CPU under load (bench/REPORT.md). 32 MiB of slack per heap stops that; memory is
/// still returned once more than that is free, and idle RSS is unchanged.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    const TRIM_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: mallopt only sets an allocator parameter; it is called first thing in main,
    // before any other thread exists, and a failure (0) just keeps glibc's default.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
