//! `textus-relay textus subscribe`: makes TextUs send the relay exactly the event types its
//! routes send somewhere, with the Integrations API call of TextUs's setup guide.
//!
//! The web app can subscribe only `message.received` and `message.delivered`; every other type
//! needs `settings.actions` set through the API, and that is the step users get wrong. The
//! actions come from [`crate::cli::check::routed_actions`], the same answer `check` prints.
//!
//! Two URLs, kept apart: `--url` is the relay's public URL, which TextUs will call and which
//! must be `https://` (TextUs requires it); `--api` is where the TextUs API is, and may be
//! `http://` only on loopback (a local stand-in), so the API token never crosses a network in
//! clear text. Exit codes: 0 created or updated, 1 TextUs refused or could not be reached
//! (or the secret could not be saved), 2 bad config or usage (nothing sent).

mod integration;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::config::Config;
use integration::{Call, Integration};

/// The TextUs API host. TextUs's docs give only relative paths (`POST /:account/integrations`);
/// this host is what several independent public clients of the same API use.
pub const DEFAULT_API: &str = "https://next.textus.com";

/// Where the API token is read from (never a flag: flags end up in shell history and `ps`).
const TOKEN_VAR: &str = "TEXTUS_API_TOKEN";

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Create (or with --update, update) the TextUs webhook integration that sends this relay
    /// exactly the event types its routes send somewhere. The token is read from TEXTUS_API_TOKEN.
    #[command(after_help = super::help::TEXTUS_SUBSCRIBE)]
    Subscribe(SubscribeArgs),
}

/// What to subscribe, where.
#[derive(clap::Args, Debug)]
pub struct SubscribeArgs {
    /// The relay's config: its routes decide the actions, its source.path completes --url.
    #[arg(long, short, default_value = "relay.yaml")]
    pub config: PathBuf,
    /// The TextUs account slug the integration belongs to (`POST /{account}/integrations`).
    #[arg(long, value_name = "NAME", value_parser = path_segment,
          required_unless_present = "update", conflicts_with = "update")]
    pub account: Option<String>,
    /// The relay's public HTTPS URL, which TextUs will call, e.g. https://relay.example.com;
    /// without a path, the config's source.path is appended.
    #[arg(long, value_name = "PUBLIC_URL", value_parser = public_url)]
    pub url: url::Url,
    /// The TextUs API base URL (http:// only on loopback).
    #[arg(long, value_name = "BASE", default_value = DEFAULT_API, value_parser = api_base)]
    pub api: url::Url,
    /// Write the integration's webhook secret to this new file (mode 0600) instead of printing it.
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Update the existing integration with this id (`/integrations/ID` or `ID`):
    /// `PUT /integrations/ID` instead of creating one.
    #[arg(long, value_name = "ID", value_parser = integration_id)]
    pub update: Option<String>,
    /// Print the request, with the token masked, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How a run ended when it did not succeed.
enum Failure {
    /// Exit 2: nothing was sent.
    Usage(anyhow::Error),
    /// Exit 1.
    Runtime(anyhow::Error),
}

