//! The storage budget: when ingest must stop so that the store can always drain what it holds.
//!
//! A store that lets ingest fill its disk wedges itself: every write needs room in the WAL, so
//! with the disk full nothing can be claimed or acked, nothing drains, and the disk never frees.
//! So ingest stops (504 `store_full`) while there is still a *reserve* left, and everything that
//! keeps the queue moving (claims, acks, retries, burials, replay, purge, checkpoints, sweeps)
//! goes on inside it. The reserve is sized for the worst case of that work:
//!
//! - **The log.** While ingest is stopped the writer is *tight*: a transaction changes at most
//!   [`TIGHT_ROWS`] rows and is followed by a `wal_checkpoint(TRUNCATE)`, so the log never holds
//!   more than one such transaction. A changed row dirties at most [`PAGES_PER_ROW`] pages (its
//!   table leaf, one leaf per index, the event's leaf, the freelist trunk and a pointer-map page
//!   when pages are freed), so the log needs at most `TIGHT_ROWS × PAGES_PER_ROW` pages, plus
//!   [`SLACK`]. That is [`Budget::fixed_reserve`], 5 MiB with 4 KiB pages.
//! - **Growth of what is queued.** Acks, purges and sweeps only free pages. Claims and releases
//!   rewrite a row in place. What can grow is a retried delivery's `last_error` (capped at
//!   [`TIGHT_REASON_BYTES`] while tight) and a buried delivery's two dead-letter index entries;
//!   the attempt history gets no new rows while tight (attempts are still counted on the
//!   delivery). So every pending delivery may grow by at most [`HEADROOM_PER_DELIVERY`], and the
//!   reserve grows with the queue.
//!
//! Space is measured (file sizes, free pages inside the file, `statvfs` of its folder) before a
//! batch when room is short, and every [`MEASURE_EVERY`] otherwise; in between, each stored
//! event counts twice its estimated size (the log's copy and the database's) against the room.
//! Pages freed inside the file count as room, since SQLite reuses them before growing the file.
//!
//! A reserve kept only by arithmetic is lost when something else fills the disk. So the reserve
//! is also a file, `<store>-reserve`, written at open: when a write fails for lack of space, it
//! is deleted, which gives the drain its room back, and written again once ingest resumes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use crate::store::{SpaceLimit as Limit, StorageStatus, unix_ms};

/// Rows one transaction may change while ingest is stopped.
pub const TIGHT_ROWS: usize = 64;
/// Pages one changed row may dirty (see the module docs).
const PAGES_PER_ROW: u64 = 16;
/// Room for SQLite's own bookkeeping beside the log (the `-shm` file, a page split's new pages).
const SLACK: u64 = 1 << 20;
/// How much of a failure's reason a retry or burial keeps while ingest is stopped.
pub const TIGHT_REASON_BYTES: usize = 200;
/// What one pending delivery may still grow by: a reason of [`TIGHT_REASON_BYTES`] where it had
/// none, two dead-letter index entries, and the cell overhead of each.
pub const HEADROOM_PER_DELIVERY: u64 = 384;
/// How often space is measured while room is plentiful.
const MEASURE_EVERY: Duration = Duration::from_millis(100);
/// Below this much room, space is measured before every batch.
const SHORT_ROOM: u64 = 64 << 20;
/// The smallest log the writer checkpoints at, in pages; see [`Budget::wal_pages`].
const MIN_WAL_PAGES: u64 = 256;
/// The largest (SQLite's default threshold, doubled: see `checkpoint`).
pub const MAX_WAL_PAGES: u64 = 2_048;

/// `storage.min_free`: free space the relay leaves on the store's file system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// Percent of the file system's size, 0 to 100.
    Percent(f64),
}

/// The limits from `storage:`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// `storage.max_bytes`: the most the store's files may take, reserve included.
    pub max_bytes: Option<u64>,
    pub min_free: MinFree,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: None,
            min_free: MinFree::Percent(DEFAULT_MIN_FREE_PERCENT),
        }
    }
}

/// The default `storage.min_free`: what disk-filling alarms usually leave (Elasticsearch's
/// flood stage is 95 % used), small enough not to waste a volume given to the relay.
pub const DEFAULT_MIN_FREE_PERCENT: f64 = 5.0;

