//! textus-relay: receives TextUs webhooks, verifies and stores them durably, and delivers each
//! to every routed target from that target's own retry queue.
//!
//! Follow one webhook through the modules in this order: [`config`] → [`ingress`] →
//! [`routing`] → [`store`] → [`delivery`] → [`targets`], with [`admin`] watching from the side.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod build;
pub mod check;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod event;
pub mod fuzzing;
pub mod ingress;
pub mod live;
pub mod metrics;
pub mod reload;
pub mod routing;
pub mod samples;
pub mod sink;
pub mod store;
pub mod targets;
pub mod templates;

/// Selects ring as rustls' crypto provider (pingora already builds it; aws-lc is not built).
/// Safe to call any number of times.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
