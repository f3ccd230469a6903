//! WAL checkpoints on a thread and connection of their own, so the writer does not stop
//! committing to copy the log into the database file and fsync it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! committing thread: with the default threshold (1,000 pages), every few dozen group commits
//! one also copied ~4 MB and synced the database file, and every request waiting on that commit
//! waited for the copy too. Here the writer nudges the checkpointer after each commit, and the
//! checkpointer runs a PASSIVE checkpoint, which never blocks the writer, at most every
//! [`SPACING`].
//!
//! The log can only be rewound to its start when a checkpoint has caught up with it at the
//! moment a transaction begins, which under continuous load a checkpoint running beside the
//! writer rarely has. So the writer keeps an automatic checkpoint too, at twice SQLite's default
//! threshold ([`super::budget::MAX_WAL_PAGES`], fewer on a small volume): by then this thread has copied and synced nearly every
//! page, the writer's own checkpoint only finishes the last few, and the log starts over. That
//! keeps the log at a few MiB, and bounded even if this thread ever fails.

use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use rusqlite::Connection;
use tracing::{info, warn};

/// The least time between two checkpoints: each copies what a few hundred commits wrote.
const SPACING: Duration = Duration::from_millis(50);

/// The writer's handle: dropping it stops the checkpointer after one last checkpoint.
pub struct Checkpointer(SyncSender<()>);

impl Checkpointer {
    /// Opens a second connection to `path` and starts the checkpoint thread.
    pub fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        // The writer and a second process (zero-downtime restart) hold locks for milliseconds.
        conn.busy_timeout(Duration::from_secs(5))?;
        // FULL here too: the database file is synced before the log may be reused.
        conn.execute_batch("PRAGMA synchronous=FULL")?;
        // One pending nudge is enough: a checkpoint copies everything committed before it.
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let mut failing = false;
                while nudged.recv().is_ok() {
                    failing = checkpoint(&conn, failing);
                    std::thread::sleep(SPACING);
                }
                checkpoint(&conn, failing);
            })
            .map_err(|e| super::plain_error(format!("starting the checkpoint thread: {e}")))?;
        Ok(Checkpointer(nudge))
    }

    /// Something was committed: checkpoint soon (never blocks).
    pub fn nudge(&self) {
        let _ = self.0.try_send(());
    }
}

/// One PASSIVE checkpoint; returns whether it failed. A failure is logged when it starts and
/// when it ends, not every 50 ms in between (a full disk fails every one of them).
fn checkpoint(conn: &Connection, was_failing: bool) -> bool {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
        Ok(_) => {
            if was_failing {
                info!("checkpointing the store's write-ahead log works again");
            }
            false
        }
        Err(e) => {
            if !was_failing {
                warn!(error = %e, "checkpointing the store's write-ahead log failed; retrying quietly");
            }
            true
        }
    }
}
