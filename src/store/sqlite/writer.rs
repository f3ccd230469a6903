//! The writer thread: the only user of the store's connection, applying operations in batches.
//!
//! The writer takes the first waiting operation, then everything that queued up behind it while
//! the previous transaction was syncing, and applies the lot in one transaction: one fsync
//! acknowledges many events (group commit). Each operation's answer is staged while it is
//! applied and sent only after `COMMIT` returned. Acks that nothing waits on are held up to
//! [`super::GATHER`] for an operation in a hurry, so that they share its transaction instead of paying
//! for their own.
//!
//! The writer also sweeps, between batches: expired de-duplication keys, and dead letters older
//! than the retention (in bounded slices, see [`dead`]).
//!
//! And it keeps each target's count of pending deliveries in memory, so `max_queue` is checked
//! without a `COUNT(*)` per event. Being the only writer makes the check race-free; the counts
//! of a batch are staged and kept only if its transaction commits, and they are recounted from
//! the table at open and at every sweep, so they cannot drift for long. The counts are per
//! process, so after a zero-downtime restart the new one recounts soon ([`UPGRADE_RECOUNT`]).

use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::budget::{self, Budget};
use super::handing::{Handing, Mailboxes};
use super::ops::{self, Op};
use super::policy::{self, Pending};
use super::queue;
use super::{SqliteOptions, UPGRADE_RECOUNT, Wakeups, checkpoint, dead, plain_error, wakeup_for};
use crate::store::StoreError;

/// The most operations one transaction takes, so one batch cannot hold replies back for long.
const MAX_BATCH: usize = 2_048;
/// How many expired de-duplication keys one sweep deletes.
const DEDUPE_SLICE: usize = 10_000;
/// How often expired de-duplication keys are deleted (and pending counts checked).
const DEDUPE_SWEEP: Duration = Duration::from_secs(60);

