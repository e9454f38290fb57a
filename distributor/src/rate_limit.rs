//! Per-tenant ingestion rate limiting: one token bucket per tenant, refilled
//! at `ingestion_rate` samples/s up to `ingestion_burst_size` tokens. A request
//! takes as many tokens as it has samples, all or nothing. The limit is local
//! to this distributor process (N distributors admit up to N × the rate).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;

/// A token bucket; rate and burst are passed on every call so a changed
/// override applies to the next request without resetting the bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`.
    pub fn new(burst: u64, now: Instant) -> Self {
        Self { tokens: burst as f64, last: now }
    }

    /// Refills for the time since the last call, then takes `n` tokens if the
    /// bucket holds that many. `rate == 0` means unlimited (always true).
    /// `n` larger than `burst` can never succeed.
    pub fn try_take(&mut self, n: u64, rate: u64, burst: u64, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst as f64);
        if n as f64 <= self.tokens {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// Tokens currently available (as of the last call).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// The token buckets of every tenant seen.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// Takes `n` tokens from `tenant`'s bucket (created full on first use).
    pub fn allow(&self, tenant: &str, n: u64, rate: u64, burst: u64, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let mut buckets = self.buckets.lock();
        if let Some(b) = buckets.get_mut(tenant) {
            return b.try_take(n, rate, burst, now);
        }
        let mut b = TokenBucket::new(burst, now);
        let ok = b.try_take(n, rate, burst, now);
        buckets.insert(tenant.to_string(), b);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, t0);
        assert!(b.try_take(60, 10, 100, t0));
        assert!(b.try_take(40, 10, 100, t0));
        assert!(!b.try_take(1, 10, 100, t0), "empty bucket");
        // 0.5 s at 10/s = 5 tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert!(!b.try_take(6, 10, 100, t1));
        assert!(b.try_take(5, 10, 100, t1));
        // Refill is capped at the burst size.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(!b.try_take(101, 10, 100, t2), "more than the burst never fits");
        assert!(b.try_take(100, 10, 100, t2));
        assert!(b.tokens() < 1e-9);
    }

    #[test]
    fn rejected_take_leaves_tokens_and_zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        assert!(!b.try_take(11, 1, 10, t0));
        assert_eq!(b.tokens(), 10.0, "a failed take consumes nothing");
        assert!(b.try_take(1_000_000, 0, 0, t0));
    }

    #[test]
    fn limiter_keeps_one_bucket_per_tenant_and_follows_new_limits() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.allow("a", 10, 5, 10, t0));
        assert!(!l.allow("a", 1, 5, 10, t0));
        assert!(l.allow("b", 10, 5, 10, t0), "tenant b has its own bucket");
        // A raised rate applies to the next refill of the same bucket.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!l.allow("a", 10, 5, 10, t1), "5 tokens after 1 s at 5/s");
        assert!(l.allow("a", 10, 1000, 1000, t1 + Duration::from_millis(10)));
    }
}
