//! Dead letters on SQLite: the attempt history, listing, showing, replay, purge and the
//! retention sweep. Everything here runs on the writer thread inside its transaction.
//!
//! A dead letter is a `deliveries` row in state `DEAD` (`target` NULL for a body that was never
//! an event); `updated_at` is when it died, which is what `since`/`until` and the retention
//! compare against. Replay and purge work in slices walked by ascending id (a keyset cursor):
//! each slice is one operation of the writer's group commit, so a replay of a million letters
//! never holds the writer (and therefore ingest) for long, and each letter is looked at once per
//! call even if a replayed one dies again before the call ends.
//!
//! The statements name their partial index (`INDEXED BY`) and spell the state as the literal `2`
//! (= [`DEAD`]; SQLite matches a partial index only against literals). Without statistics the
//! planner prefers `deliveries_dead (state, target)` and sorts every dead letter for each call:
//! measured with 100k dead letters, 25 ms per slice or list instead of 0.1 to 0.5 ms.

use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

use rusqlite::{OptionalExtension, ToSql, Transaction, params};

use super::body;
use super::schema::{DEAD, QUEUED};
use crate::store::{
    Attempt, AttemptRecord, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterQuery,
    DeliveryId, Replayed, Skipped, unix_ms,
};

/// Attempts kept per delivery: the most recent ones. A delivery retried for days with a short
/// `max_delay` would otherwise grow its history without bound while it is still queued.
pub const KEEP_ATTEMPTS: u32 = 100;
/// Rows one replay, purge or sweep slice touches: a few milliseconds of the writer's time.
/// While ingest is stopped for space, slices are [`super::budget::TIGHT_ROWS`] instead, so the
/// log of one transaction fits the store's reserve.
pub const SLICE: usize = 1_000;

/// The criteria every dead-letter statement shares, bound from [`Criteria::named`].
macro_rules! matching {
    () => {
        "d.state = 2
         AND (:target IS NULL OR d.target = :target)
         AND (:type IS NULL OR e.type = :type)
         AND (:since IS NULL OR d.updated_at >= :since)
         AND (:until IS NULL OR d.updated_at < :until)
         AND (:ids IS NULL OR d.id IN (SELECT value FROM json_each(:ids)))"
    };
}

/// The columns [`letter`] reads, in its order.
macro_rules! letter_columns {
    () => {
        "d.id, d.target, e.key, e.type, d.attempts, d.last_status, d.last_error,
         e.received_at, d.updated_at"
    };
}

/// A filter as SQL parameters.
struct Criteria {
    target: Option<String>,
    event_type: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    /// A JSON array of ids for `json_each`, so any number of ids binds as one parameter.
    ids: Option<String>,
}

impl Criteria {
    fn of_filter(f: &DeadLetterFilter) -> Criteria {
        Criteria {
            target: f.target.clone(),
            event_type: f.event_type.clone(),
            since: f.since.map(unix_ms),
            until: f.until.map(unix_ms),
            ids: f.ids.as_ref().map(|ids| {
                let raw: Vec<i64> = ids.iter().map(|id| id.0).collect();
                serde_json::Value::from(raw).to_string()
            }),
        }
    }

    /// The parameters of `matching!`, by name; a statement adds its own after them.
    fn named(&self) -> Vec<(&'static str, &dyn ToSql)> {
        vec![
            (":target", &self.target),
            (":type", &self.event_type),
            (":since", &self.since),
            (":until", &self.until),
            (":ids", &self.ids),
        ]
    }

    fn of_query(q: &DeadLetterQuery) -> Criteria {
        Criteria::of_filter(&DeadLetterFilter {
            ids: None,
            target: q.target.clone(),
            event_type: q.event_type.clone(),
            since: q.since,
            until: q.until,
        })
    }
}

/// Records a settled attempt: called right after the delivery's attempt counter went up, in
/// the same transaction. Does nothing if the delivery is gone.
pub fn record_attempt(
    tx: &Transaction<'_>,
    id: DeliveryId,
    last: &AttemptRecord,
    now: SystemTime,
) -> rusqlite::Result<()> {
    let number: Option<u32> = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO attempts(delivery_id, attempt, at, status, reason)
             SELECT id, attempts, ?2, ?3, ?4 FROM deliveries WHERE id = ?1
             RETURNING attempt",
        )?
        .query_row(params![id.0, unix_ms(now), last.status, last.reason], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(n) = number.filter(|n| *n > KEEP_ATTEMPTS) {
        tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1 AND attempt <= ?2")?
            .execute(params![id.0, n - KEEP_ATTEMPTS])?;
    }
    Ok(())
}

