//! Assembles the relay from a validated config: store, ingress, admin, one dispatcher per
//! target, all as services of one pingora server that owns signals and shutdown.
//!
//! SIGTERM: listeners stop accepting, late requests on open connections get 504, the writer
//! finishes its commit, dispatchers let in-flight attempts finish; then the process exits 0.
//! SIGQUIT with a new process started with `--upgrade` hands the listening sockets over; the
//! old process then stores and answers whatever still reaches it (closing each connection after
//! its answer) until its grace period ends, so no request fails. Both processes write the store
//! for those seconds (see `SqliteStore` on why that is safe).

pub mod build;
pub mod live;
pub mod reload;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminConfig;
use crate::admin::listening::IngressProbe;
use crate::admin::{Admin, AdminTarget};
use crate::config::{Config, DeliveryOrder, MinFree, Storage, StorageBudget};
use crate::delivery::fleet::{Fleet, FleetService};
use crate::ingress::Ingress;
use crate::ingress::IngressConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::nats::{NatsSettings, NatsStore, TargetLayout};
use crate::store::sqlite::budget::{Limits, MinFree as StoreMinFree};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use live::Live;
use reload::{Parts, Reloader};

/// Seconds pingora waits after SIGTERM before stopping runtimes: long enough for requests
/// already past the signature check to get their commit and answer.
const GRACE_PERIOD_SECS: u64 = 2;
/// Then how long runtimes get to finish (in-flight deliveries are bounded by their timeouts).
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// How `run` starts.
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    /// Take the listening sockets over from a running relay (zero-downtime restart).
    pub upgrade: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {what} address {address}: {source}")]
    Bind {
        what: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up TLS for {address} with {cert} and {key}: {message}")]
    Tls {
        address: SocketAddr,
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error("cannot listen for SIGHUP (config reload): {0}")]
    Signal(#[source] std::io::Error),
}

/// Starts every service and blocks until shutdown; then exits the process (pingora's
/// `run_forever`), so it only returns on a start-up failure.
pub fn run(config: Config, options: RunOptions) -> Result<(), StartError> {
    let hangups = Hangups::catch()?;
    crate::install_crypto();
    if !options.upgrade {
        // pingora panics in a service thread when a bind fails; checking first turns that into
        // a clear error and exit code. (With --upgrade the old process still holds the ports.)
        check_bind("listen", config.listen.address)?;
        check_bind("admin", config.admin.address)?;
    }
    let mut compiled = build::compile(&config)?;
    let built = build::targets(&config, &mut compiled)?;
    let metrics = Arc::new(Metrics::default());
    let (store, store_path, runtime_dir): (Arc<dyn Store>, Option<PathBuf>, PathBuf) =
        match &config.storage {
            Storage::Sqlite {
                path,
                dead_letter_retention,
                budget,
            } => {
                let store_options = SqliteOptions {
                    dead_letter_retention: *dead_letter_retention,
                    limits: store_limits(budget),
                    metrics: Some(metrics.clone()),
                    // With --upgrade the old process is still running and owns its leases.
                    resume_in_flight: !options.upgrade,
                    ..SqliteOptions::default()
                };
                let store = SqliteStore::open_with(path, store_options)?;
                (Arc::new(store), Some(path.clone()), beside(path))
            }
            Storage::Nats(nats) => {
                let store = NatsStore::open(nats_settings(&config, nats))?;
                (Arc::new(store), None, nats_runtime_dir(&config)?)
            }
        };
    let running = Arc::new(AtomicUsize::new(0));

    let mut server = Server::new_with_opt_and_conf(
        Opt {
            upgrade: options.upgrade,
            ..Opt::default()
        },
        server_conf(&runtime_dir),
    );
    server.bootstrap();
    let handing_over = watch_for_upgrade(&server);

    let ingress_config = Arc::new(Live::new(IngressConfig {
        source: config.source.clone(),
        router: compiled.router.clone(),
    }));
    let admin_config = Arc::new(Live::new(AdminConfig {
        targets: built
            .iter()
            .map(|b| AdminTarget {
                config: b.config.clone(),
                health: b.health.clone(),
            })
            .collect(),
        token: config.admin.token.clone(),
    }));
    let fleet = Arc::new(Fleet::new(store.clone(), metrics.clone(), running.clone()));

    let ingress = Ingress::new(
        ingress_config.clone(),
        store.clone(),
        metrics.clone(),
        handing_over,
    );
    let mut ingress = Service::new("ingress".to_string(), ingress);
    let address = config.listen.address.to_string();
    match &config.listen.tls {
        None => ingress.add_tcp(&address),
        Some(tls) => ingress
            .add_tls(
                &address,
                &tls.cert.to_string_lossy(),
                &tls.key.to_string_lossy(),
            )
            .map_err(|e| StartError::Tls {
                address: config.listen.address,
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                message: e.to_string(),
            })?,
    }
    server.add_service(ingress);

    let reloader = Arc::new(Reloader::new(
        config.clone(),
        Parts {
            ingress: ingress_config,
            admin: admin_config.clone(),
            fleet: fleet.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
        },
    ));
    hangups.serve(reloader.clone())?;

    let admin = Admin {
        store: store.clone(),
        metrics: metrics.clone(),
        config: admin_config,
        reloader: Some(reloader),
        running: running.clone(),
        store_path,
        ingress: Some(Arc::new(IngressProbe::new(config.listen.address))),
    };
    let mut admin = Service::new("admin".to_string(), admin);
    admin.threads = Some(1);
    admin.add_tcp(&config.admin.address.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "dispatchers",
        FleetService::new(fleet, built),
    ));
    tracing::info!(
        listen = %config.listen.address,
        admin = %config.admin.address,
        store = %store_name(&config.storage),
        targets = config.targets.len(),
        "textus-relay starting"
    );
    server.run_forever()
}

