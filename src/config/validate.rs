//! The rule pass: relay.yaml's raw types (`schema.rs`) turned into a [`Config`]. Targets live
//! in `targets.rs`, storage in `storage.rs` (and `nats.rs`).
//!
//! Each section reader reports its own problems and returns `None` if any of them make
//! the section unusable; reading always continues, so one pass finds every problem.
//! Defaults are the raw types' constants, also shown by the schema.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::de::Loc;
use super::reader::{Ctx, Text, boolean, child, item};
use super::schema::{self as raw, RelayFile};
use super::template::{self, TemplateSource};
use super::tree::Node;
use super::{
    Admin, Config, EventPattern, Listen, Priority, Route, Secret, Source, TargetId, Tls, storage,
    targets, units,
};

/// Validates `admin:` alone, ignoring the other sections (see [`super::Admin::load`]).
pub(super) fn admin_only(ctx: &mut Ctx<'_>, file: &raw::AdminFile) -> Option<Admin> {
    admin(ctx, file.admin.as_ref())
}

/// Validates the whole document; `None` once a problem is reported.
pub(super) fn config(ctx: &mut Ctx<'_>, raw: &RelayFile, file: &Path) -> Option<Config> {
    let listen = listen(ctx, raw.listen.as_ref());
    let admin = admin(ctx, raw.admin.as_ref());
    let storage = storage::storage(ctx, raw.storage.as_ref());
    let source = source(ctx, &raw.source);
    let (targets, names) = match ctx.require(&raw.targets) {
        Some(node) => targets::targets(ctx, node),
        None => (None, Vec::new()),
    };
    let routes = ctx
        .require(&raw.routes)
        .and_then(|node| routes(ctx, node, &names));
    Some(Config {
        file: file.to_owned(),
        listen: listen?,
        admin: admin?,
        storage: storage?,
        source: source?,
        targets: targets?,
        routes: routes?,
    })
}

pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected IP:PORT, e.g. 0.0.0.0:8443 or [::]:8443".to_owned())
}

/// `listen.address`, defaulted when `listen` or its address is left out.
pub(super) fn listen_address(ctx: &mut Ctx<'_>, raw: Option<&raw::Listen>) -> Option<SocketAddr> {
    let address = raw.and_then(|raw| raw.address.as_ref());
    ctx.value_or(address, "address", raw::Listen::ADDRESS, socket_addr)
}

fn listen(ctx: &mut Ctx<'_>, raw: Option<&raw::Listen>) -> Option<Listen> {
    let address = listen_address(ctx, raw);
    let tls = match raw.and_then(|raw| raw.tls.as_ref()) {
        None => Some(None),
        Some(raw) => tls(ctx, raw).map(Some),
    };
    Some(Listen {
        address: address?,
        tls: tls?,
    })
}

fn tls(ctx: &mut Ctx<'_>, raw: &raw::Tls) -> Option<Tls> {
    let path = ctx.section(&raw.at)?;
    let mut file = |loc| {
        let node = ctx.require(loc)?;
        let path = ctx.path(loc);
        ctx.convert(node, &path, readable_file)
    };
    let cert = file(&raw.cert);
    let key = file(&raw.key);
    if let (Some(c), Some(k)) = (&cert, &key)
        && let Err((which, message)) = super::tls::check(c, k)
    {
        let (name, at) = match which {
            super::tls::TlsFile::Cert => ("cert", ctx.at(&raw.cert)),
            super::tls::TlsFile::Key => ("key", ctx.at(&raw.key)),
        };
        ctx.report(at, &child(&path, name), message);
        return None;
    }
    Some(Tls {
        cert: cert?,
        key: key?,
    })
}

/// A file that can be opened for reading now, so a typo fails at startup rather than
/// at the first TLS handshake. The path is quoted even if it came from the
/// environment: a path is not a secret, and the message must name the file.
pub(super) fn readable_file(text: &Text) -> Result<PathBuf, String> {
    let path = PathBuf::from(&text.value);
    let shown = format!("{:?}", text.value);
    if text.value.is_empty() {
        return Err("file path is empty".to_owned());
    }
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => return Err(format!("cannot read {shown}: it is a directory")),
        // A device or a pipe (`/dev/zero`, `/dev/stdin`) may never end: reading it as PEM
        // would block startup or fill memory (found with a hostile seed for the config fuzz
        // target: `cert: /dev/zero` ran out of memory).
        Ok(meta) if !meta.is_file() => {
            return Err(format!("cannot read {shown}: it is not a regular file"));
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    }
    std::fs::File::open(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(path)
}

fn admin(ctx: &mut Ctx<'_>, raw: Option<&raw::Admin>) -> Option<Admin> {
    if let Some(raw) = raw {
        ctx.section(&raw.at)?;
    }
    let address = raw.and_then(|raw| raw.address.as_ref());
    let address_at = address.map(|a| ctx.at(a));
    let address = ctx.value_or(address, "address", raw::Admin::ADDRESS, socket_addr);
    let token = match raw
        .and_then(|raw| raw.token.as_ref())
        .and_then(|t| ctx.node(t))
    {
        None => Some(None),
        // Never quoted: it is a credential.
        Some(node) => ctx.convert(node, "admin.token", |t| {
            Ok((!t.value.is_empty()).then(|| Secret::from(t.value.as_str())))
        }),
    };
    if let (Some(address), Some(None)) = (address, &token)
        && !address.ip().is_loopback()
    {
        let at = address_at
            .or(raw.map(|raw| ctx.at(&raw.at)))
            .unwrap_or_default();
        ctx.report(
            at,
            "admin.address",
            format!(
                "{address} is not a loopback address, so admin.token is required \
                 (the admin API can replay and purge dead letters)"
            ),
        );
    }
    Some(Admin {
        address: address?,
        token: token?,
    })
}

pub(super) fn source(ctx: &mut Ctx<'_>, raw: &raw::Source) -> Option<Source> {
    ctx.require(&raw.at)?;
    let path = ctx.value_or(raw.path.as_ref(), "path", raw::Source::PATH, url_path);
    let secrets = ctx
        .require(&raw.secrets)
        .and_then(|node| secrets(ctx, node));
    let max_body = ctx.value_or(
        raw.max_body.as_ref(),
        "size",
        raw::Source::MAX_BODY,
        body_size,
    );
    let dedupe_window = ctx.value_or(
        raw.dedupe_window.as_ref(),
        "duration",
        raw::Source::DEDUPE_WINDOW,
        units::duration,
    );
    let keep_unrouted = ctx
        .value(raw.keep_unrouted.as_ref(), "boolean", boolean)
        .or(raw::Source::KEEP_UNROUTED);
    Some(Source {
        path: path?,
        secrets: secrets?,
        max_body: max_body?,
        dedupe_window: dedupe_window?,
        keep_unrouted: keep_unrouted?,
    })
}

fn url_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("must start with `/`".to_owned());
    }
    if text.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return Err("must not contain spaces, `?` or `#`".to_owned());
    }
    Ok(text.to_owned())
}

