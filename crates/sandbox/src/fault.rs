//! Fault injection: make a sandbox destination fail the way real ones do.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a sandbox destination answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normally.
    Up,
    /// 503 Service Unavailable to everything (an outage).
    Down,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// 401 (credentials refused).
    Unauthorized,
}

/// A shared, switchable mode, plus a counter of requests refused by it; an
/// optional rate limit (more than N requests in one second are answered as
/// [`Mode::RateLimited`], with `Retry-After`), and the number of requests being
/// answered at once, with its peak, so tests can assert a client's window.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch {
    mode: Arc<AtomicU8>,
    refused: Arc<AtomicU32>,
    fail_next: Arc<AtomicU32>,
    rate: Arc<RateLimit>,
    in_flight: Arc<AtomicU32>,
    peak_in_flight: Arc<AtomicU32>,
}

#[derive(Debug, Default)]
struct RateLimit {
    per_second: AtomicU32,
    limited: AtomicU32,
    /// The start of the current one-second window and the requests in it.
    window: Mutex<Option<(Instant, u32)>>,
}

/// A request being answered; dropping it ends it (see [`FaultSwitch::enter`]).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultSwitch {
    /// Sets the mode.
    pub fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    /// Makes the next `n` requests fail with 503, then recovers by itself.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The current mode.
    pub fn get(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Down,
            2 => Mode::RateLimited,
            3 => Mode::Unauthorized,
            _ => Mode::Up,
        }
    }

    /// Answers more than `per_second` requests in one second (a fixed window)
    /// as [`Mode::RateLimited`]; 0 lifts the limit.
    pub fn rate_limit(&self, per_second: u32) {
        self.rate.per_second.store(per_second, Ordering::SeqCst);
    }

    /// Requests answered as rate limited by [`FaultSwitch::rate_limit`] so far.
    pub fn rate_limited(&self) -> u32 {
        self.rate.limited.load(Ordering::SeqCst)
    }

    /// Counts a request as being answered until the guard is dropped; a
    /// handler takes it first and holds it to the end.
    pub fn enter(&self) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self.in_flight.clone())
    }

    /// The most requests that were being answered at once.
    pub fn peak_in_flight(&self) -> u32 {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the peak (the requests in flight now become the new one).
    pub fn reset_peak_in_flight(&self) {
        self.peak_in_flight.store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn over_rate(&self) -> bool {
        let limit = self.rate.per_second.load(Ordering::SeqCst);
        if limit == 0 {
            return false;
        }
        let mut w = self.rate.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (start, n) = match *w {
            Some((start, n)) if now.duration_since(start).as_secs() < 1 => (start, n + 1),
            _ => (now, 1),
        };
        *w = Some((start, n));
        let over = n > limit;
        if over {
            self.rate.limited.fetch_add(1, Ordering::SeqCst);
        }
        over
    }

    /// Requests refused by a fault so far.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }

    /// The mode to apply to this request (counts `fail_next` down).
    pub fn take(&self) -> Mode {
        let pending = self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let mode = if pending.is_ok() {
            Mode::Down
        } else if self.over_rate() {
            Mode::RateLimited
        } else {
            self.get()
        };
        if mode != Mode::Up {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        mode
    }

    /// The HTTP answer for a faulted request, or `None` to proceed.
    pub fn response(&self) -> Option<axum::response::Response> {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        match self.take() {
            Mode::Up => None,
            Mode::Down => Some((StatusCode::SERVICE_UNAVAILABLE, "sandbox: destination down").into_response()),
            Mode::RateLimited => {
                Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "sandbox: rate limited").into_response())
            }
            Mode::Unauthorized => Some((StatusCode::UNAUTHORIZED, "sandbox: bad credentials").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_refuses_what_is_over_it_within_a_second() {
        let f = FaultSwitch::default();
        f.rate_limit(3);
        let modes: Vec<Mode> = (0..5).map(|_| f.take()).collect();
        assert_eq!(modes, [Mode::Up, Mode::Up, Mode::Up, Mode::RateLimited, Mode::RateLimited]);
        assert_eq!(f.rate_limited(), 2);
        f.rate_limit(0);
        assert_eq!(f.take(), Mode::Up);
    }

    #[test]
    fn the_peak_of_requests_in_flight_is_kept() {
        let f = FaultSwitch::default();
        let a = f.enter();
        let b = f.enter();
        drop(a);
        let _c = f.enter();
        assert_eq!(f.peak_in_flight(), 2);
        drop(b);
        f.reset_peak_in_flight();
        assert_eq!(f.peak_in_flight(), 1);
    }
}
