//! The store's side of the delivery policy: pending counts for `max_queue`, how an event's
//! deliveries are inserted (priority, order key, head, quota), ordering heads as deliveries
//! leave the queue, credit for time a target spent not sending, and the persisted target
//! control state.

use std::collections::HashMap;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Transaction, named_params, params};
use tracing::warn;

use super::budget::Budget;
use super::handing::Handing;
use super::schema::{DEAD, IN_FLIGHT, QUEUED};
use crate::config::{OnFull, Priority, TargetId};
use crate::store::{
    ControlChange, DeliveryId, Disabled, Ingested, Job, NewEvent, QueueLimit, Routed,
    TargetControl, from_unix_ms, unix_ms,
};

/// Pending (queued or in flight) deliveries per target. Targets with none have no entry, so
/// two counts of the same table compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending(HashMap<String, u64>);

impl Pending {
    pub fn get(&self, target: &TargetId) -> u64 {
        self.0.get(target.as_str()).copied().unwrap_or(0)
    }

    /// Pending deliveries of every target together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn add(&mut self, target: &TargetId) {
        *self.0.entry(target.as_str().to_owned()).or_default() += 1;
    }

    fn sub(&mut self, target: &str) {
        if let Some(n) = self.0.get_mut(target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(target);
            }
        }
    }
}

/// The answer when a target with `on_full: reject` routed for `e` is past one of its limits.
pub fn rejected_by_quota(e: &NewEvent, pending: &Pending, budget: &Budget) -> Option<Ingested> {
    e.targets.iter().find_map(|routed| {
        let quota = routed.quota?;
        if quota.on_full != OnFull::Reject {
            return None;
        }
        over_quota(routed, pending, budget).map(|limit| Ingested::Rejected {
            target: routed.target.clone(),
            limit,
        })
    })
}

/// Which of its limits `routed`'s target is past, if any: `max_queue` pending deliveries, or
/// its share of the storage budget. A target's bytes are estimated from its part of all
/// pending deliveries (events are alike in size, and reading every body's length would take a
/// scan of the backlog).
fn over_quota(routed: &Routed, pending: &Pending, budget: &Budget) -> Option<QueueLimit> {
    let quota = routed.quota?;
    let n = pending.get(&routed.target);
    if let Some(max) = quota.max_queue
        && n >= max
    {
        return Some(QueueLimit::Deliveries(max));
    }
    let percent = quota.share_percent?;
    let (held, capacity) = budget.target_bytes(n);
    let allowed = capacity / 100 * u64::from(percent);
    (n > 0 && held >= allowed).then_some(QueueLimit::Share {
        percent,
        bytes: allowed,
    })
}

