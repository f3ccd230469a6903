//! What a client of a running relay's ingress needs from its config (`textus-relay send`):
//! where it listens, whether with TLS, and `source:` (path and secrets).
//!
//! Like [`super::Admin::load`], it reads only the sections it needs and expands `${VAR}` there
//! only, so `send` works in a shell that has the webhook secret but not the target credentials
//! or the TLS key the rest of the file names.

use std::net::SocketAddr;
use std::path::Path;

use super::reader::Ctx;
use super::schema::EndpointFile;
use super::validate::{listen_address, source};
use super::{ConfigError, Source};

/// The ingress side of a relay, as a sender sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `listen.address`.
    pub address: SocketAddr,
    /// Whether `listen.tls` is set (its files are not read: a sender does not need them).
    pub tls: bool,
    /// `source:`, validated as `run` validates it.
    pub source: Source,
}

impl Endpoint {
    /// Reads and validates `listen:` (without its TLS files) and `source:` of `path`.
    pub fn load(path: &Path) -> Result<Endpoint, ConfigError> {
        super::read_file(path, Endpoint::from_yaml_str)
    }

    /// [`Endpoint::load`] on text read from `file` (used in messages only).
    pub fn from_yaml_str(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, ConfigError> {
        super::read_text(text, file, env, true, read)
    }
}

fn read(ctx: &mut Ctx<'_>, raw: &EndpointFile) -> Option<Endpoint> {
    let listen = raw.listen.as_ref();
    let address = listen_address(ctx, listen);
    let source = source(ctx, &raw.source);
    Some(Endpoint {
        address: address?,
        tls: listen.is_some_and(|listen| listen.tls.is_some()),
        source: source?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Endpoint, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Endpoint::from_yaml_str(yaml, Path::new("relay.yaml"), &lookup)
    }

    #[test]
    fn reads_listen_and_source_and_ignores_targets_it_cannot_expand() {
        let yaml = "listen: { address: 127.0.0.1:8000, tls: { cert: /nonexistent.crt, key: /nonexistent.key } }
source: { path: /in, secrets: [\"${SECRET}\", old] }
targets:
  t: { kind: http, url: \"${NOT_SET_ANYWHERE}\" }
routes: [ { events: [\"*\"], to: [t] } ]
";
        let endpoint = load(yaml, &[("SECRET", "textus-new")]).expect("valid");
        assert_eq!(endpoint.address, "127.0.0.1:8000".parse().expect("addr"));
        assert!(endpoint.tls);
        assert_eq!(endpoint.source.path, "/in");
        assert_eq!(
            endpoint.source.secrets,
            [Secret::from("textus-new"), Secret::from("old")]
        );
    }

    #[test]
    fn defaults_to_the_relays_listen_address() {
        let endpoint = load("source: { secrets: [s] }\n", &[]).expect("valid");
        assert_eq!(endpoint.address, "0.0.0.0:8443".parse().expect("addr"));
        assert!(!endpoint.tls);
        assert_eq!(endpoint.source.path, "/webhooks/textus");
    }

    #[test]
    fn a_missing_secret_or_bad_address_is_reported_with_its_path() {
        let err = load(
            "listen: { address: nowhere }\nsource: { secrets: [\"${UNSET_SECRET}\"] }\n",
            &[],
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("listen.address"), "{text}");
        assert!(text.contains("UNSET_SECRET"), "{text}");
    }
}
