//! # tally-web
//!
//! Tally's browser tracker as a wasm module: the rules of
//! [`tally_core::browser`] behind a handful of C-ABI exports over strings, with
//! no browser API, no wasm-bindgen and no reflection. The npm package in `pkg/`
//! is this module plus a hand-written JS shell (`pkg/index.js`) that does the
//! browser I/O: cookies, `localStorage`, `fetch`/`sendBeacon`, timers,
//! listeners and the `gtag`/`fbq` calls the module asks for.
//!
//! Every call works the same way. The shell writes a JSON object into the
//! buffer from `input_buffer` (the call's arguments plus what the page knows:
//! `document.cookie`, the URL, random bytes, the clock) and the stored queue
//! into the one from `queue_buffer` (beside the JSON, so the largest text is
//! neither escaped nor parsed), calls the export, and reads a JSON list of
//! effects from `output(0)`/`output(1)` (address, length): `["cookie", "…"]`, `["store", key,
//! value]`, `["queue"]` (store the queue at `output(2)`/`output(3)`),
//! `["gtag", [...]]`, `["fbq", [...]]`, `["post", url, body, ids]`,
//! `["beacon", url, body]`, `["drop", {...}]`, `["schedule", ms]`, `["wait",
//! id]` and `["dup", id]` (held for the consent decision, a repeat not sent:
//! for the debug log), `["error", "[tally] …"]` and so on. The exports are
//! `start` (validate the config, read identity and click ids), `track` (the
//! thirteen helpers, by number in [`tally_core::browser::helpers::HELPERS`]
//! order), `consent`, `next_batch`, `settle`, `hide`, `method` (the getters
//! and setters), and, with the default `user-data` feature, `hash_user_data`
//! and `sha256_hex`.
//!
//! What the rules do, all of it tested natively in the core:
//!
//! * **identity**: reads `_ga` (never writes it); otherwise mints a GA4-format
//!   id in Tally's own `_tally_cid`; session from `_ga_<stream>`; visitor id in `_tally_vid`;
//! * **click ids**: URL, then `_gcl_aw`/`_gcl_gb`/`_fbc`/`_fbp`, then Tally's
//!   `_tally_<id>` cookies (`clickIdStorage`);
//! * **consent** (`consentMode: 'v2'`): before a decision nothing is written
//!   or sent and events wait in a bounded buffer; ad data only with
//!   `ad_storage` / `ad_user_data`;
//! * **delivery**: a byte-capped outbox, small JSON batches to the first-party
//!   `endpoint`, per-event results, exponential backoff with jitter on network
//!   errors / 5xx / 429, drops with a reason on other 4xx, a beacon on
//!   `visibilitychange`/`pagehide`, one draining tab at a time, one purchase
//!   per transaction id per browser;
//! * **gtag / fbq bridge**: the calls to make, with the same event id the server
//!   sends, so each pair is deduplicated.
//!
//! The module is `no_std`: a panic traps (no message, location or formatting
//! code in the wasm). Inputs never panic; they come back as `["error", …]`.
//! Its allocator is its own ([`allocator`]): a free list per power-of-two
//! size, a few hundred bytes where a general allocator is kilobytes.
//!
//! Code that reaches the module must not slice a `str` by index
//! (`&s[i..]`): its panic path formats the char at the bad index and so
//! pulls Unicode's printable tables into the wasm, +3 KB gzip (measured).
//! Use `split_once`, `strip_prefix`, `get(..)` or byte indices instead.
//! Outside `wasm32` only [`json_value`], the JSON reader, compiles (and is
//! tested natively); the exports are tested in headless Chromium through the
//! package (`tests/tests/browser_tracker.rs`) and in Node by `check.js`,
//! which `cargo xtask pkg` runs on every build.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod allocator;
pub mod json_value;
#[cfg(target_arch = "wasm32")]
mod tracker;
