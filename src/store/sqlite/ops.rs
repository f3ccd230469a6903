//! The operations the writer thread applies, each inside the batch's transaction.
//!
//! Ordering is decided when a delivery is stored, not when it is claimed: a delivery with an
//! order key is a *head* (`head = 1`) only while no older pending delivery of its target has
//! the same key, and claims take heads only. When a head stops being pending (delivered or
//! buried) the next delivery of its key becomes the head. Deliveries without a key are always
//! heads. So a claim is one index range per priority, whatever the target's ordering.

use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::budget::{Budget, TIGHT_REASON_BYTES, TIGHT_ROWS};
use super::handing::Handing;
use super::policy::{self, Pending};
use super::schema::{DEAD, IN_FLIGHT, QUEUED};
use super::{body, dead};
use crate::config::{Priority, TargetId};
use crate::store::{
    AttemptRecord, Claimed, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter,
    DeadLetterQuery, DeliveryId, Ingested, Job, NewEvent, StoreError, TargetControl, TargetCounts,
    from_unix_ms, unix_ms,
};

/// A request to the writer, with the channel it is answered on. Each operation's reply has
/// its own type, so a caller cannot be handed another operation's answer.
pub enum Op {
    /// The event, with its body as it is to be kept.
    Ingest {
        stored: body::Stored,
        event: NewEvent,
        reply: Reply<Ingested>,
    },
    Claim {
        target: TargetId,
        limit: usize,
        lease: Duration,
        reply: Reply<Claimed>,
    },
    /// `may_wait`: nothing waits on it, so the writer may hold it for company (see
    /// [`Op::may_wait`]).
    Ack {
        id: DeliveryId,
        may_wait: bool,
        reply: Reply<()>,
    },
    Retry {
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
        reply: Reply<()>,
    },
    Bury {
        id: DeliveryId,
        last: AttemptRecord,
        reply: Reply<()>,
    },
    Release {
        id: DeliveryId,
        reply: Reply<()>,
    },
    Credit {
        target: TargetId,
        from: SystemTime,
        until: SystemTime,
        reply: Reply<()>,
    },
    /// Reads (`change: None`) or changes the control state of a target.
    Control {
        target: TargetId,
        change: Option<ControlChange>,
        reply: Reply<TargetControl>,
    },
    DeadLetters {
        query: DeadLetterQuery,
        reply: Reply<Vec<DeadLetter>>,
    },
    Counts {
        target: TargetId,
        reply: Reply<TargetCounts>,
    },
    Targets {
        reply: Reply<Vec<TargetId>>,
    },
    Ping {
        reply: Reply<()>,
    },
    DeadLetter {
        id: DeliveryId,
        reply: Reply<Option<DeadLetterDetail>>,
    },
    /// One slice of a replay: matching dead letters with ids above `after`.
    ReplaySlice {
        filter: DeadLetterFilter,
        after: i64,
        /// The configured targets; letters for any other are skipped.
        targets: Vec<String>,
        reply: Reply<dead::ReplaySlice>,
    },
    /// One slice of a purge: matching dead letters with ids above `after`.
    PurgeSlice {
        filter: DeadLetterFilter,
        after: i64,
        reply: Reply<dead::PurgeSlice>,
    },
    /// The process this one took over from (`run --upgrade`) has exited: its leases are
    /// released. Answers how many deliveries that made due.
    TakeOver {
        reply: Reply<u64>,
    },
}

impl Op {
    /// True for an operation whose caller does not mind waiting a moment for its commit: the
    /// writer holds such operations for up to [`super::GATHER`] and commits them with the
    /// next one that is in a hurry, instead of paying a transaction (and an fsync) of their
    /// own.
    pub fn may_wait(&self) -> bool {
        matches!(self, Op::Ack { may_wait: true, .. })
    }