/// One delivery per routed target (queued, leased to a dispatcher that offered room, or dead
/// when its queue is full), and the dead letter of a body that is not an event.
pub fn insert_deliveries(
    tx: &Transaction<'_>,
    e: &NewEvent,
    event_id: i64,
    now_ms: i64,
    pending: &mut Pending,
    handing: &mut Handing,
    budget: &Budget,
) -> rusqlite::Result<()> {
    // Dead letters are heads (head = 1), so a replayed one is claimable again. The creation
    // time is its own parameter: a handed-over delivery's next_attempt_at is the end of its
    // lease, and `max_age` and the oldest queued age count from creation.
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries(event_id, target, state, next_attempt_at, created_at, updated_at,
                                last_error, priority, order_key, head, leased_by)
         VALUES (:event_id, :target, :state, :next_attempt_at, :created_at, :created_at,
                 :last_error, :priority, :order_key, :head, :leased_by)",
    )?;
    let dead = NewDelivery {
        event_id,
        target: None,
        state: DEAD,
        next_attempt_at: now_ms,
        created_at: now_ms,
        last_error: None,
        priority: 0,
        order_key: None,
        head: true,
        leased_by: None,
    };
    if let Some(reason) = &e.dead_reason {
        NewDelivery {
            last_error: Some(reason),
            ..dead
        }
        .insert(&mut insert)?;
    }
    for routed in &e.targets {
        let priority = priority_value(routed.priority);
        let target = routed.target.as_str();
        let row = NewDelivery {
            target: Some(target),
            priority,
            ..dead
        };
        if let Some(limit) = over_quota(routed, pending, budget) {
            let reason = format!("queue full ({limit})");
            warn!(target, event_id = %e.event_id, limit = %limit, "queue full: delivery stored as a dead letter");
            NewDelivery {
                last_error: Some(&reason),
                order_key: routed.order_key.as_deref(),
                ..row
            }
            .insert(&mut insert)?;
            continue;
        }
        pending.add(&routed.target);
        // An unordered delivery goes straight to a dispatcher with room, leased from now.
        let leased = match routed.order_key {
            None => handing.reserve(&routed.target),
            Some(_) => None,
        };
        if let Some((mailbox, lease)) = leased {
            let until = unix_ms(from_unix_ms(now_ms) + lease);
            NewDelivery {
                state: IN_FLIGHT,
                next_attempt_at: until,
                leased_by: Some(handing.lessee()),
                ..row
            }
            .insert(&mut insert)?;
            // `created_at` as a claim would read it back: the row's milliseconds.
            let job = Job {
                id: DeliveryId(tx.last_insert_rowid()),
                event_id: e.event_id.clone(),
                event_type: e.event_type.clone(),
                body: e.body.clone(),
                // Whatever ingress parsed goes along: this delivery's target reads it without
                // parsing the body again.
                parsed: e.parsed.clone(),
                signature: e.signature.clone(),
                received_at: from_unix_ms(unix_ms(e.received_at)),
                attempts: 0,
                created_at: from_unix_ms(now_ms),
            };
            handing.hand(mailbox, job);
            continue;
        }
        let head = match &routed.order_key {
            None => true,
            Some(key) => !key_pending(tx, target, key)?,
        };
        NewDelivery {
            state: QUEUED,
            order_key: routed.order_key.as_deref(),
            head,
            ..row
        }
        .insert(&mut insert)?;
        handing.queued(&routed.target);
    }
    Ok(())
}

/// One row of `deliveries` as ingest stores it. Bound by name, so a column added to the
/// statement cannot shift the others.
#[derive(Clone, Copy)]
struct NewDelivery<'a> {
    event_id: i64,
    /// `None` for the dead letter of a body that was never an event.
    target: Option<&'a str>,
    state: i64,
    next_attempt_at: i64,
    created_at: i64,
    last_error: Option<&'a str>,
    priority: i64,
    order_key: Option<&'a str>,
    head: bool,
    leased_by: Option<i64>,
}

impl NewDelivery<'_> {
    fn insert(&self, stmt: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        stmt.execute(named_params! {
            ":event_id": self.event_id,
            ":target": self.target,
            ":state": self.state,
            ":next_attempt_at": self.next_attempt_at,
            ":created_at": self.created_at,
            ":last_error": self.last_error,
            ":priority": self.priority,
            ":order_key": self.order_key,
            ":head": self.head,
            ":leased_by": self.leased_by,
        })
    }
}

/// How priorities are stored: higher is claimed first.
pub fn priority_value(priority: Priority) -> i64 {
    match priority {
        Priority::High => 1,
        Priority::Normal => 0,
    }
}

/// Counts pending deliveries per target from the table.
pub fn count_pending(conn: &Connection) -> rusqlite::Result<Pending> {
    // Grouped in the order of deliveries_dead(state, target), so SQLite counts while it walks
    // the index instead of sorting every pending delivery (a backlog can be millions).
    let mut stmt = conn.prepare(
        "SELECT target, COUNT(*) FROM deliveries
         WHERE state < 2 AND target IS NOT NULL GROUP BY state, target",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut pending = Pending::default();
    for row in rows {
        let (target, n) = row?;
        *pending.0.entry(target).or_default() += u64::try_from(n).unwrap_or(0);
    }
    Ok(pending)
}

/// Whether `target` has a pending delivery with order key `key` (the one a new delivery with
/// that key must wait behind).
pub fn key_pending(tx: &Transaction<'_>, target: &str, key: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM deliveries
         WHERE target = ?1 AND order_key = ?2 AND state < 2 AND order_key IS NOT NULL LIMIT 1",
    )?
    .exists(params![target, key])
}

