//! The operations the writer thread applies, each inside the batch's transaction.

use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, Transaction, params};

use super::dead;
use super::schema::{DEAD, IN_FLIGHT, QUEUED};
use crate::config::TargetId;
use crate::store::{
    AttemptRecord, Claimed, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterQuery,
    DeliveryId, Ingested, Job, NewEvent, StoreError, TargetCounts, from_unix_ms, unix_ms,
};

/// A request to the writer.
pub enum Op {
    Ingest(NewEvent),
    Claim {
        target: TargetId,
        limit: usize,
        lease: Duration,
    },
    Ack(DeliveryId),
    Retry {
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    },
    Bury {
        id: DeliveryId,
        last: AttemptRecord,
    },
    DeadLetters(DeadLetterQuery),
    Counts(TargetId),
    Ping,
    DeadLetter(DeliveryId),
    /// One slice of a replay: matching dead letters with ids above `after`.
    ReplaySlice {
        filter: DeadLetterFilter,
        after: i64,
        /// The configured targets; letters for any other are skipped.
        targets: Vec<String>,
    },
    /// One slice of a purge: matching dead letters with ids above `after`.
    PurgeSlice {
        filter: DeadLetterFilter,
        after: i64,
    },
}

/// The writer's answer, sent once the transaction committed.
pub type Reply = Result<Done, StoreError>;

/// What an operation produced.
pub enum Done {
    Ingested(Ingested),
    Claimed(Claimed),
    DeadLetters(Vec<DeadLetter>),
    Counts(TargetCounts),
    Nothing,
    DeadLetter(Option<DeadLetterDetail>),
    ReplaySlice(dead::ReplaySlice),
    PurgeSlice(dead::PurgeSlice),
}

pub fn apply(tx: &Transaction<'_>, op: &Op, now: SystemTime) -> rusqlite::Result<Done> {
    match op {
        Op::Ingest(event) => ingest(tx, event, now).map(Done::Ingested),
        Op::Claim {
            target,
            limit,
            lease,
        } => claim(tx, target, *limit, *lease, now).map(Done::Claimed),
        Op::Ack(id) => ack(tx, *id).map(|()| Done::Nothing),
        Op::Retry { id, at, last } => settle(tx, *id, QUEUED, unix_ms(*at), last, now),
        Op::Bury { id, last } => settle(tx, *id, DEAD, unix_ms(now), last, now),
        Op::DeadLetters(q) => dead::list(tx, q).map(Done::DeadLetters),
        Op::Counts(target) => counts(tx, target).map(Done::Counts),
        Op::Ping => tx
            .query_row("SELECT 1", [], |_| Ok(()))
            .map(|()| Done::Nothing),
        Op::DeadLetter(id) => dead::show(tx, *id).map(Done::DeadLetter),
        Op::ReplaySlice {
            filter,
            after,
            targets,
        } => dead::replay_slice(tx, filter, *after, targets, now).map(Done::ReplaySlice),
        Op::PurgeSlice { filter, after } => {
            dead::purge_slice(tx, filter, *after).map(Done::PurgeSlice)
        }
    }
}

fn ingest(tx: &Transaction<'_>, e: &NewEvent, now: SystemTime) -> rusqlite::Result<Ingested> {
    let now_ms = unix_ms(now);
    if !e.dedupe_window.is_zero() {
        // Cached statements: parsing the SQL anew for every event was ~15% of the writer's
        // CPU under load (bench/REPORT.md), and the writer is the relay's bottleneck.
        let seen: Option<i64> = tx
            .prepare_cached("SELECT expires_at FROM dedupe WHERE key = ?1")?
            .query_row([&e.key], |r| r.get(0))
            .optional()?;
        if seen.is_some_and(|expires| expires > now_ms) {
            return Ok(Ingested::Duplicate);
        }
        let expires = unix_ms(now + e.dedupe_window);
        tx.prepare_cached(
            "INSERT INTO dedupe(key, expires_at) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at",
        )?
        .execute(params![e.key, expires])?;
    }
    if e.targets.is_empty() && e.dead_reason.is_none() && !e.keep_unrouted {
        return Ok(Ingested::Accepted);
    }
    tx.prepare_cached(
        "INSERT INTO events(key, type, body, signature, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        e.key,
        e.event_type,
        &e.body[..],
        e.signature,
        unix_ms(e.received_at)
    ])?;
    let event_id = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries(event_id, target, state, next_attempt_at, created_at, updated_at, last_error)
         VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5)",
    )?;
    if let Some(reason) = &e.dead_reason {
        insert.execute(params![event_id, None::<String>, DEAD, now_ms, reason])?;
    }
    for target in &e.targets {
        insert.execute(params![
            event_id,
            target.as_str(),
            QUEUED,
            now_ms,
            None::<String>
        ])?;
    }
    Ok(Ingested::Accepted)
}

