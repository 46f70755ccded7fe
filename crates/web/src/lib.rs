//! # tally-web
//!
//! Tally's browser tracker: a thin [wasm-bindgen] layer over [`tally_core`],
//! published as the npm package in `pkg/` (`createBrowserTracker(config)`).
//! Every rule lives in the core, most of it in [`tally_core::browser`]: config
//! validation, reading JavaScript inputs into events, identity and click ids,
//! the consent gate, what becomes of a tracked event before and after the
//! consent decision (`admission`, `consent_change`), the gtag/fbq bridge, the
//! outbox and the collector contract. This crate only does the browser I/O around them:
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
//! The wasm module exports one class with one method (`call`, by method number)
//! and the hash functions; `pkg/index.js` gives the methods their names. The
//! crate compiles to nothing outside `wasm32`: its rules are tested in the core.
//! The package is built without the default `std` feature: the module is then
//! `no_std` and a panic traps (see `cargo xtask pkg`); the wasm tests build
//! with `std`, and the end-to-end tests run the package as built.
//!
//! [wasm-bindgen]: https://rustwasm.github.io/docs/wasm-bindgen/
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

/// Without `std` (the npm package's build) a panic traps: the wasm carries no
/// panic message, location or formatting code. Inputs never panic (they come
/// back as typed errors); a trap would be a bug, reported by the JS engine as a
/// `RuntimeError: unreachable`.
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

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
