//! `kind: http`: forwards the original body, byte for byte, to a URL.
//!
//! Every attempt carries `webhook-id` (stable per event and target) and `webhook-timestamp`;
//! with `signing` also `webhook-signature`, so receivers can verify with any Standard Webhooks
//! library. Redirects are never followed: a 3xx is a failed attempt.
//!
//! Requests go through [`direct`] (hyper-util's pool without reqwest's layers), except for a
//! target an environment proxy applies to, which keeps reqwest and its proxy support.

pub mod direct;
mod kind;
pub mod settings;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use super::{Outcome, REASON_BYTES, Target, classify, standard_webhooks};
use crate::store::{Job, unix_ms};
use direct::{Direct, DirectError};
pub use settings::{HttpSettings, Signing};

/// What every outbound request of the relay says it is.
pub const USER_AGENT_VALUE: &str = concat!("textus-relay/", env!("CARGO_PKG_VERSION"));

/// Builds a client for one target: its own pool, so a slow target cannot hold another's
/// connections, and no redirects.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::install_crypto();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT_VALUE)
        .build()
}

/// Why a target's HTTP client could not be built (every kind sends through one).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error(transparent)]
    Direct(#[from] DirectError),
}

/// How a target's requests are sent.
// One per target, built once and never moved afterwards: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Sender {
    Direct(Direct),
    /// An environment proxy applies to the URL: reqwest honours it.
    Proxied(reqwest::Client),
}

/// A plain HTTP endpoint.
pub struct HttpTarget {
    settings: HttpSettings,
    sender: Sender,
    /// Built once: `content-type`, the configured headers and, on the direct path, what
    /// reqwest added by itself (`user-agent`, `accept`). Each attempt clones it.
    base: HeaderMap,
    timeout: Duration,
}

impl HttpTarget {
    pub fn try_new(settings: HttpSettings, timeout: Duration) -> Result<HttpTarget, ClientError> {
        let mut base = HeaderMap::new();
        base.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sender = if direct::proxied(&settings.url) {
            Sender::Proxied(client(timeout)?)
        } else {
            Direct::base_headers(&settings.url, &mut base);
            Sender::Direct(Direct::try_new(&settings.url, timeout)?)
        };
        for (name, value) in &settings.headers {
            base.insert(name.clone(), value.clone());
        }
        Ok(HttpTarget {
            settings,
            sender,
            base,
            timeout,
        })
    }

    fn headers(&self, job: &Job, webhook_id: &str) -> HeaderMap {
        let mut headers = self.base.clone();
        let timestamp = unix_ms(SystemTime::now()) / 1000;
        // Both values are ASCII built here (hex, digits, base64), so they are valid headers.
        if let Ok(v) = HeaderValue::from_str(webhook_id) {
            headers.insert("webhook-id", v);
        }
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        if let Some(signing) = &self.settings.signing {
            let sig = standard_webhooks::sign(
                signing.key.expose_secret(),
                webhook_id,
                timestamp,
                &job.body,
            );
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert("webhook-signature", v);
            }
        }
        if self.settings.forward_textus_signature
            && let Ok(v) = HeaderValue::from_str(&job.signature)
        {
            headers.insert("x-textus-signature", v);
        }
        headers
    }
}

#[async_trait]
impl Target for HttpTarget {
    async fn deliver(&self, job: &Job, webhook_id: &str) -> Outcome {
        let headers = self.headers(job, webhook_id);
        match &self.sender {
            Sender::Direct(direct) => direct.deliver(headers, job.body.clone()).await,
            Sender::Proxied(client) => {
                let request = client
                    .post(self.settings.url.clone())
                    .headers(headers)
                    .body(job.body.clone());
                match request.send().await {
                    Ok(response) => read_outcome(response).await,
                    Err(e) => transport_failure(&e, self.timeout),
                }
            }
        }
    }
}

/// Classifies a response, reading at most [`REASON_BYTES`] of a failure's body.
pub async fn read_outcome(response: reqwest::Response) -> Outcome {
    let response = super::read_response(response, |status| {
        if (200..300).contains(&status) {
            0
        } else {
            REASON_BYTES
        }
    })
    .await;
    classify(
        response.status,
        response.retry_after.as_deref(),
        &response.body,
    )
}

/// A request that got no HTTP answer: always worth retrying, with the cause spelled out.
pub fn transport_failure(e: &reqwest::Error, timeout: Duration) -> Outcome {
    let reason = if e.is_timeout() {
        format!("no answer within {}s (timeout)", timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("connection failed: {}", chain(e))
    } else {
        format!("request failed: {}", chain(e))
    };
    retry(reason)
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        status: None,
        reason,
        retry_after: None,
    }
}

/// An error and its causes on one line, e.g. `error sending request: connection refused`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
