//! Maps every ingress outcome to its status code and JSON body (design.md §2), in one place.

use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde_json::json;

/// Why a request was not stored. Each maps to exactly one status.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("no route for this path")]
    NotFound,
    #[error("only POST is accepted")]
    MethodNotAllowed,
    #[error("the X-TextUs-Signature header is missing")]
    MissingSignature,
    #[error("the X-TextUs-Signature header does not match the body under any configured secret")]
    BadSignature,
    #[error("the body is larger than the configured limit of {0} bytes")]
    TooLarge(usize),
    #[error("the request headers are larger than the limit of {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("the relay is shutting down; retry later")]
    ShuttingDown,
    #[error("the event could not be stored; retry later ({0})")]
    StoreUnavailable(String),
    #[error("the queue of target {target} is full ({limit}); retry later")]
    QueueFull { target: String, limit: String },
    #[error("the relay's storage budget is spent ({0}); it is draining its queue, retry later")]
    StoreFull(&'static str),
}

impl IngressError {
    /// The status TextUs sees. Every failure to store is a 504: the only non-2xx that TextUs
    /// retries with backoff instead of pausing the integration.
    pub fn status(&self) -> u16 {
        match self {
            IngressError::NotFound => 404,
            IngressError::MethodNotAllowed => 405,
            IngressError::MissingSignature | IngressError::BadSignature => 401,
            IngressError::TooLarge(_) => 413,
            IngressError::HeadersTooLarge(_) => 431,
            IngressError::BodyRead(_) => 400,
            IngressError::ShuttingDown
            | IngressError::StoreUnavailable(_)
            | IngressError::QueueFull { .. }
            | IngressError::StoreFull(_) => 504,
        }
    }

    /// The machine-readable `error` code of the JSON body (also the metrics outcome).
    pub fn code(&self) -> &'static str {
        match self {
            IngressError::NotFound => "not_found",
            IngressError::MethodNotAllowed => "method_not_allowed",
            IngressError::MissingSignature => "missing_signature",
            IngressError::BadSignature => "bad_signature",
            IngressError::TooLarge(_) => "body_too_large",
            IngressError::HeadersTooLarge(_) => "headers_too_large",
            IngressError::BodyRead(_) => "body_read_failed",
            IngressError::ShuttingDown => "shutting_down",
            IngressError::StoreUnavailable(_) => "store_unavailable",
            IngressError::QueueFull { .. } => "queue_full",
            IngressError::StoreFull(_) => "store_full",
        }
    }
}

/// The relay's complete answer to one TextUs request, ready to write.
#[derive(Debug)]
pub struct IngressReply {
    pub status: u16,
    pub body: Vec<u8>,
    /// For `relay_requests_total{outcome}`.
    pub outcome: &'static str,
    /// Whether the request body was read to its end (otherwise the connection must close).
    pub body_consumed: bool,
    pub allow_post: bool,
}

impl IngressReply {
    pub fn accepted(event_id: &str, dead_reason: Option<&str>) -> IngressReply {
        let body = match dead_reason {
            None => json!({"id": event_id, "status": "accepted"}),
            Some(reason) => json!({"id": event_id, "status": "accepted", "dead_letter": reason}),
        };
        IngressReply::ok(body, "accepted")
    }

    pub fn duplicate(event_id: &str) -> IngressReply {
        IngressReply::ok(json!({"id": event_id, "status": "duplicate"}), "duplicate")
    }

    fn ok(body: serde_json::Value, outcome: &'static str) -> IngressReply {
        IngressReply {
            status: 200,
            body: body.to_string().into_bytes(),
            outcome,
            body_consumed: true,
            allow_post: false,
        }
    }
}

impl From<IngressError> for IngressReply {
    fn from(e: IngressError) -> IngressReply {
        let body = json!({"error": e.code(), "message": e.to_string()});
        let body_consumed = matches!(
            e,
            IngressError::MissingSignature
                | IngressError::BadSignature
                | IngressError::StoreUnavailable(_)
                | IngressError::QueueFull { .. }
        );
        IngressReply {
            status: e.status(),
            body: body.to_string().into_bytes(),
            outcome: e.code(),
            body_consumed,
            allow_post: matches!(e, IngressError::MethodNotAllowed),
        }
    }
}

/// Writes `answer` as a complete HTTP response with a JSON body.
pub async fn write(session: &mut ServerSession, answer: &IngressReply) -> pingora::Result<()> {
    let mut head = ResponseHeader::build(answer.status, Some(4))?;
    head.insert_header("content-type", "application/json")?;
    head.insert_header("content-length", answer.body.len().to_string())?;
    if answer.allow_post {
        head.insert_header("allow", "POST")?;
    }
    session.write_response_header(Box::new(head)).await?;
    session
        .write_response_body(bytes::Bytes::from(answer.body.clone()), true)
        .await
}
