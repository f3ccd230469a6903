//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Every operation goes through one writer thread that owns the connection. During a
//! zero-downtime restart a second process's writer shares the file for a few seconds: every
//! transaction is `BEGIN IMMEDIATE` under a busy timeout, so the two writers take turns and
//! de-duplication and ordering heads (decided inside the transaction) still hold. The pending
//! counts below are per process, so the new one recounts soon after an upgrade. The writer takes
//! the first waiting operation, then everything that queued up behind it while the previous
//! transaction was syncing, and applies the lot in one transaction: one fsync acknowledges many
//! events (group commit). Replies are sent only after `COMMIT` returned, so a caller that got
//! `Ok` holds a durable result. Acks that nothing waits on are held up to [`GATHER`] for an
//! operation in a hurry, so that they share its transaction instead of paying for their own.
//!
//! The writer also sweeps, between batches: expired de-duplication keys, and dead letters older
//! than the retention (in bounded slices, see [`dead`]).
//!
//! And it keeps each target's count of pending deliveries in memory, so `max_queue` is checked
//! without a `COUNT(*)` per event. Being the only writer makes the check race-free; the counts
//! of a batch are staged and kept only if its transaction commits, and they are recounted from
//! the table at open and at every sweep, so they cannot drift for long.

mod body;
pub mod budget;
mod checkpoint;
pub(in crate::store) mod dead;
pub mod export;
mod find;
mod handing;
mod ops;
pub mod owner;
mod policy;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

use super::handoff::Handoff;
use super::{
    AttemptRecord, Claimed, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter,
    DeadLetterQuery, DeliveryId, Ingested, NewEvent, Replayed, StorageStatus, Store, StoreError,
    TargetControl, TargetCounts,
};
use crate::config::TargetId;
use crate::metrics::Metrics;
use budget::Budget;
use handing::{Handing, Mailboxes};
use ops::{Op, Reply};
use policy::Pending;

/// How many operations may wait for the writer; past this, ingest fails fast (504) instead of
/// queueing without bound in memory.
const QUEUE_CAPACITY: usize = 16_384;
/// The most operations one transaction takes, so one batch cannot hold replies back for long.
const MAX_BATCH: usize = 2_048;
/// How long the writer holds operations that may wait (acks of unordered deliveries) for an
/// operation in a hurry to commit them with (`SqliteOptions::gather`). At 1,000 events/s to
/// three targets, half the transactions carried only acks, and an ingest that arrived during
/// one waited for its fsync before its own (bench/REPORT.md).
pub const GATHER: Duration = Duration::from_millis(1);
/// How often a relay that took over in a zero-downtime restart looks whether the old one has
/// let go of the store.
const TAKE_OVER_POLL: Duration = Duration::from_millis(100);
/// How many expired de-duplication keys one sweep deletes.
const DEDUPE_SLICE: usize = 10_000;
/// How often expired de-duplication keys are deleted (and pending counts checked).
const DEDUPE_SWEEP: Duration = Duration::from_secs(60);
/// After a zero-downtime restart, when the first recount of pending deliveries is due: the old
/// process is gone by then (5 s handover, 2 s grace, at most 10 s to stop its runtimes).
const UPGRADE_RECOUNT: Duration = Duration::from_secs(20);

type Wakeups = Arc<Mutex<HashMap<TargetId, Arc<Notify>>>>;

/// How a [`SqliteStore`] keeps its file bounded.
#[derive(Clone)]
pub struct SqliteOptions {
    /// Dead letters older than this (since they died) are deleted (`storage.dead_letter_retention`).
    pub dead_letter_retention: Duration,
    /// How often the writer looks for dead letters past the retention. It looks after its next
    /// batch once this much time passed; dispatchers claim at least every 30 s, so an idle
    /// relay still sweeps.
    pub sweep_interval: Duration,
    /// Where each transaction's duration and batch size are recorded, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
    /// Make deliveries that were in flight at the last stop due at once. True unless another
    /// process may still be delivering them (a zero-downtime restart, `run --upgrade`): then
    /// their leases are left to run out, so the old process can finish and ack them without
    /// the new one sending them a second time.
    pub resume_in_flight: bool,
    /// How long operations that may wait are held for company; [`GATHER`] unless a test
    /// needs to see the hold.
    pub gather: Duration,
    /// The storage budget (`storage.max_bytes`, `storage.min_free`); see [`budget`].
    pub limits: budget::Limits,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            dead_letter_retention: Duration::from_secs(14 * 86_400),
            sweep_interval: Duration::from_secs(60),
            metrics: None,
            resume_in_flight: true,
            gather: GATHER,
            limits: budget::Limits::default(),
        }
    }
}

