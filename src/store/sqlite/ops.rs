//! The requests the writer thread takes, each with its reply of its own type, and how each is
//! applied inside the batch's transaction (the hot path's statements are in [`super::queue`]).

use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use super::budget::{Budget, TIGHT_ROWS};
use super::handing::Handing;
use super::policy::{self, Pending};
use super::queue::{Leased, Settle, ack, claim, earliest, ingest, settle};
use super::schema::{DEAD, IN_FLIGHT, QUEUED};
use super::{body, dead};
use crate::config::TargetId;
use crate::store::{
    AttemptRecord, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterQuery,
    DeliveryId, Ingested, NewEvent, StoreError, TargetControl, TargetCounts, unix_ms,
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
        reply: Reply<Leased>,
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
            Op::Ingest { reply, event, .. } => {
                // Dropped before the answer: `SqliteStore::ingest` holds another reference
                // to the parsed event until answered, so it frees it, not the writer.
                drop(event);
                reply.finish(failed)
            }
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
