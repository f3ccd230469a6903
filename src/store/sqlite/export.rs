//! Reading a SQLite store's pending deliveries and dead letters out, in id order and in
//! slices, and deleting them once they are stored elsewhere (`textus-relay migrate`).
//!
//! The file is read with a connection of its own, not through [`super::SqliteStore`]: the
//! caller holds the store's lock (see [`super::owner`]), so no relay writes meanwhile, and
//! nothing here should release leases, sweep or count as a relay does at open.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, params};

use super::schema::{DEAD, IN_FLIGHT, QUEUED};
use super::writer::begin;
use super::{body, schema};
use crate::config::Priority;
use crate::store::{Attempt, StoreError};

/// How many attempts of one delivery are carried over: the most recent ones, as many as
/// the JetStream store keeps (`meta::MAX_HISTORY`).
const HISTORY: i64 = 20;

/// One delivery as the SQLite store has it, with its event.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The row id in `deliveries`: what `mig:<id>` de-duplicates the move by.
    pub id: i64,
    /// The event's row id in `events` (`deliveries.event_id` in the file), not its event id.
    pub event_row: i64,
    /// `None` for a dead letter whose body never was an event.
    pub target: Option<String>,
    pub dead: bool,
    /// The event id (`events.key` in the file).
    pub event_id: String,
    pub event_type: Option<String>,
    pub body: Bytes,
    pub signature: String,
    /// Unix ms.
    pub received_at: i64,
    /// Unix ms of creation, moved later by the credit for time its target was paused or
    /// disabled (as a claim hands it out), so `max_age` counts the same after the move.
    pub created_at: i64,
    /// Unix ms of the last change: for a dead letter, when it died.
    pub updated_at: i64,
    pub priority: Priority,
    /// The rendered order key (the empty key for a fifo target), `None` for unordered.
    pub order_key: Option<String>,
    /// Attempts made in all.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The most recent attempts, oldest first.
    pub history: Vec<Attempt>,
}

/// What a store holds to be moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub dead: u64,
}

/// A SQLite store opened for moving its contents out.
pub struct Source {
    conn: Connection,
}

