//! A real HTTP/1.1 receiver on loopback that records every request and answers from a script.
//!
//! `textus-relay demo` points local targets at it, and the black-box tests use it as
//! `TestTarget`, so it must behave like a real endpoint: keep-alive connections work, bodies
//! are kept byte for byte, and nothing a client sends can make it panic.
//!
//! Invariants a reader needs:
//! - A request is recorded once its whole body has been read and before it is answered, so
//!   a request answered with [`Reply::Hang`] is still seen by [`Sink::received`].
//! - Recording a request and choosing its reply happen under one lock, so the n-th recorded
//!   request gets the n-th scripted reply even when requests arrive concurrently.
//! - A request whose body cannot be read (over [`MAX_BODY`], bad chunking, client gone) is
//!   answered 413 or 400 and is neither recorded nor given a scripted reply.
//! - Stopping ([`Sink::shutdown`] or dropping the last handle) closes the listener and every
//!   connection, including those waiting on [`Reply::Hang`] or [`Reply::Delay`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

/// Largest request body the sink records; a larger one is answered 413.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long the accept loop waits after a failed `accept` (for example out of file
/// descriptors), so such an error does not turn into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Handle to a running sink. Clones share one server; it stops on [`Sink::shutdown`] or when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Sink {
    addr: SocketAddr,
    /// Recorded requests and the reply script. A watch channel rather than a mutex so that
    /// [`Sink::wait_for`] is woken by each new request instead of polling.
    state: watch::Sender<State>,
    /// Only handles hold this sender: when the last one is dropped the channel closes, and
    /// the serving tasks treat that exactly like `true`.
    stop: watch::Sender<bool>,
}

/// One request as the sink saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request method.
    pub method: Method,
    /// Path and query exactly as sent in the request line, e.g. `/hooks/a?x=1`.
    pub path: String,
    /// Header names are lower case (HTTP/1.1 names are case-insensitive); values are the
    /// bytes as sent.
    pub headers: HeaderMap,
    /// The body as sent, after removing chunked transfer encoding if any.
    pub body: Bytes,
    /// When the body had been fully read.
    pub at: Instant,
}

/// How the sink answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// That status with an empty body.
    Status(u16),
    /// That status with a plain-text body, e.g. 400 with `invalid_payload`.
    StatusWithBody(u16, String),
    /// That status with extra headers, e.g. 429 with `Retry-After`. Invalid names or values
    /// are left out with a warning.
    StatusWithHeaders(u16, Vec<(String, String)>),
    /// Record the request and never answer it, until the sink stops: a black hole.
    Hang,
    /// Answer with that status (empty body) after the delay.
    Delay(Duration, u16),
}

/// [`Sink::wait_for`] gave up before enough requests arrived.
#[derive(Clone, Debug, thiserror::Error)]
#[error("sink at {addr} got {arrived} of {expected} requests within {waited:?}")]
pub struct SinkTimeout {
    /// The sink that was waited on.
    pub addr: SocketAddr,
    /// How many requests the caller waited for.
    pub expected: usize,
    /// How many had been recorded when the wait gave up.
    pub arrived: usize,
    /// How long the caller waited.
    pub waited: Duration,
}

/// What the serving tasks share with the handles.
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    then: Reply,
}

impl State {
    /// Records a request and returns its reply, consuming the script first.
    fn record(&mut self, request: Received) -> Reply {
        self.received.push(request);
        self.script.pop_front().unwrap_or_else(|| self.then.clone())
    }
}

