//! `textus-relay migrate`: moves a SQLite store's pending deliveries and dead letters into
//! the JetStream store the config names (`storage.kind: nats`).
//!
//! A move, not a copy: each delivery is deleted from the SQLite file only once JetStream has
//! acknowledged it, a slice at a time, so an interrupted run is finished by running it again.
//! The slice whose PubAcks came but whose delete did not commit is published again, and
//! JetStream drops those as duplicates (`Nats-Msg-Id` = `mig:<id>`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Storage;
use crate::store::nats::NatsStore;
use crate::store::sqlite::export::{Counts, Source};
use crate::store::sqlite::owner;

/// Deliveries read, published and deleted together.
const SLICE: usize = 100;
/// Event ids published before their PubAcks are awaited.
const SEEN_SLICE: usize = 500;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config of the relays on NATS: its `storage` must be `kind: nats`.
    #[arg(long, short, default_value = "relay.yaml")]
    pub config: PathBuf,
    /// The SQLite store to move out of (e.g. ./data/relay.db).
    #[arg(long)]
    pub from: PathBuf,
    /// Count what would be moved, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a run moved.
#[derive(Debug, Default)]
struct Tally {
    pending: u64,
    dead: u64,
    duplicates: u64,
}

pub fn run(args: Args) -> ExitCode {
    let config = match super::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Storage::Nats(nats) = &config.storage else {
        eprintln!(
            "{}: `migrate` moves into the NATS JetStream store, but this config's storage is \
             kind: sqlite; point --config at the config with storage.kind: nats",
            args.config.display()
        );
        return ExitCode::from(2);
    };
    if !args.from.is_file() {
        eprintln!(
            "--from {}: no such SQLite store (the file a relay's storage.path names)",
            args.from.display()
        );
        return ExitCode::from(2);
    }
    // Held for the whole move: a relay started on the file meanwhile refuses to start.
    let _owner = match owner::claim(&args.from) {
        Ok(owner::Claim::Owned(o)) => o,
        Ok(owner::Claim::Held { pid }) => {
            let pid = pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            eprintln!(
                "the SQLite store {} is held by a running relay (pid {pid}); stop it before \
                 moving its deliveries",
                args.from.display()
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!(
                "cannot lock {}: {e}",
                owner::lock_path(&args.from).display()
            );
            return ExitCode::from(1);
        }
    };
    let settings = crate::app::nats_settings(&config, nats);
    match migrate(&args.from, args.dry_run, settings) {
        Ok(line) => super::write_out(format!("{line}\n").as_bytes(), "the summary"),
        Err(e) => {
            eprintln!("migrate failed: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The move itself; returns the summary line.
fn migrate(
    from: &Path,
    dry_run: bool,
    settings: crate::store::nats::NatsSettings,
) -> anyhow::Result<String> {
    let mut source = Source::open(from)?;
    let Counts { pending, dead } = source.counts()?;
    let remembered = source.remembered(crate::store::unix_ms(std::time::SystemTime::now()))?;
    if dry_run {
        return Ok(format!(
            "would move {pending} pending deliveries and {dead} dead letters, and remember {} event ids, from {} (dry run: nothing sent)",
            remembered.len(),
            from.display()
        ));
    }
    let urls = settings.storage.urls.join(", ");
    // Opened outside any runtime: it runs its own.
    let store =
        NatsStore::open(settings).with_context(|| format!("opening JetStream at {urls}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let total = pending + dead;
    eprintln!("moving {pending} pending deliveries and {dead} dead letters to {urls}");
    let mut tally = Tally::default();
    let mut after = 0;
    loop {
        let slice = source.slice(after, SLICE)?;
        let Some(last) = slice.last() else { break };
        after = last.id;
        for d in &slice {
            let duplicate = runtime.block_on(async {
                if d.dead {
                    store.import_dead(d).await
                } else {
                    store.import_delivery(d).await
                }
            });
            let duplicate = duplicate.with_context(|| format!("moving delivery {}", d.id))?;
            if d.dead {
                tally.dead += 1;
            } else {
                tally.pending += 1;
            }
            if duplicate {
                tally.duplicates += 1;
            }
        }
        source
            .remove(&slice)
            .context("deleting moved deliveries from the SQLite store")?;
        eprintln!("moved {} of {total}", tally.pending + tally.dead);
    }
    // Last: an id remembered before its deliveries were moved would make TextUs's retry of
    // an event whose move failed a "duplicate", and the event lost.
    let mut known = 0;
    for event_ids in remembered.chunks(SEEN_SLICE) {
        known += runtime
            .block_on(store.import_seen(event_ids))
            .context("remembering event ids for de-duplication")?;
    }
    Ok(format!(
        "moved {} pending deliveries and {} dead letters ({} already in JetStream); {} event ids remembered for de-duplication ({} already)",
        tally.pending,
        tally.dead,
        tally.duplicates,
        remembered.len(),
        known
    ))
}
