//! Black-box tests: the real binary, real HTTP sinks on loopback, a real SQLite file.

mod abuse;
mod cli;
mod config_errors;
mod crash;
mod crm;
mod dead_letters;
mod delivery;
mod disk_full;
mod ingest;
mod lifecycle;
mod load;
mod operations;
mod policy;
mod raw;
mod restart;
mod schema;
mod secrets;
mod slack;
mod support;
mod target_faults;
mod tls;
