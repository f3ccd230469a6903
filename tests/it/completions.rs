//! `textus-relay completions` and the examples at the end of `--help` (issue 7, part 7).

use crate::support::*;

/// Every subcommand a user can complete.
const COMMANDS: [&str; 9] = [
    "run",
    "check",
    "demo",
    "sign",
    "dead-letters",
    "send",
    "health",
    "textus",
    "completions",
];

#[test]
fn completions_for_each_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("textus-relay"), "{shell}:\n{out}");
        for command in COMMANDS {
            assert!(out.contains(command), "{shell}: no {command}:\n{out}");
        }
        // Flags of subcommands and the event types `send` takes are completed too.
        assert!(out.contains("upgrade"), "{shell}");
        assert!(out.contains("contact.opted_out"), "{shell}");
    }
    let (code, _, err) = cli(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_bash_completions_are_valid_bash() {
    let (code, script, _) = cli(&["completions", "bash"]);
    assert_eq!(code, 0);
    // bash runs scripts/test itself: missing, it is a broken machine, not a reason to skip.
    let out = std::process::Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .expect("run bash -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_help_ends_with_examples() {
    let mut commands: Vec<Vec<&str>> = COMMANDS.iter().map(|c| vec![*c]).collect();
    commands.push(vec![]);
    for action in ["list", "show", "replay", "purge"] {
        commands.push(vec!["dead-letters", action]);
    }
    commands.push(vec!["textus", "subscribe"]);
    for command in commands {
        let mut args = command.clone();
        args.push("--help");
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{command:?}: {err}");
        let examples = out
            .split_once("Examples:\n")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("{command:?} --help has no examples:\n{out}"));
        let invocation = ["textus-relay"]
            .into_iter()
            .chain(command.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(examples.contains(&invocation), "{command:?}:\n{out}");
    }
}
