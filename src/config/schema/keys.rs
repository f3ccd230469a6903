//! The keys each mapping of relay.yaml may have, as the walker checks them: built from the
//! object types of the schema (their `KEYS`, see `object!`), never written out a second time.

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

pub(in crate::config) const TOP: Keys = Keys(&[RelayFile::KEYS]);
pub(in crate::config) const LISTEN: Keys = Keys(&[Listen::KEYS]);
pub(in crate::config) const TLS: Keys = Keys(&[Tls::KEYS]);
pub(in crate::config) const ADMIN: Keys = Keys(&[Admin::KEYS]);
pub(in crate::config) const SQLITE: Keys = Keys(&[KIND, SqliteStorage::KEYS]);
pub(in crate::config) const NATS: Keys = Keys(&[KIND, NatsStorage::KEYS]);
pub(in crate::config) const NATS_AUTH: Keys = Keys(&[NatsAuth::KEYS]);
pub(in crate::config) const NATS_TLS: Keys = Keys(&[NatsTls::KEYS]);
pub(in crate::config) const SOURCE: Keys = Keys(&[Source::KEYS]);
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
pub(super) const KEY_LISTS: &[(&str, Keys)] = &[
    ("", TOP),
    ("listen", LISTEN),
    ("listen.tls", TLS),
    ("admin", ADMIN),
    ("storage kind: sqlite", SQLITE),
    ("storage kind: nats", NATS),
    ("storage.auth", NATS_AUTH),
    ("storage.tls", NATS_TLS),
    ("source", SOURCE),
    ("targets.NAME kind: http", HTTP),
    ("targets.NAME kind: slack", SLACK),
    ("targets.NAME kind: crm", CRM),
    ("targets.NAME.signing", SIGNING),
    ("targets.NAME.templates.KEY", SLACK_TEMPLATE),
    ("targets.NAME.auth", CRM_AUTH),
    ("targets.NAME.auth.basic", BASIC),
    ("targets.NAME.auth.oauth2", OAUTH2),
    ("targets.NAME.retry", RETRY),
    ("targets.NAME.breaker", BREAKER),
    ("targets.NAME.ordering", ORDERING_KEY),
    ("routes[]", ROUTE),
];
