//! The running dispatchers: one per configured target, each on a runtime of its own (its own
//! thread), so a target that is slow, stuck or busy cannot take time from another's. A config
//! reload starts, stops and replaces single dispatchers while the others keep running.
//!
//! Stopping a dispatcher lets its in-flight attempts finish (each bounded by the target's
//! timeout) and gives back what it had claimed but not started; nothing queued is touched, so
//! a target that is removed keeps its deliveries in the store until a target of that name is
//! configured again.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;
use tracing::{error, warn};

use super::Dispatcher;
use crate::config::TargetId;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::targets::Built;

/// How long a stopped runtime gets for tasks still left once its dispatcher returned (the
/// dispatcher itself already waited for its in-flight attempts).
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the relay is shutting down")]
    Closed,
    #[error("a dispatcher for target {0} is already running")]
    Running(TargetId),
    #[error("starting the dispatcher thread for target {target}: {source}")]
    Spawn {
        target: TargetId,
        #[source]
        source: std::io::Error,
    },
}

/// Every running dispatcher.
pub struct Fleet {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Counts dispatchers that are running, for `/readyz`.
    running: Arc<AtomicUsize>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    dispatchers: HashMap<TargetId, Handle>,
    /// Set at shutdown: no dispatcher starts after it.
    closed: bool,
}

struct Handle {
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Fleet {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, running: Arc<AtomicUsize>) -> Fleet {
        Fleet {
            store,
            metrics,
            running,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the map is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts delivering `built`'s queue on a runtime of its own.
    pub fn start(&self, built: Built) -> Result<(), FleetError> {
        let name = built.config.name.clone();
        let mut state = self.state();
        if state.closed {
            return Err(FleetError::Closed);
        }
        if state.dispatchers.contains_key(&name) {
            return Err(FleetError::Running(name));
        }
        let dispatcher = Dispatcher::new(
            built.config,
            built.target,
            built.health,
            self.store.clone(),
            self.metrics.clone(),
            self.running.clone(),
        );
        let (stop, stopped) = watch::channel(false);
        let spawn_err = |source| FleetError::Spawn {
            target: name.clone(),
            source,
        };
        // One thread per dispatcher: its loop and its attempts take turns on it. A pool of
        // worker threads per target (one per core, as before) cost ~10% more CPU per delivery
        // in work stealing and cross-thread wake-ups (bench/REPORT.md); one thread already does
        // tens of thousands of deliveries a second, and targets still never share one.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(spawn_err)?;
        let thread = std::thread::Builder::new()
            .name(format!("dispatcher {name}"))
            .spawn(move || {
                runtime.block_on(dispatcher.run(stopped));
                runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            })
            .map_err(spawn_err)?;
        state.dispatchers.insert(name, Handle { stop, thread });
        Ok(())
    }

    /// Stops the named dispatchers (all at once) and waits until each has finished its
    /// in-flight attempts. Names that are not running are ignored.
    pub async fn stop(&self, names: &[TargetId]) {
        let handles: Vec<(TargetId, Handle)> = {
            let mut state = self.state();
            names
                .iter()
                .filter_map(|n| state.dispatchers.remove(n).map(|h| (n.clone(), h)))
                .collect()
        };
        if handles.is_empty() {
            return;
        }
        // Joining blocks for as long as the slowest in-flight attempt.
        if let Err(e) = tokio::task::spawn_blocking(move || join(handles)).await {
            error!(error = %e, "waiting for stopped dispatchers failed");
        }
    }

    /// Stops every dispatcher and refuses to start new ones.
    pub fn shutdown(&self) {
        let handles: Vec<(TargetId, Handle)> = {
            let mut state = self.state();
            state.closed = true;
            state.dispatchers.drain().collect()
        };
        join(handles);
    }
}

fn join(handles: Vec<(TargetId, Handle)>) {
    for (_, handle) in &handles {
        // A dispatcher that already ended has dropped its receiver; nothing to tell it.
        let _ = handle.stop.send(true);
    }
    for (name, handle) in handles {
        if handle.thread.join().is_err() {
            error!(target = %name, "the dispatcher thread panicked");
        }
    }
}

/// Runs the fleet as a pingora service: starts the configured dispatchers with the server
/// and stops them all at shutdown.
pub struct FleetService {
    fleet: Arc<Fleet>,
    initial: Mutex<Vec<Built>>,
}

impl FleetService {
    pub fn new(fleet: Arc<Fleet>, initial: Vec<Built>) -> FleetService {
        FleetService {
            fleet,
            initial: Mutex::new(initial),
        }
    }
}

#[async_trait]
impl BackgroundService for FleetService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let initial = std::mem::take(&mut *self.initial.lock().unwrap_or_else(|p| p.into_inner()));
        for built in initial {
            let name = built.config.name.clone();
            if let Err(e) = self.fleet.start(built) {
                // /readyz stays 503 (fewer dispatchers than targets) and says so.
                error!(target = %name, error = %e, "cannot start the dispatcher");
            }
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        let fleet = self.fleet.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || fleet.shutdown()).await {
            warn!(error = %e, "stopping the dispatchers failed");
        }
    }
}
