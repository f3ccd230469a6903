//! `textus-relay completions SHELL`: prints a completion script generated from the command
//! line's own definition, so it cannot fall behind a new command or flag.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Prints the script for `shell` on stdout.
pub fn run(shell: Shell) -> ExitCode {
    // Generated into memory and written here rather than by clap_complete, which panics on a
    // write error (a closed pipe, a full disk).
    super::write_out(&script(shell), &format!("the {shell} completions"))
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "textus-relay", &mut script);
    script
}
