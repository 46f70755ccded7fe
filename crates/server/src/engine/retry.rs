//! HTTP sending with timeouts, exponential backoff with jitter, and `Retry-After`.

use std::time::Duration;

use crate::error::DeliveryError;

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

/// What one HTTP answer means for the delivery.
#[derive(Debug)]
pub enum Verdict<T> {
    /// Done.
    Done(T),
    /// Try again (after `Retry-After` if given).
    Retry(DeliveryError, Option<Duration>),
    /// Do not try again.
    Fail(DeliveryError),
}

/// Reads `Retry-After` (delta seconds) from a response.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error for a transient HTTP answer: 429 becomes [`DeliveryError::RateLimited`]
/// (carrying `Retry-After`), anything else [`DeliveryError::Rejected`].
pub fn transient_error(status: u16, message: String, after: Option<Duration>) -> DeliveryError {
    if status == 429 {
        DeliveryError::RateLimited { retry_after_secs: after.map(|d| d.as_secs()), message }
    } else {
        DeliveryError::Rejected { status, message }
    }
}

/// The default classification of a status: 2xx done, 408/429/5xx retry, others fail.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 | 403 => StatusClass::Unauthorized,
        408 | 425 | 429 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Permanent,
    }
}

/// The coarse meaning of an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 408, 425, 429, 5xx.
    Transient,
    /// 401, 403.
    Unauthorized,
    /// Other 4xx.
    Permanent,
}

/// Runs `attempt` until it is done, fails permanently or the budget runs out.
/// Returns the value and the number of attempts made.
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<(T, u32), DeliveryError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Verdict<T>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Verdict::Done(v) => return Ok((v, n)),
            Verdict::Fail(e) => return Err(e),
            Verdict::Retry(e, after) => {
                if n >= policy.max_attempts {
                    return Err(DeliveryError::RetriesExhausted { attempts: n, last: Box::new(e) });
                }
                tracing::debug!(attempt = n, error = %e, "retrying delivery");
                tokio::time::sleep(policy.delay(n, after)).await;
            }
        }
    }
}

/// Removes secrets from a message before it is logged or returned.
pub fn redact(message: &str, secrets: &[&str]) -> String {
    let mut m = message.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        m = m.replace(s, "[redacted]");
    }
    m
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

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(204), StatusClass::Success);
        assert_eq!(classify_status(429), StatusClass::Transient);
        assert_eq!(classify_status(503), StatusClass::Transient);
        assert_eq!(classify_status(401), StatusClass::Unauthorized);
        assert_eq!(classify_status(400), StatusClass::Permanent);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("url?api_secret=s3cr3t&x", &["s3cr3t"]), "url?api_secret=[redacted]&x");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_budget() {
        let p = RetryPolicy::default();
        let p = RetryPolicy { max_attempts: 4, ..p };
        let r: Result<((), u32), _> =
            with_retries(&p, |_| async { Verdict::Retry(DeliveryError::Transport("down".into()), None) }).await;
        assert!(matches!(r, Err(DeliveryError::RetriesExhausted { attempts: 4, .. })));
        let ok = with_retries(&p, |n| async move {
            if n < 3 { Verdict::Retry(DeliveryError::Transport("x".into()), None) } else { Verdict::Done(n) }
        })
        .await
        .unwrap();
        assert_eq!(ok, (3, 3));
    }
}