    /// About how many rows the operation changes at most, for the writer's tight batches
    /// while ingest is stopped for space (budget.rs).
    pub fn rows(&self) -> usize {
        match self {
            Op::Claim { limit, .. } => (*limit).max(1),
            Op::ReplaySlice { .. } | Op::PurgeSlice { .. } => TIGHT_ROWS,
            _ => 1,
        }
    }

    /// Sends the answer [`apply`] staged; call it only once the transaction has committed.
    pub fn answer(self) {
        self.finish(None);
    }

    /// Answers `error` instead (the transaction failed, or was never tried).
    pub fn fail(self, error: StoreError) {
        self.finish(Some(error));
    }

    fn finish(self, failed: Option<StoreError>) {
        match self {
            Op::Ingest { reply, .. } => reply.finish(failed),
            Op::Claim { reply, .. } => reply.finish(failed),
            Op::Ack { reply, .. }
            | Op::Retry { reply, .. }
            | Op::Bury { reply, .. }
            | Op::Release { reply, .. }
            | Op::Credit { reply, .. }
            | Op::Ping { reply } => reply.finish(failed),
            Op::Control { reply, .. } => reply.finish(failed),
            Op::DeadLetters { reply, .. } => reply.finish(failed),
            Op::Counts { reply, .. } => reply.finish(failed),
            Op::Targets { reply } => reply.finish(failed),
            Op::DeadLetter { reply, .. } => reply.finish(failed),
            Op::ReplaySlice { reply, .. } => reply.finish(failed),
            Op::PurgeSlice { reply, .. } => reply.finish(failed),
            Op::TakeOver { reply } => reply.finish(failed),
        }
    }
}

/// Where the writer answers one operation: its caller's channel, and the answer, staged by
/// [`apply`] and sent only once the transaction it belongs to has committed (a batch that
/// fails is retried op by op, and the retry stages the answer again).
pub struct Reply<T> {
    to: oneshot::Sender<Result<T, StoreError>>,
    staged: Option<T>,
}

/// What a caller awaits for its operation. A dropped sender means the writer is gone.
pub type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

impl<T> Reply<T> {
    /// A reply for a new operation, and where its caller awaits it.
    pub fn channel() -> (Reply<T>, Answer<T>) {
        let (to, answer) = oneshot::channel();
        (Reply { to, staged: None }, answer)
    }

    fn stage(&mut self, answer: T) {
        self.staged = Some(answer);
    }

    fn finish(self, failed: Option<StoreError>) {
        let result = match (failed, self.staged) {
            (Some(e), _) => Err(e),
            (None, Some(answer)) => Ok(answer),
            // `answer` is only called for operations `apply` returned `Ok` for, and every arm
            // of `apply` stages before it does: this is a writer bug, said as such.
            (None, None) => Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                Some("the store writer answered an operation it had not applied".into()),
            ))),
        };
        // The caller may have given up waiting (a request cut off); nothing to tell it then.
        let _ = self.to.send(result);
    }
}