fn body_size(text: &str) -> Result<usize, String> {
    match units::size(text)? {
        0 => Err("must be greater than zero".to_owned()),
        n => usize::try_from(n).map_err(|_| "too large for this platform".to_owned()),
    }
}

fn secrets(ctx: &mut Ctx<'_>, node: &Node) -> Option<Vec<Secret>> {
    const PATH: &str = "source.secrets";
    let items = ctx.list(node, PATH)?;
    if items.is_empty() {
        ctx.report(node.at, PATH, "at least one secret is required");
        return None;
    }
    let secrets: Vec<Option<Secret>> = items
        .iter()
        .enumerate()
        .map(|(i, item_node)| ctx.secret(item_node, &item(PATH, i)))
        .collect();
    secrets.into_iter().collect()
}

fn routes<'e>(ctx: &mut Ctx<'e>, node: &'e Node, targets: &[String]) -> Option<Vec<Route>> {
    let items = ctx.list(node, "routes")?;
    if items.is_empty() {
        ctx.report(node.at, "routes", "at least one route is required");
        return None;
    }
    let routes: Vec<Option<Route>> = items
        .iter()
        .enumerate()
        .map(|(i, node)| route(ctx, node, item("routes", i), targets))
        .collect();
    routes.into_iter().collect()
}

fn route<'e>(ctx: &mut Ctx<'e>, node: &'e Node, path: String, targets: &[String]) -> Option<Route> {
    let raw: raw::Route = ctx.read(node, &path, false)?;
    let events = non_empty_list(
        ctx,
        &raw.events,
        "at least one event pattern is required",
        |ctx, node, path| ctx.parse(node, path, "event pattern", EventPattern::parse),
    );
    let to = non_empty_list(
        ctx,
        &raw.to,
        "at least one target is required",
        |ctx, node, path| {
            ctx.convert(node, path, |t| {
                if targets.contains(&t.value) {
                    Ok(TargetId(Arc::from(t.value.as_str())))
                } else if targets.is_empty() {
                    Err(format!(
                        "unknown target {} (no targets are defined)",
                        t.quoted
                    ))
                } else {
                    let defined = targets.join(", ");
                    Err(format!(
                        "unknown target {} (defined targets: {defined})",
                        t.quoted
                    ))
                }
            })
        },
    );
    let when = match ctx.present(raw.when.as_ref()) {
        None => Some(None),
        Some((node, path)) => when(ctx, node, &path).map(Some),
    };
    let priority = ctx
        .value(raw.priority.as_ref(), "priority", priority)
        .optional();
    Some(Route {
        events: events?,
        to: to?,
        when: when?,
        priority: priority?,
    })
}

fn priority(text: &str) -> Result<Priority, String> {
    match text {
        "high" => Ok(Priority::High),
        "normal" => Ok(Priority::Normal),
        _ => Err("expected high or normal".to_owned()),
    }
}

/// A route condition: a non-empty expression, not a `{{ }}` template.
fn when(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<TemplateSource> {
    let when = template::non_empty_template(
        ctx,
        node,
        path,
        "condition is empty (leave `when` out to apply the route to every matching event)",
    )?;
    let trimmed = when.text.trim();
    if trimmed.starts_with("{{") || trimmed.starts_with("{%") {
        ctx.report(
            node.at,
            path,
            "`when` is an expression: write it without `{{ }}`, e.g. when: \"event.contact is defined\"",
        );
        return None;
    }
    Some(when)
}

/// Reads a required, non-empty list, converting each item with `read`.
fn non_empty_list<T, S>(
    ctx: &mut Ctx<'_>,
    loc: &Loc<S>,
    empty: &str,
    mut read: impl FnMut(&mut Ctx<'_>, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let (node, path) = ctx.require_at(loc)?;
    let items = ctx.list(node, &path)?;
    if items.is_empty() {
        ctx.report(node.at, &path, empty);
        return None;
    }
    let values: Vec<Option<T>> = items
        .iter()
        .enumerate()
        .map(|(i, node)| read(ctx, node, &item(&path, i)))
        .collect();
    values.into_iter().collect()
}