impl Sink {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime. `script` is
    /// consumed one reply per recorded request in arrival order; after it every request gets
    /// `then`.
    pub async fn start(script: Vec<Reply>, then: Reply) -> io::Result<Sink> {
        // Checked first so a caller outside tokio gets an error instead of a panic from
        // `bind` or `spawn`.
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            received: Vec::new(),
            script: script.into(),
            then,
        });
        let (stop, stop_rx) = watch::channel(false);
        runtime.spawn(accept_loop(listener, state.clone(), stop_rx));
        debug!(%addr, "sink listening");
        Ok(Sink { addr, state, stop })
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`, which should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request recorded so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.borrow().received.clone()
    }

    /// The requests recorded after the first `start`, in arrival order: lets a caller that
    /// polls a sink receiving many thousands of requests look only at the new ones.
    pub fn received_from(&self, start: usize) -> Vec<Received> {
        let state = self.state.borrow();
        state.received.get(start..).unwrap_or_default().to_vec()
    }

    /// Resolves as soon as at least `n` requests have been recorded, with all of them, or
    /// fails after `timeout` saying how many arrived.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, SinkTimeout> {
        let mut changes = self.state.subscribe();
        let enough = async {
            // `wait_for` checks the current value first, so requests that arrived before
            // this call count too.
            changes
                .wait_for(|state| state.received.len() >= n)
                .await
                .map(|state| state.received.clone())
        };
        match tokio::time::timeout(timeout, enough).await {
            Ok(Ok(received)) => Ok(received),
            // The inner error means every sender is gone, which cannot happen while `self`
            // holds one; it is reported like a timeout rather than trusted to be impossible.
            Ok(Err(_)) | Err(_) => Err(SinkTimeout {
                addr: self.addr,
                expected: n,
                arrived: self.state.borrow().received.len(),
                waited: timeout,
            }),
        }
    }

    /// Changes the reply given once the script is used up, e.g. a dead target recovering.
    pub fn set_then(&self, reply: Reply) {
        // No request was recorded, so waiters need not be woken.
        self.state.send_if_modified(|state| {
            state.then = reply;
            false
        });
    }

    /// Stops accepting and closes every connection, hung requests included. Recorded
    /// requests stay readable.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for Sink {
    // Written by hand so that printing a sink does not dump every recorded body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .field("received", &self.state.borrow().received.len())
            .finish_non_exhaustive()
    }
}

/// Resolves once the sink is told to stop or its last handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the channel closed because every handle was dropped: also a stop.
    let _ = stop.wait_for(|&stop| stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    state: watch::Sender<State>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            // Biased so that once stopped, no further connection is taken on.
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, state.clone(), stop.clone()));
            }
            Err(error) => {
                warn!(%error, "sink failed to accept a connection");
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    debug!("sink stopped");
}

async fn serve_connection(
    stream: TcpStream,
    state: watch::Sender<State>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| answer(request, state.clone()));
    // No timer is set, so hyper applies no header-read timeout: an idle keep-alive
    // connection stays open for as long as the client keeps it, as a real server's would
    // for the relay's connection pool.
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // Dropping the connection closes the socket. A graceful shutdown would wait for
        // hung requests forever, and closing them is the point of stopping.
        () = stopped(&mut stop) => {}
        result = connection => {
            if let Err(error) = result {
                debug!(%error, "sink connection ended with an error");
            }
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    state: watch::Sender<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return Ok(refusal),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned());
    debug!(method = %parts.method, %path, bytes = body.len(), "sink received a request");
    let received = Received {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
        at: Instant::now(),
    };
    // Overwritten below: `send_modify` always runs its closure exactly once.
    let mut reply = Reply::Hang;
    state.send_modify(|state| reply = state.record(received));
    Ok(match reply {
        Reply::Status(code) => respond(code, &[], Bytes::new()),
        Reply::StatusWithBody(code, text) => respond(code, &[], Bytes::from(text)),
        Reply::StatusWithHeaders(code, headers) => respond(code, &headers, Bytes::new()),
        // Never resolves; the connection task drops this future when the sink stops.
        Reply::Hang => std::future::pending().await,
        Reply::Delay(delay, code) => {
            tokio::time::sleep(delay).await;
            respond(code, &[], Bytes::new())
        }
    })
}

/// Reads the whole body, or returns the response refusing it.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Full<Bytes>>> {
    // A declared Content-Length over the cap is refused before any of it is read.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => {
            debug!(%error, "sink could not read a request body");
            Err(plain(
                StatusCode::BAD_REQUEST,
                "sink: unreadable request body",
            ))
        }
    }
}

fn too_large() -> Response<Full<Bytes>> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "sink: request body over the 16 MiB limit",
    )
}

/// Builds the scripted response. A script is written by a test or the demo, so a mistake
/// in it is answered 500 with a reason rather than a panic inside the server.
fn respond(code: u16, headers: &[(String, String)], body: Bytes) -> Response<Full<Bytes>> {
    // 1xx statuses cannot be a final response, so hyper could not send them as one.
    let status = match StatusCode::from_u16(code) {
        Ok(status) if !status.is_informational() => status,
        _ => {
            warn!(code, "sink script holds an invalid status, answering 500");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("sink: scripted status {code} is not a final http status"),
            );
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => warn!(
                name,
                value, "sink script holds an invalid header, leaving it out"
            ),
        }
    }
    response
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests;
