//! The `storage:` section: its `kind` decides which keys are valid. `kind: sqlite` (the
//! default) is read here, `kind: nats` in `nats.rs`; `dead_letter_retention` is shared.
//!
//! A key of the other kind is reported as belonging to it, not as unknown, because moving a
//! file from one kind to the other is the likeliest way to get one.

use std::path::PathBuf;
use std::time::Duration;

use super::de::fields_of;
use super::reader::{Ctx, child, integer};
use super::schema::{
    DEAD_LETTER_RETENTION, NatsStorage, SqliteStorage, Storage as RawStorage, StorageKinds,
};
use super::tree::{Node, Value};
use super::{MinFree, Storage, StorageBudget, nats, units};

/// The smallest `storage.max_bytes`.
const MIN_STORE_BYTES: u64 = 16 << 20;

pub(super) fn storage(ctx: &mut Ctx<'_>, raw: Option<&RawStorage>) -> Option<Storage> {
    let Some(RawStorage(kinds)) = raw else {
        return sqlite(ctx, None);
    };
    match kinds {
        StorageKinds::Sqlite(raw) => {
            let path = ctx.section(&raw.at)?;
            let default = !ctx.node(&raw.at).is_some_and(has_kind);
            let default = if default { ", the default" } else { "" };
            claim_other_kind(
                ctx,
                &path,
                fields_of::<NatsStorage>(),
                "nats",
                "sqlite",
                default,
            );
            sqlite(ctx, Some(raw))
        }
        StorageKinds::Nats(raw) => {
            let path = ctx.section(&raw.at)?;
            claim_other_kind(
                ctx,
                &path,
                fields_of::<SqliteStorage>(),
                "sqlite",
                "nats",
                "",
            );
            let retention = ctx.value_or(
                raw.dead_letter_retention.as_ref(),
                "duration",
                DEAD_LETTER_RETENTION,
                retention,
            );
            nats::storage(ctx, raw, retention).map(Storage::Nats)
        }
    }
}

fn has_kind(node: &Node) -> bool {
    match &node.value {
        Value::Map(pairs) => pairs.iter().any(|(key, value)| {
            matches!(&key.value, Value::Scalar(k) if k == "kind")
                && !matches!(value.value, Value::Null)
        }),
        _ => false,
    }
}

/// Reports each unknown key that is a key of the other kind as belonging there: moving a file
/// from one kind to the other is the likeliest way to get one.
fn claim_other_kind(
    ctx: &mut Ctx<'_>,
    path: &str,
    other_keys: &[&str],
    other: &str,
    kind: &str,
    default: &str,
) {
    let (theirs, rest) = std::mem::take(&mut ctx.unknown)
        .into_iter()
        .partition(|u| u.parent == path && other_keys.contains(&u.key.as_str()));
    ctx.unknown = rest;
    let theirs: Vec<_> = theirs;
    for key in theirs {
        let message =
            format!("a key of `kind: {other}`, and this storage is `kind: {kind}`{default}");
        ctx.report(key.at, &child(path, &key.key), message);
    }
}

/// `kind: sqlite`; `None` when `storage` is left out.
fn sqlite(ctx: &mut Ctx<'_>, raw: Option<&SqliteStorage>) -> Option<Storage> {
    let path = ctx.value_or(
        raw.and_then(|r| r.path.as_ref()),
        "path",
        SqliteStorage::PATH,
        non_empty,
    );
    let retention = ctx.value_or(
        raw.and_then(|r| r.dead_letter_retention.as_ref()),
        "duration",
        DEAD_LETTER_RETENTION,
        retention,
    );
    let max_bytes = ctx
        .value(raw.and_then(|r| r.max_bytes.as_ref()), "size", store_size)
        .optional();
    let min_free = ctx.value_or(
        raw.and_then(|r| r.min_free.as_ref()),
        "size or percentage",
        SqliteStorage::MIN_FREE,
        min_free,
    );
    let target_share = ctx.value_or(
        raw.and_then(|r| r.target_share.as_ref()),
        "percentage",
        SqliteStorage::TARGET_SHARE,
        target_share,
    );
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
