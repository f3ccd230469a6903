//! Fast benchmark targets on loopback: they count arrivals and the end-to-end latency each
//! body carries, and keep nothing else, so they are never the bottleneck the way the
//! recording test sink (`textus_relay::support::sink`) would be.
//!
//! Each body the load generator sends carries its send instant (see [`crate::load::Stamp`]);
//! a sink subtracts it from its arrival instant on the same [`Clock`], so "received by the
//! relay → delivered to the target" is measured without any clock synchronisation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::load::Stamp;

/// The shared time base of the generator and the sinks of one process.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A new latency histogram in microseconds: 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What a sink saw. Cheap to read while the sink runs.
pub struct Arrivals {
    count: AtomicU64,
    /// Clock microseconds of the first and the last arrival (0: none yet).
    first_us: AtomicU64,
    last_us: AtomicU64,
    /// Arrivals whose body carried no stamp (not sent by this generator).
    unstamped: AtomicU64,
    /// Bodies sent before this clock instant are counted apart (`u64::MAX`: all of them), so
    /// a scenario can tell a backlog's deliveries from those of the load that follows it.
    cutoff_us: AtomicU64,
    sent_before_cutoff: AtomicU64,
    last_sent_before_cutoff_us: AtomicU64,
    e2e: Mutex<Histogram<u64>>,
}

impl Arrivals {
    fn new() -> Arrivals {
        Arrivals {
            count: AtomicU64::new(0),
            first_us: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            cutoff_us: AtomicU64::new(u64::MAX),
            sent_before_cutoff: AtomicU64::new(0),
            last_sent_before_cutoff_us: AtomicU64::new(0),
            e2e: Mutex::new(histogram()),
        }
    }

    fn record(&self, clock: &Clock, body: &[u8]) {
        let now = clock.now_us().max(1);
        let _ = self
            .first_us
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_us.fetch_max(now, Ordering::Relaxed);
        match Stamp::find(body) {
            Some(stamp) => {
                if stamp.sent_us < self.cutoff_us.load(Ordering::Relaxed) {
                    self.last_sent_before_cutoff_us
                        .fetch_max(now, Ordering::Relaxed);
                    self.sent_before_cutoff.fetch_add(1, Ordering::Relaxed);
                }
                let mut h = self.e2e.lock().unwrap_or_else(|p| p.into_inner());
                let _ = h.record(now.saturating_sub(stamp.sent_us).max(1));
            }
            None => {
                self.unstamped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn first_us(&self) -> u64 {
        self.first_us.load(Ordering::Relaxed)
    }

    pub fn last_us(&self) -> u64 {
        self.last_us.load(Ordering::Relaxed)
    }

    /// From now on, bodies sent at or after `cutoff_us` are not counted by
    /// [`Arrivals::sent_before_cutoff`].
    pub fn set_cutoff(&self, cutoff_us: u64) {
        self.cutoff_us.store(cutoff_us, Ordering::Relaxed);
    }

    /// Arrivals of bodies sent before the cutoff.
    pub fn sent_before_cutoff(&self) -> u64 {
        self.sent_before_cutoff.load(Ordering::Relaxed)
    }

    /// When the last body sent before the cutoff arrived (0: none yet).
    pub fn last_sent_before_cutoff_us(&self) -> u64 {
        self.last_sent_before_cutoff_us.load(Ordering::Relaxed)
    }

    pub fn unstamped(&self) -> u64 {
        self.unstamped.load(Ordering::Relaxed)
    }

    /// A copy of the end-to-end latency histogram (µs).
    pub fn e2e(&self) -> Histogram<u64> {
        self.e2e.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How a sink answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with an empty body, keep-alive.
    Answer,
    /// Accepts connections and reads requests, never answers: a black hole.
    BlackHole,
}

/// A running sink; it stops when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    pub arrivals: Arc<Arrivals>,
    _stop: watch::Sender<bool>,
}

impl Sink {
    /// Serves on `addr` (port 0 for any free port) on the current tokio runtime.
    pub async fn start(
        addr: SocketAddr,
        behaviour: Behaviour,
        clock: Clock,
    ) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Arrivals::new());
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept(
            listener,
            behaviour,
            clock,
            arrivals.clone(),
            stop_rx,
        ));
        Ok(Sink {
            addr,
            arrivals,
            _stop: stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

async fn accept(
    listener: TcpListener,
    behaviour: Behaviour,
    clock: Clock,
    arrivals: Arc<Arrivals>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let arrivals = arrivals.clone();
        let stop = stop.clone();
        match behaviour {
            Behaviour::Answer => tokio::spawn(serve(stream, clock, arrivals, stop)),
            Behaviour::BlackHole => tokio::spawn(swallow(stream, stop)),
        };
    }
}

async fn serve(
    stream: TcpStream,
    clock: Clock,
    arrivals: Arc<Arrivals>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let arrivals = arrivals.clone();
        async move {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            arrivals.record(&clock, &body);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = stop.changed() => {}
    }
}

/// Reads and discards until the peer gives up or the sink stops; never writes a byte.
async fn swallow(mut stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => if matches!(n, Ok(0) | Err(_)) { return },
            _ = stop.changed() => return,
        }
    }
}
