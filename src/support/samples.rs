//! The eight sample TextUs events (copies of the shared fixtures), built into the binary so
//! `demo` and `send` work on a machine with nothing but the binary.

/// `(event type, body)` for each of the eight TextUs event types.
pub const SAMPLES: [(&str, &[u8]); 8] = [
    (
        "message.received",
        include_bytes!("../../fixtures/message.received.json"),
    ),
    (
        "message.delivered",
        include_bytes!("../../fixtures/message.delivered.json"),
    ),
    (
        "message.failed",
        include_bytes!("../../fixtures/message.failed.json"),
    ),
    (
        "message.unknown",
        include_bytes!("../../fixtures/message.unknown.json"),
    ),
    (
        "phone_call.completed",
        include_bytes!("../../fixtures/phone_call.completed.json"),
    ),
    (
        "contact.opted_out",
        include_bytes!("../../fixtures/contact.opted_out.json"),
    ),
    (
        "contact.opted_in",
        include_bytes!("../../fixtures/contact.opted_in.json"),
    ),
    (
        "contact.created",
        include_bytes!("../../fixtures/contact.created.json"),
    ),
];

/// The sample body for one event type.
pub fn sample(event_type: &str) -> Option<&'static [u8]> {
    SAMPLES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, b)| *b)
}
