//! # tally-size-floor
//!
//! A measuring instrument, not a product: the browser tracker's rules behind
//! the smallest possible interface, so that the npm package's size can be
//! compared with what the rules alone weigh.
//!
//! The module has no browser shell at all. It exports a handful of C-ABI
//! functions over strings (JSON in, a JSON list of effects out): the page
//! would hand it `document.cookie`, the stored queue and the input of a
//! `track` call, and carry out what comes back (cookie writes, `localStorage`
//! writes, `gtag`/`fbq` calls, a POST, a beacon). It calls every rule of
//! `tally_core::browser` the real tracker calls: config validation, reading
//! an event, admission and the consent buffer, the outbox, the bridge, the
//! envelope, the collector contract, consent changes, and (with the default
//! `user-data` feature) normalising and hashing user data. There is no
//! wasm-bindgen, no js-sys, no reflection, and no JavaScript at all.
//!
//! `cargo xtask pkg` builds it with and without `user-data`, optimises it as
//! it does the package, runs it in Node (`check.js`: a bad config refused, a
//! purchase without a transaction id refused by name, a purchase held for
//! consent, then queued, bridged to gtag/fbq and batched with its envelope
//! and hashed user data), and prints both figures beside the package's: a
//! floor under any shell, including a perfect hand-written one.
//!
//! `shell.js` beside this crate is such a shell, written by hand over these
//! exports: `cargo xtask pkg` prints floor + shell too, and the end-to-end
//! test `size_floor_shell` runs the pair in headless Chromium. Outside
//! `wasm32` only [`json_value`], the JSON reader, compiles (and is tested
//! natively).
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod json_value;
#[cfg(target_arch = "wasm32")]
mod rules;
