//! The SQLite schema and the connection settings that make commits durable.
//!
//! Delivery states are small integers so the partial indexes over pending work (`state < 2`)
//! stay usable by the claim query. Every index on `deliveries` is written on each ingest, claim
//! and ack, so there are as few as the queries need.

use std::time::SystemTime;

use rusqlite::Connection;

use crate::store::unix_ms;

/// SQLite's page size, which this schema never changes.
pub const PAGE_SIZE: u64 = 4096;

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
-- Files written before 2026-12 have deliveries_due(target, next_attempt_at) WHERE state < 2:
-- deliveries_ready (below) answers the claims, so it only cost a write per change of state.
DROP INDEX IF EXISTS deliveries_due;
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
CREATE TABLE IF NOT EXISTS target_state (
    target          TEXT PRIMARY KEY,
    disabled_reason TEXT,
    disabled_at     INTEGER,
    paused_at       INTEGER
) WITHOUT ROWID;
";

/// Columns of `deliveries` added for the delivery policy (issue 4), added to older files at
/// open. `head = 1` marks a delivery that may be claimed (see `ops`); rows written before
/// ordering existed have no key, so they are all heads.
const DELIVERY_POLICY_COLUMNS: [(&str, &str); 4] = [
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("order_key", "TEXT"),
    ("head", "INTEGER NOT NULL DEFAULT 1"),
    ("age_credit_ms", "INTEGER NOT NULL DEFAULT 0"),
];

/// Columns of `events` added later, added to older files at open: how `body` is kept (see
/// `body`); every body written before it is as it came.
const EVENT_COLUMNS: [(&str, &str); 1] = [("body_encoding", "INTEGER NOT NULL DEFAULT 0")];

/// Which process leased an in-flight delivery (a random mark per open), so that a relay that
/// took the store over in a zero-downtime restart can release the leases of the one it
/// replaced once that one has exited. NULL in older files: nobody's, released alike.
const LEASE_COLUMNS: [(&str, &str); 1] = [("leased_by", "INTEGER")];

/// The targets an event was routed to, newline-separated, kept with its de-duplication key so
/// that finding an event can tell "delivered" (routed there, nothing left) from "not routed
/// there" after its deliveries are gone (`find`). NULL in older files: unknown.
const DEDUPE_COLUMNS: [(&str, &str); 1] = [("targets", "TEXT")];

/// Indexes over those columns: claiming due heads by priority, and finding a key's pending
/// deliveries (is there one before a new delivery? which is the next head?).
const DELIVERY_POLICY_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS deliveries_ready
    ON deliveries(target, priority, next_attempt_at) WHERE state < 2 AND head = 1;
CREATE INDEX IF NOT EXISTS deliveries_order
    ON deliveries(target, order_key, id) WHERE state < 2 AND order_key IS NOT NULL;
";

/// How long a statement waits for another process's write lock. Commits are milliseconds, so
/// this only matters while two relays share the file during a zero-downtime restart.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Durability first: WAL with a full fsync at every commit, so a 200 means on disk.
pub fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    // First, so that every statement below waits for a second process (zero-downtime
    // restart) instead of failing with SQLITE_BUSY.
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
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
         PRAGMA foreign_keys=ON;",
    )?;
    conn.execute_batch(SCHEMA)?;
    add_columns(conn, "deliveries", &DELIVERY_POLICY_COLUMNS)?;
    add_columns(conn, "events", &EVENT_COLUMNS)?;
    add_columns(conn, "deliveries", &LEASE_COLUMNS)?;
    add_columns(conn, "dedupe", &DEDUPE_COLUMNS)?;
    conn.execute_batch(DELIVERY_POLICY_INDEXES)
}

fn add_columns(conn: &Connection, table: &str, columns: &[(&str, &str)]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let existing = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    for (name, definition) in columns {
        if !existing.iter().any(|c| c == name) {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {name} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Makes deliveries leased by a previous process due now. Called only when no other process
/// has the file open (not with `--upgrade`), so any lease found at start belongs to a process
/// that is gone.
pub fn release_leases(conn: &Connection, now: SystemTime) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE deliveries SET state = ?1, next_attempt_at = ?2 WHERE state = ?3",
        rusqlite::params![QUEUED, unix_ms(now), IN_FLIGHT],
    )
}
