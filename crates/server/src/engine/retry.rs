//! The one retry policy: how often and how far apart the outbox tries an
//! event again (exponential backoff with full jitter, or the destination's
//! `Retry-After`), and the timeout of each attempt. Every attempt is a single
//! request; the waits between attempts are the outbox's.

use std::time::Duration;

/// How a destination's requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Ceiling for one wait (also caps `Retry-After`).
    pub max_delay: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 16 attempts with backoff capped at 5 minutes keep an event for about
        // 35 minutes of outage before it is given up (and kept as a dead entry).
        RetryPolicy {
            max_attempts: 16,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: full jitter over an exponential ceiling,
    /// or the server's `Retry-After` when it gave one (capped).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let ceiling = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        let jitter = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
        ceiling.mul_f64(0.5 + jitter as f64 / 2000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            let ceiling = (Duration::from_millis(100) * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(9))), Duration::from_secs(1));
        assert_eq!(p.delay(1, Some(Duration::from_millis(300))), Duration::from_millis(300));
    }
}
