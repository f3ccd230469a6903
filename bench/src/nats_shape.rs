//! Issue 15's question, measured without the relay: how should the NATS store lay out an
//! event with N targets? On the 3-node loopback cluster of [`crate::nats`], with one
//! async-nats client (as a relay has), for N = 1, 3 and 8, each of:
//!
//! - **per message** (today, src/store/nats/queue.rs): N messages, one per target subject,
//!   each with its own `Nats-Msg-Id`, all published and then every PubAck awaited, on a work
//!   queue;
//! - **atomic batch** (ADR-50): the same N messages as one batch on a stream with
//!   `allow_atomic`, one PubAck for all (`Nats-Msg-Id` on the members only if the probe of
//!   [`probe`] shows the server takes it there), and once more without any `Nats-Msg-Id`, to
//!   show what the ids cost inside a batch;
//! - **per event**: one message and one PubAck, on an interest stream that N consumers (one
//!   per target) would each read.
//!
//! Every stream has 3 replicas and file storage, and one durable consumer per target (never
//! read from: only the publish side is measured). Each (shape, N) runs at full speed with
//! [`IN_FLIGHT`] events in flight, then open loop at [`PACED_RATE`], each phase on a fresh
//! stream that is deleted after it, so no phase pays for another's messages on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};

use crate::load::{Pace, Template};
use crate::nats::{self, Cluster};
use crate::relay;
use crate::scenarios::{Percentiles, Settings};
use crate::sink::Clock;

mod probe;
mod publish;
mod report;

pub use probe::{Probe, Step};

/// Targets per event measured, in order.
pub const FANOUTS: [usize; 3] = [1, 3, 8];
/// Events in flight at full speed (and publishers of the paced phase).
pub const IN_FLIGHT: usize = 64;
/// The paced rate of the latency phase.
pub const PACED_RATE: f64 = 1000.0;
/// The relay's default `source.dedupe_window`, which becomes its streams' `duplicate_window`.
const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    PerMessage,
    AtomicBatch,
    /// The atomic batch without `Nats-Msg-Id` on its members.
    AtomicBatchNoIds,
    PerEvent,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::PerMessage,
        Shape::AtomicBatch,
        Shape::AtomicBatchNoIds,
        Shape::PerEvent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::PerMessage => "per-message",
            Shape::AtomicBatch => "atomic-batch",
            Shape::AtomicBatchNoIds => "atomic-batch, no ids",
            Shape::PerEvent => "per-event",
        }
    }

    /// Messages stored per event.
    pub fn messages(self, fanout: usize) -> u64 {
        match self {
            Shape::PerMessage | Shape::AtomicBatch | Shape::AtomicBatchNoIds => fanout as u64,
            Shape::PerEvent => 1,
        }
    }

    /// The stream of a phase, as the relay would create it for this shape.
    fn stream(self, name: &str) -> stream::Config {
        let (subjects, retention) = match self {
            Shape::PerMessage | Shape::AtomicBatch | Shape::AtomicBatchNoIds => {
                (format!("{name}.q.>"), stream::RetentionPolicy::WorkQueue)
            }
            // A message per event stays until every target's consumer acked it.
            Shape::PerEvent => (format!("{name}.ev.>"), stream::RetentionPolicy::Interest),
        };
        stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects],
            retention,
            storage: stream::StorageType::File,
            num_replicas: 3,
            duplicate_window: DEDUPE_WINDOW,
            allow_atomic_publish: matches!(self, Shape::AtomicBatch | Shape::AtomicBatchNoIds),
            ..Default::default()
        }
    }

    /// What target `t`'s consumer reads.
    fn filter(self, name: &str, t: usize) -> String {
        match self {
            Shape::PerMessage | Shape::AtomicBatch | Shape::AtomicBatchNoIds => {
                format!("{name}.q.t{t}.>")
            }
            Shape::PerEvent => format!("{name}.ev.>"),
        }
    }
}

/// One timed phase of one (shape, N).
#[derive(Debug)]
pub struct Phase {
    /// Events stored (every PubAck back without error) per second.
    pub rate: f64,
    pub events: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per event, first publish to last PubAck.
    pub latency: Percentiles,
    /// CPU µs of the 3 servers together per stored event, over the phase.
    pub nats_us_per_event: f64,
    pub nats_cores: f64,
    pub nats_cores_each: Vec<f64>,
    /// This process (the publishers and the client) in cores.
    pub harness_cores: f64,
    /// Messages in the stream after the phase, and how many the stored events make.
    pub stored: u64,
    pub expected: u64,
}

/// Both phases of one shape at one fan-out.
#[derive(Debug)]
pub struct Cell {
    pub shape: Shape,
    pub fanout: usize,
    pub full_speed: Phase,
    pub paced: Phase,
}