/// Applies one operation and stages its answer; `pending` is the batch's staged count of
/// pending deliveries, and `handing` what it hands to dispatchers once committed.
pub fn apply(
    tx: &Transaction<'_>,
    op: &mut Op,
    now: SystemTime,
    pending: &mut Pending,
    handing: &mut Handing,
    budget: &mut Budget,
) -> rusqlite::Result<()> {
    match op {
        Op::Ingest {
            stored,
            event,
            reply,
        } => reply.stage(ingest(tx, stored, event, now, pending, handing, budget)?),
        Op::Claim {
            target,
            limit,
            lease,
            reply,
        } => reply.stage(claim(tx, target, *limit, *lease, now, handing.lessee())?),
        Op::TakeOver { reply } => {
            let n = policy::release_others(tx, handing.lessee(), now)?;
            reply.stage(u64::try_from(n).unwrap_or(0));
        }
        Op::Ack { id, reply, .. } => reply.stage(ack(tx, *id, pending)?),
        Op::Retry {
            id,
            at,
            last,
            reply,
        } => {
            let next = Settle {
                state: QUEUED,
                next_ms: unix_ms(*at),
            };
            reply.stage(settle(tx, *id, next, last, now, pending, budget.tight())?);
        }
        Op::Bury { id, last, reply } => {
            let next = Settle {
                state: DEAD,
                next_ms: unix_ms(now),
            };
            reply.stage(settle(tx, *id, next, last, now, pending, budget.tight())?);
        }
        Op::Release { id, reply } => reply.stage(policy::release(tx, *id, now)?),
        Op::Credit {
            target,
            from,
            until,
            reply,
        } => reply.stage(policy::credit(tx, target, *from, *until)?),
        Op::Control {
            target,
            change,
            reply,
        } => reply.stage(policy::control(tx, target, change.as_ref(), now)?),
        Op::DeadLetters { query, reply } => reply.stage(dead::list(tx, query)?),
        Op::Counts { target, reply } => reply.stage(counts(tx, target, pending)?),
        Op::Targets { reply } => reply.stage(targets(tx)?),
        Op::Ping { reply } => reply.stage(tx.query_row("SELECT 1", [], |_| Ok(()))?),
        Op::DeadLetter { id, reply } => reply.stage(dead::show(tx, *id)?),
        Op::ReplaySlice {
            filter,
            after,
            targets,
            reply,
        } => {
            let slice = dead::replay_slice(tx, filter, *after, targets, now, slice(budget))?;
            // Replayed letters are pending again (a replay is an operator's decision, so it is
            // not refused by max_queue). They are heads already: dead letters always are.
            for (_, target) in &slice.replayed {
                pending.add(&TargetId(target.as_str().into()));
            }
            reply.stage(slice);
        }
        Op::PurgeSlice {
            filter,
            after,
            reply,
        } => reply.stage(dead::purge_slice(tx, filter, *after, slice(budget))?),
    }
    Ok(())
}

/// Rows a replay, purge or sweep slice takes: fewer while ingest is stopped for space, so one
/// transaction's log fits the reserve.
pub fn slice(budget: &Budget) -> usize {
    if budget.tight() {
        TIGHT_ROWS
    } else {
        dead::SLICE
    }
}

/// About how many bytes storing `e` adds: its body as kept, its strings, a delivery row with
/// its index entries per target and the de-duplication key (SQLite's cell and page overhead
/// included, generously).
fn estimate(stored: &body::Stored, e: &NewEvent) -> u64 {
    let strings = e.key.len() * 2
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

fn ingest(
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
            .query_row([&e.key], |r| r.get(0))
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
        .execute(params![e.key, expires, routed_names(e)])?;
    }
    if e.targets.is_empty() && e.dead_reason.is_none() && !e.keep_unrouted {
        return Ok(Ingested::Accepted);
    }
    tx.prepare_cached(
        "INSERT INTO events(key, type, body, body_encoding, signature, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        e.key,
        e.event_type,
        &stored.bytes[..],
        stored.encoding,
        e.signature,
        unix_ms(e.received_at)
    ])?;
    let event_id = tx.last_insert_rowid();
    policy::insert_deliveries(tx, e, event_id, now_ms, pending, handing, budget)?;
    Ok(Ingested::Accepted)
}

fn claim(
    tx: &Transaction<'_>,
    target: &TargetId,
    limit: usize,
    lease: Duration,
    now: SystemTime,
    lessee: i64,
) -> rusqlite::Result<Claimed> {
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
    let mut jobs = Vec::new();
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
                Ok(Job {
                    id: DeliveryId(r.get(0)?),
                    attempts: r.get(1)?,
                    created_at: from_unix_ms(r.get(2)?),
                    event_key: r.get(3)?,
                    event_type: r.get(4)?,
                    body: body::column(r, 5, 8)?,
                    signature: r.get(6)?,
                    received_at: from_unix_ms(r.get(7)?),
                })
            },
        )?;
        for job in rows {
            jobs.push(job?);
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
    Ok(Claimed {
        jobs,
        next_due: next_due.map(from_unix_ms),
    })
}

