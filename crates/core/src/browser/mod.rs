//! The browser tracker's rules, without the browser.
//!
//! `tally-web` (the npm package) is a thin wasm-bindgen layer: with web-sys
//! and js-sys it reads cookies, `localStorage`, the URL and the page's input
//! (with a serde visitor), and calls `fetch`, `sendBeacon`, `gtag` and
//! `fbq`. Every decision it makes in between lives here, is pure, and is
//! tested natively:
//!
//! * [`admission`]: a tracked event deduplicated, held for the consent
//!   decision or released, and on release queued or dropped with its reason;
//! * [`consent_change`]: what a consent update does to the queue: into or out of
//!   `localStorage`, discarded, the waiting events released;
//! * [`helpers`]: the e-commerce helpers' table (event, Google Ads label key,
//!   extra fields), one row per `track*` method of the package;
//! * [`input`]: the page's values ([`input::Value`]) read into events, user
//!   data and consent updates, with errors that name the field;
//! * [`config`]: `createBrowserTracker(config)` validated into a [`config::BrowserConfig`];
//! * [`identity`]: Tally's first-party cookies (client id, visitor id, click ids) and
//!   the `document.cookie` string that writes them;
//! * [`page_context`]: the context envelope a page sends, from the cookie
//!   jar, the page and what the tracker knows, stripped to the consent;
//! * [`consent_gate`]: what may be stored and sent before and after a consent
//!   decision, the envelope stripped to it, page URLs without click ids, and
//!   the stored consent format;
//! * [`bridge`]: the `gtag` / `fbq` calls and their parameters (GA4 event
//!   params are the same field list as the Measurement Protocol builder's);
//! * [`wire`]: the collector contract: batch body, HTTP outcome, per-event
//!   settling, backoff, beacon chunks;
//! * [`queue`]: the outbox's storage format, byte cap, batching, the
//!   sent-once list and the cross-tab drain lease.
//!
//! Nothing here allocates through `format!` or can panic on input: the
//! browser build keeps `core::fmt` out of the wasm module.

use crate::prelude::*;

pub mod admission;
pub mod bridge;
pub mod config;
pub mod consent_change;
pub mod consent_gate;
pub mod helpers;
pub mod identity;
pub mod input;
pub mod page_context;
pub mod queue;
pub mod wire;

/// Parses a non-negative decimal integer of at most 18 digits (`None` otherwise),
/// without `str::parse` and its error type.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Appends a JSON array: `write` for each item, comma-separated, in brackets.
pub(crate) fn push_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, x);
    }
    out.push(']');
}

/// The first `max` characters of `s`; `None` when `s` is empty.
pub fn truncate_chars(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let end = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    s.get(..end).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_truncation() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("1757409591000"), Some(1_757_409_591_000));
        for bad in ["", "-1", "1.5", "x", "1234567890123456789"] {
            assert_eq!(parse_u64(bad), None, "{bad}");
        }
        assert_eq!(truncate_chars("", 3), None);
        assert_eq!(truncate_chars("héllo", 2).as_deref(), Some("hé"));
        assert_eq!(truncate_chars("ab", 5).as_deref(), Some("ab"));
    }
}