/// One reading of the space the store has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Database file, log and reserve file, as they are on disk.
    pub files: u64,
    /// What the store occupies for its data: the database (as its pages say, the log's pages
    /// included), the log budgeted at its allowance, less the free pages inside the file.
    pub used: u64,
    /// Free pages inside the database file, which SQLite reuses before growing it.
    pub reclaimable: u64,
    /// Free space of the file system, for unprivileged writers.
    pub fs_free: u64,
    pub fs_size: u64,
    /// Whether the reserve file is in place.
    pub reserve_file: bool,
}

/// The writer's view of the budget.
pub struct Budget {
    limits: Limits,
    db: PathBuf,
    wal: PathBuf,
    reserve_path: PathBuf,
    page_size: u64,
    wal_pages: u64,
    usage: Usage,
    measured_at: Option<Instant>,
    /// Bytes admitted since the last measurement (twice each event's estimate).
    admitted: u64,
    /// `Some` while ingest is stopped.
    stopped: Option<(Limit, SystemTime)>,
    /// False until the first decision: a store opened (or restarted) short of the resume
    /// margin starts stopped, as it would be had the process run on, so a restart on a full
    /// store does not admit one event and stop again (the same hysteresis across restarts).
    decided: bool,
    pending: u64,
    /// Where [`Budget::status`] is published for the admin API: after every measurement and
    /// at once when ingest stops, so an answer of 504 and the status never disagree.
    published: Arc<Mutex<StorageStatus>>,
}

impl Budget {
    /// The budget of the store at `db`. `page_size` is the database's.
    pub fn new(db: &Path, limits: Limits, page_size: u64) -> Budget {
        let fs_size = statvfs(db).map_or(0, |(_, size)| size);
        let mut budget = Budget {
            limits,
            db: db.to_path_buf(),
            wal: sibling(db, "-wal"),
            reserve_path: sibling(db, "-reserve"),
            page_size: page_size.max(512),
            wal_pages: MAX_WAL_PAGES,
            usage: Usage::default(),
            measured_at: None,
            admitted: 0,
            stopped: None,
            decided: false,
            pending: 0,
            published: Arc::default(),
        };
        budget.wal_pages = budget.wal_pages_for(fs_size);
        budget
    }

    /// Where the log is checkpointed (and truncated back to): SQLite's default threshold
    /// doubled, or a sixteenth of the space the store may use when that is smaller, so a small
    /// volume is not mostly log.
    pub fn wal_pages(&self) -> u64 {
        self.wal_pages
    }

    fn wal_pages_for(&self, fs_size: u64) -> u64 {
        let space = self.limits.max_bytes.unwrap_or(fs_size).min(fs_size.max(1));
        (space / 16 / self.page_size).clamp(MIN_WAL_PAGES, MAX_WAL_PAGES)
    }

