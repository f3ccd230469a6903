//! Taking the store: its lock at open, or, in a zero-downtime restart (`run --upgrade`), the
//! lock and the old process's leftover leases once that process has exited.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::{error, info, warn};

use super::ops::{Op, Reply};
use super::{Wakeups, owner};
use crate::store::StoreError;

/// How often a relay that took over in a zero-downtime restart looks whether the old one has
/// let go of the store.
const TAKE_OVER_POLL: Duration = Duration::from_millis(100);

/// Takes the store's lock (see [`owner`]). A normal start (`resume_in_flight`) is refused
/// while another process holds it; a zero-downtime restart shares the file and gets `None`,
/// and takes the lock once the old process exits ([`take_over_later`]).
pub(super) fn own(path: &Path, resume_in_flight: bool) -> Result<Option<owner::Owner>, StoreError> {
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
pub(super) fn take_over_later(
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