fn ack(tx: &Transaction<'_>, id: DeliveryId, pending: &mut Pending) -> rusqlite::Result<()> {
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
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Where an attempt leaves a delivery.
struct Settle {
    state: i64,
    next_ms: i64,
}

fn settle(
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
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2, attempts = attempts + 1,
         updated_at = ?3, last_status = ?4, last_error = ?5 WHERE id = ?6",
    )?
    .execute(params![
        next.state,
        next.next_ms,
        unix_ms(now),
        last.status,
        reason,
        id.0
    ])?;
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

/// A target's queue at a glance, for `/metrics` and the admin API, which ask on every scrape.
///
/// Nothing here reads the queue row by row: on the writer thread, counting a backlog of a
/// million deliveries and finding the oldest creation time among them took ~80 + ~200 ms, and
/// every ingest waited behind it, on every scrape, for every backlogged target. Queued is the
/// writer's pending count (kept for `max_queue`, recounted every minute) less the leased ones; leased and dead are counts of
/// one index range each (a few per concurrency slot, and the dead letters kept); the oldest
/// pending delivery is the one with the lowest id, because ids grow with insertion and a
/// replayed letter keeps both its id and its creation time.
fn counts(
    tx: &Transaction<'_>,
    target: &TargetId,
    pending: &Pending,
) -> rusqlite::Result<TargetCounts> {
    let name = target.as_str();
    let mut count =
        tx.prepare_cached("SELECT COUNT(*) FROM deliveries WHERE state = ?1 AND target = ?2")?;
    let mut in_state = |state: i64| -> rusqlite::Result<u64> {
        let n: i64 = count.query_row(params![state, name], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let in_flight = in_state(IN_FLIGHT)?;
    let dead = in_state(DEAD)?;
    let mut first =
        tx.prepare_cached("SELECT MIN(id) FROM deliveries WHERE state = ?1 AND target = ?2")?;
    let mut oldest_id: Option<i64> = None;
    for state in [QUEUED, IN_FLIGHT] {
        let id: Option<i64> = first.query_row(params![state, name], |r| r.get(0))?;
        oldest_id = earliest(oldest_id, id);
    }
    let oldest_queued_at = match oldest_id {
        Some(id) => tx
            .prepare_cached("SELECT created_at FROM deliveries WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?,
        None => None,
    };
    Ok(TargetCounts {
        queued: pending.get(target).saturating_sub(in_flight),
        in_flight,
        dead,
        oldest_queued_at,
    })
}

/// Every target with a delivery in any state, sorted. Asked on every `/metrics` scrape, so it
/// jumps from one target to the next in deliveries_dead(state, target), a few lookups per
/// target, instead of reading every delivery of a backlog. Dead letters of bodies that were
/// not events have no target and are not listed.
fn targets(tx: &Transaction<'_>) -> rusqlite::Result<Vec<TargetId>> {
    let mut stmt = tx.prepare_cached(
        "WITH RECURSIVE t(name) AS (
            SELECT (SELECT MIN(target) FROM deliveries WHERE state = ?1 AND target IS NOT NULL)
            UNION ALL
            SELECT (SELECT MIN(target) FROM deliveries WHERE state = ?1 AND target > t.name)
            FROM t WHERE t.name IS NOT NULL
         ) SELECT name FROM t WHERE name IS NOT NULL",
    )?;
    let mut names = std::collections::BTreeSet::new();
    for state in [QUEUED, IN_FLIGHT, DEAD] {
        for name in stmt.query_map([state], |r| r.get::<_, String>(0))? {
            names.insert(name?);
        }
    }
    Ok(names.into_iter().map(|n| TargetId(n.into())).collect())
}

/// Forgets up to `limit` de-duplication keys whose window has passed.
pub fn sweep_dedupe(
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
