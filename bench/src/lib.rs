//! Benchmark harness for textus-relay: a load generator, fast sinks, the scenarios of issue 6
//! and the report they produce. `bench/run` is the entry point; nothing here runs in CI except
//! the smoke test, which checks that the generator and the sinks work.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// The results document is one `json!` literal with a key per figure.
#![recursion_limit = "256"]

pub mod drain_ack;
pub mod load;
pub mod nats;
pub mod nats_shape;
pub mod plot;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod sink;
