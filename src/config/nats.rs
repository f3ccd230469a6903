//! `storage.kind: nats`: the validated settings of a JetStream store shared by several relays,
//! and the rules that build them from the file.
//!
//! The rules follow what the client (`async-nats`) and the server accept, so a mistake is a
//! config error at `check` rather than a connection failure at start: server URLs as the
//! client parses them, JetStream's replica limit and naming rules for the prefix, one
//! authentication form, and credential and TLS files that can be read now.

use std::path::PathBuf;
use std::time::Duration;

use super::de::Loc;
use super::reader::{Ctx, Text, child, integer, item};
use super::schema as raw;
use super::tree::Node;
use super::validate::readable_file;
use super::{Secret, units};

/// JetStream's limit (`StreamMaxReplicas` in nats-server).
const MAX_REPLICAS: u64 = 5;
/// JetStream allows 255 bytes per name, but names become directories of the server's store
/// and its docs advise keeping them under 32 characters; the relay appends a target's name
/// and a suffix to the prefix, so the prefix alone stays within that advice.
const MAX_PREFIX_LEN: usize = 32;
/// Longer than this only holds TextUs's connections open for an answer that is a 504 anyway.
const MAX_PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// A `.creds` file is about 1 KiB; anything much larger is not one.
const MAX_CREDS_BYTES: u64 = 64 << 10;

/// `storage` with `kind: nats`: JetStream streams, consumers and KV buckets on a NATS
/// cluster, shared by every relay that names the same servers and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsStorage {
    /// Seed servers, each `nats://HOST[:PORT]` or `tls://HOST[:PORT]` (a bare `HOST:PORT` is
    /// given `nats://`); the client learns the rest of the cluster from them. Never empty,
    /// no duplicates, no user or password in a URL (they would show in logs).
    pub urls: Vec<String>,
    /// Copies the cluster keeps of each stream and bucket, 1 to 5. Default 3.
    pub replicas: usize,
    /// Start of every stream, consumer and bucket name: 1 to 32 letters, digits, `-`, `_`.
    /// Default `textus-relay`.
    pub prefix: String,
    /// How long ingest waits for JetStream's PubAck before answering 504; > 0 and at most
    /// 60 s. Default 5 s.
    pub publish_timeout: Duration,
    /// How the relay authenticates to the servers.
    pub auth: NatsAuth,
    /// `Some` (even with no file set) requires TLS on every connection.
    pub tls: Option<NatsTls>,
    /// How long a dead letter is kept after it died before it is deleted, > 0. Default 14 days.
    pub dead_letter_retention: Duration,
}

/// `storage.auth`: at most one form. Secrets are never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsAuth {
    /// No `auth`: the servers accept anonymous clients.
    None,
    /// `credentials: FILE`: a `.creds` file (user JWT and NKey seed), readable at load.
    Credentials(PathBuf),
    /// `token: TOKEN`.
    Token(Secret),
    /// `user: NAME` and `password: PASSWORD`.
    UserPassword {
        /// Not empty.
        user: String,
        /// Not empty.
        password: Secret,
    },
}

impl NatsAuth {
    /// The form's name, for `check` and logs; never the secret.
    pub fn form(&self) -> &'static str {
        match self {
            NatsAuth::None => "no auth",
            NatsAuth::Credentials(_) => "credentials file",
            NatsAuth::Token(_) => "token",
            NatsAuth::UserPassword { .. } => "user and password",
        }
    }
}

/// `storage.tls`: files readable at load; `cert` and `key` come together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM certificates to trust for the servers, instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for servers that verify clients.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// Reads the keys of `kind: nats`, with `dead_letter_retention` read by the caller as it is
/// shared with `kind: sqlite`.
pub(super) fn storage(
    ctx: &mut Ctx<'_>,
    raw: &raw::NatsStorage,
    dead_letter_retention: Option<Duration>,
) -> Option<NatsStorage> {
    let urls = ctx.require(&raw.urls).and_then(|node| {
        let path = ctx.path(&raw.urls);
        urls(ctx, node, &path)
    });
    let replicas = ctx
        .value(raw.replicas.as_ref(), "replicas", |t| {
            integer(t, 1, MAX_REPLICAS)
                .map(|n| n as usize)
                .map_err(|e| format!("{e}; JetStream keeps at most {MAX_REPLICAS} copies"))
        })
        .or(raw::NatsStorage::REPLICAS as usize);
    let prefix = ctx.value_or(
        raw.prefix.as_ref(),
        "prefix",
        raw::NatsStorage::PREFIX,
        prefix,
    );
    // A healthy quorum acknowledges in milliseconds. A lost stream leader is replaced only
    // after nats-server's election timeout (4 to 9 s), so no bound short enough for TextUs's
    // request rides out a failover anyway: the safe answer then is a prompt 504, which TextUs
    // retries (and `Nats-Msg-Id` de-duplicates a publish that did land). The 5 s default keeps
    // each request well inside what webhook senders wait, so the 504 arrives rather than a
    // client timeout.
    let publish_timeout = ctx.value_or(
        raw.publish_timeout.as_ref(),
        "duration",
        raw::NatsStorage::PUBLISH_TIMEOUT,
        publish_timeout,
    );
    let auth = match &raw.auth {
        None => Some(NatsAuth::None),
        Some(raw) => auth(ctx, raw),
    };
    let tls = match &raw.tls {
        None => Some(None),
        Some(raw) => tls(ctx, raw).map(Some),
    };
    Some(NatsStorage {
        urls: urls?,
        replicas: replicas?,
        prefix: prefix?,
        publish_timeout: publish_timeout?,
        auth: auth?,
        tls: tls?,
        dead_letter_retention: dead_letter_retention?,
    })
}

