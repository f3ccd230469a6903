//! `kind: http`: forwards the original body, byte for byte, to a URL.
//!
//! Every attempt carries `webhook-id` (stable per event and target) and `webhook-timestamp`;
//! with `signing` also `webhook-signature`, so receivers can verify with any Standard Webhooks
//! library. Redirects are never followed: a 3xx is a failed attempt.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use super::{Outcome, REASON_BYTES, Target, classify, standard_webhooks};
use crate::config::HttpTarget as HttpConfig;
use crate::store::{Job, unix_ms};

/// Builds a client for one target: its own pool, so a slow target cannot hold another's
/// connections, and no redirects.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::install_crypto();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("textus-relay/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A plain HTTP endpoint.
pub struct HttpTarget {
    config: HttpConfig,
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpTarget {
    pub fn try_new(config: HttpConfig, timeout: Duration) -> Result<HttpTarget, reqwest::Error> {
        Ok(HttpTarget {
            client: client(timeout)?,
            config,
            timeout,
        })
    }

    fn headers(&self, job: &Job, webhook_id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.config.headers {
            headers.insert(name.clone(), value.clone());
        }
        let timestamp = unix_ms(SystemTime::now()) / 1000;
        // Both values are ASCII built here (hex, digits, base64), so they are valid headers.
        if let Ok(v) = HeaderValue::from_str(webhook_id) {
            headers.insert("webhook-id", v);
        }
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        if let Some(signing) = &self.config.signing {
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
        if self.config.forward_textus_signature
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
        let request = self
            .client
            .post(self.config.url.clone())
            .headers(self.headers(job, webhook_id))
            .body(job.body.clone());
        match request.send().await {
            Ok(response) => read_outcome(response).await,
            Err(e) => transport_failure(&e, self.timeout),
        }
    }
}

/// Classifies a response, reading at most [`REASON_BYTES`] of a failure's body.
pub async fn read_outcome(response: reqwest::Response) -> Outcome {
    let answer = super::read_answer(response, |status| {
        if (200..300).contains(&status) {
            0
        } else {
            REASON_BYTES
        }
    })
    .await;
    classify(answer.status, answer.retry_after.as_deref(), &answer.body)
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
