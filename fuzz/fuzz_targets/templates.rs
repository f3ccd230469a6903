//! Fuzz target: see `textus_relay::support::fuzzing::templates` for the input layout and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| textus_relay::support::fuzzing::templates(data));
