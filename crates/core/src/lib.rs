//! # tally-core
//!
//! The pure core of Tally, an isomorphic conversion-tracking SDK. It holds
//! every rule and does no I/O: no clock, no randomness, no network. Callers
//! pass the time and random bytes in. It builds for `wasm32-unknown-unknown`
//! (the browser tracker, `tally-web`) and natively (the server, `tally-server`).
//! Without its `std` feature (on by default, implied by `serde_json`) it is
//! `no_std` and needs only `alloc`: that is how the browser package builds it.
//!
//! What lives here:
//!
//! * the event model: [`Event`], [`EventName`], [`Item`], exact [`Amount`]s in a [`Currency`];
//! * consent: [`ConsentState`] (Consent Mode v2) and the one [`policy`] that says what each
//!   [`DestinationKind`] may receive;
//! * identity: [`ClientId`] (`_ga`), [`GaSession`] (`_ga_<stream>`), [`ClickIds`],
//!   [`VisitorId`], [`UserId`];
//! * deduplication: [`EventId`], derived from (event name, transaction id) so the browser
//!   and the server agree without talking; a refund's also from its [`RefundId`] or what
//!   remains of the order, so each refund of an order is its own event;
//! * the [`ContextEnvelope`] that carries browser state to the server;
//! * user data, normalised and hashed per destination ([`user_data`], [`normalize`], [`hash`]);
//! * destination payload builders and their limits ([`destinations`], with the
//!   `serde_json` feature, on by default).
//!
//! ```
//! use tally_core::{Amount, ContextEnvelope, Currency, Event, EventName, TransactionId};
//!
//! // The browser and the server each build the purchase of order ORD-1001 ...
//! let txn = TransactionId::parse("ORD-1001").unwrap();
//! let browser = Event::transactional(EventName::Purchase, txn.clone(), 1_757_409_591_000);
//! let server = Event::transactional(EventName::Purchase, txn, 1_757_409_999_000);
//! // ... and get the same id, so every destination counts it once.
//! assert_eq!(browser.id, server.id);
//!
//! let env = ContextEnvelope::parse_json(r#"{"v":1,"createdAt":1757409591000,"clientId":"123.456"}"#).unwrap();
//! assert_eq!(env.client_id.unwrap().as_str(), "123.456");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Without `std` the core needs only `alloc`: the browser build then carries no
// std panic or formatting machinery (tally-web supplies a trapping panic handler).
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

/// The `alloc` items every module uses, so the same code builds with and without `std`.
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::string::String;
    pub(crate) use alloc::vec;
    pub(crate) use alloc::vec::Vec;
}

pub mod amount;
pub mod browser;
pub mod click_ids;
pub mod client_id;
pub mod consent;
pub mod cookie;
pub mod currency;
#[cfg(feature = "serde_json")]
pub mod destinations;
pub mod envelope;
pub mod error;
pub mod event;
pub mod event_id;
pub mod event_name;
pub mod hash;
pub mod http;
pub mod ids;
pub mod item;
pub mod json;
#[cfg(feature = "serde_json")]
pub mod match_keys;
pub mod normalize;
pub mod params;
pub mod reconcile;
pub mod session;
mod text;
pub mod time;
pub mod user_data;

pub use amount::Amount;
pub use click_ids::{ClickIds, GoogleClick};
pub use client_id::ClientId;
pub use consent::{
    ConsentDenial, ConsentSignal, ConsentState, ConsentUpdate, DestinationKind, DestinationPolicy, StoragePurpose,
    policy,
};
pub use currency::Currency;
pub use envelope::ContextEnvelope;
pub use error::{Error, Result};
pub use event::{Event, ParamValue, RefundScope};
pub use event_id::EventId;
pub use event_name::EventName;
pub use ids::{OrderIdForm, RefundId, TransactionId, UserId, VisitorId};
pub use item::Item;
pub use params::Params;
pub use session::GaSession;
pub use user_data::{HashedUserData, UserData};