/// A delivery of `target` stopped being pending (delivered or buried): one less in the queue,
/// and with an order key, the oldest pending delivery with that key is now the head.
pub fn left_pending(
    tx: &Transaction<'_>,
    target: &str,
    order_key: Option<&str>,
    pending: &mut Pending,
) -> rusqlite::Result<()> {
    pending.sub(target);
    if let Some(key) = order_key {
        tx.prepare_cached(
            "UPDATE deliveries SET head = 1 WHERE id = (
                SELECT MIN(id) FROM deliveries
                WHERE target = ?1 AND order_key = ?2 AND state < 2 AND order_key IS NOT NULL)",
        )?
        .execute(params![target, key])?;
    }
    Ok(())
}

/// Makes the oldest pending delivery of every (target, key) a head if none is: only an
/// operation outside this module that takes a head out of the queue could leave a key
/// without one, and then its deliveries would wait forever.
pub fn repair_heads(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE deliveries SET head = 1 WHERE head = 0 AND id IN (
            SELECT MIN(id) FROM deliveries
            WHERE state < 2 AND order_key IS NOT NULL GROUP BY target, order_key)",
        [],
    )
}

/// Makes every delivery leased by another process than `lessee` due now: that process is
/// gone (this one holds the store's lock now), so its attempts may or may not have happened.
pub fn release_others(
    tx: &Transaction<'_>,
    lessee: i64,
    now: SystemTime,
) -> rusqlite::Result<usize> {
    tx.execute(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2
         WHERE state = ?3 AND leased_by IS NOT ?4",
        params![QUEUED, unix_ms(now), IN_FLIGHT, lessee],
    )
}

/// Puts a claimed delivery back, due now, without counting an attempt.
pub fn release(tx: &Transaction<'_>, id: DeliveryId, now: SystemTime) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2 WHERE id = ?3 AND state = ?4",
    )?
    .execute(params![QUEUED, unix_ms(now), id.0, IN_FLIGHT])?;
    Ok(())
}

/// Moves the `max_age` clock of `target`'s pending deliveries on by the part of
/// `from..until` they spent queued.
pub fn credit(
    tx: &Transaction<'_>,
    target: &TargetId,
    from: SystemTime,
    until: SystemTime,
) -> rusqlite::Result<()> {
    let (from, until) = (unix_ms(from), unix_ms(until));
    if from >= until {
        return Ok(());
    }
    tx.execute(
        "UPDATE deliveries SET age_credit_ms = age_credit_ms + (?3 - MAX(created_at, ?2))
         WHERE state IN (0, 1) AND target = ?1 AND created_at < ?3",
        params![target.as_str(), from, until],
    )?;
    Ok(())
}

/// Applies `change` (if any) to `target`'s control state and returns the state.
pub fn control(
    tx: &Transaction<'_>,
    target: &TargetId,
    change: Option<&ControlChange>,
    now: SystemTime,
) -> rusqlite::Result<TargetControl> {
    let name = target.as_str();
    let now_ms = unix_ms(now);
    match change {
        None => {}
        Some(ControlChange::Disable { reason }) => {
            tx.execute(
                "INSERT INTO target_state(target, disabled_reason, disabled_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(target) DO UPDATE SET disabled_reason = excluded.disabled_reason,
                     disabled_at = COALESCE(target_state.disabled_at, excluded.disabled_at)",
                params![name, reason, now_ms],
            )?;
        }
        Some(ControlChange::Pause) => {
            tx.execute(
                "INSERT INTO target_state(target, paused_at) VALUES (?1, ?2)
                 ON CONFLICT(target) DO UPDATE
                     SET paused_at = COALESCE(target_state.paused_at, excluded.paused_at)",
                params![name, now_ms],
            )?;
        }
        Some(ControlChange::Enable) => {
            tx.execute("DELETE FROM target_state WHERE target = ?1", [name])?;
        }
    }
    let row: Option<(Option<String>, Option<i64>, Option<i64>)> = tx
        .query_row(
            "SELECT disabled_reason, disabled_at, paused_at FROM target_state WHERE target = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((reason, disabled_at, paused_at)) = row else {
        return Ok(TargetControl::default());
    };
    let disabled = disabled_at.map(|at| Disabled {
        reason: reason.unwrap_or_default(),
        at,
    });
    Ok(TargetControl {
        disabled,
        paused_at,
    })
}
