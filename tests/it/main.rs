//! Black-box tests: the real binary, real HTTP sinks on loopback, a real SQLite file.

mod abuse;
mod cli;
mod completions;
mod config_errors;
mod container;
mod crash;
mod crm;
mod dead_letters;
mod delivery;
mod deploy;
mod disk_full;
mod ingest;
mod lifecycle;
mod load;
mod operations;
mod policy;
mod raw;
mod reload;
mod restart;
mod schema;
mod secrets;
mod send;
mod slack;
mod support;
mod target_faults;
mod tls;