fn letter(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: DeliveryId(r.get(0)?),
        target: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        attempts: r.get(4)?,
        last_status: r.get(5)?,
        reason: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        received_at: r.get(7)?,
        dead_at: r.get(8)?,
    })
}

/// Newest (most recently dead) first.
pub fn list(tx: &Transaction<'_>, q: &DeadLetterQuery) -> rusqlite::Result<Vec<DeadLetter>> {
    let c = Criteria::of_query(q);
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT ",
        letter_columns!(),
        " FROM deliveries d INDEXED BY deliveries_dead_at JOIN events e ON e.id = d.event_id
         WHERE ",
        matching!(),
        " ORDER BY d.updated_at DESC, d.id DESC LIMIT :limit"
    ))?;
    let mut named = c.named();
    named.push((":limit", &limit));
    stmt.query_map(&*named, letter)?.collect()
}

/// One dead letter with its body and attempts; `None` if `id` is not a dead letter (unknown,
/// delivered, or queued again).
pub fn show(tx: &Transaction<'_>, id: DeliveryId) -> rusqlite::Result<Option<DeadLetterDetail>> {
    let found = tx
        .prepare_cached(concat!(
            "SELECT ",
            letter_columns!(),
            ", e.body, e.body_encoding FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ?1 AND d.state = 2"
        ))?
        .query_row([id.0], |r| Ok((letter(r)?, body::column(r, 9, 10)?)))
        .optional()?;
    let Some((letter, body)) = found else {
        return Ok(None);
    };
    let history = tx
        .prepare_cached(
            "SELECT attempt, at, status, reason FROM attempts WHERE delivery_id = ?1
             ORDER BY attempt",
        )?
        .query_map([id.0], |r| {
            Ok(Attempt {
                attempt: r.get(0)?,
                at: r.get(1)?,
                status: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(DeadLetterDetail {
        letter,
        body,
        history,
    }))
}

/// What one replay slice did. `last` is the cursor for the next slice; `None` means done.
#[derive(Debug, Default)]
pub struct ReplaySlice {
    pub last: Option<i64>,
    /// Every matching id looked at, replayed or not.
    pub seen: Vec<i64>,
    /// (id, target) queued again.
    pub replayed: Vec<(i64, String)>,
    /// Ids of bodies that were never events.
    pub never_events: Vec<i64>,
    /// (id, target) whose target is not configured (any more).
    pub unconfigured: Vec<(i64, String)>,
}

/// Replays the next slice of matching dead letters after id `after`.
pub fn replay_slice(
    tx: &Transaction<'_>,
    filter: &DeadLetterFilter,
    after: i64,
    targets: &[String],
    now: SystemTime,
    slice: usize,
) -> rusqlite::Result<ReplaySlice> {
    let rows: Vec<(i64, Option<String>)> =
        next_slice(tx, filter, after, slice, |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out = ReplaySlice {
        last: (rows.len() == slice)
            .then(|| rows.last().map(|r| r.0))
            .flatten(),
        ..ReplaySlice::default()
    };
    let now_ms = unix_ms(now);
    let mut requeue = tx.prepare_cached(
        "UPDATE deliveries SET state = ?1, attempts = 0, next_attempt_at = ?2, created_at = ?2,
         age_credit_ms = 0, updated_at = ?2, last_status = NULL, last_error = NULL WHERE id = ?3",
    )?;
    let mut forget = tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
    for (id, target) in rows {
        out.seen.push(id);
        match target {
            None => out.never_events.push(id),
            Some(t) if !targets.contains(&t) => out.unconfigured.push((id, t)),
            Some(t) => {
                // created_at restarts too: `max_age` counts from the replay, or an old letter
                // would die again after its first failed attempt.
                requeue.execute(params![QUEUED, now_ms, id])?;
                forget.execute([id])?;
                out.replayed.push((id, t));
            }
        }
    }
    Ok(out)
}

/// Adds up the slices of one replay.
#[derive(Default)]
pub struct ReplayTally {
    seen: HashSet<i64>,
    done: Replayed,
    never_events: Vec<i64>,
    unconfigured: Vec<i64>,
}

impl ReplayTally {
    pub fn add(&mut self, slice: ReplaySlice) {
        self.seen.extend(slice.seen);
        self.done.replayed += slice.replayed.len() as u64;
        for (_, target) in slice.replayed {
            *self.done.targets.entry(target).or_default() += 1;
        }
        self.never_events.extend(slice.never_events);
        self.unconfigured
            .extend(slice.unconfigured.into_iter().map(|(id, _)| id));
    }

    /// The answer, with a [`Skipped`] group per reason; `ids` are those asked for, if any.
    pub fn finish(mut self, ids: Option<&[DeliveryId]>) -> Replayed {
        let missing: Vec<i64> = ids
            .unwrap_or_default()
            .iter()
            .map(|id| id.0)
            .filter(|id| !self.seen.contains(id))
            .collect();
        let groups = [
            (
                "the body was never an event (not JSON, or no `action`): there is nothing to deliver",
                self.never_events,
            ),
            (
                "its target is not in the running configuration",
                self.unconfigured,
            ),
            ("no dead letter with this id matches", missing),
        ];
        for (reason, ids) in groups {
            if !ids.is_empty() {
                self.done.skipped.push(Skipped {
                    reason: reason.to_owned(),
                    count: ids.len() as u64,
                    ids: ids
                        .into_iter()
                        .take(Skipped::MAX_IDS)
                        .map(DeliveryId)
                        .collect(),
                });
            }
        }
        self.done
    }
}

/// What one purge slice did. `last` is the cursor for the next slice; `None` means done.
#[derive(Debug, Default)]
pub struct PurgeSlice {
    pub last: Option<i64>,
    pub purged: u64,
}

/// Deletes the next slice of matching dead letters after id `after`.
pub fn purge_slice(
    tx: &Transaction<'_>,
    filter: &DeadLetterFilter,
    after: i64,
    slice: usize,
) -> rusqlite::Result<PurgeSlice> {
    let rows: Vec<(i64, i64)> =
        next_slice(tx, filter, after, slice, |r| Ok((r.get(0)?, r.get(2)?)))?;
    let last = (rows.len() == slice)
        .then(|| rows.last().map(|r| r.0))
        .flatten();
    Ok(PurgeSlice {
        last,
        purged: delete(tx, &rows)?,
    })
}

/// Deletes up to `slice` dead letters that died before `cutoff`; returns how many.
pub fn sweep(tx: &Transaction<'_>, cutoff: SystemTime, slice: usize) -> rusqlite::Result<u64> {
    let rows = tx
        .prepare_cached(
            "SELECT id, event_id FROM deliveries INDEXED BY deliveries_dead_at
             WHERE state = 2 AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
        )?
        .query_map(params![unix_ms(cutoff), slice as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<(i64, i64)>>>()?;
    delete(tx, &rows)
}

/// The next `slice` matching dead letters after id `after`, as `(id, target, event_id)`
/// mapped by `row`.
fn next_slice<T>(
    tx: &Transaction<'_>,
    filter: &DeadLetterFilter,
    after: i64,
    slice: usize,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let c = Criteria::of_filter(filter);
    let mut stmt = tx.prepare_cached(concat!(
        "SELECT d.id, d.target, d.event_id
         FROM deliveries d INDEXED BY deliveries_dead_id JOIN events e ON e.id = d.event_id
         WHERE ",
        matching!(),
        " AND d.id > :after ORDER BY d.id LIMIT :slice"
    ))?;
    let slice = slice as i64;
    let mut named = c.named();
    named.push((":after", &after));
    named.push((":slice", &slice));
    stmt.query_map(&*named, row)?.collect()
}

/// Deletes `(delivery id, event id)` dead letters (their attempts go by cascade), then each
/// event nothing refers to any more.
fn delete(tx: &Transaction<'_>, rows: &[(i64, i64)]) -> rusqlite::Result<u64> {
    let mut gone = 0;
    let mut del = tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1 AND state = ?2")?;
    for (id, _) in rows {
        gone += del.execute(params![id, DEAD])? as u64;
    }
    let events: BTreeSet<i64> = rows.iter().map(|r| r.1).collect();
    let mut prune = tx.prepare_cached(
        "DELETE FROM events WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
    )?;
    for event in events {
        prune.execute([event])?;
    }
    Ok(gone)
}
