//! Concurrent signed load against a relay, for the crash, upgrade and SIGTERM tests.
//!
//! Each connection is its own task with its own client, sending one event after another, each
//! with an envelope id never used before, and keeping the id of every event answered 200. What
//! the relay does to a request (answer, other status, no answer at all) is counted, never
//! asserted here: the tests decide which outcomes their scenario allows.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use textus_relay::ingress::signature;
use textus_relay::support::sink::Sink;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::support::{PATIENCE, SECRET, eventually, fixture, poll_within};

/// How long a connection waits before trying again after the relay refused or dropped it, so
/// a relay that is down (between a kill and its restart) is not hammered in a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// What the load saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Envelope ids answered 200 `accepted`: the relay promised to deliver these.
    pub acknowledged: Vec<String>,
    /// Answers other than 200 `accepted`, by status.
    pub other: BTreeMap<u16, usize>,
    /// Requests whose answer never came (connection refused, reset, or closed mid-request).
    pub no_answer: usize,
}

impl Tally {
    /// Every request sent.
    pub fn sent(&self) -> usize {
        self.acknowledged.len() + self.other.values().sum::<usize>() + self.no_answer
    }

    fn merge(&mut self, other: Tally) {
        self.acknowledged.extend(other.acknowledged);
        for (status, n) in other.other {
            *self.other.entry(status).or_default() += n;
        }
        self.no_answer += other.no_answer;
    }
}

/// Load running in the background until [`Load::stop`].
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Tally>>,
    acknowledged: Arc<AtomicUsize>,
}

impl Load {
    /// Starts `connections` senders to the relay listening on `listen`. Ids are
    /// `/integrations/{run}/deliveries/{connection}-{n}`, so runs sharing a store never collide.
    pub fn start(listen: SocketAddr, connections: usize, run: &str) -> Load {
        let (stop, stopped) = watch::channel(false);
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let template: Value =
            serde_json::from_slice(&fixture("message.received")).expect("fixture is JSON");
        let tasks = (0..connections)
            .map(|c| {
                let sender = Sender {
                    url: format!("http://{listen}/webhooks/textus"),
                    prefix: format!("/integrations/{run}/deliveries/{c}-"),
                    template: template.clone(),
                    acknowledged: acknowledged.clone(),
                };
                tokio::spawn(sender.run(stopped.clone()))
            })
            .collect();
        Load {
            stop,
            tasks,
            acknowledged,
        }
    }

    /// How many events have been answered 200 so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `more` events beyond `from` were acknowledged: progress, without assuming
    /// any speed. Panics after [`PATIENCE`].
    pub async fn wait_for_progress(&self, from: usize, more: usize) {
        eventually("the load to make progress", async || {
            let acknowledged = self.acknowledged();
            if acknowledged >= from + more {
                Ok(())
            } else {
                Err(format!("{acknowledged} acknowledged"))
            }
        })
        .await;
    }

    /// Stops every sender after its current request and adds up what they saw.
    pub async fn stop(self) -> Tally {
        let _ = self.stop.send(true);
        let mut tally = Tally::default();
        for task in self.tasks {
            tally.merge(task.await.expect("load task"));
        }
        tally
    }
}

struct Sender {
    url: String,
    prefix: String,
    template: Value,
    acknowledged: Arc<AtomicUsize>,
}

impl Sender {
    async fn run(self, stop: watch::Receiver<bool>) -> Tally {
        // One client per sender: one keep-alive connection each, like TextUs's workers.
        let client = reqwest::Client::builder()
            .timeout(PATIENCE)
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let mut tally = Tally::default();
        let mut n = 0u64;
        while !*stop.borrow() {
            n += 1;
            let id = format!("{}{n}", self.prefix);
            let mut event = self.template.clone();
            event["id"] = Value::String(id.clone());
            let body = serde_json::to_vec(&event).expect("serialize");
            let sent = client
                .post(&self.url)
                .header("X-TextUs-Signature", signature::sign(SECRET, &body))
                .body(body)
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await;
                    text.ok().map(|t| (status, t))
                }
                Err(_) => None,
            };
            match answer {
                Some((200, text)) if text.contains("\"accepted\"") => {
                    tally.acknowledged.push(id);
                    self.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Some((status, _)) => *tally.other.entry(status).or_default() += 1,
                None => {
                    tally.no_answer += 1;
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
        tally
    }
}

/// The envelope ids one sink received, read incrementally: a soak leaves hundreds of
/// thousands of requests in a sink, and re-parsing all of them on every poll would be slow.
#[derive(Default)]
pub struct Delivered {
    /// Requests looked at so far (the sink's first `seen` requests).
    seen: usize,
    /// Distinct envelope ids among them.
    pub ids: HashSet<String>,
}

impl Delivered {
    /// Takes in the requests the sink recorded since the last call.
    pub fn update(&mut self, sink: &Sink) -> &mut Self {
        let new = sink.received_from(self.seen);
        self.seen += new.len();
        self.ids.extend(
            new.iter()
                .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .filter_map(|v| v["id"].as_str().map(str::to_owned)),
        );
        self
    }

    /// Requests received beyond the first of each id: repeats (at-least-once at work).
    pub fn repeats(&self) -> usize {
        self.seen - self.ids.len()
    }
}

/// Waits until every acknowledged id reached every sink, giving up once `patience` passed
/// without any new request at any sink (so a long backlog may take as long as it needs, at
/// whatever speed the machine has). Returns, per sink, what it received and the ids still
/// missing (all empty when nothing was lost).
pub async fn wait_delivered(
    sinks: &[&Sink],
    acknowledged: &[String],
    patience: Duration,
) -> Vec<(Delivered, Vec<String>)> {
    let mut seen: Vec<Delivered> = sinks.iter().map(|_| Delivered::default()).collect();
    // Each round waits for completion or for progress; a round without either ends the wait.
    loop {
        let round = poll_within(patience, async || {
            let before: usize = seen.iter().map(|d| d.seen).sum();
            for (delivered, sink) in seen.iter_mut().zip(sinks) {
                delivered.update(sink);
            }
            let complete = seen
                .iter()
                .all(|d| acknowledged.iter().all(|id| d.ids.contains(id)));
            if complete {
                Ok(true)
            } else if seen.iter().map(|d| d.seen).sum::<usize>() > before {
                Ok(false)
            } else {
                Err(())
            }
        })
        .await;
        if round != Ok(false) {
            break;
        }
    }
    seen.into_iter()
        .map(|d| {
            let missing = acknowledged
                .iter()
                .filter(|id| !d.ids.contains(*id))
                .cloned()
                .collect();
            (d, missing)
        })
        .collect()
}
