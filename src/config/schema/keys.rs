//! The keys of each object of relay.yaml in file order, for the reference (JSON Schema keeps
//! properties sorted): serde's own `fields` of the types the file is read into, never written
//! out a second time.

use super::super::de::fields_of;
use super::storage::{NatsAuth, NatsStorage, NatsTls, SqliteStorage};
use super::{
    Admin, Basic, Breaker, CrmAuth, CrmTarget, Delivery, HttpTarget, Listen, OAuth2, OrderingKey,
    RelayFile, Retry, Route, Signing, SlackTarget, SlackTemplate, Source, Tls,
};

/// The keys of each object of the schema, by key path, in file order. A kind's keys start
/// with `kind`; a target kind's end with the [`Delivery`] keys every kind takes.
pub(super) fn key_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    let keys = |lists: &[&'static [&'static str]]| -> Vec<&'static str> {
        lists
            .iter()
            .flat_map(|fields| fields.iter().copied())
            .filter(|f| !f.starts_with('$'))
            .collect()
    };
    let kind: &'static [&'static str] = &["kind"];
    let delivery = fields_of::<Delivery>();
    vec![
        ("", keys(&[fields_of::<RelayFile>()])),
        ("listen", keys(&[fields_of::<Listen>()])),
        ("listen.tls", keys(&[fields_of::<Tls>()])),
        ("admin", keys(&[fields_of::<Admin>()])),
        (
            "storage kind: sqlite",
            keys(&[kind, fields_of::<SqliteStorage>()]),
        ),
        (
            "storage kind: nats",
            keys(&[kind, fields_of::<NatsStorage>()]),
        ),
        ("storage.auth", keys(&[fields_of::<NatsAuth>()])),
        ("storage.tls", keys(&[fields_of::<NatsTls>()])),
        ("source", keys(&[fields_of::<Source>()])),
        (
            "targets.NAME kind: http",
            keys(&[kind, fields_of::<HttpTarget>(), delivery]),
        ),
        (
            "targets.NAME kind: slack",
            keys(&[kind, fields_of::<SlackTarget>(), delivery]),
        ),
        (
            "targets.NAME kind: crm",
            keys(&[kind, fields_of::<CrmTarget>(), delivery]),
        ),
        ("targets.NAME.signing", keys(&[fields_of::<Signing>()])),
        (
            "targets.NAME.templates.KEY",
            keys(&[fields_of::<SlackTemplate>()]),
        ),
        ("targets.NAME.auth", keys(&[fields_of::<CrmAuth>()])),
        ("targets.NAME.auth.basic", keys(&[fields_of::<Basic>()])),
        ("targets.NAME.auth.oauth2", keys(&[fields_of::<OAuth2>()])),
        ("targets.NAME.retry", keys(&[fields_of::<Retry>()])),
        ("targets.NAME.breaker", keys(&[fields_of::<Breaker>()])),
        ("targets.NAME.ordering", keys(&[fields_of::<OrderingKey>()])),
        ("routes[]", keys(&[fields_of::<Route>()])),
    ]
}
