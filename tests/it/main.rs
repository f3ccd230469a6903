//! Black-box tests: the real binary, real HTTP sinks on loopback, a real SQLite file.

mod abuse;
mod cli;
mod config_errors;
mod crm;
mod dead_letters;
mod delivery;
mod disk_full;
mod ingest;
mod lifecycle;
mod operations;
mod policy;
mod raw;
mod slack;
mod support;
mod target_faults;
mod tls;
