//! The two Integrations API calls TextUs documents for a webhook integration, built and sent:
//! create (`POST /:account/integrations`, the setup guide's sample call) and update
//! (`PUT /integrations/:integration`). Bodies follow the docs' examples key for key.

use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The API's own media type; every example in TextUs's docs sends it.
const ACCEPT: &str = "application/vnd.textus+jsonld";
const CONTENT_TYPE: &str = "application/json";
/// How much of an error answer is quoted when it has no message field.
const QUOTE_LIMIT: usize = 300;

/// The parts of an integration the relay decides.
#[derive(Clone, Copy)]
pub struct Integration<'a> {
    /// `config.baseUrl`: where TextUs posts events.
    pub base_url: &'a str,
    /// `settings.actions`: all eight types, in TextUs's order, `true` where routed.
    pub actions: &'a [(&'static str, bool)],
}

/// A request ready to send or show.
pub struct Call {
    pub method: http::Method,
    pub url: url::Url,
    body: Vec<u8>,
}

/// The integration TextUs created: what the relay needs from a successful answer.
pub struct CreatedIntegration {
    /// `id`, e.g. `/integrations/0yX2VrJ`.
    pub id: String,
    /// `config.webhookSecret`, e.g. `textus-abcdefgh12345678`.
    pub webhook_secret: String,
}

impl Call {
    /// `POST {api}/{account}/integrations` with the body of the guide's sample call.
    pub fn create(
        api: &url::Url,
        account: &str,
        integration: Integration<'_>,
    ) -> anyhow::Result<Call> {
        let body = CreateBody {
            kind: "Integration",
            context: "/contexts/Integration.jsonld",
            active: true,
            provider: "webhook",
            config: WebhookConfig::from(integration),
            settings: Settings::from(integration),
        };
        Ok(Call {
            method: http::Method::POST,
            url: under(api, &[account, "integrations"])?,
            body: serde_json::to_vec_pretty(&body).context("serializing the request")?,
        })
    }

    /// `PUT {api}/integrations/{id}`: the update example's body (`config`, `active`, `settings`;
    /// it has no `@type`, `@context` or `provider`).
    pub fn update(api: &url::Url, id: &str, integration: Integration<'_>) -> anyhow::Result<Call> {
        let body = UpdateBody {
            config: WebhookConfig::from(integration),
            active: true,
            settings: Settings::from(integration),
        };
        Ok(Call {
            method: http::Method::PUT,
            url: under(api, &["integrations", id])?,
            body: serde_json::to_vec_pretty(&body).context("serializing the request")?,
        })
    }

    /// The request as it would be sent, the token masked.
    pub fn describe(&self, have_token: bool) -> String {
        let token = if have_token {
            "********"
        } else {
            "<TEXTUS_API_TOKEN is not set>"
        };
        format!(
            "{} {}\nAuthorization: Bearer {token}\nAccept: {ACCEPT}\nContent-Type: {CONTENT_TYPE}\n\n{}",
            self.method,
            self.url,
            String::from_utf8_lossy(&self.body)
        )
    }

    /// Sends the call; a non-2xx answer or no answer is an error that says which and why.
    pub fn send(self, token: &str) -> anyhow::Result<CreatedIntegration> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        runtime.block_on(self.send_async(token))
    }

    async fn send_async(self, token: &str) -> anyhow::Result<CreatedIntegration> {
        crate::install_crypto();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirect would re-send the token somewhere the user did not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("textus-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let url = self.url.clone();
        let response = client
            .request(self.method.clone(), url.clone())
            // Marks the header sensitive, so no HTTP-layer log prints it.
            .bearer_auth(token)
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(self.body)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the TextUs API at {url}: {}", chain(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow!("reading TextUs's answer from {url}: {}", chain(&e)))?;
        if !status.is_success() {
            return Err(anyhow!(
                "TextUs answered {status} to {} {url}: {}{}",
                self.method,
                message(&bytes),
                hint(status)
            ));
        }
        created(status, &bytes)
    }
}

/// Reads `id` and `config.webhookSecret` from a 2xx answer. The body is never quoted here: it
/// holds the secret.
fn created(status: reqwest::StatusCode, body: &[u8]) -> anyhow::Result<CreatedIntegration> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| anyhow!("TextUs answered {status}, but not with JSON ({e})"))?;
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("TextUs answered {status}, but without the integration's `id`"))?;
    let secret = value
        .pointer("/config/webhookSecret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "TextUs answered {status} (integration {id}), but without `config.webhookSecret`: \
                 look it up in the TextUs web app (Settings > Integrations)"
            )
        })?;
    Ok(CreatedIntegration {
        id: id.to_owned(),
        webhook_secret: secret.to_owned(),
    })
}

