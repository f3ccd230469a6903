//! The examples shown at the end of each command's `--help`. A test walks every command and
//! refuses one without examples, so a new command gets them too.

/// `textus-relay --help`.
pub const TOP: &str = "\
Examples:
  textus-relay demo                                  # the whole path on this machine, no setup
  textus-relay check --config relay.yaml             # validate; see which events reach which targets
  textus-relay run --config relay.yaml               # run the relay
  textus-relay send --config relay.yaml --all        # send the eight signed sample events to it
  textus-relay textus subscribe --config relay.yaml --account my_account --url https://relay.example.com
  textus-relay completions bash > ~/.local/share/bash-completion/completions/textus-relay

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.";

pub const RUN: &str = "\
Examples:
  TEXTUS_WEBHOOK_SECRET=textus-... textus-relay run --config relay.yaml
  textus-relay --log-format json run --config /etc/textus-relay/relay.yaml
  # zero-downtime restart: start the new process, then SIGQUIT the old one
  textus-relay run --config relay.yaml --upgrade & kill -QUIT \"$OLD_PID\"";

pub const CHECK: &str = "\
Examples:
  textus-relay check --config relay.yaml
  textus-relay check --config examples/hubspot.yaml";

pub const DEMO: &str = "\
Examples:
  textus-relay demo     # a relay, four local targets and the eight samples, in a temporary folder";

pub const SIGN: &str = "\
Examples:
  textus-relay sign --secret \"$TEXTUS_WEBHOOK_SECRET\" < fixtures/message.received.json
  curl -H \"X-TextUs-Signature: $(textus-relay sign --secret S < body.json)\" \\
       --data-binary @body.json http://127.0.0.1:8443/webhooks/textus";

pub const SEND: &str = "\
Examples:
  textus-relay send --config relay.yaml --event message.received
  textus-relay send --config relay.yaml --event contact.opted_out --event contact.opted_in
  textus-relay send --config relay.yaml --all
  textus-relay send --config relay.yaml --all --url https://relay.example.com/webhooks/textus
  textus-relay send --config relay.yaml --all --ca-cert dev-ca.pem   # a self-signed dev certificate";

pub const HEALTH: &str = "\
Examples:
  textus-relay health --config relay.yaml            # liveness: GET /healthz
  textus-relay health --config relay.yaml --ready    # readiness: GET /readyz
  textus-relay health --url http://127.0.0.1:9090";

pub const MIGRATE: &str = "\
Examples:
  textus-relay migrate --config relay.yaml --from ./data/relay.db --dry-run   # count only
  textus-relay migrate --config relay.yaml --from ./data/relay.db   # stop the SQLite relay first";

pub const TEXTUS: &str = "\
Examples:
  textus-relay textus subscribe --config relay.yaml --account my_account \\
      --url https://relay.example.com --secret-file textus-secret";

pub const TEXTUS_SUBSCRIBE: &str = "\
Examples:
  export TEXTUS_API_TOKEN=...    # TextUs: Profile > API Tokens
  textus-relay textus subscribe --config relay.yaml --account my_account --url https://relay.example.com --dry-run
  textus-relay textus subscribe --config relay.yaml --account my_account \\
      --url https://relay.example.com --secret-file /etc/textus-relay/textus-secret
  textus-relay textus subscribe --config relay.yaml --update /integrations/0yX2VrJ --url https://relay.example.com

--url is the relay's public HTTPS URL (TextUs calls it; without a path, source.path is appended).
--api is the TextUs API (default https://next.textus.com). Exit codes: 0 done, 1 TextUs refused
or was unreachable, 2 bad config or usage (nothing sent).";

pub const COMPLETIONS: &str = "\
Examples:
  textus-relay completions bash > ~/.local/share/bash-completion/completions/textus-relay
  textus-relay completions zsh > \"${fpath[1]}/_textus-relay\"
  textus-relay completions fish > ~/.config/fish/completions/textus-relay.fish";

pub const SCHEMA: &str = "\
Examples:
  textus-relay schema > relay.schema.json        # then in relay.yaml's first line:
                                                 # yaml-language-server: $schema=relay.schema.json
  textus-relay schema --markdown > config-reference.md";

pub const DEAD_LETTERS: &str = "\
Examples:
  textus-relay dead-letters list --config relay.yaml --target warehouse
  textus-relay dead-letters show --config relay.yaml 42
  textus-relay dead-letters replay --config relay.yaml --target warehouse
  textus-relay dead-letters purge --config relay.yaml --until 2025-01-01T00:00:00Z";

pub const DEAD_LETTERS_LIST: &str = "\
Examples:
  textus-relay dead-letters list --config relay.yaml
  textus-relay dead-letters list --config relay.yaml --target warehouse --type contact.created
  textus-relay dead-letters list --config relay.yaml --since 2025-01-31T14:00:00Z --json";

pub const DEAD_LETTERS_SHOW: &str = "\
Examples:
  textus-relay dead-letters show --config relay.yaml 42
  textus-relay dead-letters show --config relay.yaml 42 --json";

pub const DEAD_LETTERS_REPLAY: &str = "\
Examples:
  textus-relay dead-letters replay --config relay.yaml 42 43
  textus-relay dead-letters replay --config relay.yaml --target warehouse --since 2025-01-31T14:00:00Z";

pub const DEAD_LETTERS_PURGE: &str = "\
Examples:
  textus-relay dead-letters purge --config relay.yaml 42
  textus-relay dead-letters purge --config relay.yaml --target old-crm --until 2025-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, at every depth, ends its help with examples that use it.
    #[test]
    fn every_command_has_examples_that_run_it() {
        fn walk(command: &clap::Command, path: &str, seen: &mut Vec<String>) {
            let help = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                help.contains("Examples:"),
                "`{path} --help` has no examples"
            );
            assert!(
                help.contains(&format!("{path} ")),
                "`{path} --help`: no example runs `{path}`:\n{help}"
            );
            seen.push(path.to_owned());
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let mut seen = Vec::new();
        walk(&super::super::Cli::command(), "textus-relay", &mut seen);
        for name in [
            "send",
            "health",
            "completions",
            "dead-letters replay",
            "textus subscribe",
        ] {
            assert!(
                seen.contains(&format!("textus-relay {name}")),
                "{name} not walked: {seen:?}"
            );
        }
    }
}
