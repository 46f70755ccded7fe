//! Fault injection: make a sandbox destination fail the way real ones do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

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

/// A shared, switchable mode, plus a counter of requests refused by it.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch {
    mode: Arc<AtomicU8>,
    refused: Arc<AtomicU32>,
    fail_next: Arc<AtomicU32>,
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

    /// Requests refused by a fault so far.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }

    /// The mode to apply to this request (counts `fail_next` down).
    pub fn take(&self) -> Mode {
        let pending = self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let mode = if pending.is_ok() { Mode::Down } else { self.get() };
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