fn urls(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<String>> {
    let items = ctx.list(node, path)?;
    if items.is_empty() {
        ctx.report(node.at, path, "at least one server URL is required");
        return None;
    }
    let mut urls: Vec<Option<String>> = Vec::with_capacity(items.len());
    for (i, item_node) in items.iter().enumerate() {
        let url = ctx.convert(item_node, &item(path, i), server_url);
        if let Some(url) = &url
            && let Some(first) = urls.iter().position(|u| u.as_ref() == Some(url))
        {
            let message = format!("the same server as {}", item(path, first));
            ctx.report(item_node.at, &item(path, i), message);
            urls.push(None);
            continue;
        }
        urls.push(url);
    }
    urls.into_iter().collect()
}

/// A server address as async-nats reads one (`ServerAddr`): a URL with scheme `nats` or
/// `tls`, or `HOST[:PORT]`, which it reads as `nats://HOST[:PORT]`. Returned with the scheme.
pub(super) fn server_url(text: &Text) -> Result<String, String> {
    let shown = &text.quoted;
    let written = if text.value.contains("://") {
        text.value.clone()
    } else {
        format!("nats://{}", text.value)
    };
    let url = url::Url::parse(&written)
        .map_err(|e| format!("invalid server URL {shown} ({e}; expected nats://HOST:PORT)"))?;
    match url.scheme() {
        "nats" | "tls" => {}
        "ws" | "wss" => {
            return Err(format!(
                "invalid server URL {shown} (WebSocket is not supported; use nats:// or tls://)"
            ));
        }
        other => {
            return Err(format!(
                "invalid server URL {shown} (scheme `{other}`; expected nats:// or tls://)"
            ));
        }
    }
    // Not quoted: the URL holds a password or token.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a server URL must not hold a user, password or token (it would show in \
                    logs and in `check`): set storage.auth instead"
                .to_owned(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid server URL {shown} (no host)"));
    }
    if url.port() == Some(0) {
        return Err(format!("invalid server URL {shown} (port 0)"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid server URL {shown} (a NATS server URL has no path, query or fragment)"
        ));
    }
    Ok(written)
}

/// A JetStream name start that every derived name (stream, consumer, KV bucket) can use.
pub(super) fn prefix(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(
            "letters, digits, `-` and `_` only: it starts JetStream stream, consumer \
                    and bucket names, which cannot hold `.`, `*`, `>`, `/` or spaces"
                .to_owned(),
        );
    }
    if text.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "at most {MAX_PREFIX_LEN} characters: JetStream names become directories on the \
             servers, and the relay adds a target's name to it"
        ));
    }
    Ok(text.to_owned())
}

fn publish_timeout(text: &str) -> Result<Duration, String> {
    match units::duration(text)? {
        d if d.is_zero() => Err("must be greater than zero".to_owned()),
        d if d > MAX_PUBLISH_TIMEOUT => Err("at most 60s: TextUs is kept waiting for a 504 \
                                             it could have had sooner"
            .to_owned()),
        d => Ok(d),
    }
}

/// `credentials`, `token`, or `user` with `password`: exactly one of the three.
fn auth(ctx: &mut Ctx<'_>, raw: &raw::NatsAuth) -> Option<NatsAuth> {
    let path = ctx.section(&raw.at)?;
    let keys = [
        ("credentials", "credentials", &raw.credentials),
        ("token", "token", &raw.token),
        ("user", "user", &raw.user),
        ("user", "password", &raw.password),
    ];
    let mut written: Vec<_> = keys
        .into_iter()
        .filter(|(.., loc)| ctx.written(loc))
        .collect();
    written.sort_by_key(|(.., loc)| {
        let at = ctx.key_at(loc);
        (at.line, at.column)
    });
    // The first key of each form written, in file order.
    let mut forms: Vec<(&str, &str, &Loc)> = Vec::new();
    for (form, key, loc) in written {
        if !forms.iter().any(|(f, ..)| *f == form) {
            forms.push((form, key, loc));
        }
    }
    if forms.is_empty() && !ctx.unknown.iter().any(|u| u.parent == path) {
        let message = "expected one of: credentials, token, or user and password";
        let at = ctx.at(&raw.at);
        ctx.report(at, &path, message);
    }
    if let [(_, first, first_loc), others @ ..] = forms.as_slice() {
        let line = ctx.key_at(first_loc).line;
        for (_, other, loc) in others {
            let message =
                format!("only one auth form is allowed (`{first}` is set at line {line})");
            let at = ctx.key_at(loc);
            ctx.report(at, &child(&path, other), message);
        }
    }
    // Each form is read even when there are several, so all their problems show.
    let read: Vec<Option<NatsAuth>> = forms
        .iter()
        .map(|(form, ..)| auth_form(ctx, raw, form))
        .collect();
    match <[Option<NatsAuth>; 1]>::try_from(read) {
        Ok([auth]) => auth,
        // None (only unknown keys, already reported) or several.
        Err(_) => None,
    }
}

