//! What is not on an event's path: `textus-relay demo`, the sample events built into the binary
//! (for `demo` and `send`), the loopback sink the demo and the black-box tests deliver to, and
//! the fuzz entry points that `fuzz/` wraps.

pub mod demo;
pub mod fuzzing;
pub mod samples;
pub mod sink;
