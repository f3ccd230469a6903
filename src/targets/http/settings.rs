//! `kind: http` as validated: where to forward, extra headers, and the signing key. The config
//! builds it; [`super::HttpTarget`] runs it.

/// Forwards the original body unchanged, optionally re-signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// `http` or `https`, with a host.
    pub url: url::Url,
    /// Extra request headers, in file order. Values are marked sensitive (they often
    /// carry credentials), so their `Debug` output is redacted.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Standard Webhooks signing of each request; `None` for no signature.
    pub signing: Option<Signing>,
    /// Also send TextUs's original `X-TextUs-Signature`. Default false.
    pub forward_textus_signature: bool,
}

/// A Standard Webhooks signing key: the bytes encoded in a `whsec_...` secret.
#[derive(Clone, Debug)]
pub struct Signing {
    /// 24 to 64 bytes; `Debug` shows none of them.
    pub key: secrecy::SecretSlice<u8>,
}

/// Compares the keys, for reload's "did this target change" (not a request credential).
impl PartialEq for Signing {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.key.expose_secret() == other.key.expose_secret()
    }
}

impl Eq for Signing {}
