//! The hot path's statements: storing an event, claiming, acking and settling deliveries, and
//! forgetting expired de-duplication keys.
//!
//! Ordering is decided when a delivery is stored, not when it is claimed: a delivery with an
//! order key is a *head* (`head = 1`) only while no older pending delivery of its target has
//! the same key, and claims take heads only. When a head stops being pending (delivered or
//! buried) the next delivery of its key becomes the head. Deliveries without a key are always
//! heads. So a claim is one index range per priority, whatever the target's ordering.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction, named_params, params};

use super::budget::{Budget, TIGHT_REASON_BYTES};
use super::handing::Handing;
use super::policy::{self, Pending};
use super::schema::{DEAD, IN_FLIGHT};
use super::{body, dead};
use crate::config::{Priority, TargetId};
use crate::store::{
    AttemptRecord, Claimed, DeliveryId, Ingested, Job, NewEvent, from_unix_ms, unix_ms,
};

/// About how many bytes storing `e` adds: its body as kept, its strings, a delivery row with
/// its index entries per target and the de-duplication key (SQLite's cell and page overhead
/// included, generously).
fn estimate(stored: &body::Stored, e: &NewEvent) -> u64 {
    let strings = e.event_id.len() * 2
        + e.signature.len()
        + e.event_type.as_ref().map_or(0, String::len)
        + routed_len(e);
    (stored.bytes.len() + strings + 160 + 128 * e.targets.len()) as u64
}

/// The routed target names as the `dedupe.targets` column keeps them (names cannot contain a
/// newline: config validation allows letters, digits, `-` and `_`).
fn routed_names(e: &NewEvent) -> String {
    let mut names = String::with_capacity(routed_len(e));
    for (i, routed) in e.targets.iter().enumerate() {
        if i > 0 {
            names.push('\n');
        }
        names.push_str(routed.target.as_str());
    }
    names
}

fn routed_len(e: &NewEvent) -> usize {
    e.targets.iter().map(|r| r.target.as_str().len() + 1).sum()
}

pub(super) fn ingest(
    tx: &Transaction<'_>,
    stored: &body::Stored,
    e: &NewEvent,
    now: SystemTime,
    pending: &mut Pending,
    handing: &mut Handing,
    budget: &mut Budget,
) -> rusqlite::Result<Ingested> {
    let now_ms = unix_ms(now);
    if !e.dedupe_window.is_zero() {
        // Cached statements: parsing the SQL anew for every event was ~15% of the writer's
        // CPU under load (bench/REPORT.md), and the writer is the relay's bottleneck.
        let seen: Option<i64> = tx
            .prepare_cached("SELECT expires_at FROM dedupe WHERE key = ?1")?
            .query_row([&e.event_id], |r| r.get(0))
            .optional()?;
        if seen.is_some_and(|expires| expires > now_ms) {
            return Ok(Ingested::Duplicate);
        }
    }
    // Before anything is written: a rejected event leaves no trace, not even its key.
    if let Some(rejected) = policy::rejected_by_quota(e, pending, budget) {
        return Ok(rejected);
    }
    if let Err(limit) = budget.admit(estimate(stored, e)) {
        return Ok(Ingested::Full(limit));
    }
    if !e.dedupe_window.is_zero() {
        let expires = unix_ms(now + e.dedupe_window);
        tx.prepare_cached(
            "INSERT INTO dedupe(key, expires_at, targets) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE
             SET expires_at = excluded.expires_at, targets = excluded.targets",
        )?
        .execute(params![e.event_id, expires, routed_names(e)])?;
    }
    if e.targets.is_empty() && e.dead_reason.is_none() && !e.keep_unrouted {
        return Ok(Ingested::Accepted);
    }
    tx.prepare_cached(
        "INSERT INTO events(key, type, body, body_encoding, signature, received_at)
         VALUES (:key, :type, :body, :body_encoding, :signature, :received_at)",
    )?
    .execute(named_params! {
        ":key": e.event_id,
        ":type": e.event_type,
        ":body": &stored.bytes[..],
        ":body_encoding": stored.encoding,
        ":signature": e.signature,
        ":received_at": unix_ms(e.received_at),
    })?;
    let event_id = tx.last_insert_rowid();
    policy::insert_deliveries(tx, e, event_id, now_ms, pending, handing, budget)?;
    Ok(Ingested::Accepted)
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    target: &TargetId,
    limit: usize,
    lease: Duration,
    now: SystemTime,
    lessee: i64,
) -> rusqlite::Result<Leased> {
    let now_ms = unix_ms(now);
    // Heads only (see the module docs); high priority first, then by due time.
    let mut select = tx.prepare_cached(
        "SELECT d.id, d.attempts, d.created_at + d.age_credit_ms, e.key, e.type, e.body,
                e.signature, e.received_at, e.body_encoding
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.target = ?1 AND d.state < 2 AND d.head = 1 AND d.priority = ?2
           AND d.next_attempt_at <= ?3
         ORDER BY d.next_attempt_at, d.id LIMIT ?4",
    )?;
    let (mut jobs, mut encodings) = (Vec::new(), Vec::new());
    for priority in [Priority::High, Priority::Normal] {
        let room = i64::try_from(limit.saturating_sub(jobs.len())).unwrap_or(i64::MAX);
        if room == 0 {
            break;
        }
        let rows = select.query_map(
            params![
                target.as_str(),
                policy::priority_value(priority),
                now_ms,
                room
            ],
            |r| {
                let job = Job {
                    id: DeliveryId(r.get(0)?),
                    attempts: r.get(1)?,
                    created_at: from_unix_ms(r.get(2)?),
                    event_id: r.get(3)?,
                    event_type: r.get(4)?,
                    // As kept: the claimer decodes it (see [`Leased`]).
                    body: Bytes::from(r.get::<_, Vec<u8>>(5)?),
                    // Parsed by its first reader, once for this claim (a plain http target
                    // never parses it).
                    parsed: Default::default(),
                    signature: r.get(6)?,
                    received_at: from_unix_ms(r.get(7)?),
                };
                Ok((job, r.get::<_, i64>(8)?))
            },
        )?;
        for row in rows {
            let (job, encoding) = row?;
            jobs.push(job);
            encodings.push(encoding);
        }
    }
    let mut lease_stmt = tx.prepare_cached(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2, leased_by = ?4 WHERE id = ?3",
    )?;
    let until = unix_ms(now + lease);
    for job in &jobs {
        lease_stmt.execute(params![IN_FLIGHT, until, job.id.0, lessee])?;
    }
    // Deliveries waiting behind a head are not due whatever their time says: only heads count.
    let mut next_stmt = tx.prepare_cached(
        "SELECT MIN(next_attempt_at) FROM deliveries
         WHERE target = ?1 AND state < 2 AND head = 1 AND priority = ?2",
    )?;
    let mut next_due: Option<i64> = None;
    for priority in [Priority::High, Priority::Normal] {
        let due: Option<i64> = next_stmt.query_row(
            params![target.as_str(), policy::priority_value(priority)],
            |r| r.get(0),
        )?;
        next_due = earliest(next_due, due);
    }
    Ok(Leased {
        claimed: Claimed {
            jobs,
            next_due: next_due.map(from_unix_ms),
        },
        encodings,
    })
}

