//! The load generator: signed TextUs events with unique ids over N keep-alive HTTP/1.1
//! connections, closed-loop at full speed or open-loop at a fixed rate.
//!
//! Every event is the `message.received` fixture with its envelope `id` replaced by
//! `bench-<seq>-<sent µs>`: unique (so de-duplication never hides one) and carrying its send
//! instant on the shared [`Clock`], which the sinks read to measure end-to-end latency.
//!
//! Open loop: connection `i` of `N` sends its `k`-th request at `start + (k·N + i) / rate`.
//! When the connection is still busy at that instant, the latency is counted from the
//! intended instant (no coordinated omission); when it is free, from the actual send, so
//! tokio's millisecond timer granularity is not counted as relay latency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sink::{Clock, histogram};

/// The fixture every event is made from.
const FIXTURE: &[u8] = include_bytes!("../../fixtures/message.received.json");
/// Marks the id inside a body: `"bench-` then 20 digits of sequence, `-`, 20 digits of µs.
const MARK: &[u8] = b"\"bench-";
const DIGITS: usize = 20;
const PLACEHOLDER: &str = "bench-00000000000000000000-00000000000000000000";

/// Sequence numbers are unique in the process, so no two events of a run share an id.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// What an event's id carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    /// When the generator sent it, in [`Clock`] microseconds.
    pub sent_us: u64,
}

impl Stamp {
    /// Reads the stamp from a body sent by this generator (`None` for any other body).
    pub fn find(body: &[u8]) -> Option<Stamp> {
        let at = body.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
        let digits = |from: usize| -> Option<u64> {
            let text = std::str::from_utf8(body.get(from..from + DIGITS)?).ok()?;
            text.parse().ok()
        };
        Some(Stamp {
            seq: digits(at)?,
            sent_us: digits(at + DIGITS + 1)?,
        })
    }
}

/// The fixture serialised once with a placeholder id; each event only rewrites its digits.
#[derive(Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Where the first digit of the sequence is.
    at: usize,
}

impl Template {
    pub fn new() -> Template {
        let mut event: serde_json::Value =
            serde_json::from_slice(FIXTURE).expect("the fixture is JSON");
        event["id"] = serde_json::Value::String(PLACEHOLDER.into());
        let bytes = serde_json::to_vec(&event).expect("a JSON value serialises");
        let at = bytes
            .windows(MARK.len())
            .position(|w| w == MARK)
            .expect("the placeholder is in the body")
            + MARK.len();
        Template { bytes, at }
    }

