//! # tally-web
//!
//! Tally's browser tracker: a thin [wasm-bindgen] layer over [`tally_core`],
//! published as the npm package in `pkg/` (`createBrowserTracker(config)`).
//! Every rule lives in the core, most of it in [`tally_core::browser`]: config
//! validation, reading the page's input into events, identity and click ids,
//! the consent gate, what becomes of a tracked event before and after the
//! consent decision (`admission`, `consent_change`), the gtag/fbq bridge, the
//! outbox and the collector contract. This crate decides nothing; it carries
//! out what the rules say with the browser's APIs, through [web-sys] and
//! [js-sys], and reads what the page passes with a [serde] visitor:
//!
//! * **identity**: reads `_ga` (never writes it); otherwise mints a GA4-format
//!   id in Tally's own `_tally_cid`; session from `_ga_<stream>`; visitor id in `_tally_vid`;
//! * **click ids**: URL, then `_gcl_aw`/`_gcl_gb`/`_fbc`/`_fbp`, then Tally's
//!   `_tally_<id>` cookies (`clickIdStorage`);
//! * **consent** (`consentMode: 'v2'`): before a decision nothing is written
//!   or sent and events wait in a bounded buffer; ad data only with
//!   `ad_storage` / `ad_user_data`; decisions are forwarded to gtag and fbq;
//! * **delivery**: a byte-capped outbox in `localStorage`, small JSON batches
//!   to the first-party `endpoint` (`fetch`, `keepalive`), per-event results,
//!   exponential backoff with jitter on network errors / 5xx / 429, drops with
//!   a reason on other 4xx, `sendBeacon` on `visibilitychange`/`pagehide`
//!   (never `unload`), one draining tab at a time, one purchase per
//!   transaction id per browser;
//! * **gtag / fbq bridge**: calls `window.gtag` / `window.fbq` as functions with
//!   the same event id the server sends, so each pair is deduplicated.
//!
//! The module exports the `BrowserTracker` class, whose methods are the
//! package's API in camelCase, `checkConfig`, and the hash functions
//! (`hashUserData`, `sha256Hex`); `wasm-bindgen` generates their JS glue and
//! TypeScript types, and `pkg/index.js` only loads the module (streaming it
//! while it downloads) and gives server-side rendering a tracker that does
//! nothing. The crate compiles to nothing outside `wasm32`: its rules are
//! tested natively in the core, and the module in headless Chromium through
//! the package (`tests/tests/browser_tracker.rs`) and in Node by `check.js`,
//! which `cargo xtask pkg` runs on every build.
//!
//! [wasm-bindgen]: https://wasm-bindgen.github.io/wasm-bindgen/
//! [web-sys]: https://docs.rs/web-sys
//! [js-sys]: https://docs.rs/js-sys
//! [serde]: https://serde.rs
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// The global allocator: talc instead of std's dlmalloc, a few KiB less of wasm.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(target_arch = "wasm32")]
pub mod hash;
#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
pub mod tracker;

#[cfg(target_arch = "wasm32")]
pub use tracker::BrowserTracker;