/// A claim as the writer answers it: the bodies still as kept, with their encodings, for the
/// claimer to decode on its own thread ([`Leased::decode`]) rather than the writer's.
#[derive(Debug)]
pub struct Leased {
    claimed: Claimed,
    encodings: Vec<i64>,
}

impl Leased {
    /// The claim with every body as it came. A body that does not decode fails the claim, as
    /// reading it in the writer did.
    pub fn decode(self) -> rusqlite::Result<Claimed> {
        let Leased {
            mut claimed,
            encodings,
        } = self;
        for (job, encoding) in claimed.jobs.iter_mut().zip(encodings) {
            job.body = body::decode(encoding, std::mem::take(&mut job.body))
                .map_err(|e| body::unreadable(5, e))?;
        }
        Ok(claimed)
    }
}

pub(super) fn ack(
    tx: &Transaction<'_>,
    id: DeliveryId,
    pending: &mut Pending,
) -> rusqlite::Result<()> {
    // Read, then delete by rowid: `DELETE … RETURNING` builds and drops a temporary b-tree for
    // its results every time (~6% of the writer's CPU under load, bench/analysis.md). Cached,
    // like every statement of the hot path: acks are most of the writer's operations.
    let gone: Option<(i64, Option<String>, i64, Option<String>)> = tx
        .prepare_cached("SELECT event_id, target, state, order_key FROM deliveries WHERE id = ?1")?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((event_id, target, state, order_key)) = gone else {
        return Ok(());
    };
    tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
        .execute([id.0])?;
    if state < DEAD
        && let Some(target) = target
    {
        policy::left_pending(tx, &target, order_key.as_deref(), pending)?;
    }
    // The body is kept while any target (or a dead letter) still refers to it.
    tx.prepare_cached(
        "DELETE FROM events WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
    )?
    .execute([event_id])?;
    Ok(())
}

/// The smaller of two optional values, or whichever is there.
pub(super) fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where an attempt leaves a delivery.
pub(super) struct Settle {
    pub(super) state: i64,
    pub(super) next_ms: i64,
}

pub(super) fn settle(
    tx: &Transaction<'_>,
    id: DeliveryId,
    next: Settle,
    last: &AttemptRecord,
    now: SystemTime,
    pending: &mut Pending,
    tight: bool,
) -> rusqlite::Result<()> {
    let before: Option<(Option<String>, i64, Option<String>)> = tx
        .prepare_cached("SELECT target, state, order_key FROM deliveries WHERE id = ?1")?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((target, state, order_key)) = before else {
        return Ok(());
    };
    // While ingest is stopped for space, a settled attempt must not grow the store beyond the
    // headroom its delivery was given (budget.rs): a shorter reason, no history row.
    let reason = if tight {
        clip(&last.reason, TIGHT_REASON_BYTES)
    } else {
        &last.reason
    };
    tx.prepare_cached(
        "UPDATE deliveries SET state = :state, next_attempt_at = :next_attempt_at,
         attempts = attempts + 1, updated_at = :updated_at, last_status = :last_status,
         last_error = :last_error WHERE id = :id",
    )?
    .execute(named_params! {
        ":state": next.state,
        ":next_attempt_at": next.next_ms,
        ":updated_at": unix_ms(now),
        ":last_status": last.status,
        ":last_error": reason,
        ":id": id.0,
    })?;
    if !tight {
        dead::record_attempt(tx, id, last, now)?;
    }
    if state < DEAD
        && next.state == DEAD
        && let Some(target) = target
    {
        policy::left_pending(tx, &target, order_key.as_deref(), pending)?;
    }
    Ok(())
}

/// Forgets up to `limit` de-duplication keys whose window has passed.
pub(super) fn sweep_dedupe(
    conn: &rusqlite::Connection,
    now: SystemTime,
    limit: usize,
) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM dedupe WHERE key IN
         (SELECT key FROM dedupe WHERE expires_at <= ?1 LIMIT ?2)",
        params![unix_ms(now), limit as i64],
    )
}

/// The longest start of `text` that fits `max` bytes without splitting a character.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
