//! textus-relay: receives TextUs webhooks, verifies and stores them durably, and delivers each
//! to every routed target from that target's own retry queue.
//!
//! The first group of modules are the stages of one webhook's path; read them in its order:
//! [`config`] → [`ingress`] → [`routing`] → [`store`] → [`delivery`] → [`targets`], with
//! [`event`] (the body as parsed once at ingress) and [`templates`] used by routing and
//! targets, and [`metrics`] updated by every stage. Beside the path: [`admin`] watches it,
//! [`app`] assembles it from a config (and reloads it), [`cli`] is the command line, and
//! [`support`] holds what is not on it (the demo, sample events, the test sink, fuzz entry
//! points).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod delivery;
pub mod event;
pub mod ingress;
pub mod metrics;
pub mod routing;
pub mod store;
pub mod targets;
pub mod templates;

pub mod admin;
pub mod app;
pub mod cli;
pub mod support;

/// Selects ring as rustls' crypto provider (pingora already builds it; aws-lc is not built).
/// Safe to call any number of times.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
