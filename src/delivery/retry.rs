//! When to try a failed delivery again, and when to give up.
//!
//! Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
//! `[0, min(max_delay, initial * 2^(n-1))]`, so retries of many deliveries spread out instead of
//! hammering a recovering target together. A receiver's `Retry-After` is a floor, capped at
//! `max_delay`. The schedule is persisted as the next attempt time, never held in memory.

use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::config::RetryPolicy;

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    At(SystemTime),
    GiveUp,
}

/// `attempts` counts the attempts made so far, including the one that just failed.
pub fn next_attempt(
    policy: &RetryPolicy,
    attempts: u32,
    created_at: SystemTime,
    retry_after: Option<Duration>,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Next {
    if policy.max_attempts.is_some_and(|max| attempts >= max) {
        return Next::GiveUp;
    }
    let ceiling = backoff_ceiling(policy, attempts);
    let jittered = Duration::from_secs_f64(rng.random::<f64>() * ceiling.as_secs_f64());
    let floor = retry_after.map_or(Duration::ZERO, |r| r.min(policy.max_delay));
    let at = now + jittered.max(floor);
    let deadline = created_at + policy.max_age;
    if at > deadline {
        Next::GiveUp
    } else {
        Next::At(at)
    }
}

/// `min(max_delay, initial * 2^(attempts-1))`, without overflow.
fn backoff_ceiling(policy: &RetryPolicy, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(40);
    policy
        .initial
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            max_attempts,
        }
    }

    #[test]
    fn ceiling_doubles_up_to_max_delay() {
        let p = policy(None);
        let secs: Vec<u64> = (1..=12).map(|n| backoff_ceiling(&p, n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff_ceiling(&p, u32::MAX).as_secs(), 600);
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_spreads() {
        let p = policy(None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = Vec::new();
        for _ in 0..200 {
            match next_attempt(&p, 4, now, None, now, &mut rng) {
                Next::At(at) => {
                    let d = at.duration_since(now).expect("in the future");
                    assert!(d <= Duration::from_secs(8), "{d:?}");
                    seen.push(d);
                }
                Next::GiveUp => panic!("gave up too early"),
            }
        }
        assert!(seen.iter().any(|d| *d < Duration::from_secs(4)));
        assert!(seen.iter().any(|d| *d > Duration::from_secs(4)));
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_max_delay() {
        let p = policy(None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut rng = StdRng::seed_from_u64(1);
        let mut at = |ra| match next_attempt(&p, 1, now, Some(ra), now, &mut rng) {
            Next::At(at) => at.duration_since(now).expect("future"),
            Next::GiveUp => panic!("gave up"),
        };
        assert!(at(Duration::from_secs(30)) >= Duration::from_secs(30));
        assert_eq!(at(Duration::from_secs(86_400)), Duration::from_secs(600));
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            next_attempt(&policy(Some(3)), 3, now, None, now, &mut rng),
            Next::GiveUp
        );
        assert!(matches!(
            next_attempt(&policy(Some(3)), 2, now, None, now, &mut rng),
            Next::At(_)
        ));
        let old = now - Duration::from_secs(24 * 3600);
        assert_eq!(
            next_attempt(
                &policy(None),
                1,
                old,
                Some(Duration::from_secs(5)),
                now,
                &mut rng
            ),
            Next::GiveUp
        );
    }
}
