//! The TextUs-facing HTTP service: limits, signature, envelope, routing, durable store, answer.
//!
//! The answer follows design.md §2 because TextUs reads status codes as instructions: `504`
//! means "busy, retry with backoff", any other non-2xx means "integration broken, pause
//! everything". So every failure to store is a 504, and a signed body the relay cannot use is
//! still a 200 (kept as a dead letter), never a 4xx that would pause the integration. A target
//! whose queue is full (`max_queue`, `on_full: reject`) is a failure to store: 504.

pub mod envelope;
mod reply;
pub mod signature;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use tracing::{debug, info, warn};

use crate::app::live::Live;
use crate::config::Source;
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::store::{Ingested, NewEvent, Queue};
pub use reply::{IngressError, IngressReply};
use signature::SignatureError;

/// How long a client may take to send the body before the request is dropped.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive connection from TextUs is held open.
const KEEPALIVE_SECS: u64 = 60;
/// How long a new connection may take to send its whole request head. Idle, half-open and
/// slowly trickled heads are dropped after this, so they hold a task and a socket for a
/// bounded time only (each connection is its own task: they never block real requests).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing the (small) answer may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most request-head bytes (names and values) the relay accepts; TextUs sends a few
/// hundred. pingora's own limit is 1 MiB.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// What ingress reads for each request: the source settings and the routes. A reload replaces
/// it whole, so each request sees one config throughout.
pub struct IngressConfig {
    pub source: Source,
    pub router: Router,
}

/// Left on a kept-alive connection for its next request: it has already carried one.
struct Reused;

/// The ingress service. One instance serves every connection.
pub struct Ingress {
    /// Source settings and routes; a config reload replaces them, and each request uses the
    /// ones current when it started.
    config: Arc<Live<IngressConfig>>,
    store: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    /// Set once a zero-downtime restart began (SIGQUIT): the listening sockets now belong to
    /// a new process too, and this one only finishes what reached it. Unlike SIGTERM, a
    /// request that arrives on an open connection is still stored and answered 200 (the store
    /// works until the process exits), then the connection is closed so the client's next
    /// request goes to the new process. Answering 504 here would fail requests for nothing.
    handing_over: Arc<AtomicBool>,
}

impl Ingress {
    pub fn new(
        config: Arc<Live<IngressConfig>>,
        store: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        handing_over: Arc<AtomicBool>,
    ) -> Self {
        Ingress {
            config,
            store,
            metrics,
            handing_over,
        }
    }

    /// Decides the answer for one request. Never panics; every branch is an [`IngressReply`].
    async fn handle(&self, session: &mut ServerSession, shutting_down: bool) -> IngressReply {
        let config = self.config.get();
        let source = &config.source;
        let head = session.req_header();
        if head_bytes(head) > MAX_HEAD_BYTES {
            return IngressError::HeadersTooLarge(MAX_HEAD_BYTES).into();
        }
        if head.uri.path() != source.path {
            return IngressError::NotFound.into();
        }
        if head.method != http::Method::POST {
            return IngressError::MethodNotAllowed.into();
        }
        if shutting_down {
            return IngressError::ShuttingDown.into();
        }
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > source.max_body as u64) {
            return IngressError::TooLarge(source.max_body).into();
        }
        let signature = session
            .get_header("x-textus-signature")
            .map(|v| v.as_bytes().to_vec());
        let body = match read_body(session, source.max_body).await {
            Ok(body) => body,
            Err(e) => return e.into(),
        };
        match signature::verify(&source.secrets, signature.as_deref(), &body) {
            Ok(()) => {}
            Err(SignatureError::Missing) => return IngressError::MissingSignature.into(),
            Err(SignatureError::Mismatch) => return IngressError::BadSignature.into(),
        }
        let signature =
            String::from_utf8_lossy(signature.as_deref().unwrap_or_default()).into_owned();
        self.accept(&config, body, signature).await
    }

    /// Stores a verified body and says how it went.
    async fn accept(&self, config: &IngressConfig, body: Bytes, signature: String) -> IngressReply {
        let (event, target_count) = prepare(config, body, signature, SystemTime::now());
        let event_id = event.event_id.clone();
        let event_type = event.event_type.clone();
        let dead_reason = event.dead_reason.clone();
        let unrouted = target_count == 0 && dead_reason.is_none();
        let type_label = event_type.as_deref().unwrap_or("");
        match self.store.ingest(event).await {
            Ok(Ingested::Duplicate) => {
                debug!(event_id = %event_id, event_type = type_label, "duplicate event");
                self.metrics.event(type_label, "duplicate");
                IngressReply::duplicate(&event_id)
            }
            Ok(Ingested::Rejected { target, limit }) => {
                warn!(event_id = %event_id, event_type = type_label, target = %target, limit = %limit,
                    "target queue is full; answering 504 so TextUs retries later");
                self.metrics.event(type_label, "queue_full");
                IngressError::QueueFull {
                    target: target.to_string(),
                    limit: limit.to_string(),
                }
                .into()
            }
            Ok(Ingested::Full(limit)) => {
                // The store logs when ingest stops and resumes; one line per refused event
                // would flood the log exactly while the disk is short.
                debug!(event_id = %event_id, event_type = type_label, "storage budget spent; answering 504");
                self.metrics.event(type_label, "store_full");
                IngressError::StoreFull(limit.describe()).into()
            }
            Ok(Ingested::Accepted) => {
                let outcome = if let Some(reason) = &dead_reason {
                    warn!(event_id = %event_id, reason = %reason, "signed body kept as a dead letter");
                    "dead_letter"
                } else if unrouted {
                    info!(event_id = %event_id, event_type = type_label, "event matched no route");
                    "unrouted"
                } else {
                    info!(event_id = %event_id, event_type = type_label, targets = target_count, "event accepted");
                    "accepted"
                };
                self.metrics.event(type_label, outcome);
                IngressReply::accepted(&event_id, dead_reason.as_deref())
            }
            Err(e) => {
                warn!(event_id = %event_id, error = %e, "event could not be stored; answering 504");
                IngressError::StoreUnavailable(e.to_string()).into()
            }
        }
    }
}

