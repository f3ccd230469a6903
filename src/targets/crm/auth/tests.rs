//! Tests for [`Authorizer`] against a real token endpoint on 127.0.0.1:0.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::*;

const SECRET: &str = "s3cr3t+/=value";
/// Bound on every network wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// What the endpoint answers to the `n`th request (0-based), given that request's body.
type Script = dyn Fn(usize, &str) -> (u16, String) + Send + Sync;

/// A token endpoint that counts and records requests and answers as scripted.
struct TokenServer {
    url: url::Url,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl TokenServer {
    async fn start(
        delay: Duration,
        script: impl Fn(usize, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (h, r) = (hits.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, r, script) = (h.clone(), r.clone(), script.clone());
                let service = service_fn(move |req: Request<Incoming>| {
                    let (h, r, script) = (h.clone(), r.clone(), script.clone());
                    async move {
                        let content_type = req
                            .headers()
                            .get(CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let n = h.fetch_add(1, Ordering::SeqCst);
                        r.lock()
                            .expect("requests lock")
                            .push((content_type, body.clone()));
                        tokio::time::sleep(delay).await;
                        let (status, reply) = script(n, &body);
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(reply)))
                            .expect("response");
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let url = format!("http://{addr}/services/oauth2/token")
            .parse()
            .expect("url");
        TokenServer {
            url,
            hits,
            requests,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn authorizer(&self, scope: Option<&str>) -> Authorizer {
        oauth_authorizer(self.url.clone(), scope)
    }
}

fn oauth_authorizer(token_url: url::Url, scope: Option<&str>) -> Authorizer {
    let auth = CrmAuth::OAuth2 {
        token_url,
        client_id: "relay-client".into(),
        client_secret: SECRET.into(),
        scope: scope.map(str::to_owned),
    };
    Authorizer::new(Some(auth), client())
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("client")
}

/// Tokens `tok-1`, `tok-2`, … with the given `expires_in` JSON (or none).
fn numbered(
    expires_in: Option<&'static str>,
) -> impl Fn(usize, &str) -> (u16, String) + Send + Sync {
    move |n, _| {
        let expiry = expires_in
            .map(|e| format!(r#","expires_in":{e}"#))
            .unwrap_or_default();
        (
            200,
            format!(
                r#"{{"access_token":"tok-{}","token_type":"Bearer"{expiry}}}"#,
                n + 1
            ),
        )
    }
}

async fn header(auth: &Authorizer) -> String {
    let value = timeout(WAIT, auth.header())
        .await
        .expect("header in time")
        .expect("header ok")
        .expect("some header");
    assert!(
        value.is_sensitive(),
        "authorization values must be marked sensitive"
    );
    value.to_str().expect("ascii").to_owned()
}

async fn header_err(auth: &Authorizer) -> AuthError {
    timeout(WAIT, auth.header())
        .await
        .expect("header in time")
        .expect_err("header should fail")
}

#[tokio::test]
async fn token_is_fetched_once_and_reused() {
    let server = TokenServer::start(Duration::ZERO, numbered(Some("3600"))).await;
    let auth = server.authorizer(Some("api refresh_token"));
    assert!(auth.is_oauth2());
    for _ in 0..50 {
        assert_eq!(header(&auth).await, "Bearer tok-1");
    }
    assert_eq!(server.hits(), 1);
    let requests = server.requests.lock().expect("lock").clone();
    let (content_type, body) = &requests[0];
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", "relay-client"),
        ("client_secret", SECRET),
        ("scope", "api refresh_token"),
    ];
    let expected: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn scope_is_omitted_when_not_configured() {
    let server = TokenServer::start(Duration::ZERO, numbered(None)).await;
    header(&server.authorizer(None)).await;
    let body = server.requests.lock().expect("lock")[0].1.clone();
    assert!(!body.contains("scope"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_one_fetch() {
    // The delay keeps the first fetch in flight while every other caller arrives.
    let server = TokenServer::start(Duration::from_millis(200), numbered(Some("3600"))).await;
    let auth = Arc::new(server.authorizer(None));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (auth, barrier) = (auth.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            header(&auth).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), "Bearer tok-1");
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn invalidate_forces_exactly_one_new_fetch() {
    let server = TokenServer::start(Duration::ZERO, numbered(Some("3600"))).await;
    let auth = server.authorizer(None);
    assert_eq!(header(&auth).await, "Bearer tok-1");
    assert!(auth.invalidate());
    assert_eq!(header(&auth).await, "Bearer tok-2");
    assert_eq!(header(&auth).await, "Bearer tok-2");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn invalidate_token_ignores_a_token_already_replaced() {
    let server = TokenServer::start(Duration::ZERO, numbered(Some("3600"))).await;
    let auth = server.authorizer(None);
    let first = timeout(WAIT, auth.header())
        .await
        .expect("in time")
        .expect("ok")
        .expect("some");
    assert!(auth.invalidate());
    assert_eq!(header(&auth).await, "Bearer tok-2");
    // A second delivery rejected with tok-1 reports late: tok-2 must survive.
    assert!(auth.invalidate_token(&first));
    assert_eq!(header(&auth).await, "Bearer tok-2");
    assert_eq!(server.hits(), 2);
    let second = HeaderValue::from_static("Bearer tok-2");
    assert!(auth.invalidate_token(&second));
    assert_eq!(header(&auth).await, "Bearer tok-3");
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn short_lived_token_is_refreshed_before_expiry() {
    let server = TokenServer::start(Duration::ZERO, numbered(Some("1"))).await;
    let auth = server.authorizer(None);
    assert_eq!(header(&auth).await, "Bearer tok-1");
    // From here the clock moves only when told to; a 1 s token is refreshed at half its life.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(400)).await;
    assert_eq!(header(&auth).await, "Bearer tok-1");
    assert_eq!(server.hits(), 1);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(header(&auth).await, "Bearer tok-2");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn missing_expires_in_means_one_hour_less_the_margin() {
    let server = TokenServer::start(Duration::ZERO, numbered(None)).await;
    let auth = server.authorizer(None);
    assert_eq!(header(&auth).await, "Bearer tok-1");
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3600 - 70)).await;
    assert_eq!(header(&auth).await, "Bearer tok-1");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(header(&auth).await, "Bearer tok-2");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn endpoint_500_is_a_transient_error_without_the_secret() {
    // The endpoint echoes the request form and the decoded secret, as misbehaving proxies do.
    let echo = |_, body: &str| (500, format!("{body} secret={SECRET}"));
    let server = TokenServer::start(Duration::ZERO, echo).await;
    let err = header_err(&server.authorizer(None)).await;
    let message = err.to_string();
    assert!(
        matches!(err, AuthError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(message.contains("answered HTTP 500"), "{message}");
    assert!(message.contains("/services/oauth2/token"), "{message}");
    assert!(message.contains("client_id=relay-client"), "{message}");
    assert!(
        !message.contains(SECRET) && !message.contains("s3cr3t"),
        "{message}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn rejected_client_is_permanent_and_quotes_the_oauth_error() {
    let body = r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#;
    let server = TokenServer::start(Duration::ZERO, move |_, _| (400, body.to_owned())).await;
    let err = header_err(&server.authorizer(None)).await;
    assert!(
        err.to_string()
            .ends_with("answered HTTP 400: invalid_client: invalid client credentials"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn bad_json_is_reported_without_the_body() {
    let server = TokenServer::start(Duration::ZERO, |_, _| {
        (200, r#"{"access_token": "tok-half"#.to_owned())
    })
    .await;
    let err = header_err(&server.authorizer(None)).await;
    let message = err.to_string();
    assert!(matches!(err, AuthError::BadResponse { .. }), "{err:?}");
    assert!(
        message.contains("unusable token response: body is not JSON"),
        "{message}"
    );
    assert!(
        !message.contains("tok-half") && !message.contains(SECRET),
        "{message}"
    );
}

#[tokio::test]
async fn response_without_access_token_is_rejected() {
    let server = TokenServer::start(Duration::ZERO, |_, _| {
        (200, r#"{"token_type":"Bearer"}"#.to_owned())
    })
    .await;
    let err = header_err(&server.authorizer(None)).await;
    assert!(err.to_string().ends_with("no access_token string"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_a_failed_fetch_but_the_next_call_retries() {
    let server = TokenServer::start(Duration::from_millis(200), |_, _| (503, String::new())).await;
    let auth = Arc::new(server.authorizer(None));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (auth, barrier) = (auth.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            header_err(&auth).await
        }));
    }
    for task in tasks {
        let err = task.await.expect("task");
        assert!(
            matches!(err, AuthError::Status { status: 503, .. }),
            "{err:?}"
        );
    }
    assert_eq!(server.hits(), 1);
    // A failure is not cached: the next delivery tries the endpoint again.
    header_err(&auth).await;
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unreachable_endpoint_names_the_url_not_the_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut url: url::Url = format!("http://{addr}/token?key=hidden")
        .parse()
        .expect("url");
    url.set_username("user").expect("username");
    url.set_password(Some(SECRET)).expect("password");
    let err = header_err(&oauth_authorizer(url, None)).await;
    let message = err.to_string();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
    assert!(
        message.starts_with(&format!(
            "token endpoint http://127.0.0.1:{}/token unreachable",
            addr.port()
        )),
        "{message}"
    );
    assert!(
        !message.contains("s3cr3t") && !message.contains("hidden"),
        "{message}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn bearer_and_basic_values_are_exact_and_permanent() {
    let bearer = Authorizer::new(
        Some(CrmAuth::Bearer("pat-na1-11111111-2222".into())),
        client(),
    );
    assert_eq!(header(&bearer).await, "Bearer pat-na1-11111111-2222");
    assert!(!bearer.invalidate());
    assert!(!bearer.is_oauth2());
    // RFC 7617's example credentials.
    let basic = CrmAuth::Basic {
        username: "Aladdin".into(),
        password: "open sesame".into(),
    };
    let basic = Authorizer::new(Some(basic), client());
    assert_eq!(header(&basic).await, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert!(!basic.invalidate());
    assert!(!basic.invalidate_token(&HeaderValue::from_static(
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    )));
    let none = Authorizer::new(None, client());
    assert_eq!(none.header().await, Ok(None));
    assert!(!none.invalidate() && !none.is_oauth2());
}

#[tokio::test]
async fn invalid_static_credential_is_an_error_without_the_value() {
    let auth = Authorizer::new(
        Some(CrmAuth::Bearer("line1\nline2-secret".into())),
        client(),
    );
    let err = header_err(&auth).await;
    assert_eq!(
        err.to_string(),
        "bearer credential contains characters not allowed in an HTTP header"
    );
    assert!(!err.is_transient());
}

#[test]
fn debug_output_carries_no_secret() {
    let url: url::Url = "https://login.example.com/oauth2/token"
        .parse()
        .expect("url");
    let shown = format!("{:?}", oauth_authorizer(url, Some("api")));
    assert!(
        shown.contains("oauth2") && shown.contains("login.example.com"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");
    let bearer = format!(
        "{:?}",
        Authorizer::new(Some(CrmAuth::Bearer("pat-na1-x".into())), client())
    );
    assert!(
        bearer.contains("bearer") && !bearer.contains("pat-na1-x"),
        "{bearer}"
    );
}

#[test]
fn token_responses_are_parsed_leniently_but_safely() {
    let (value, lifetime) =
        parse_token(br#"{"access_token":"a","token_type":"bearer","expires_in":"3599"}"#)
            .expect("string expiry");
    assert_eq!(
        (value.to_str().expect("ascii"), lifetime),
        ("Bearer a", Duration::from_secs(3599))
    );
    let (_, lifetime) =
        parse_token(br#"{"access_token":"a","expires_in":-5}"#).expect("negative expiry");
    assert_eq!(lifetime, Duration::ZERO);
    let (_, lifetime) =
        parse_token(br#"{"access_token":"a","expires_in":99999999999}"#).expect("huge expiry");
    assert_eq!(lifetime, MAX_LIFETIME);
    let err = parse_token(br#"{"access_token":"a","token_type":"mac"}"#).expect_err("mac");
    assert_eq!(err, r#"token_type "mac" is not Bearer"#);
    let err = parse_token(br#"{"access_token":"a","expires_in":"soon"}"#).expect_err("bad expiry");
    assert_eq!(err, "expires_in is neither a number nor a numeric string");
}

#[test]
fn authorizer_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
}