fn claim(
    tx: &Transaction<'_>,
    target: &TargetId,
    limit: usize,
    lease: Duration,
    now: SystemTime,
) -> rusqlite::Result<Claimed> {
    let now_ms = unix_ms(now);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut select = tx.prepare_cached(
        "SELECT d.id, d.attempts, d.created_at, e.key, e.type, e.body, e.signature, e.received_at
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.target = ?1 AND d.state < 2 AND d.next_attempt_at <= ?2
         ORDER BY d.next_attempt_at, d.id LIMIT ?3",
    )?;
    let jobs = select
        .query_map(params![target.as_str(), now_ms, limit], |r| {
            Ok(Job {
                id: DeliveryId(r.get(0)?),
                attempts: r.get(1)?,
                created_at: from_unix_ms(r.get(2)?),
                event_key: r.get(3)?,
                event_type: r.get(4)?,
                body: bytes::Bytes::from(r.get::<_, Vec<u8>>(5)?),
                signature: r.get(6)?,
                received_at: from_unix_ms(r.get(7)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<Job>>>()?;
    let mut lease_stmt =
        tx.prepare_cached("UPDATE deliveries SET state = ?1, next_attempt_at = ?2 WHERE id = ?3")?;
    let until = unix_ms(now + lease);
    for job in &jobs {
        lease_stmt.execute(params![IN_FLIGHT, until, job.id.0])?;
    }
    let next_due: Option<i64> = tx
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE target = ?1 AND state < 2",
        )?
        .query_row([target.as_str()], |r| r.get(0))?;
    Ok(Claimed {
        jobs,
        next_due: next_due.map(from_unix_ms),
    })
}

fn ack(tx: &Transaction<'_>, id: DeliveryId) -> rusqlite::Result<()> {
    let event_id: Option<i64> = tx
        .prepare_cached("DELETE FROM deliveries WHERE id = ?1 RETURNING event_id")?
        .query_row([id.0], |r| r.get(0))
        .optional()?;
    if let Some(event_id) = event_id {
        // The body is kept while any target (or a dead letter) still refers to it.
        tx.prepare_cached(
            "DELETE FROM events WHERE id = ?1
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
        )?
        .execute([event_id])?;
    }
    Ok(())
}

fn settle(
    tx: &Transaction<'_>,
    id: DeliveryId,
    state: i64,
    next_ms: i64,
    last: &AttemptRecord,
    now: SystemTime,
) -> rusqlite::Result<Done> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2, attempts = attempts + 1,
         updated_at = ?3, last_status = ?4, last_error = ?5 WHERE id = ?6",
    )?
    .execute(params![
        state,
        next_ms,
        unix_ms(now),
        last.status,
        last.reason,
        id.0
    ])?;
    dead::record_attempt(tx, id, last, now)?;
    Ok(Done::Nothing)
}

fn counts(tx: &Transaction<'_>, target: &TargetId) -> rusqlite::Result<TargetCounts> {
    let mut stmt = tx.prepare_cached(
        "SELECT state, COUNT(*) FROM deliveries WHERE target = ?1 GROUP BY state",
    )?;
    let mut counts = TargetCounts::default();
    let rows = stmt.query_map([target.as_str()], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        match state {
            QUEUED => counts.queued = n,
            IN_FLIGHT => counts.in_flight = n,
            _ => counts.dead = n,
        }
    }
    Ok(counts)
}

/// Forgets de-duplication keys whose window has passed, in bounded slices.
pub fn sweep_dedupe(conn: &rusqlite::Connection, now: SystemTime) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM dedupe WHERE key IN
         (SELECT key FROM dedupe WHERE expires_at <= ?1 LIMIT 10000)",
        [unix_ms(now)],
    )
}
