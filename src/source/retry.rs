//! When and how long to wait before retrying a GET: exponential backoff with full jitter, capped,
//! honouring `Retry-After`. Only idempotent reads are ever retried; the decision functions are
//! pure so the retried set is pinned by tests.

use std::time::Duration;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff base: attempt n waits a random time in `[0, min(max, base * 2^(n-1))]`.
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; longer values are capped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Whether an HTTP status is worth retrying. `api_error_body` tells whether a 5xx body was a
/// JSON API error (`{"success": false, "message": ...}`): plone.jsonapi.core answers those for
/// deterministic application errors (the `Setup` object's 500), which a retry cannot fix.
pub fn is_retryable_status(status: u16, api_error_body: bool) -> bool {
    match status {
        408 | 429 => true,
        502..=504 => true,
        500 => !api_error_body,
        501 => false,
        505..=599 => !api_error_body,
        _ => false,
    }
}

/// Whether a transport error is worth retrying (connection refused or reset, timeouts, a
/// connection closed before the answer).
pub fn is_retryable_transport(err: &reqwest::Error) -> bool {
    err.is_connect() || err.is_timeout() || err.is_request() || err.is_body() || err.is_decode()
}

/// Parses a `Retry-After` header given in seconds. HTTP-date values are not used (None).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given the 1-based attempt that just failed.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_delay);
        // Full jitter: uniform in [0, cap].
        let nanos = cap.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(jitter_u64() % (nanos + 1))
    }
}

/// A cheap per-call pseudo-random number (xorshift over time and thread id); jitter needs
/// spread, not cryptographic quality.
fn jitter_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_status_codes_are_pinned() {
        let retried: Vec<u16> = (100..600)
            .filter(|s| is_retryable_status(*s, false))
            .collect();
        let mut expected = vec![408, 429, 500];
        expected.extend(502..600);
        assert_eq!(retried, expected);
        let retried_api: Vec<u16> = (100..600)
            .filter(|s| is_retryable_status(*s, true))
            .collect();
        assert_eq!(retried_api, vec![408, 429, 502, 503, 504]);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            max_retry_after: Duration::from_secs(5),
        };
        for attempt in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(p.max_delay);
            for _ in 0..50 {
                assert!(p.delay(attempt, None) <= cap);
            }
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| p.delay(5, None)).collect();
        assert!(spread.len() > 10, "jitter should spread delays");
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(9999))),
            p.max_retry_after
        );
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