pub fn run(action: Action) -> ExitCode {
    let Action::Subscribe(args) = action;
    match subscribe(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn subscribe(args: &SubscribeArgs) -> Result<(), Failure> {
    // As `check` prints them: their Display already says everything, causes included.
    let config = Config::load(&args.config).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    let compiled =
        crate::app::build::compile(&config).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    let actions = crate::cli::check::routed_actions(&compiled);
    if !actions.iter().any(|(_, on)| *on) {
        return Err(Failure::Usage(anyhow!(
            "{}: no route sends any of the eight TextUs event types anywhere: nothing to subscribe",
            args.config.display()
        )));
    }
    let base_url = webhook_url(&args.url, &config.source.path);
    let integration = Integration {
        base_url: base_url.as_str(),
        actions: &actions,
    };
    let call = match (&args.update, &args.account) {
        (Some(id), _) => Call::update(&args.api, id, integration),
        (None, Some(account)) => Call::create(&args.api, account, integration),
        // clap requires one of them.
        (None, None) => Err(anyhow!("--account or --update is required")),
    }
    .map_err(Failure::Usage)?;
    let token = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty());

    let mut out = std::io::stdout().lock();
    if args.dry_run {
        let text = format!(
            "{}\n(dry run: nothing was sent)\n",
            call.describe(token.is_some())
        );
        return out
            .write_all(text.as_bytes())
            .context("writing to standard output")
            .map_err(Failure::Runtime);
    }
    let token = token.ok_or_else(|| {
        Failure::Usage(anyhow!(
            "{TOKEN_VAR} is not set: create an API token in TextUs (Profile > API Tokens) and export it"
        ))
    })?;
    if let Some(path) = &args.secret_file {
        // Checked before anything is sent: once TextUs has made the integration, a file that
        // cannot be written would leave the new secret nowhere.
        writable_new_file(path).map_err(Failure::Usage)?;
    }
    let _ = writeln!(out, "{} {}", call.method, call.url);
    let _ = writeln!(out, "  baseUrl {base_url}");
    let on: Vec<&str> = actions.iter().filter(|a| a.1).map(|a| a.0).collect();
    let off: Vec<&str> = actions.iter().filter(|a| !a.1).map(|a| a.0).collect();
    let _ = writeln!(out, "  enabling {}", on.join(", "));
    if !off.is_empty() {
        let _ = writeln!(out, "  not routed, left off: {}", off.join(", "));
    }

    let answer = call.send(&token).map_err(Failure::Runtime)?;
    let _ = writeln!(out, "integration {}", answer.id);
    match &args.secret_file {
        Some(path) => match write_secret(path, &answer.webhook_secret) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "webhook secret written to {} (mode 0600): put it in source.secrets",
                    path.display()
                );
                Ok(())
            }
            Err(e) => {
                // The integration exists now; printing the secret is the only way not to lose it.
                let _ = writeln!(out, "webhook secret: {}", answer.webhook_secret);
                let _ = writeln!(out, "put it in source.secrets exactly as given");
                Err(Failure::Runtime(e.context(format!(
                    "the integration was made, but its secret could not be saved to {}",
                    path.display()
                ))))
            }
        },
        None => {
            let _ = writeln!(out, "webhook secret: {}", answer.webhook_secret);
            let _ = writeln!(
                out,
                "put it in source.secrets exactly as given (prefix included); it is shown only once here"
            );
            Ok(())
        }
    }
}

/// The URL TextUs posts to: `--url`, with the config's `source.path` when it has no path.
fn webhook_url(public: &url::Url, source_path: &str) -> url::Url {
    let mut url = public.clone();
    if url.path() == "/" {
        url.set_path(source_path);
    }
    url
}

/// The file must not exist yet and its folder must: a secret is never written over something.
fn writable_new_file(path: &Path) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(anyhow!(
            "--secret-file {} already exists: remove it or name a new file",
            path.display()
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(anyhow!(
            "--secret-file {}: folder {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Creates `path` readable by its owner only and writes the secret, exactly, no newline: a file
/// mounted as a secret or read with `$(cat …)` must give the same string TextUs signs with.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn public_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{text} is not https://: TextUs delivers webhooks only to HTTPS endpoints"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("no query or fragment: TextUs posts to the URL as given".to_owned());
    }
    Ok(url)
}

fn api_base(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{text}: http:// only on loopback; the API token must not travel in clear text"
        )),
        other => Err(format!("{text}: {other}:// is not http(s)")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// One path segment: an account slug or an integration id.
fn path_segment(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok && text != "." && text != ".." {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: expected a slug such as my_account (letters, digits, `_`, `-`, `.`)"
        ))
    }
}

/// `/integrations/0yX2VrJ` (the `id` TextUs answers with) or `0yX2VrJ`.
fn integration_id(text: &str) -> Result<String, String> {
    path_segment(text.strip_prefix("/integrations/").unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_must_be_https_and_gets_the_source_path() {
        assert!(public_url("http://relay.example.com").is_err());
        assert!(public_url("https://relay.example.com/?a=1").is_err());
        let bare = public_url("https://relay.example.com").expect("https");
        assert_eq!(
            webhook_url(&bare, "/webhooks/textus").as_str(),
            "https://relay.example.com/webhooks/textus"
        );
        let proxied = public_url("https://relay.example.com/in/textus").expect("https");
        assert_eq!(webhook_url(&proxied, "/webhooks/textus"), proxied);
    }

    #[test]
    fn the_api_may_be_plain_http_only_on_loopback() {
        assert!(api_base("http://127.0.0.1:8080").is_ok());
        assert!(api_base("http://[::1]:8080").is_ok());
        assert!(api_base("http://localhost:8080").is_ok());
        assert!(api_base("http://next.textus.com").is_err());
        assert!(api_base("ftp://127.0.0.1").is_err());
        assert!(api_base(DEFAULT_API).is_ok());
    }

    #[test]
    fn ids_and_slugs_are_single_path_segments() {
        assert_eq!(
            integration_id("/integrations/0yX2VrJ").as_deref(),
            Ok("0yX2VrJ")
        );
        assert_eq!(integration_id("0yX2VrJ").as_deref(), Ok("0yX2VrJ"));
        assert!(integration_id("/integrations/a/b").is_err());
        assert!(path_segment("my_account").is_ok());
        for bad in ["", "..", "a/b", "a b", "a?b"] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }
}