fn auth_form(ctx: &mut Ctx<'_>, raw: &raw::NatsAuth, form: &str) -> Option<NatsAuth> {
    match form {
        "credentials" => {
            let (node, path) = ctx.require_at(&raw.credentials)?;
            ctx.convert(node, &path, credentials_file)
                .map(NatsAuth::Credentials)
        }
        "token" => {
            let (node, path) = ctx.require_at(&raw.token)?;
            ctx.secret(node, &path).map(NatsAuth::Token)
        }
        _ => {
            let user = ctx.require_at(&raw.user).and_then(|(node, path)| {
                ctx.convert(node, &path, |t| {
                    if t.value.is_empty() {
                        Err("must not be empty".to_owned())
                    } else {
                        Ok(t.value.clone())
                    }
                })
            });
            let password = ctx
                .require_at(&raw.password)
                .and_then(|(node, path)| ctx.secret(node, &path));
            Some(NatsAuth::UserPassword {
                user: user?,
                password: password?,
            })
        }
    }
}

/// A `.creds` file as `nsc` and `nats` write it: the user JWT and the NKey seed, each between
/// `-----BEGIN ...-----` lines. Its content is a secret and never shown.
fn credentials_file(text: &Text) -> Result<PathBuf, String> {
    use std::io::Read as _;
    let path = readable_file(text)?;
    let shown = format!("{:?}", text.value);
    let mut content = String::new();
    std::fs::File::open(&path)
        .and_then(|file| file.take(MAX_CREDS_BYTES).read_to_string(&mut content))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !content.contains("BEGIN NATS USER JWT") || !content.contains("NKEY SEED") {
        return Err(format!(
            "{shown} is not a NATS credentials file (expected a `BEGIN NATS USER JWT` and a \
             `USER NKEY SEED` section, as `nsc` writes them)"
        ));
    }
    Ok(path)
}

fn tls(ctx: &mut Ctx<'_>, raw: &raw::NatsTls) -> Option<NatsTls> {
    let path = ctx.section(&raw.at)?;
    let mut file = |loc: Option<&Loc<_>>| match loc.and_then(|loc| Some((ctx.node(loc)?, loc))) {
        None => Some(None),
        Some((node, loc)) => {
            let path = ctx.path(loc);
            ctx.convert(node, &path, readable_file).map(Some)
        }
    };
    let (ca, cert, key) = (
        file(raw.ca.as_ref()),
        file(raw.cert.as_ref()),
        file(raw.key.as_ref()),
    );
    let value_at = |loc: &Option<Loc<_>>| loc.as_ref().map_or(ctx.at(&raw.at), |l| ctx.at(l));
    let (ca_at, cert_at, key_at) = (value_at(&raw.ca), value_at(&raw.cert), value_at(&raw.key));
    let ca = match ca {
        Some(Some(ca)) => match super::tls::check_ca(&ca) {
            Ok(()) => Some(Some(ca)),
            Err(message) => {
                ctx.report(ca_at, &child(&path, "ca"), message);
                None
            }
        },
        other => other,
    };
    match (&cert, &key) {
        (Some(Some(_)), Some(None)) => {
            let message = "`cert` needs `key`, the client certificate's private key";
            ctx.report(cert_at, &child(&path, "cert"), message);
            return None;
        }
        (Some(None), Some(Some(_))) => {
            let message = "`key` needs `cert`, the client certificate it belongs to";
            ctx.report(key_at, &child(&path, "key"), message);
            return None;
        }
        (Some(Some(c)), Some(Some(k))) => {
            if let Err((which, message)) = super::tls::check(c, k) {
                let (name, at) = match which {
                    super::tls::TlsFile::Cert => ("cert", cert_at),
                    super::tls::TlsFile::Key => ("key", key_at),
                };
                ctx.report(at, &child(&path, name), message);
                return None;
            }
        }
        _ => {}
    }
    Some(NatsTls {
        ca: ca?,
        cert: cert?,
        key: key?,
    })
}
