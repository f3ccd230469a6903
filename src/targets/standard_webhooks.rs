//! Outbound identity and signatures as the Standard Webhooks specification defines them.
//!
//! `webhook-id` is derived from the event id and the target name, so it is the same on every
//! attempt (and after a restart): receivers de-duplicate on it. `webhook-signature` is
//! `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The stable idempotency key of one event for one target. Contains no `.` (the spec forbids it).
pub fn webhook_id(event_id: &str, target: &str) -> String {
    let mut h = Sha256::new();
    h.update(event_id.as_bytes());
    h.update([0u8]);
    h.update(target.as_bytes());
    format!("msg_{}", &hex::encode(h.finalize())[..32])
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac takes keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_test_vector() {
        // From the Standard Webhooks reference library's test suite.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ids_are_stable_per_event_and_target() {
        let a = webhook_id("/integrations/h13Jc5/deliveries/xyz", "warehouse");
        assert_eq!(
            a,
            webhook_id("/integrations/h13Jc5/deliveries/xyz", "warehouse")
        );
        assert_ne!(
            a,
            webhook_id("/integrations/h13Jc5/deliveries/xyz", "slack")
        );
        assert_ne!(
            a,
            webhook_id("/integrations/h13Jc5/deliveries/abc", "warehouse")
        );
        assert!(!a.contains('.'));
    }
}
