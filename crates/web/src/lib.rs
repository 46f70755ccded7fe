//! # tally-web
//!
//! Tally's browser tracker: a thin [wasm-bindgen] layer over [`tally_core`],
//! published as the npm package in `pkg/` (`createBrowserTracker(config)`).
//! Every rule (event model and validation, event ids, click-id capture, the
//! GA4 client id and session, consent policy, normalisation and hashing, the
//! envelope) comes from the core; this crate only does browser I/O:
//!
//! * **identity**: reads `_ga` (never writes it); otherwise mints a GA4-format
//!   id in Tally's own `_tally_cid`; session from `_ga_<stream>`; visitor id in `_tally_vid`;
//! * **click ids**: URL, then `_gcl_aw`/`_gcl_gb`/`_fbc`/`_fbp`, then Tally's
//!   `_tally_<id>` cookies (`clickIdStorage`);
//! * **consent** (`consentMode: 'v2'`): before a decision nothing is written
//!   or sent and events wait in a bounded buffer; ad data only with
//!   `ad_storage` / `ad_user_data`; decisions are forwarded to gtag and fbq;
//! * **delivery**: a byte-capped outbox in `localStorage`, small JSON batches
//!   to the first-party `endpoint`, per-event results, exponential backoff with
//!   jitter on network errors / 5xx / 429, drops with a reason on other 4xx,
//!   `sendBeacon` on `visibilitychange`/`pagehide` (never `unload`), one
//!   draining tab at a time, one purchase per transaction id per browser;
//! * **gtag / fbq bridge**: calls `window.gtag` / `window.fbq` as functions with
//!   the same event id the server sends, so each pair is deduplicated.
//!
//! Pure logic that the core does not have yet lives in [`rules`] and
//! [`queue`] (tested natively); the browser code is compiled for `wasm32` only.
//!
//! [wasm-bindgen]: https://rustwasm.github.io/docs/wasm-bindgen/
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod queue;
pub mod rules;

#[cfg(target_arch = "wasm32")]
pub mod hash;
#[cfg(target_arch = "wasm32")]
mod input;
#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
pub mod tracker;

#[cfg(target_arch = "wasm32")]
pub use tracker::BrowserTracker;
