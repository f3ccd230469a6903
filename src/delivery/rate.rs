//! A token bucket per target: `count` deliveries per `per`, with bursts of up to `count`
//! once the target has been idle long enough to earn them.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

/// Spaces attempts so a target never sees more than its configured rate.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    /// Relays the rate is split between (see [`RateLimiter::share`]).
    relays: usize,
    /// Time one token takes to refill.
    interval: Duration,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: &Rate) -> RateLimiter {
        let count = rate.count.max(1);
        RateLimiter {
            rate: *rate,
            relays: 1,
            interval: rate.per / count,
            capacity: f64::from(count),
            // One token to start with, not a full bucket: a restart with a backlog must not
            // open with a burst (Slack counts it against the webhook).
            tokens: 1.0,
            last: Instant::now(),
        }
    }

    /// Splits the rate between `relays` relays that send to the same target: each gets
    /// `count / relays` per `per`, with a burst of that size (at least 1).
    pub fn share(&mut self, relays: usize) {
        let relays = relays.max(1);
        if relays == self.relays {
            return;
        }
        self.relays = relays;
        let count = self.rate.count.max(1);
        let n = u32::try_from(relays).unwrap_or(u32::MAX);
        self.interval = (self.rate.per * n) / count;
        self.capacity = (f64::from(count) / relays as f64).max(1.0);
        self.tokens = self.tokens.min(self.capacity);
    }

    /// Takes a token now if one is available; otherwise says how long until one is.
    pub fn try_take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        if !self.interval.is_zero() {
            let refill = now.duration_since(self.last).as_secs_f64() / self.interval.as_secs_f64();
            self.tokens = (self.tokens + refill).min(self.capacity);
        } else {
            self.tokens = self.capacity;
        }
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.interval.mul_f64(1.0 - self.tokens))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_with_one_token_then_allows_bursts_earned_by_idling() {
        let mut rl = RateLimiter::new(&Rate {
            count: 2,
            per: Duration::from_secs(1),
        });
        assert!(rl.try_take().is_ok());
        let wait = rl.try_take().expect_err("one token at start");
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        tokio::time::advance(wait).await;
        assert!(rl.try_take().is_ok());
        assert!(rl.try_take().is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(rl.try_take().is_ok());
        assert!(rl.try_take().is_ok(), "idle time earns a burst of `count`");
        assert!(rl.try_take().is_err(), "but no more than `count`");
    }
}