/// What the scenario measured.
#[derive(Debug)]
pub struct NatsShape {
    pub version: String,
    pub in_flight: usize,
    pub phase_secs: f64,
    pub body_bytes: usize,
    pub probe: Probe,
    /// Whether the atomic batches' members carried `Nats-Msg-Id` (the probe's first step).
    pub batch_msg_ids: bool,
    pub cells: Vec<Cell>,
}

/// The whole scenario: the cluster, the probe, then every (N, shape), shapes alternating
/// within each N so a drift of the machine's speed spreads over all of them.
pub async fn run(s: &Settings, clock: Clock) -> anyhow::Result<NatsShape> {
    let version = nats::server_version()?;
    let cluster = Cluster::start().await?;
    let urls: Vec<async_nats::ServerAddr> = cluster
        .client_urls()
        .iter()
        .map(|u| u.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .name("textus-bench nats-shape")
        .connect(urls)
        .await?;
    let js = jetstream::new(client.clone());
    // Unique per run, so no stream of an earlier run is found.
    let run_id = textus_relay::store::unix_ms(std::time::SystemTime::now());
    let probe = probe::run(
        &client,
        &js,
        &format!("shape{run_id}-probe"),
        Shape::AtomicBatch.stream(""),
    )
    .await?;
    let batch_msg_ids = probe.msg_id_accepted();
    let template = Template::new();
    let body_bytes = template.len();
    let mut cells = Vec::new();
    let mut k = 0;
    for fanout in FANOUTS {
        for shape in Shape::ALL {
            let mut phase_of = |pace| {
                k += 1;
                let ctx = Arc::new(publish::Ctx {
                    client: client.clone(),
                    js: js.clone(),
                    shape,
                    fanout,
                    prefix: format!("shape{run_id}-{k}"),
                    batch_msg_ids,
                    template: template.clone(),
                    clock,
                });
                phase(ctx, &cluster, pace, s.phase)
            };
            let full_speed = phase_of(Pace::FullSpeed).await?;
            let paced = phase_of(Pace::Rate(PACED_RATE)).await?;
            eprintln!(
                "        {:<12} N={fanout}: {:.0} events/s ({} errors), servers {:.0} µs/event; \
                 at {PACED_RATE}/s p50 {:.2} p99 {:.2} ms ({} errors), servers {:.0} µs/event",
                shape.name(),
                full_speed.rate,
                full_speed.errors,
                full_speed.nats_us_per_event,
                paced.latency.p50_ms,
                paced.latency.p99_ms,
                paced.errors,
                paced.nats_us_per_event
            );
            cells.push(Cell {
                shape,
                fanout,
                full_speed,
                paced,
            });
        }
    }
    Ok(NatsShape {
        version,
        in_flight: IN_FLIGHT,
        phase_secs: s.phase.as_secs_f64(),
        body_bytes,
        probe,
        batch_msg_ids,
        cells,
    })
}

/// Creates the phase's stream and consumers, publishes for `duration`, counts what the
/// stream holds, and deletes it.
async fn phase(
    ctx: Arc<publish::Ctx>,
    cluster: &Cluster,
    pace: Pace,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let name = ctx.prefix.clone();
    let stream = ctx.js.create_stream(ctx.shape.stream(&name)).await?;
    for t in 0..ctx.fanout {
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("t{t}")),
                filter_subject: ctx.shape.filter(&name, t),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await?;
    }
    let nats_before = cluster.cpu_secs();
    let harness_before = relay::cpu_secs("self");
    let began = Instant::now();
    let outcome = publish::drive(ctx.clone(), pace, duration, IN_FLIGHT).await;
    let wall = began.elapsed().as_secs_f64().max(1e-9);
    let nats_each: Vec<f64> = cluster
        .cpu_secs()
        .iter()
        .zip(&nats_before)
        .map(|(a, b)| a - b)
        .collect();
    let harness = relay::cpu_secs("self") - harness_before;
    let stored = ctx
        .js
        .get_stream(&name)
        .await?
        .get_info()
        .await?
        .state
        .messages;
    ctx.js.delete_stream(&name).await?;
    let nats: f64 = nats_each.iter().sum();
    Ok(Phase {
        rate: outcome.events as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
        events: outcome.events,
        errors: outcome.errors,
        first_error: outcome.first_error,
        latency: Percentiles::of(&outcome.latency),
        nats_us_per_event: nats * 1e6 / outcome.events.max(1) as f64,
        nats_cores: nats / wall,
        nats_cores_each: nats_each.iter().map(|c| c / wall).collect(),
        harness_cores: harness / wall,
        stored,
        expected: outcome.events * ctx.shape.messages(ctx.fanout),
    })
}