/// A [`Store`] on a local SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    ops: mpsc::Sender<Op>,
    /// The writer thread, unparked by every operation that may not wait (see [`Op::may_wait`]).
    writer: std::thread::Thread,
    /// When bodies start being compressed: at once, or after a zero-downtime restart once the
    /// old process is surely gone, since a relay from before compression would read a
    /// compressed body it claimed as it is and send the compressed bytes.
    compress_from: std::time::Instant,
    wakeups: Wakeups,
    mailboxes: Mailboxes,
    /// The budget as the writer last measured it.
    storage: Arc<Mutex<StorageStatus>>,
    /// This process's lock on the store (see [`owner`]); empty until the relay this one
    /// takes over from has exited.
    _owner: Arc<Mutex<Option<owner::Owner>>>,
}

impl SqliteStore {
    /// Opens (creating folders and schema as needed) and starts the writer thread.
    ///
    /// Deliveries that were in flight when the previous process stopped are made due at once:
    /// their attempt may or may not have reached the target, so they are sent again.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with explicit retention settings.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let owner = own(path, options.resume_in_flight)?;
        // Opening writes (schema, leases): on a full disk it needs the reserve file's space.
        budget::free_reserve_before_open(path, budget::fixed_reserve(schema::PAGE_SIZE));
        let conn = Connection::open(path).map_err(open_err)?;
        schema::prepare(&conn).map_err(open_err)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(open_err)?;
        let mut budget = Budget::new(path, options.limits, u64::try_from(page_size).unwrap_or(0));
        let resumed = if options.resume_in_flight {
            schema::release_leases(&conn, SystemTime::now()).map_err(open_err)?
        } else {
            0
        };
        if resumed > 0 {
            info!(
                deliveries = resumed,
                "resuming deliveries that were in flight at the last stop"
            );
        }
        let pending = policy::count_pending(&conn).map_err(open_err)?;
        // The log is checkpointed and cut back at the budget's allowance for it, which is
        // SQLite's default threshold doubled (see `checkpoint`) unless the volume is small.
        let wal_pages = budget.wal_pages();
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        conn.pragma_update(None, "wal_autocheckpoint", signed(wal_pages))
            .map_err(open_err)?;
        conn.pragma_update(
            None,
            "journal_size_limit",
            signed(wal_pages * budget.page_size()),
        )
        .map_err(open_err)?;
        budget.place_reserve_file();
        budget.measure(&conn, pending.total());
        let storage = budget.published();
        let checkpointer = checkpoint::Checkpointer::start(path).map_err(open_err)?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let wakeups: Wakeups = Arc::default();
        let mailboxes: Mailboxes = Arc::default();
        let mut compress_from = std::time::Instant::now();
        if !options.resume_in_flight {
            compress_from += UPGRADE_RECOUNT;
        }
        let writer = Writer {
            conn,
            rx,
            wakeups: wakeups.clone(),
            mailboxes: mailboxes.clone(),
            options,
            pending,
            disk_full: false,
            checkpointer,
            budget,
            lessee: rand::random(),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Folder {
                path: path.display().to_string(),
                source,
            })?
            .thread()
            .clone();
        let owner = Arc::new(Mutex::new(owner));
        if owner.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            take_over_later(path, tx.clone(), wakeups.clone(), &owner);
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            ops: tx,
            writer,
            compress_from,
            wakeups,
            mailboxes,
            storage,
            _owner: owner,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends the operation `op` builds around its reply to the writer, and waits for the
    /// answer.
    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = Reply::channel();
        let op = op(reply);
        let hurry = !op.may_wait();
        self.ops.send(op).await.map_err(|_| StoreError::Closed)?;
        if hurry {
            self.writer.unpark();
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn wake_targets<'a>(&self, targets: impl IntoIterator<Item = &'a String>) {
        for target in targets {
            wakeup_for(&self.wakeups, &TargetId(Arc::from(target.as_str()))).notify_one();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        // Here rather than on the writer's thread, which full-speed ingest keeps busy.
        let stored = if std::time::Instant::now() >= self.compress_from {
            body::encode(&event.body)
        } else {
            body::raw(&event.body)
        };
        // try_send: when the writer is this far behind, answering 504 now (TextUs retries it)
        // is better than holding the request open without bound.
        let (reply, answer) = Reply::channel();
        self.ops
            .try_send(Op::Ingest {
                stored,
                event,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded(QUEUE_CAPACITY),
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        self.writer.unpark();
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(
        &self,
        target: &TargetId,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        self.call(|reply| Op::Claim {
            target: target.clone(),
            limit,
            lease,
            reply,
        })
        .await
    }

    async fn ack(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.call(|reply| Op::Ack {
            id,
            may_wait: false,
            reply,
        })
        .await
    }

    async fn ack_unhurried(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.call(|reply| Op::Ack {
            id,
            may_wait: true,
            reply,
        })
        .await
    }

    async fn retry_at(
        &self,
        id: DeliveryId,
        at: SystemTime,
        last: AttemptRecord,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Retry {
            id,
            at,
            last,
            reply,
        })
        .await
    }

    async fn bury(&self, id: DeliveryId, last: AttemptRecord) -> Result<(), StoreError> {
        self.call(|reply| Op::Bury { id, last, reply }).await
    }

    async fn release(&self, id: DeliveryId) -> Result<(), StoreError> {
        self.call(|reply| Op::Release { id, reply }).await
    }

    async fn credit_wait(
        &self,
        target: &TargetId,
        from: SystemTime,
        until: SystemTime,
    ) -> Result<(), StoreError> {
        self.call(|reply| Op::Credit {
            target: target.clone(),
            from,
            until,
            reply,
        })
        .await
    }

    async fn control(&self, target: &TargetId) -> Result<TargetControl, StoreError> {
        self.call(|reply| Op::Control {
            target: target.clone(),
            change: None,
            reply,
        })
        .await
    }

    async fn set_control(
        &self,
        target: &TargetId,
        change: ControlChange,
    ) -> Result<TargetControl, StoreError> {
        self.call(|reply| Op::Control {
            target: target.clone(),
            change: Some(change),
            reply,
        })
        .await
    }

    async fn dead_letters(&self, query: DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        self.call(|reply| Op::DeadLetters { query, reply }).await
    }

    async fn dead_letter(&self, id: DeliveryId) -> Result<Option<DeadLetterDetail>, StoreError> {
        self.call(|reply| Op::DeadLetter { id, reply }).await
    }

    async fn replay(
        &self,
        filter: DeadLetterFilter,
        targets: &[TargetId],
    ) -> Result<Replayed, StoreError> {
        let targets: Vec<String> = targets.iter().map(|t| t.as_str().to_owned()).collect();
        let mut tally = dead::ReplayTally::default();
        let mut after = 0;
        loop {
            let slice = self
                .call(|reply| Op::ReplaySlice {
                    filter: filter.clone(),
                    after,
                    targets: targets.clone(),
                    reply,
                })
                .await?;
            // Wake per slice, so the dispatchers start while later slices are still replayed.
            self.wake_targets(slice.replayed.iter().map(|(_, t)| t));
            let next = slice.last;
            tally.add(slice);
            match next {
                Some(last) => after = last,
                None => return Ok(tally.finish(filter.ids.as_deref())),
            }
        }
    }

    async fn purge(&self, filter: DeadLetterFilter) -> Result<u64, StoreError> {
        let mut purged = 0;
        let mut after = 0;
        loop {
            let slice = self
                .call(|reply| Op::PurgeSlice {
                    filter: filter.clone(),
                    after,
                    reply,
                })
                .await?;
            purged += slice.purged;
            match slice.last {
                Some(last) => after = last,
                None => return Ok(purged),
            }
        }
    }

    async fn counts(&self, target: &TargetId) -> Result<TargetCounts, StoreError> {
        self.call(|reply| Op::Counts {
            target: target.clone(),
            reply,
        })
        .await
    }

    async fn find_event(&self, key: &str) -> Result<Option<super::EventWhereabouts>, StoreError> {
        // Not through the writer: see `find` for why it reads on a connection of its own.
        find::find_in(&self.path, key).await
    }

    async fn targets(&self) -> Result<Vec<TargetId>, StoreError> {
        self.call(|reply| Op::Targets { reply }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|reply| Op::Ping { reply }).await
    }

    fn storage(&self) -> Option<StorageStatus> {
        Some(
            self.storage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    fn wakeup(&self, target: &TargetId) -> Arc<Notify> {
        wakeup_for(&self.wakeups, target)
    }

    fn handoff(&self, target: &TargetId) -> Arc<Handoff> {
        handing::mailbox(&self.mailboxes, target)
    }
}

/// Takes the store's lock (see [`owner`]). A normal start (`resume_in_flight`) is refused
/// while another process holds it; a zero-downtime restart shares the file and gets `None`,
/// and takes the lock once the old process exits ([`take_over_later`]).
fn own(path: &Path, resume_in_flight: bool) -> Result<Option<owner::Owner>, StoreError> {
    let lock_err = |source| StoreError::Lock {
        lock: owner::lock_path(path).display().to_string(),
        source,
    };
    match owner::claim(path).map_err(lock_err)? {
        owner::Claim::Owned(o) => Ok(Some(o)),
        owner::Claim::Held { pid } if resume_in_flight => Err(StoreError::Held {
            path: path.display().to_string(),
            pid: pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        }),
        owner::Claim::Held { pid } => {
            info!(store = %path.display(), previous_pid = ?pid,
                "sharing the store with the relay that hands over; taking it when that one exits");
            Ok(None)
        }
    }
}

/// Waits on a thread of its own for the old process to let go of the store, then takes its
/// lock and releases the deliveries the old process left in flight: it is gone, so they are
/// due now instead of when their leases would have run out. The thread asks every
/// [`TAKE_OVER_POLL`] rather than blocking on the lock, and holds the store only weakly, so a
/// store dropped before the old process exits (a failed upgrade) never takes the lock.
fn take_over_later(
    path: &Path,
    ops: mpsc::Sender<Op>,
    wakeups: Wakeups,
    slot: &Arc<Mutex<Option<owner::Owner>>>,
) {
    let path = path.to_path_buf();
    let (ops, slot) = (ops.downgrade(), Arc::downgrade(slot));
    let spawned = std::thread::Builder::new()
        .name("store-owner".into())
        .spawn(move || {
            let taken = loop {
                if slot.strong_count() == 0 {
                    return;
                }
                match owner::claim(&path) {
                    Ok(owner::Claim::Owned(o)) => break o,
                    Ok(owner::Claim::Held { .. }) => std::thread::sleep(TAKE_OVER_POLL),
                    Err(e) => {
                        error!(store = %path.display(), error = %e, "cannot take the store's lock");
                        return;
                    }
                }
            };
            let (Some(slot), Some(ops)) = (slot.upgrade(), ops.upgrade()) else {
                return;
            };
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(taken);
            drop(slot);
            let (reply, answer) = Reply::channel();
            if ops.blocking_send(Op::TakeOver { reply }).is_err() {
                return;
            }
            drop(ops);
            match answer.blocking_recv() {
                Ok(Ok(n)) => {
                    info!(store = %path.display(), released = n,
                        "the previous relay exited: this one owns the store, and the deliveries that one left in flight are due again");
                    let all: Vec<Arc<Notify>> = wakeups
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .values()
                        .cloned()
                        .collect();
                    for wake in all {
                        wake.notify_one();
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "releasing the previous relay's leases failed; they run out instead")
                }
                // The writer is gone: so is the store.
                Err(_) => {}
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot wait for the previous relay to let go of the store");
    }
}

fn wakeup_for(wakeups: &Wakeups, target: &TargetId) -> Arc<Notify> {
    // A poisoned lock only means another thread panicked while inserting; the map is still valid.
    let mut map = wakeups.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(target.clone()).or_default().clone()
}

/// Owns the connection; runs on its own thread until every [`SqliteStore`] handle is dropped.
struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Op>,
    wakeups: Wakeups,
    /// Where deliveries leased at birth go; see [`Handoff`].
    mailboxes: Mailboxes,
    options: SqliteOptions,
    /// Pending deliveries per target, as committed.
    pending: Pending,
    /// Set by a write that failed for lack of space; see [`Writer::note_failure`].
    disk_full: bool,
    /// Copies the log into the database file beside the writer; see [`checkpoint`].
    checkpointer: checkpoint::Checkpointer,
    /// When ingest must stop for space; see [`budget`].
    budget: Budget,
    /// This process's mark on the deliveries it leases (`leased_by`).
    lessee: i64,
}

impl Writer {
    fn run(mut self) {
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
                if let Err(e) = ops::sweep_dedupe(&self.conn, SystemTime::now(), rows) {
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
fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
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

/// An error of our own in rusqlite's type, so it travels the same paths as SQLite's.
fn plain_error(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

#[cfg(test)]
mod tests;