/// SIGHUP, caught from the start of `run`: a SIGHUP that arrives while the relay is still
/// starting (e.g. `systemctl reload` right after start) is kept and served once the reloader
/// exists, instead of taking the signal's default action, which ends the process.
struct Hangups {
    runtime: tokio::runtime::Runtime,
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    fn catch() -> Result<Hangups, StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Signal)?;
        let signal = {
            let _entered = runtime.enter();
            signal(SignalKind::hangup()).map_err(StartError::Signal)?
        };
        Ok(Hangups { runtime, signal })
    }

    /// Reloads the config on every SIGHUP, on a thread of its own (a reload waits for the
    /// in-flight attempts of changed targets).
    fn serve(self, reloader: Arc<Reloader>) -> Result<(), StartError> {
        let Hangups {
            runtime,
            mut signal,
        } = self;
        std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while signal.recv().await.is_some() {
                        // The outcome is logged (and counted) by reload_logged.
                        let _ = reloader.reload_logged("SIGHUP").await;
                    }
                })
            })
            .map(drop)
            .map_err(StartError::Signal)
    }
}

/// A flag that turns true once pingora starts handing the listening sockets to a new process
/// (SIGQUIT), so ingress can tell a graceful upgrade from a SIGTERM: both flip the
/// `ShutdownWatch`, but only SIGTERM should answer late requests 504.
fn watch_for_upgrade(server: &Server) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut phases = server.watch_execution_phase();
    let set = flag.clone();
    // A plain thread: the phase channel is read before and after pingora's runtimes exist.
    let spawned = std::thread::Builder::new()
        .name("upgrade-watch".into())
        .spawn(move || {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds) => {
                        tracing::info!("handing the listening sockets to a new process");
                        set.store(true, Ordering::Release);
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
    if let Err(e) = spawned {
        // Without it an upgrade still works; late requests on old connections get 504.
        tracing::warn!(error = %e, "cannot watch for graceful upgrades");
    }
    flag
}

/// The store's budget from `storage:`.
fn store_limits(budget: &StorageBudget) -> Limits {
    Limits {
        max_bytes: budget.max_bytes,
        min_free: match budget.min_free {
            MinFree::Bytes(b) => StoreMinFree::Bytes(b),
            MinFree::Percent(p) => StoreMinFree::Percent(f64::from(p)),
        },
    }
}

/// The folder of the store file: its upgrade socket and pid file sit beside it, so two
/// relays on one machine (each with its own store) never hand sockets to each other.
fn beside(store_path: &Path) -> PathBuf {
    store_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A relay on NATS keeps no state on disk, but pingora wants a folder for its upgrade
/// socket and pid file: one per listen port in the temp folder, so relays on one machine
/// stay apart.
fn nats_runtime_dir(config: &Config) -> Result<PathBuf, StartError> {
    let dir = std::env::temp_dir().join(format!("textus-relay-{}", config.listen.address.port()));
    std::fs::create_dir_all(&dir).map_err(|source| {
        StartError::Store(crate::store::StoreError::Folder {
            path: dir.display().to_string(),
            source,
        })
    })?;
    Ok(dir)
}

/// What the store is, for the start-up log line.
fn store_name(storage: &Storage) -> String {
    match storage {
        Storage::Sqlite { path, .. } => path.display().to_string(),
        Storage::Nats(n) => format!("nats {} ({})", n.urls.join(","), n.prefix),
    }
}

/// The NATS store's settings from the config: its `storage:` block, the de-duplication
/// window and which targets are ordered.
pub(crate) fn nats_settings(config: &Config, nats: &crate::config::NatsStorage) -> NatsSettings {
    NatsSettings {
        storage: nats.clone(),
        dedupe_window: config.source.dedupe_window,
        targets: config
            .targets
            .iter()
            .map(|t| TargetLayout {
                name: t.name.clone(),
                ordered: !matches!(t.ordering, DeliveryOrder::Unordered),
            })
            .collect(),
    }
}

/// pingora's settings; `dir` holds the upgrade socket and pid file.
fn server_conf(dir: &Path) -> ServerConf {
    ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        grace_period_seconds: Some(GRACE_PERIOD_SECS),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECS),
        upgrade_sock: dir
            .join("textus-relay-upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        pid_file: dir.join("textus-relay.pid").to_string_lossy().into_owned(),
        ..ServerConf::default()
    }
}

fn check_bind(what: &'static str, address: SocketAddr) -> Result<(), StartError> {
    TcpListener::bind(address)
        .map(drop)
        .map_err(|source| StartError::Bind {
            what,
            address,
            source,
        })
}