/// Owns the connection; runs on its own thread until every [`super::SqliteStore`] handle is
/// dropped.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) wakeups: Wakeups,
    /// Where deliveries leased at birth go; see [`crate::store::handoff`].
    pub(super) mailboxes: Mailboxes,
    pub(super) options: SqliteOptions,
    /// Pending deliveries per target, as committed.
    pub(super) pending: Pending,
    /// Set by a write that failed for lack of space; see [`Writer::note_failure`].
    pub(super) disk_full: bool,
    /// Copies the log into the database file beside the writer; see [`checkpoint`].
    pub(super) checkpointer: checkpoint::Checkpointer,
    /// When ingest must stop for space; see [`budget`].
    pub(super) budget: Budget,
    /// This process's mark on the deliveries it leases (`leased_by`).
    pub(super) lessee: i64,
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut last_sweep = std::time::Instant::now();
        if !self.options.resume_in_flight {
            // Another process shares the file until it finishes its grace period, and the
            // pending counts taken at open do not see its acks and ingests: recount once it
            // is surely gone rather than a full sweep interval later.
            last_sweep = last_sweep
                .checked_sub(DEDUPE_SWEEP.saturating_sub(UPGRADE_RECOUNT))
                .unwrap_or(last_sweep);
        }
        // `None` sweeps dead letters after the first batch: a relay restarted after a long
        // stop catches up at once.
        let mut last_dead_sweep: Option<std::time::Instant> = None;
        while let Some(first) = self.rx.blocking_recv() {
            if self.budget.due() {
                self.measure();
            }
            let hurry = !first.may_wait();
            let mut batch = vec![first];
            // Tight batches commit at once: they are small by design, and the drain is what
            // ingest now waits for.
            if !(self.take_waiting(&mut batch) || hurry || self.budget.tight()) {
                self.gather(&mut batch);
            }
            let (started, size) = (std::time::Instant::now(), batch.len());
            self.commit(batch);
            if self.budget.tight() {
                self.cut_log();
            } else {
                self.checkpointer.nudge();
            }
            if let Some(m) = &self.options.metrics {
                m.commit(started.elapsed(), size);
            }
            if last_sweep.elapsed() >= DEDUPE_SWEEP {
                last_sweep = std::time::Instant::now();
                let rows = if self.budget.tight() {
                    budget::TIGHT_ROWS
                } else {
                    DEDUPE_SLICE
                };
                if let Err(e) = queue::sweep_dedupe(&self.conn, SystemTime::now(), rows) {
                    warn!(error = %e, "deleting expired de-duplication keys failed");
                }
                // Hand pages freed by pruning back to the file system, a slice at a time, so
                // the file shrinks after a backlog drains instead of staying at its peak.
                let vacuum = format!("PRAGMA incremental_vacuum({})", rows.min(2000));
                if let Err(e) = self.conn.execute_batch(&vacuum) {
                    warn!(error = %e, "incremental vacuum failed");
                }
                if self.budget.tight() {
                    self.cut_log();
                }
                self.check_pending();
            }
            if last_dead_sweep.is_none_or(|at| at.elapsed() >= self.options.sweep_interval) {
                // A full slice means more are waiting: look again after the next batch
                // instead of an interval later, still one bounded slice at a time.
                let more = self.sweep_dead_letters();
                last_dead_sweep = (!more).then(std::time::Instant::now);
            }
        }
        info!("store writer stopped");
    }

    /// Adds every operation already waiting to `batch` (up to [`MAX_BATCH`], or
    /// [`budget::TIGHT_ROWS`] rows while ingest is stopped for space); true if one of them may
    /// not wait.
    fn take_waiting(&mut self, batch: &mut Vec<Op>) -> bool {
        let mut hurry = false;
        let tight = self.budget.tight();
        let mut rows: usize = batch.iter().map(Op::rows).sum();
        while batch.len() < MAX_BATCH && !(tight && rows >= budget::TIGHT_ROWS) {
            match self.rx.try_recv() {
                Ok(op) => {
                    hurry |= !op.may_wait();
                    rows += op.rows();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        hurry
    }

    /// Holds a batch of operations that all may wait for up to `options.gather`, until one
    /// that may not arrives (its sender unparks this thread) or the batch is full.
    fn gather(&mut self, batch: &mut Vec<Op>) {
        let until = std::time::Instant::now() + self.options.gather;
        while batch.len() < MAX_BATCH {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            // A stale unpark (from an operation already taken) only ends one wait early.
            std::thread::park_timeout(left);
            if self.take_waiting(batch) {
                return;
            }
        }
    }

    /// Applies a batch in one transaction. If anything in it fails, the transaction is rolled
    /// back and each operation is retried in a transaction of its own, so one bad operation
    /// cannot fail its neighbours (and under a full disk each still gets its own error).
    fn commit(&mut self, mut batch: Vec<Op>) {
        let now = SystemTime::now();
        if self.disk_full && !self.try_resume() {
            for op in batch {
                op.fail(StoreError::Sqlite(disk_full_error()));
            }
            return;
        }
        match self.apply_all(&mut batch, now) {
            Ok(handing) => {
                for op in batch {
                    op.answer();
                }
                self.hand_over(handing);
            }
            Err(e) if batch.len() == 1 || is_disk_full(&e) => {
                self.note_failure(&e);
                error!(error = %e, "store transaction failed");
                for op in batch {
                    op.fail(StoreError::Sqlite(clone_error(&e)));
                }
            }
            Err(e) => {
                warn!(error = %e, batch = batch.len(), "batch failed; retrying its operations one by one");
                for op in batch {
                    if self.disk_full {
                        op.fail(StoreError::Sqlite(disk_full_error()));
                        continue;
                    }
                    let mut one = [op];
                    let result = self.apply_all(&mut one, now);
                    let [op] = one;
                    match result {
                        Ok(handing) => {
                            op.answer();
                            self.hand_over(handing);
                        }
                        Err(e) => {
                            self.note_failure(&e);
                            op.fail(StoreError::Sqlite(e));
                        }
                    }
                }
            }
        }
    }

    /// Deletes one slice of dead letters past the retention; true if there may be more.
    fn sweep_dead_letters(&mut self) -> bool {
        let cutoff = SystemTime::now()
            .checked_sub(self.options.dead_letter_retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let slice = ops::slice(&self.budget);
        let swept = begin(&mut self.conn).and_then(|tx| {
            let n = dead::sweep(&tx, cutoff, slice)?;
            tx.commit().map(|()| n)
        });
        match swept {
            Ok(n) => {
                if n > 0 {
                    info!(
                        dead_letters = n,
                        "deleted dead letters past their retention"
                    );
                }
                n >= slice as u64
            }
            Err(e) => {
                warn!(error = %e, "deleting dead letters past their retention failed");
                false
            }
        }
    }

    /// Remembers a full disk: from now on no write is attempted until the WAL could be
    /// checkpointed away, because every failed attempt grows the WAL into whatever space
    /// was freed, and a WAL that fills the disk can never be checkpointed again.
    fn note_failure(&mut self, e: &rusqlite::Error) {
        if is_disk_full(e) && !self.disk_full {
            warn!("the disk is full: new events are answered 504 until the queue has room");
            self.disk_full = true;
            // Stops ingest and frees the reserve file, so the drain has room to write.
            self.budget.disk_full();
        }
    }

    /// After a full disk: moves the WAL into the database and truncates it, which frees the
    /// WAL's space before any new write can claim it. Until the disk has room for that, every
    /// batch is refused (504) without writing.
    fn try_resume(&mut self) -> bool {
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        // Only "still full" keeps writes off: a checkpoint that another process's reader
        // kept from finishing (busy, e.g. during an upgrade) still shows there is room.
        let done = !result.as_ref().is_err_and(is_disk_full);
        if done {
            info!("the store can write again: the queue drains; new events wait for room");
            self.disk_full = false;
            self.budget.disk_writable();
        }
        done
    }

    /// Applies `ops` in one transaction, staging their answers, and commits it; the answers
    /// and the handovers wait for the caller, who sends the answers first.
    fn apply_all(&mut self, ops: &mut [Op], now: SystemTime) -> rusqlite::Result<Handing> {
        // Counts change with the transaction: staged here, kept only once it has committed.
        let mut pending = self.pending.clone();
        let mut handing = Handing::new(&self.mailboxes, self.lessee);
        let tx = begin(&mut self.conn)?;
        for op in ops {
            ops::apply(&tx, op, now, &mut pending, &mut handing, &mut self.budget)?;
        }
        tx.commit()?;
        self.pending = pending;
        Ok(handing)
    }

    /// Gives committed deliveries to their dispatchers and wakes those that must claim. After
    /// the replies: the dispatchers it wakes would otherwise compete with the ingress threads
    /// for the CPU just as those send their 200s.
    fn hand_over(&self, handing: Handing) {
        for target in handing.committed() {
            wakeup_for(&self.wakeups, &target).notify_one();
        }
    }

    /// Measures the store's space, decides whether ingest stops or resumes, and publishes
    /// the result for the admin API.
    fn measure(&mut self) {
        self.budget.measure(&self.conn, self.pending.total());
    }

    /// While ingest is stopped for space: copies the log into the database and cuts it to
    /// nothing after every transaction, so the log never holds more than one tight batch
    /// (budget.rs sizes the reserve for that).
    fn cut_log(&mut self) {
        let cut = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        if let Err(e) = cut {
            self.note_failure(&e);
        }
    }

    /// Recounts pending deliveries (and repairs ordering heads) from the table, so an
    /// operation that forgot to keep the counts cannot skew quotas for long.
    fn check_pending(&mut self) {
        if let Err(e) = policy::repair_heads(&self.conn) {
            warn!(error = %e, "checking ordering heads failed");
        }
        match policy::count_pending(&self.conn) {
            Ok(counts) => {
                if counts != self.pending {
                    warn!("pending delivery counts had drifted from the table; recounted");
                }
                self.pending = counts;
            }
            Err(e) => warn!(error = %e, "recounting pending deliveries failed"),
        }
    }
}

/// Starts a write transaction that takes SQLite's write lock up front.
///
/// During a zero-downtime restart two processes write the file for a few seconds. A
/// deferred transaction reads first and upgrades to a writer later; if the other process
/// committed in between, SQLite fails the upgrade with `SQLITE_BUSY` at once (the busy
/// timeout does not apply), which would answer 504 to a whole batch. `BEGIN IMMEDIATE`
/// waits for the lock under `busy_timeout` instead.
// Regression: #5
pub(super) fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

fn disk_full_error() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("the disk is full; waiting for space before writing again".into()),
    )
}

/// rusqlite errors are not `Clone`; keep the code and message for each waiting caller.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => plain_error(other.to_string()),
    }
}
