//! The SQLite schema and the connection settings that make commits durable.
//!
//! Delivery states are small integers so the partial index over pending work (`state < 2`)
//! stays usable by the claim query.

use std::time::SystemTime;

use rusqlite::Connection;

use crate::store::unix_ms;

/// Waiting for its next attempt.
pub const QUEUED: i64 = 0;
/// Leased by a dispatcher; `next_attempt_at` is the lease expiry.
pub const IN_FLIGHT: i64 = 1;
/// Will not be attempted again: a dead letter.
pub const DEAD: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    type        TEXT,
    body        BLOB NOT NULL,
    signature   TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events(id),
    target          TEXT,
    state           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(target, next_attempt_at) WHERE state < 2;
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries(state, target);
CREATE TABLE IF NOT EXISTS dedupe (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe(expires_at);
-- Every settled attempt of a delivery. ON DELETE CASCADE keeps it bounded by construction:
-- an acked, purged or swept delivery takes its history with it, and a reused delivery id can
-- never inherit someone else's attempts.
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER,
    reason      TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
-- Dead letters only (partial, so queued work never pays for them): by the time they died for
-- newest-first listing and the retention sweep, by id for the slices of replay and purge.
CREATE INDEX IF NOT EXISTS deliveries_dead_at ON deliveries(updated_at) WHERE state = 2;
CREATE INDEX IF NOT EXISTS deliveries_dead_id ON deliveries(id) WHERE state = 2;
";

/// Durability first: WAL with a full fsync at every commit, so a 200 means on disk.
pub fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    // Room for every statement the writer caches (hot path and admin slices together), so
    // an admin call never evicts the ingest and ack statements.
    conn.set_prepared_statement_cache_capacity(64);
    // Plans that never depend on bound values: otherwise SQLite expires the cached claim
    // statement whenever its LIMIT moves between 1 and more (it peeks at the bound value), and
    // re-preparing it was ~8% of the writer's CPU under load (bench/REPORT.md).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Must precede the first table: SQLite fixes the vacuum mode when the file is created.
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(super::plain_error(format!(
            "the store needs WAL journaling but SQLite chose {mode}"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         PRAGMA journal_size_limit=67108864;
         PRAGMA foreign_keys=ON;
         PRAGMA busy_timeout=5000;",
    )?;
    conn.execute_batch(SCHEMA)
}

/// Makes deliveries leased by a previous process due now. Only one process opens the file, so
/// any lease found at start belongs to a process that is gone.
pub fn release_leases(conn: &Connection, now: SystemTime) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2 WHERE state = ?3",
        rusqlite::params![QUEUED, unix_ms(now), IN_FLIGHT],
    )
}
