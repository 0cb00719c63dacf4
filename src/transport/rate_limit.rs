//! A token bucket per connection: `burst` events at once, `per_sec` sustained. A refused
//! event is a strike; `max_strikes` strikes in a row (no event admitted in between) mean the
//! client ignores the `error` replies, and the connection is closed.

use std::time::Instant;

/// What the limiter says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Admit,
    /// Refuse this event with an `error`.
    Refuse,
    /// Refused too often: close the connection.
    Disconnect,
}

/// One connection's bucket.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    strikes: u32,
    max_strikes: u32,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(per_sec: u32, burst: u32, max_strikes: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
            strikes: 0,
            max_strikes,
        }
    }

    /// Judges one event arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Admit;
        }
        self.strikes += 1;
        if self.strikes >= self.max_strikes {
            Verdict::Disconnect
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_admitted_then_refused_then_disconnected() {
        let mut limiter = RateLimiter::new(10, 3, 2);
        let t = Instant::now();
        assert_eq!(limiter.check(t), Verdict::Admit);
        assert_eq!(limiter.check(t), Verdict::Admit);
        assert_eq!(limiter.check(t), Verdict::Admit);
        assert_eq!(limiter.check(t), Verdict::Refuse);
        assert_eq!(limiter.check(t), Verdict::Disconnect);
    }

    #[test]
    fn tokens_come_back_with_time_and_reset_the_strikes() {
        let mut limiter = RateLimiter::new(10, 1, 3);
        let t = Instant::now();
        assert_eq!(limiter.check(t), Verdict::Admit);
        assert_eq!(limiter.check(t), Verdict::Refuse);
        assert_eq!(
            limiter.check(t + Duration::from_millis(150)),
            Verdict::Admit
        );
        assert_eq!(
            limiter.check(t + Duration::from_millis(150)),
            Verdict::Refuse
        );
        assert_eq!(
            limiter.check(t + Duration::from_millis(150)),
            Verdict::Refuse
        );
    }
}
