//! The keys each mapping of relay.yaml may have, as the walker checks them: built from the
//! object types of the schema (their `KEYS`, see `object!`), never written out a second time.

use super::super::de::{HERE, fields_of};
use super::storage::{NatsAuth, NatsStorage, NatsTls, SqliteStorage};
use super::{
    Admin, Basic, Breaker, CrmAuth, CrmTarget, Delivery, HttpTarget, Listen, OAuth2, OrderingKey,
    RelayFile, Retry, Route, Signing, SlackTarget, SlackTemplate, Source, Tls,
};

/// The keys a mapping of the file may have, made only here, from the object types below, so
/// the walker cannot accept a key the schema lacks.
#[derive(Clone, Copy)]
pub(in crate::config) struct Keys(&'static [&'static [&'static str]]);

impl Keys {
    /// Every key, in file order.
    pub(in crate::config) fn iter(self) -> impl Iterator<Item = &'static str> {
        self.0.iter().flat_map(|keys| keys.iter().copied())
    }

    pub(in crate::config) fn contains(self, key: &str) -> bool {
        self.iter().any(|k| k == key)
    }

    /// A list of the tests' own, for the walker's unit tests.
    #[cfg(test)]
    pub(in crate::config) const fn for_tests(keys: &'static [&'static [&'static str]]) -> Keys {
        Keys(keys)
    }
}

/// The tag that selects a target's or the store's kind (`#[serde(tag = "kind")]`).
const KIND: &[&str] = &["kind"];

pub(in crate::config) const HTTP: Keys = Keys(&[KIND, HttpTarget::KEYS, Delivery::KEYS]);
pub(in crate::config) const SLACK: Keys = Keys(&[KIND, SlackTarget::KEYS, Delivery::KEYS]);
pub(in crate::config) const CRM: Keys = Keys(&[KIND, CrmTarget::KEYS, Delivery::KEYS]);
pub(in crate::config) const SIGNING: Keys = Keys(&[Signing::KEYS]);
pub(in crate::config) const SLACK_TEMPLATE: Keys = Keys(&[SlackTemplate::KEYS]);
pub(in crate::config) const CRM_AUTH: Keys = Keys(&[CrmAuth::KEYS]);
pub(in crate::config) const BASIC: Keys = Keys(&[Basic::KEYS]);
pub(in crate::config) const OAUTH2: Keys = Keys(&[OAuth2::KEYS]);
pub(in crate::config) const RETRY: Keys = Keys(&[Retry::KEYS]);
pub(in crate::config) const BREAKER: Keys = Keys(&[Breaker::KEYS]);
pub(in crate::config) const ORDERING_KEY: Keys = Keys(&[OrderingKey::KEYS]);
pub(in crate::config) const ROUTE: Keys = Keys(&[Route::KEYS]);

/// The keys of each object of the schema, by key path, in file order: the reference lists keys
/// in this order, and the tests check the schema has exactly these objects with these keys.
/// The types read through the tree's deserializer give serde's own `fields`.
pub(super) fn key_lists() -> Vec<(&'static str, Vec<&'static str>)> {
    let derived = |kind: bool, fields: &'static [&'static str]| -> Vec<&'static str> {
        let kind = kind.then_some("kind");
        kind.into_iter()
            .chain(fields.iter().copied().filter(|f| *f != HERE))
            .collect()
    };
    let listed = |keys: Keys| keys.iter().collect::<Vec<_>>();
    vec![
        ("", derived(false, fields_of::<RelayFile>())),
        ("listen", derived(false, fields_of::<Listen>())),
        ("listen.tls", derived(false, fields_of::<Tls>())),
        ("admin", derived(false, fields_of::<Admin>())),
        (
            "storage kind: sqlite",
            derived(true, fields_of::<SqliteStorage>()),
        ),
        (
            "storage kind: nats",
            derived(true, fields_of::<NatsStorage>()),
        ),
        ("storage.auth", derived(false, fields_of::<NatsAuth>())),
        ("storage.tls", derived(false, fields_of::<NatsTls>())),
        ("source", derived(false, fields_of::<Source>())),
        ("targets.NAME kind: http", listed(HTTP)),
        ("targets.NAME kind: slack", listed(SLACK)),
        ("targets.NAME kind: crm", listed(CRM)),
        ("targets.NAME.signing", listed(SIGNING)),
        ("targets.NAME.templates.KEY", listed(SLACK_TEMPLATE)),
        ("targets.NAME.auth", listed(CRM_AUTH)),
        ("targets.NAME.auth.basic", listed(BASIC)),
        ("targets.NAME.auth.oauth2", listed(OAUTH2)),
        ("targets.NAME.retry", listed(RETRY)),
        ("targets.NAME.breaker", listed(BREAKER)),
        ("targets.NAME.ordering", listed(ORDERING_KEY)),
        ("routes[]", listed(ROUTE)),
    ]
}