/// The event to store for a verified body, and how many deliveries it has. The body is parsed
/// once here: in full when routing or a target reads the event ([`Router::parses_event`]), the
/// value then going on with the event; otherwise only its `id` and `action`.
fn prepare(
    config: &IngressConfig,
    body: Bytes,
    signature: String,
    received_at: SystemTime,
) -> (NewEvent, usize) {
    let envelope = envelope::read(&body, config.router.parses_event());
    let (event_type, dead_reason) = match envelope.kind {
        Ok(t) => (Some(t), None),
        Err(reason) => (None, Some(reason)),
    };
    let targets = match event_type.as_deref() {
        Some(t) => config
            .router
            .plan(t, &envelope.event_id, &body, &envelope.parsed, received_at),
        None => Vec::new(),
    };
    let target_count = targets.len();
    let event = NewEvent {
        event_id: envelope.event_id,
        event_type,
        body,
        parsed: envelope.parsed,
        signature,
        received_at,
        targets,
        dead_reason,
        dedupe_window: config.source.dedupe_window,
        keep_unrouted: config.source.keep_unrouted,
    };
    (event, target_count)
}

#[async_trait]
impl HttpServerApp for Ingress {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // A reused keep-alive connection may idle for its keep-alive time before the next
        // request starts; a new one must send its head promptly. (pingora gives both the same
        // 60 s wait per read, so only the mark we leave on reuse tells them apart.)
        let head_deadline = if session.take_connection_user_context().is_some() {
            Duration::from_secs(KEEPALIVE_SECS) + HEADER_READ_TIMEOUT
        } else {
            HEADER_READ_TIMEOUT
        };
        session.set_write_timeout(Some(WRITE_TIMEOUT));
        match tokio::time::timeout(head_deadline, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                debug!(error = %e, "reading request head failed");
                return None;
            }
            Err(_) => {
                debug!(
                    deadline = ?head_deadline,
                    "request head not received in time; closing"
                );
                return None;
            }
        }
        let handing_over = self.handing_over.load(Ordering::Acquire);
        let shutting_down = *shutdown.borrow();
        let answer = self
            .handle(&mut session, shutting_down && !handing_over)
            .await;
        self.metrics.request(answer.outcome);
        // A connection whose body was not read to the end cannot carry another request, and
        // one to a process that is stopping should not.
        let keepalive = !shutting_down && !handing_over && answer.body_consumed;
        session.set_keepalive(keepalive.then_some(KEEPALIVE_SECS));
        if let Err(e) = reply::write(&mut session, &answer).await {
            debug!(error = %e, "writing the answer failed");
            return None;
        }
        let mut settings = HttpPersistentSettings::for_session(&session);
        settings.set_user_context(Box::new(Reused));
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(e) => {
                debug!(error = %e, "finishing the request failed");
                None
            }
        }
    }
}

/// Reads the whole body, refusing as soon as it passes `max_body` (chunked bodies have no
/// length to check up front).
async fn read_body(session: &mut ServerSession, max_body: usize) -> Result<Bytes, IngressError> {
    session.set_read_timeout(Some(BODY_READ_TIMEOUT));
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max_body {
                    return Err(IngressError::TooLarge(max_body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(IngressError::BodyRead(e.to_string())),
        }
    }
}

/// Size of a request head as sent, near enough: method, target, and each header line.
fn head_bytes(head: &pingora::http::RequestHeader) -> usize {
    let line = head.method.as_str().len() + head.uri.to_string().len() + 12;
    head.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}