    /// The body of one event.
    pub fn render(&self, stamp: Stamp) -> Vec<u8> {
        let mut body = self.bytes.clone();
        let digits = format!("{:020}-{:020}", stamp.seq, stamp.sent_us);
        body[self.at..self.at + digits.len()].copy_from_slice(digits.as_bytes());
        body
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Default for Template {
    fn default() -> Self {
        Template::new()
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Closed loop: each connection sends its next request as soon as it has the answer.
    FullSpeed,
    /// Open loop at this many events per second across all connections.
    Rate(f64),
}

/// One run of the generator.
#[derive(Clone, Debug)]
pub struct Load {
    pub target: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub pace: Pace,
    pub duration: Duration,
    /// Stop once this many requests were started (for filling a backlog).
    pub max_requests: Option<u64>,
    /// The secret the relay knows.
    pub secret: String,
    /// False signs with another secret: the relay answers 401 after the full HMAC check.
    pub valid_signature: bool,
    /// Keep each request's send instant and latency in [`Outcome::samples`], for figures
    /// over part of the run.
    pub keep_samples: bool,
}

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Requests answered with each status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (connection failures).
    pub errors: u64,
    /// Answer latency in microseconds, every status included.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// (sent, in [`Clock`] µs; latency, µs) of every request, if [`Load::keep_samples`].
    pub samples: Vec<(u64, u64)>,
}

impl Outcome {
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn with_status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers with `status` per second of the run.
    pub fn rate(&self, status: u16) -> f64 {
        self.with_status(status) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Shared {
    load: Load,
    clock: Clock,
    template: Template,
    started: AtomicU64,
    start: Instant,
}

/// Runs `load` to its end on the current runtime.
pub async fn run(load: Load, clock: Clock) -> Outcome {
    let connections = load.connections.max(1);
    let shared = Arc::new(Shared {
        load,
        clock,
        template: Template::new(),
        started: AtomicU64::new(0),
        start: Instant::now(),
    });
    let workers: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(worker(shared.clone(), i, connections)))
        .collect();
    let mut outcome = Outcome {
        statuses: BTreeMap::new(),
        errors: 0,
        latency: histogram(),
        elapsed: Duration::ZERO,
        samples: Vec::new(),
    };
    for w in workers {
        let Ok(part) = w.await else { continue };
        for (status, n) in part.statuses {
            *outcome.statuses.entry(status).or_default() += n;
        }
        outcome.errors += part.errors;
        let _ = outcome.latency.add(&part.latency);
        outcome.samples.extend(part.samples);
    }
    outcome.elapsed = shared.start.elapsed();
    outcome
}

async fn worker(shared: Arc<Shared>, index: usize, connections: usize) -> Outcome {
    let load = &shared.load;
    let deadline = shared.start + load.duration;
    let mut out = Outcome {
        statuses: BTreeMap::new(),
        errors: 0,
        latency: histogram(),
        elapsed: Duration::ZERO,
        samples: Vec::new(),
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut previous_done = shared.start;
    for k in 0u64.. {
        let intended = match load.pace {
            Pace::FullSpeed => Instant::now(),
            Pace::Rate(rate) => {
                let slot = k as f64 * connections as f64 + index as f64;
                shared.start + Duration::from_secs_f64(slot / rate)
            }
        };
        if intended >= deadline {
            break;
        }
        if let Some(max) = load.max_requests
            && shared.started.fetch_add(1, Ordering::Relaxed) >= max
        {
            break;
        }
        // Only when the instant lies ahead: tokio's timer rounds a deadline up to its next
        // millisecond tick, so sleeping until "now" parked every full-speed request for up to
        // 1 ms, which capped one connection at ~830 requests/s and the 32 at ~21,000.
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let stamp = Stamp {
            seq: SEQUENCE.fetch_add(1, Ordering::Relaxed),
            sent_us: shared.clock.now_us(),
        };
        let body = shared.template.render(stamp);
        let secret = if load.valid_signature {
            load.secret.clone()
        } else {
            format!("{}-wrong", load.secret)
        };
        let signature = textus_relay::ingress::signature::sign(&secret, &body);
        let sent = Instant::now();
        let status = send(&mut sender, load, body, &signature).await;
        let done = Instant::now();
        // Busy at the intended instant: count from it, so a stall is not hidden.
        let from = match load.pace {
            Pace::Rate(_) if previous_done > intended => intended,
            _ => sent,
        };
        previous_done = done;
        let latency_us = u64::try_from((done - from).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = out.latency.record(latency_us);
        if load.keep_samples {
            out.samples.push((stamp.sent_us, latency_us));
        }
        match status {
            Some(s) => *out.statuses.entry(s).or_default() += 1,
            None => {
                out.errors += 1;
                sender = None;
                // A refused connection would otherwise spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

/// Sends one request on the connection (opening it first if needed); `None` on failure.
async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    load: &Load,
    body: Vec<u8>,
    signature: &str,
) -> Option<u16> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(load.target).await?);
    }
    let s = sender.as_mut()?;
    s.ready().await.ok()?;
    let request = Request::post(load.path.as_str())
        .header(header::HOST, load.target.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-textus-signature", signature)
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let response = s.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    // Read the answer to its end so the connection can carry the next request.
    response.into_body().collect().await.ok()?;
    Some(status)
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// Signatures of the fixture one thread computes per second: a yardstick of this machine's
/// speed at the moment, taken at the start and end of a run. On a shared VM it moves (one
/// afternoon it fell by a third within an hour), and every absolute figure moves with it.
pub fn yardstick() -> f64 {
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while started.elapsed() < std::time::Duration::from_millis(500) {
        for _ in 0..100 {
            std::hint::black_box(textus_relay::ingress::signature::sign(
                "yardstick",
                std::hint::black_box(FIXTURE),
            ));
        }
        n += 100;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_body_carries_its_stamp_and_stays_json() {
        let template = Template::new();
        let stamp = Stamp {
            seq: 42,
            sent_us: 1_234_567,
        };
        let body = template.render(stamp);
        assert_eq!(Stamp::find(&body), Some(stamp));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["id"], "bench-00000000000000000042-00000000000001234567");
        assert_eq!(v["action"], "message.received");
    }

    #[test]
    fn a_foreign_body_has_no_stamp() {
        assert_eq!(Stamp::find(br#"{"id":"x"}"#), None);
    }
}
