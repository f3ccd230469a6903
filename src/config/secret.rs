//! [`Secret`]: a credential read from relay.yaml (webhook secrets, tokens, passwords).
//!
//! Keeping secrets out of messages and logs is a type, not a convention: the value sits in a
//! `secrecy::SecretString` (wiped from memory on drop), `Debug` prints `<redacted>`, there is
//! no `Display`, and reading it takes an explicit `expose_secret()` at the place that sends it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret string from the config; never empty once validated.
#[derive(Clone)]
pub struct Secret(SecretString);

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Compares the values: reload uses it to tell whether `storage` changed. Not constant time,
/// which is fine for comparing two configs; request credentials are checked elsewhere.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(SecretString::from(value))
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(SecretString::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(
            format!("{:?}", Some(vec![secret.clone()])),
            "Some([<redacted>])"
        );
        assert_eq!(secret.expose_secret(), "hunter2");
        assert_eq!(secret, Secret::from("hunter2".to_owned()));
        assert_ne!(secret, Secret::from("other"));
    }
}
