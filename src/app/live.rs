//! A value that a config reload replaces whole while readers keep using the one they took.
//!
//! Each request (or admin call) takes one snapshot at its start and uses it throughout, so it
//! sees either the old config or the new one, never a mix: that is what makes a reload atomic
//! for the request path.

use std::sync::{Arc, RwLock};

/// The current value of something a reload may replace.
#[derive(Debug)]
pub struct Live<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The current value. Cheap: a read lock held for one reference-count increment.
    pub fn get(&self) -> Arc<T> {
        // A poisoned lock means a writer panicked between taking the lock and storing a
        // complete `Arc`; the stored value is still whole.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the value; readers holding the old one keep it until they drop it.
    pub fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_the_swap() {
        let live = Live::new(String::from("old"));
        let before = live.get();
        live.set(String::from("new"));
        assert_eq!(*before, "old");
        assert_eq!(*live.get(), "new");
    }
}
