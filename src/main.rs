//! The `textus-relay` binary: parses the command line and hands over to [`textus_relay::cli`].
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    textus_relay::cli::main()
}
