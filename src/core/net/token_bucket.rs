//! A token bucket on a millisecond clock, for ICMP error and log rate limits.

/// Refills `rate_per_sec` tokens per second up to `burst`; time is passed in
/// (milliseconds, monotonic) so the bucket never reads a clock itself.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst_milli: u64,
    /// Current tokens in thousandths, so integer refills stay exact at 1 ms.
    tokens_milli: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens, refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        let burst_milli = u64::from(burst) * 1000;
        TokenBucket { rate_per_sec: u64::from(rate_per_sec), burst_milli, tokens_milli: burst_milli, last_ms: 0 }
    }

    /// Takes one token if one is available at time `now_ms`.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now_ms: u64) {
        // A clock that goes backwards refills nothing instead of underflowing.
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        // rate tokens per second = rate milli-tokens per millisecond.
        let added = elapsed.saturating_mul(self.rate_per_sec);
        self.tokens_milli = self.tokens_milli.saturating_add(added).min(self.burst_milli);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut bucket = TokenBucket::new(10, 3);
        assert!((0..3).all(|_| bucket.try_take(0)));
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(99));
        assert!(bucket.try_take(100));
        assert!(!bucket.try_take(100));
        // A long idle period refills only up to the burst.
        assert_eq!((0..10).filter(|_| bucket.try_take(1_000_000)).count(), 3);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut bucket = TokenBucket::new(1, 1);
        assert!(bucket.try_take(5000));
        assert!(!bucket.try_take(10));
        assert!(!bucket.try_take(5999));
        assert!(bucket.try_take(6000));
    }

    #[test]
    fn zero_rate_never_refills() {
        let mut bucket = TokenBucket::new(0, 1);
        assert!(bucket.try_take(0));
        assert!(!bucket.try_take(u64::MAX));
    }
}
