//! Finding one event by its event id, for operators (`GET /api/v1/events?id=`).
//!
//! `events.key` has no index: one would cost a b-tree write on every ingest and a delete on
//! every prune, on the writer thread that bench/REPORT.md names the relay's bottleneck, to
//! speed up a lookup an operator makes by hand. So the lookup scans the stored events instead,
//! and does it on a read-only connection of its own, in one read transaction (a consistent
//! snapshot) on a blocking thread: WAL readers never wait for the writer nor hold it up, so
//! ingest and delivery go on while it runs. The `dedupe` table is keyed by the key, so whether
//! the event was received recently is one lookup.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::schema::{DEAD, IN_FLIGHT};
use crate::store::{
    DeliveryId, DeliveryState, EventDelivery, EventWhereabouts, StoreError, StoredEvent,
};

/// How long the read waits for a lock: only a schema change or a recovery ever holds one.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`find`] on a connection of its own, off the async runtime's threads.
pub async fn find_in(path: &Path, event_id: &str) -> Result<Option<EventWhereabouts>, StoreError> {
    let (path, event_id) = (path.to_path_buf(), event_id.to_owned());
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        find(&conn, &event_id).map_err(StoreError::from)
    })
    .await
    .map_err(|_| StoreError::Closed)?
}

/// Where the event `event_id` is; `None` when neither the de-duplication table nor the stored
/// events know it (both keep it in a column named `key`).
pub fn find(conn: &Connection, event_id: &str) -> rusqlite::Result<Option<EventWhereabouts>> {
    // One read transaction: the event id, the events and their deliveries seen at one moment, so a
    // delivery acked in between cannot show up as both gone and pending.
    let tx = conn.unchecked_transaction()?;
    let remembered: Option<(i64, Option<String>)> = tx
        .query_row(
            "SELECT expires_at, targets FROM dedupe WHERE key = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let remembered_until = remembered.as_ref().map(|(until, _)| *until);
    let routed = remembered.and_then(|(_, targets)| targets).map(|names| {
        names
            .split('\n')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let mut stmt =
        tx.prepare("SELECT id, type, received_at FROM events WHERE key = ?1 ORDER BY id")?;
    let events = stmt
        .query_map([event_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                StoredEvent {
                    event_type: r.get(1)?,
                    received_at: r.get(2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if remembered_until.is_none() && events.is_empty() {
        return Ok(None);
    }
    let mut stmt = tx.prepare(
        "SELECT id, target, state, attempts, next_attempt_at, last_status, last_error
         FROM deliveries WHERE event_id = ?1 ORDER BY id",
    )?;
    let mut deliveries = Vec::new();
    for (event_id, _) in &events {
        let rows = stmt.query_map([event_id], |r| {
            let state = match r.get::<_, i64>(2)? {
                DEAD => DeliveryState::Dead,
                IN_FLIGHT => DeliveryState::InFlight,
                _ => DeliveryState::Queued,
            };
            Ok(EventDelivery {
                id: DeliveryId(r.get(0)?),
                target: r.get(1)?,
                state,
                attempts: r.get(3)?,
                next_attempt_at: match state {
                    DeliveryState::Dead => None,
                    _ => Some(r.get(4)?),
                },
                last_status: r.get(5)?,
                last_error: r.get(6)?,
            })
        })?;
        for delivery in rows {
            deliveries.push(delivery?);
        }
    }
    Ok(Some(EventWhereabouts {
        remembered_until,
        routed,
        stored: events.into_iter().map(|(_, e)| e).collect(),
        deliveries,
    }))
}
