//! The `storage:` section: its `kind` decides which keys are valid. `kind: sqlite` (the
//! default) is read here, `kind: nats` in `nats.rs`; `dead_letter_retention` is shared.
//!
//! A key of the other kind is reported as belonging to it, not as unknown, because moving a
//! file from one kind to the other is the likeliest way to get one.

use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Ctx, Mapping, child, integer};
use super::schema::{Keys, keys};
use super::tree::Node;
use super::{MinFree, Storage, StorageBudget, nats, units};

const DEFAULT_STORAGE_PATH: &str = "./data/relay.db";
const DEFAULT_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(14 * 86_400);

/// The smallest `storage.max_bytes`.
const MIN_STORE_BYTES: u64 = 16 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Nats,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Nats => "nats",
        }
    }

    fn keys(self) -> Keys {
        match self {
            Kind::Sqlite => keys::SQLITE,
            Kind::Nats => keys::NATS,
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Sqlite => Kind::Nats,
            Kind::Nats => Kind::Sqlite,
        }
    }
}

/// The store when `storage:` is left out.
pub(super) fn default_storage() -> Storage {
    Storage::Sqlite {
        path: PathBuf::from(DEFAULT_STORAGE_PATH),
        dead_letter_retention: DEFAULT_DEAD_LETTER_RETENTION,
        budget: StorageBudget::default(),
    }
}

pub(super) fn storage(ctx: &mut Ctx<'_>, node: &Node) -> Option<Storage> {
    let m = ctx.mapping(node, "storage".to_owned())?;
    let kind = match m.present("kind") {
        None => Some(Kind::Sqlite),
        Some(node) => ctx.convert(node, "storage.kind", |t| match t.value.as_str() {
            "sqlite" => Ok(Kind::Sqlite),
            "nats" => Ok(Kind::Nats),
            _ => Err(format!(
                "unknown storage kind {} (expected one of: sqlite, nats)",
                t.quoted
            )),
        }),
    };
    // The other keys depend on the kind; with an unusable kind they cannot be judged.
    let kind = kind?;
    check_kind_keys(ctx, &m, kind);
    let dead_letter_retention = ctx
        .field(&m, "dead_letter_retention", "duration", retention)
        .or(DEFAULT_DEAD_LETTER_RETENTION);
    match kind {
        Kind::Sqlite => sqlite(ctx, &m, dead_letter_retention),
        Kind::Nats => nats::storage(ctx, &m, dead_letter_retention).map(Storage::Nats),
    }
}

/// Reports each key of the other kind as belonging there, then the keys of neither kind as
/// unknown. Keys so reported are not read.
fn check_kind_keys(ctx: &mut Ctx<'_>, m: &Mapping<'_>, kind: Kind) {
    let other = kind.other();
    let default = if kind == Kind::Sqlite && m.present("kind").is_none() {
        ", the default"
    } else {
        ""
    };
    let mut rest = Vec::with_capacity(m.entries.len());
    for entry in &m.entries {
        if !kind.keys().contains(entry.key) && other.keys().contains(entry.key) {
            let message = format!(
                "a key of `kind: {}`, and this storage is `kind: {}`{default}",
                other.name(),
                kind.name()
            );
            ctx.report(entry.key_at, &child(&m.path, entry.key), message);
        } else {
            rest.push(*entry);
        }
    }
    let rest = Mapping {
        path: m.path.clone(),
        at: m.at,
        entries: rest,
    };
    // Named lists, so the schema tests see which lists `storage` is checked against.
    match kind {
        Kind::Sqlite => ctx.check_keys(&rest, keys::SQLITE),
        Kind::Nats => ctx.check_keys(&rest, keys::NATS),
    }
}

fn sqlite(ctx: &mut Ctx<'_>, m: &Mapping<'_>, retention: Option<Duration>) -> Option<Storage> {
    let path = ctx
        .field(m, "path", "path", non_empty)
        .or(DEFAULT_STORAGE_PATH.to_owned());
    let defaults = StorageBudget::default();
    let max_bytes = ctx.field(m, "max_bytes", "size", store_size).optional();
    let min_free = ctx
        .field(m, "min_free", "size or percentage", min_free)
        .or(defaults.min_free);
    let target_share = ctx
        .field(m, "target_share", "percentage", target_share)
        .or(defaults.target_share);
    Some(Storage::Sqlite {
        path: PathBuf::from(path?),
        dead_letter_retention: retention?,
        budget: StorageBudget {
            max_bytes: max_bytes?,
            min_free: min_free?,
            target_share: target_share?,
        },
    })
}

/// The store needs room for its reserve and a log (a few MiB) before it can take an event.
fn store_size(text: &str) -> Result<u64, String> {
    match units::size(text)? {
        n if n < MIN_STORE_BYTES => Err("must be at least 16MiB: the store keeps about 5 MiB \
             in reserve to drain its queue, and its log needs room too"
            .to_owned()),
        n => Ok(n),
    }
}

/// `10%` (of the file system) or a size.
pub(super) fn min_free(text: &str) -> Result<MinFree, String> {
    match text.strip_suffix('%') {
        Some(p) => match integer(p, 0, 90) {
            Ok(n) => Ok(MinFree::Percent(n as u8)),
            Err(_) => Err("expected a whole percentage from 0% to 90%, or a size".to_owned()),
        },
        None => units::size(text).map(MinFree::Bytes),
    }
}

/// `1%` to `100%`.
pub(super) fn target_share(text: &str) -> Result<u8, String> {
    text.strip_suffix('%')
        .and_then(|p| integer(p, 1, 100).ok())
        .map(|n| n as u8)
        .ok_or_else(|| "expected a whole percentage from 1% to 100% (100% turns it off)".to_owned())
}

/// Zero would delete every dead letter as soon as it died, which is never what is meant.
fn retention(text: &str) -> Result<Duration, String> {
    match units::duration(text)? {
        d if d.is_zero() => Err("must be greater than zero".to_owned()),
        d => Ok(d),
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}
