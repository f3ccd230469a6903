//! `textus-relay completions SHELL`: prints a completion script generated from the command
//! line's own definition, so it cannot fall behind a new command or flag.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Prints the script for `shell` on stdout.
pub fn run(shell: Shell) -> ExitCode {
    let script = script(shell);
    // Written by hand rather than by clap_complete, which panics on a write error (a closed
    // pipe, a full disk).
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the {shell} completions: {e}");
            ExitCode::from(1)
        }
    }
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "textus-relay", &mut script);
    script
}
