//! `GET /api/v1/events?id=ID` (and `GET /api/v1/events/{id}`): where one event is, for every
//! configured target.
//!
//! Envelope ids contain slashes (`/integrations/h13Jc5/deliveries/xyz`), so the query form,
//! URL-encoded, is the one to use; the path form takes everything after `/api/v1/events/`,
//! percent-decoded, for a hand-typed lookup.
//!
//! The store deletes a delivery once it is delivered, and the event once no delivery refers to
//! it. What it keeps for `dedupe_window` is the event's id with the targets it was routed to,
//! so a target with nothing left is `delivered` when the event was routed there and
//! `not_routed` when it was not. Without that record (de-duplication off, or the window
//! passed while the event is still held) such a target is `delivered_or_not_routed`. Where a
//! delivery is still held, its state is exact.

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Admin, Answer, error, json_ok};
use crate::store::{DeliveryState, EventDelivery, EventWhereabouts};

/// The longest id looked up: envelope ids are well under this, and anything longer is a
/// mistake rather than an id.
const MAX_ID: usize = 1024;

/// Serves `/api/v1/events` and `/api/v1/events/...`; `rest` is the path after
/// `/api/v1/events`, `query` the raw query string.
pub(super) async fn route(admin: &Admin, method: &Method, rest: &str, query: &str) -> Answer {
    if *method != Method::GET {
        return super::not_allowed("GET");
    }
    let event_id = match rest {
        "" | "/" => {
            let mut query = super::parse_query(query);
            if let Some(unknown) = query.keys().find(|k| k.as_str() != "id") {
                return bad_request(&format!("unknown parameter {unknown:?}; only id is taken"));
            }
            match query.remove("id") {
                Some(event_id) => event_id,
                None => {
                    return bad_request(
                        "the id parameter is required, e.g. ?id=%2Fintegrations%2F...",
                    );
                }
            }
        }
        path => match path.strip_prefix('/').map(percent_decode) {
            Some(Ok(event_id)) => event_id,
            _ => return bad_request("the id in the path is not valid UTF-8 once decoded"),
        },
    };
    if event_id.is_empty() || event_id.len() > MAX_ID {
        return bad_request(&format!(
            "an event id is 1 to {MAX_ID} bytes, this one has {}",
            event_id.len()
        ));
    }
    find(admin, &event_id).await
}

async fn find(admin: &Admin, event_id: &str) -> Answer {
    match admin.store.find_event(event_id).await {
        Ok(Some(found)) => json_ok(whereabouts_json(admin, event_id, found)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "no event with id {event_id:?} is known: never received, or delivered and its \
                 de-duplication window has passed"
            ),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &e.to_string(),
        ),
    }
}

/// Every configured target in config order, then targets no longer configured that still
/// hold a delivery, then dead letters without a target (bodies that were never events).
fn whereabouts_json(admin: &Admin, event_id: &str, found: EventWhereabouts) -> Value {
    let mut by_target: HashMap<Option<String>, Vec<EventDelivery>> = HashMap::new();
    for delivery in found.deliveries {
        by_target
            .entry(delivery.target.clone())
            .or_default()
            .push(delivery);
    }
    let config = admin.config.get();
    let mut targets = Vec::new();
    for target in &config.targets {
        let name = target.config.name.as_str();
        let held = by_target.remove(&Some(name.to_owned())).unwrap_or_default();
        targets.push(target_json(
            Some(name),
            true,
            held,
            routed_here(&found.routed, name),
        ));
    }
    let mut rest: Vec<_> = by_target.into_iter().collect();
    // Named ones first, by name; the targetless dead letters (None) last.
    rest.sort_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => x.cmp(y),
        (x, y) => y.is_some().cmp(&x.is_some()),
    });
    for (name, held) in rest {
        targets.push(target_json(name.as_deref(), false, held, None));
    }
    json!({
        "id": event_id,
        "seen": true,
        "remembered_until": found.remembered_until,
        "routed": found.routed,
        "stored": found.stored,
        "targets": targets,
    })
}

/// Whether the event was routed to `target`, when the store kept that.
fn routed_here(routed: &Option<Vec<String>>, target: &str) -> Option<bool> {
    routed
        .as_ref()
        .map(|names| names.iter().any(|n| n == target))
}

fn target_json(
    name: Option<&str>,
    configured: bool,
    held: Vec<EventDelivery>,
    routed: Option<bool>,
) -> Value {
    // The newest delivery says where the event stands now; older copies are listed too.
    let state = match held.last() {
        Some(d) => match d.state {
            DeliveryState::Queued => "queued",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Dead => "dead",
        },
        None => match routed {
            Some(true) => "delivered",
            Some(false) => "not_routed",
            None => "delivered_or_not_routed",
        },
    };
    json!({
        "target": name,
        "configured": configured,
        "state": state,
        "deliveries": held,
    })
}

fn bad_request(message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "bad_query", message)
}

/// `%2F` and friends back to bytes; `+` stays a plus (this is a path, not a form).
fn percent_decode(raw: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(
            percent_decode("%2Fintegrations%2fh13Jc5/deliveries/x+y").as_deref(),
            Ok("/integrations/h13Jc5/deliveries/x+y")
        );
        assert_eq!(percent_decode("100%").as_deref(), Ok("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Ok("%zz%4"));
        assert!(percent_decode("%ff").is_err());
    }
}