impl Source {
    /// Opens an existing store (never creates one) and brings an older file's schema up to
    /// date, as a relay would at open.
    pub fn open(path: &Path) -> Result<Source, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        schema::prepare(&conn).map_err(open_err)?;
        Ok(Source { conn })
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        let (pending, dead): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(state IN (?1, ?2)), 0), COALESCE(SUM(state = ?3), 0)
             FROM deliveries",
            params![QUEUED, IN_FLIGHT, DEAD],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Counts {
            pending: u64::try_from(pending).unwrap_or(0),
            dead: u64::try_from(dead).unwrap_or(0),
        })
    }

    /// The event ids still remembered for de-duplication at `now_ms` (their window has not
    /// run out), in no particular order.
    pub fn remembered(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key FROM dedupe WHERE expires_at > ?1")?;
        let event_ids = stmt
            .query_map([now_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(event_ids)
    }

    /// Up to `limit` deliveries (pending or dead) with an id above `after`, in id order.
    pub fn slice(&self, after: i64, limit: usize) -> Result<Vec<Exported>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, d.event_id, d.target, d.state, d.attempts,
                    d.created_at + d.age_credit_ms, d.updated_at, d.last_status, d.last_error,
                    d.priority, d.order_key,
                    e.key, e.type, e.body, e.body_encoding, e.signature, e.received_at
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id > ?1 AND d.state IN (?2, ?3, ?4)
             ORDER BY d.id LIMIT ?5",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after, QUEUED, IN_FLIGHT, DEAD, limit], |r| {
                let priority: i64 = r.get(9)?;
                let attempts: i64 = r.get(4)?;
                let last_status: Option<i64> = r.get(7)?;
                Ok(Exported {
                    id: r.get(0)?,
                    event_row: r.get(1)?,
                    target: r.get(2)?,
                    dead: r.get::<_, i64>(3)? == DEAD,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                    last_status: last_status.and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(8)?,
                    priority: if priority > 0 {
                        Priority::High
                    } else {
                        Priority::Normal
                    },
                    order_key: r.get(10)?,
                    event_id: r.get(11)?,
                    event_type: r.get(12)?,
                    body: body::column(r, 13, 14)?,
                    signature: r.get(15)?,
                    received_at: r.get(16)?,
                    history: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<Vec<Exported>>>()?;
        let mut out = rows;
        for d in &mut out {
            d.history = self.history(d.id)?;
        }
        Ok(out)
    }

    fn history(&self, id: i64) -> Result<Vec<Attempt>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT attempt, at, status, reason FROM attempts WHERE delivery_id = ?1
             ORDER BY attempt DESC LIMIT ?2",
        )?;
        let mut recent = stmt
            .query_map(params![id, HISTORY], |r| {
                let attempt: i64 = r.get(0)?;
                let status: Option<i64> = r.get(2)?;
                Ok(Attempt {
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    at: r.get(1)?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    reason: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<Attempt>>>()?;
        recent.reverse();
        Ok(recent)
    }

    /// Deletes moved deliveries, their attempts, and each event no delivery refers to any
    /// more, in one transaction: either the whole slice is gone or none of it is.
    pub fn remove(&mut self, moved: &[Exported]) -> Result<(), StoreError> {
        let tx = begin(&mut self.conn)?;
        {
            let mut attempts = tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
            let mut delivery = tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
            let mut event = tx.prepare_cached(
                "DELETE FROM events WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = ?1)",
            )?;
            for d in moved {
                attempts.execute([d.id])?;
                delivery.execute([d.id])?;
                event.execute([d.event_row])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::TargetId;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AttemptRecord, NewEvent, Queue, Routed};

    fn event(event_id: &str, targets: &[&str]) -> NewEvent {
        NewEvent {
            event_id: event_id.to_string(),
            parsed: Default::default(),
            event_type: Some("message.received".to_string()),
            body: Bytes::from_static(b"{\"hello\":\"world\"}"),
            signature: "abc".to_string(),
            received_at: SystemTime::now(),
            targets: targets
                .iter()
                .map(|t| Routed::plain(TargetId((*t).into())))
                .collect(),
            dead_reason: None,
            dedupe_window: Duration::from_secs(3600),
            keep_unrouted: false,
        }
    }

    #[tokio::test]
    async fn slices_carry_bodies_and_attempts_and_removal_keeps_shared_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("relay.db");
        {
            let store = SqliteStore::open(&db).expect("open");
            store
                .ingest(event("ev1", &["a", "b"]))
                .await
                .expect("ingest");
            store.ingest(event("ev2", &["a"])).await.expect("ingest");
            let claimed = store
                .claim(&TargetId("a".into()), 1, Duration::from_secs(30))
                .await
                .expect("claim");
            let job = &claimed.jobs[0];
            let last = AttemptRecord {
                status: Some(503),
                reason: "HTTP 503".into(),
            };
            store
                .retry_at(job.id, SystemTime::now(), last)
                .await
                .expect("retry");
        }
        let mut source = Source::open(&db).expect("source");
        let mut remembered = source.remembered(0).expect("remembered");
        remembered.sort();
        assert_eq!(remembered, ["ev1", "ev2"]);
        let later = crate::store::unix_ms(SystemTime::now() + Duration::from_secs(7200));
        assert!(source.remembered(later).expect("remembered").is_empty());
        assert_eq!(
            source.counts().expect("counts"),
            Counts {
                pending: 3,
                dead: 0
            }
        );
        let first = source.slice(0, 2).expect("slice");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].event_id, "ev1");
        assert_eq!(first[0].body.as_ref(), b"{\"hello\":\"world\"}");
        assert_eq!(first[0].attempts, 1);
        assert_eq!(first[0].history.len(), 1);
        assert_eq!(first[0].history[0].status, Some(503));
        // ev1 still has b's delivery once a's is gone: its event must stay.
        source.remove(&first[..1]).expect("remove");
        let rest = source.slice(first[0].id, 10).expect("slice");
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].event_id, "ev1");
        assert_eq!(rest[0].body.as_ref(), b"{\"hello\":\"world\"}");
        source.remove(&rest).expect("remove");
        assert_eq!(source.counts().expect("counts"), Counts::default());
        let events: i64 = source
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .expect("count");
        assert_eq!(events, 0);
    }
}