/// The API's message from an error answer: a Hydra error's description or title, a
/// `message` or `error` field, or else the start of the body.
fn message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let fields = [
            "hydra:description",
            "hydra:title",
            "message",
            "error",
            "detail",
        ];
        if let Some(text) = fields
            .iter()
            .find_map(|f| value.get(*f).and_then(Value::as_str))
        {
            return text.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTE_LIMIT) {
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

fn hint(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => " (is TEXTUS_API_TOKEN a valid TextUs API token?)",
        403 => " (does the token's user have admin rights on that account?)",
        404 => " (is the account slug, or the integration id, right?)",
        _ => "",
    }
}

/// An error with its causes, e.g. "error sending request: client error (Connect): tcp connect
/// error: Connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base` with `segments` appended to its path (a base with a path keeps it).
fn under(base: &url::Url, segments: &[&str]) -> anyhow::Result<url::Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| anyhow!("--api {base} cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The create call's body, keys in the docs' order.
#[derive(Serialize)]
struct CreateBody<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@context")]
    context: &'static str,
    active: bool,
    provider: &'static str,
    config: WebhookConfig<'a>,
    settings: Settings<'a>,
}

/// The update call's body.
#[derive(Serialize)]
struct UpdateBody<'a> {
    config: WebhookConfig<'a>,
    active: bool,
    settings: Settings<'a>,
}

#[derive(Serialize)]
struct WebhookConfig<'a> {
    #[serde(rename = "baseUrl")]
    base_url: &'a str,
}

impl<'a> From<Integration<'a>> for WebhookConfig<'a> {
    fn from(integration: Integration<'a>) -> Self {
        WebhookConfig {
            base_url: integration.base_url,
        }
    }
}

#[derive(Serialize)]
struct Settings<'a> {
    actions: Actions<'a>,
}

impl<'a> From<Integration<'a>> for Settings<'a> {
    fn from(integration: Integration<'a>) -> Self {
        Settings {
            actions: Actions(integration.actions),
        }
    }
}

/// `settings.actions` in the given order (a JSON map would sort them).
struct Actions<'a>(&'a [(&'static str, bool)]);

impl Serialize for Actions<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (action, on) in self.0 {
            map.serialize_entry(action, on)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_to_the_base() {
        let api = url::Url::parse("https://next.textus.com").expect("url");
        assert_eq!(
            under(&api, &["my_account", "integrations"])
                .expect("url")
                .as_str(),
            "https://next.textus.com/my_account/integrations"
        );
        let prefixed = url::Url::parse("http://127.0.0.1:9/api/").expect("url");
        assert_eq!(
            under(&prefixed, &["integrations", "0yX2VrJ"])
                .expect("url")
                .as_str(),
            "http://127.0.0.1:9/api/integrations/0yX2VrJ"
        );
    }

    #[test]
    fn error_messages_come_from_the_answer() {
        assert_eq!(
            message(br#"{"@type":"hydra:Error","hydra:title":"Forbidden","hydra:description":"not an admin"}"#),
            "not an admin"
        );
        assert_eq!(
            message(br#"{"error":"Validation failed"}"#),
            "Validation failed"
        );
        assert_eq!(message(b"  "), "(empty body)");
        assert_eq!(message(&[b'x'; 400]).chars().count(), QUOTE_LIMIT + 1);
    }

    #[test]
    fn an_answer_without_the_secret_is_an_error_that_does_not_quote_the_body() {
        let ok = created(
            reqwest::StatusCode::CREATED,
            br#"{"id":"/integrations/0yX2VrJ","config":{"webhookSecret":"textus-abc"}}"#,
        )
        .expect("answer");
        assert_eq!(
            (ok.id.as_str(), ok.webhook_secret.as_str()),
            ("/integrations/0yX2VrJ", "textus-abc")
        );
        let Err(e) = created(reqwest::StatusCode::CREATED, br#"{"id":"/integrations/x"}"#) else {
            panic!("no secret must be an error");
        };
        assert!(e.to_string().contains("webhookSecret"), "{e}");
    }
}
