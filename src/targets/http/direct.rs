//! The lighter outbound path of `kind: http`: hyper-util's pooled client, without reqwest.
//!
//! reqwest spent ~12 µs of CPU per delivery above hyper (the URL converted to a `Uri` and
//! parsed back for every response, header merging, tower layers, its timeout futures); this
//! path sends a pre-parsed `Uri` and a prebuilt set of headers straight to hyper-util's pool.
//! Relay CPU per durable event with 3 deliveries fell from 208–233 to 155–185 µs (−22 %, four
//! alternating rounds; bench/analysis.md, "Issue 18: the outbound path").
//!
//! It keeps what reqwest gave these targets: the same TLS verification (rustls with the
//! platform verifier over the ring provider of [`crate::install_crypto`]), ALPN `h2` and
//! `http/1.1`, the connect timeout, TCP keepalive and nodelay, reqwest's `user-agent` and
//! `accept`, no redirects, and one timeout over the whole attempt (connect, answer and the
//! reason's body). Proxies are not implemented here: a target whose URL an environment proxy
//! applies to keeps reqwest ([`proxied`]).

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, timeout_at};

use super::{Outcome, USER_AGENT_VALUE};
use crate::targets::{REASON_BYTES, classify};

/// Why the direct path could not be set up for a target.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("URL {url} is not a valid request URI: {source}")]
    Uri {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("loading the platform's TLS roots: {0}")]
    Roots(#[source] rustls::Error),
}

/// A pooled HTTP(S) client bound to one target's URL.
pub struct Direct {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    /// The URL without its user info, for error messages (reqwest's wording quotes it too).
    url: String,
    timeout: Duration,
}

/// Whether an environment proxy (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, less `NO_PROXY`)
/// applies to `url`, read the way reqwest reads them, so such a target keeps reqwest.
pub fn proxied(url: &url::Url) -> bool {
    // A URL that `http::Uri` cannot hold stays on reqwest too, which reports it on every
    // attempt as it always did.
    url.as_str()
        .parse::<Uri>()
        .map_or(true, |uri| Matcher::from_system().intercept(&uri).is_some())
}

impl Direct {
    pub fn try_new(url: &url::Url, timeout: Duration) -> Result<Direct, DirectError> {
        crate::install_crypto();
        let bare = without_user_info(url);
        let uri = bare
            .as_str()
            .parse::<Uri>()
            .map_err(|source| DirectError::Uri {
                url: bare.to_string(),
                source,
            })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // reqwest's defaults, which these targets had until now.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_keepalive_interval(Some(Duration::from_secs(15)));
        http.set_keepalive_retries(Some(3));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Direct {
            client,
            uri,
            url: bare.to_string(),
            timeout,
        })
    }

    /// The headers every request of this path carries besides the target's own: what reqwest
    /// added by itself, and Basic credentials from the URL's user info, as reqwest sent them.
    pub fn base_headers(url: &url::Url, headers: &mut HeaderMap) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(basic) = basic_auth(url) {
            headers.insert(AUTHORIZATION, basic);
        }
    }

    /// One POST of `body`: the answer classified, or the transport failure spelled out.
    pub async fn deliver(&self, headers: HeaderMap, body: Bytes) -> Outcome {
        let deadline = Instant::now() + self.timeout;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        let response = match timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return self.timed_out(),
            Ok(Err(e)) => return self.failure(&e),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = if (200..300).contains(&status) {
            0
        } else {
            REASON_BYTES
        };
        let body = read_start(response.into_body(), limit, deadline).await;
        classify(status, retry_after.as_deref(), &body)
    }

    fn timed_out(&self) -> Outcome {
        super::retry(format!(
            "no answer within {}s (timeout)",
            self.timeout.as_secs_f64()
        ))
    }

    /// The same wording as reqwest's errors, which operators and tests already read.
    fn failure(&self, e: &hyper_util::client::legacy::Error) -> Outcome {
        let causes = super::chain(e);
        if e.is_connect() && timed_out_connecting(e) {
            return self.timed_out();
        }
        let what = if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        super::retry(format!(
            "{what}: error sending request for url ({}): {causes}",
            self.url
        ))
    }
}

/// The URL without `user:password@`, which goes in a header instead (and never in a message).
fn without_user_info(url: &url::Url) -> url::Url {
    let mut bare = url.clone();
    // Only fails for URLs that cannot have user info, which then have none to remove.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare
}

/// `user:password@` in the URL as `Authorization: Basic`, percent-decoded (reqwest's rule).
fn basic_auth(url: &url::Url) -> Option<HeaderValue> {
    use base64::Engine;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = format!(
        "{}:{}",
        decode(url.username()),
        url.password().map(decode).unwrap_or_default()
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The connect timeout surfaces as an I/O error of kind `TimedOut` among the causes;
/// reqwest reported it as a timeout, and so does this path.
fn timed_out_connecting(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Reads at most `limit` bytes of a body before `deadline`: a huge, endless or stalled body
/// is never waited for beyond the attempt's timeout, and what arrived is kept.
async fn read_start(mut body: hyper::body::Incoming, limit: usize, deadline: Instant) -> String {
    let mut start = Vec::new();
    while start.len() < limit {
        match timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    start.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    start.truncate(limit);
    String::from_utf8_lossy(&start).into_owned()
}

/// reqwest's TLS settings for these targets: rustls over the installed provider (ring, from
/// [`crate::install_crypto`]), TLS 1.2 and 1.3, server certificates checked by the platform
/// verifier (the system's roots).
fn tls_config() -> Result<rustls::ClientConfig, DirectError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    let verifier =
        rustls_platform_verifier::Verifier::new(provider.clone()).map_err(DirectError::Roots)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(DirectError::Roots)?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_becomes_a_header_and_never_part_of_a_message() {
        let url = url::Url::parse("https://relay:s%40cret@example.com:8443/hook?x=1").unwrap();
        let direct = Direct::try_new(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(direct.uri, "https://example.com:8443/hook?x=1");
        assert_eq!(direct.url, "https://example.com:8443/hook?x=1");
        let mut headers = HeaderMap::new();
        Direct::base_headers(&url, &mut headers);
        let auth = headers.get(AUTHORIZATION).unwrap();
        assert_eq!(auth, "Basic cmVsYXk6c0BjcmV0"); // relay:s@cret
        assert!(auth.is_sensitive());
        let mut plain = HeaderMap::new();
        Direct::base_headers(&url::Url::parse("http://example.com/").unwrap(), &mut plain);
        assert!(plain.get(AUTHORIZATION).is_none());
        assert!(
            plain[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("textus-relay/")
        );
    }
}
