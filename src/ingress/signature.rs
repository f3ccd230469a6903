//! The `X-TextUs-Signature` check: lowercase hex HMAC-SHA256 of the raw body.
//!
//! The secret is used as-is, `textus-` prefix included, never base64-decoded. Comparison goes
//! through `Mac::verify_slice`, which is constant time, against every configured secret so a
//! secret can be rotated without dropping events.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. Both answer 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Mismatch,
}

/// The signature TextUs would send for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Checks `header` (hex, any case, surrounding spaces ignored) against each secret.
pub fn verify(
    secrets: &[Secret],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let text = std::str::from_utf8(header)
        .map_err(|_| SignatureError::Mismatch)?
        .trim();
    if text.is_empty() {
        return Err(SignatureError::Missing);
    }
    let expected = hex::decode(text).map_err(|_| SignatureError::Mismatch)?;
    // Every secret is tried even after a match would be found, so the time taken does not say
    // which secret (if any) matched.
    let mut ok = false;
    for secret in secrets {
        ok |= mac(secret.expose_secret(), body)
            .verify_slice(&expected)
            .is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes keys of any length"));
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "textus-abcdefgh12345678";

    fn fixtures() -> Vec<(String, Vec<u8>, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let list =
            std::fs::read_to_string(format!("{dir}/signatures.txt")).expect("signatures.txt");
        list.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (file, sig) = l.split_once('\t').expect("file<TAB>signature");
                let body = std::fs::read(format!("{dir}/{file}")).expect("fixture body");
                (file.to_string(), body, sig.to_string())
            })
            .collect()
    }

    #[test]
    fn signs_every_fixture_like_textus() {
        let all = fixtures();
        assert_eq!(all.len(), 8);
        for (file, body, sig) in all {
            assert_eq!(sign(SECRET, &body), sig, "{file}");
        }
    }

    #[test]
    fn accepts_any_of_several_secrets_and_upper_case_hex() {
        let body = br#"{"action":"message.received"}"#;
        let secrets = vec![Secret::from("textus-old"), Secret::from(SECRET)];
        let sig = sign(SECRET, body);
        assert_eq!(verify(&secrets, Some(sig.as_bytes()), body), Ok(()));
        let upper = sig.to_uppercase();
        assert_eq!(verify(&secrets, Some(upper.as_bytes()), body), Ok(()));
    }

    #[test]
    fn refuses_missing_wrong_and_other_secret_signatures() {
        let body = b"{}";
        let secrets = vec![Secret::from(SECRET)];
        assert_eq!(verify(&secrets, None, body), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secrets, Some(b" "), body),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(&secrets, Some(b"zz"), body),
            Err(SignatureError::Mismatch)
        );
        let other = sign("textus-someone-else", body);
        assert_eq!(
            verify(&secrets, Some(other.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        let truncated = &sign(SECRET, body)[..32];
        assert_eq!(
            verify(&secrets, Some(truncated.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        // The signature covers the raw bytes: re-serialised JSON does not verify.
        let sig = sign(SECRET, b"{ }");
        assert_eq!(
            verify(&secrets, Some(sig.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
    }
}