    /// The part of the reserve that does not depend on the queue (see the module docs).
    pub fn fixed_reserve(&self) -> u64 {
        fixed_reserve(self.page_size)
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    fn reserve(&self) -> u64 {
        self.fixed_reserve() + self.pending * HEADROOM_PER_DELIVERY
    }

    fn min_free_bytes(&self) -> u64 {
        match self.limits.min_free {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (self.usage.fs_size as f64 * p / 100.0) as u64,
        }
    }

    /// True while ingest is stopped: the writer works tight.
    pub fn tight(&self) -> bool {
        self.stopped.is_some()
    }

    /// Whether space should be measured before the next batch.
    pub fn due(&self) -> bool {
        match self.measured_at {
            None => true,
            Some(at) => {
                self.tight()
                    || self.room().unsigned_abs() < SHORT_ROOM
                    || at.elapsed() >= MEASURE_EVERY
            }
        }
    }

    /// Reads file sizes and free space; `conn` gives the page counts. Also decides whether
    /// ingest stops or resumes (logging each change once).
    pub fn measure(&mut self, conn: &rusqlite::Connection, pending: u64) {
        self.pending = pending;
        match self.read(conn) {
            Ok(usage) => self.usage = usage,
            // Keep the last reading: better an old figure than a guess.
            Err(e) => warn!(error = %e, "measuring the store's space failed"),
        }
        self.measured_at = Some(Instant::now());
        self.admitted = 0;
        self.decide();
        self.publish();
    }

    /// The status as last published, shared with the store's handle.
    pub fn published(&self) -> Arc<Mutex<StorageStatus>> {
        self.published.clone()
    }

    fn publish(&self) {
        let status = self.status();
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    fn read(&self, conn: &rusqlite::Connection) -> std::io::Result<Usage> {
        let pragma = |name: &str| -> std::io::Result<u64> {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(std::io::Error::other)
        };
        let pages = pragma("page_count")?;
        let free_pages = pragma("freelist_count")?;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let (db_file, wal_file, reserve_file) =
            (size(&self.db), size(&self.wal), size(&self.reserve_path));
        let (fs_free, fs_size) = statvfs(&self.db)?;
        let wal_allowance = self.wal_pages * self.page_size;
        let db = db_file.max(pages * self.page_size);
        let reclaimable = free_pages * self.page_size;
        Ok(Usage {
            files: db_file + wal_file + reserve_file,
            used: (db + wal_file.max(wal_allowance)).saturating_sub(reclaimable),
            reclaimable,
            fs_free,
            fs_size,
            reserve_file: reserve_file > 0,
        })
    }

    /// Room left for ingest under each limit, as of the last measurement less what was
    /// admitted since; negative when over.
    fn rooms(&self) -> [(Limit, i64); 2] {
        let reserve = self.reserve();
        let admitted = self.admitted;
        let by_size = match self.limits.max_bytes {
            Some(max) => signed(max) - signed(self.usage.used) - signed(reserve),
            None => i64::MAX,
        };
        // With the reserve file in place, its space is already set aside on the disk.
        let set_aside = if self.usage.reserve_file {
            self.fixed_reserve()
        } else {
            0
        };
        let by_free = signed(self.usage.fs_free) + signed(self.usage.reclaimable)
            - signed(self.min_free_bytes())
            - signed(reserve)
            + signed(set_aside);
        [
            (Limit::MaxBytes, by_size.saturating_sub(signed(admitted))),
            (Limit::MinFree, by_free.saturating_sub(signed(admitted))),
        ]
    }

    fn room(&self) -> i64 {
        self.rooms().iter().map(|(_, r)| *r).min().unwrap_or(0)
    }

    /// How much room a stopped ingest needs before it resumes, so that it does not flap: the
    /// log's allowance (which refills once the log stops being truncated), and at least 2 % of
    /// what the store may use, at most 256 MiB.
    fn resume_margin(&self) -> i64 {
        let space = self.limits.max_bytes.unwrap_or(self.usage.fs_size);
        let share = (space / 50).min(256 << 20);
        signed((self.wal_pages * self.page_size).max(share))
    }

    fn decide(&mut self) {
        // Something else took the disk's last free space: the drain needs the reserve file's.
        if self.tight() && self.usage.reserve_file && self.usage.fs_free < self.fixed_reserve() {
            self.release_reserve_file();
        }
        let rooms = self.rooms();
        let decided = std::mem::replace(&mut self.decided, true);
        match self.stopped {
            None => {
                let floor = if decided { 0 } else { self.resume_margin() };
                if let Some((limit, _)) = rooms.iter().find(|(_, room)| *room < floor) {
                    self.stop(*limit);
                }
            }
            Some((Limit::DiskFull, _)) => {}
            Some(_) => {
                let margin = self.resume_margin();
                if rooms.iter().all(|(_, room)| *room >= margin) {
                    self.resume();
                }
            }
        }
    }

    fn stop(&mut self, limit: Limit) {
        let u = self.usage;
        warn!(
            reason = limit.describe(),
            used_bytes = u.used,
            max_bytes = self.limits.max_bytes,
            free_bytes = u.fs_free,
            min_free_bytes = self.min_free_bytes(),
            reserve_bytes = self.reserve(),
            pending_deliveries = self.pending,
            "storage budget reached: new events are answered 504 (store_full) while the queue drains"
        );
        self.stopped = Some((limit, SystemTime::now()));
        self.publish();
    }

    fn resume(&mut self) {
        let since = self.stopped.take().map(|(_, at)| at);
        let stopped_for = since.and_then(|at| at.elapsed().ok()).unwrap_or_default();
        info!(
            used_bytes = self.usage.used,
            free_bytes = self.usage.fs_free,
            stopped_for_seconds = stopped_for.as_secs(),
            "storage budget has room again: new events are stored again"
        );
        self.place_reserve_file();
    }

    /// Whether an event of `estimate` bytes may be stored; counts it if so.
    pub fn admit(&mut self, estimate: u64) -> Result<(), Limit> {
        if let Some((limit, _)) = self.stopped {
            return Err(limit);
        }
        let cost = estimate.saturating_mul(2);
        if let Some((limit, _)) = self
            .rooms()
            .into_iter()
            .find(|(_, room)| *room < signed(cost))
        {
            self.stop(limit);
            return Err(limit);
        }
        self.admitted += cost;
        Ok(())
    }

    /// How much of the ingest budget one target's pending deliveries hold, estimated from its
    /// share of all pending deliveries, and the whole budget ingest may use.
    pub fn target_bytes(&self, target_pending: u64) -> (u64, u64) {
        let held = if self.pending == 0 {
            0
        } else {
            (self.usage.used as u128 * target_pending as u128 / self.pending as u128) as u64
        };
        let capacity = signed(self.usage.used) + self.room().max(0);
        (held, u64::try_from(capacity).unwrap_or(0))
    }

    /// A write failed for lack of space: stop ingest and give the drain the reserve file's
    /// space.
    pub fn disk_full(&mut self) {
        if !matches!(self.stopped, Some((Limit::DiskFull, _))) {
            if self.stopped.is_none() {
                self.stop(Limit::DiskFull);
            } else {
                self.stopped = Some((Limit::DiskFull, SystemTime::now()));
            }
        }
        self.release_reserve_file();
        self.publish();
    }

    /// Writes could be made again after a full disk: judge the limits anew at the next
    /// measurement (staying stopped until there is room with margin).
    pub fn disk_writable(&mut self) {
        if let Some((Limit::DiskFull, since)) = self.stopped {
            self.stopped = Some((Limit::MinFree, since));
        }
    }

    /// Writes the reserve file if it is missing and the disk has room for it beside
    /// `storage.min_free`. Never fails: without the file the reserve is still kept by
    /// arithmetic, only not against other writers.
    pub fn place_reserve_file(&mut self) {
        let size = self.fixed_reserve();
        if std::fs::metadata(&self.reserve_path).is_ok_and(|m| m.len() >= size) {
            return;
        }
        let free = statvfs(&self.db).map_or(0, |(free, _)| free);
        if free < size.saturating_mul(2) + self.min_free_bytes() {
            return;
        }
        if let Err(e) = write_zeros(&self.reserve_path, size) {
            warn!(error = %e, file = %self.reserve_path.display(), "cannot write the store's reserve file");
            let _ = std::fs::remove_file(&self.reserve_path);
        }
    }

    /// Deletes the reserve file (if there is one) so that its space can be used.
    pub fn release_reserve_file(&mut self) {
        if std::fs::remove_file(&self.reserve_path).is_ok() {
            warn!(
                file = %self.reserve_path.display(),
                bytes = self.fixed_reserve(),
                "released the store's reserve file so that the queue can drain on a full disk"
            );
            self.usage.reserve_file = false;
        }
    }

    pub fn status(&self) -> StorageStatus {
        let u = self.usage;
        StorageStatus {
            ingest: if self.tight() { "stopped" } else { "open" },
            stopped_by: self.stopped.map(|(l, _)| l),
            stopped_since: self.stopped.map(|(_, at)| unix_ms(at)),
            store_bytes: u.files,
            used_bytes: u.used,
            reclaimable_bytes: u.reclaimable,
            reserve_bytes: self.reserve(),
            ingest_room_bytes: if self.tight() {
                0
            } else {
                u64::try_from(self.room().max(0)).unwrap_or(0)
            },
            max_bytes: self.limits.max_bytes,
            min_free_bytes: self.min_free_bytes(),
            free_bytes: u.fs_free,
            filesystem_bytes: u.fs_size,
            pending_deliveries: self.pending,
            reserve_file: u.reserve_file,
        }
    }
}

/// The part of the reserve that does not depend on the queue, for pages of `page_size`.
pub fn fixed_reserve(page_size: u64) -> u64 {
    TIGHT_ROWS as u64 * PAGES_PER_ROW * page_size + SLACK
}

/// Deletes the reserve file of the store at `db` when the disk has less free space than the
/// file holds, before the store is opened: opening writes (schema, leases), and a relay
/// restarted on a full disk must be able to open, drain and resume.
pub fn free_reserve_before_open(db: &Path, fixed_reserve: u64) {
    let reserve = sibling(db, "-reserve");
    let free = statvfs(db).map_or(u64::MAX, |(free, _)| free);
    if free < fixed_reserve && std::fs::remove_file(&reserve).is_ok() {
        warn!(file = %reserve.display(), "the disk is full: released the store's reserve file to open the store");
    }
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal` file.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Free bytes (for unprivileged writers) and size of the file system holding `path` (or its
/// folder, before the file exists).
fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Real blocks, not a sparse file: the point is to hold the space.
fn write_zeros(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    // The blocks are taken at write; syncing the data (not the inode: tests/it/sync.rs) makes
    // them the file's for good.
    file.sync_data()
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
