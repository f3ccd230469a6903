//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Every operation goes through one writer thread that owns the connection and commits
//! operations in batches (group commit; see [`writer`]). A caller's answer is sent only after
//! `COMMIT` returned, so a caller that got `Ok` holds a durable result. During a zero-downtime
//! restart a second process's writer shares the file for a few seconds: every transaction is
//! `BEGIN IMMEDIATE` under a busy timeout, so the two writers take turns and de-duplication and
//! ordering heads (decided inside the transaction) still hold; once the old process is gone,
//! this one takes the store's lock and its leftover leases (see [`takeover`]).

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
mod queue;
mod schema;
mod takeover;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{Notify, mpsc};
use tracing::info;

use super::handoff::Handoff;
use super::{
    AttemptRecord, Claimed, ControlChange, DeadLetter, DeadLetterDetail, DeadLetterFilter,
    DeadLetterQuery, DeliveryId, Ingested, NewEvent, Operations, Queue, Replayed, StorageStatus,
    StoreError, TargetControl, TargetCounts,
};
use crate::config::TargetId;
use crate::metrics::Metrics;
use budget::Budget;
use handing::Mailboxes;
use ops::{Op, Reply};
use takeover::{own, take_over_later};
use writer::Writer;

/// How many operations may wait for the writer; past this, ingest fails fast (504) instead of
/// queueing without bound in memory.
const QUEUE_CAPACITY: usize = 16_384;
/// How long the writer holds operations that may wait (acks of unordered deliveries) for an
/// operation in a hurry to commit them with (`SqliteOptions::gather`). At 1,000 events/s to
/// three targets, half the transactions carried only acks, and an ingest that arrived during
/// one waited for its fsync before its own (bench/REPORT.md).
pub const GATHER: Duration = Duration::from_millis(1);
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

/// A [`Store`](super::Store) on a local SQLite file.
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
impl Queue for SqliteStore {
    async fn ingest(&self, event: NewEvent) -> Result<Ingested, StoreError> {
        // Here rather than on the writer's thread, which full-speed ingest keeps busy.
        let stored = if std::time::Instant::now() >= self.compress_from {
            body::encode(&event.body)
        } else {
            body::raw(&event.body)
        };
        // try_send: when the writer is this far behind, answering 504 now (TextUs retries it)
        // is better than holding the request open without bound.
        // Held until the writer answered, after it dropped its own: so a parsed event (a tree of
        // many allocations) is freed here, off the writer, which is the store's bottleneck.
        let parsed = event.parsed.clone();
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
        let ingested = answer.await.map_err(|_| StoreError::Closed)?;
        drop(parsed);
        ingested
    }

    async fn claim(
        &self,
        target: &TargetId,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, StoreError> {
        let leased = self
            .call(|reply| Op::Claim {
                target: target.clone(),
                limit,
                lease,
                reply,
            })
            .await?;
        Ok(leased.decode()?)
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

    fn wakeup(&self, target: &TargetId) -> Arc<Notify> {
        wakeup_for(&self.wakeups, target)
    }

    fn handoff(&self, target: &TargetId) -> Arc<Handoff> {
        handing::mailbox(&self.mailboxes, target)
    }
}

#[async_trait]
impl Operations for SqliteStore {
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

    async fn find_event(
        &self,
        event_id: &str,
    ) -> Result<Option<super::EventWhereabouts>, StoreError> {
        // Not through the writer: see `find` for why it reads on a connection of its own.
        find::find_in(&self.path, event_id).await
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
}

fn wakeup_for(wakeups: &Wakeups, target: &TargetId) -> Arc<Notify> {
    // A poisoned lock only means another thread panicked while inserting; the map is still valid.
    let mut map = wakeups.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(target.clone()).or_default().clone()
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
