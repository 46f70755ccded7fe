//! # tally-server
//!
//! The server half of Tally. A backend builds one [`ServerTracker`] from its
//! configuration, then reports what happened — usually from a payment webhook,
//! with the [`ContextEnvelope`](tally_core::ContextEnvelope) the browser
//! exported at checkout:
//!
//! ```no_run
//! use tally_server::{ServerTracker, Ga4Config, PurchaseInput};
//! use tally_core::{Amount, ContextEnvelope, Currency};
//!
//! # async fn webhook(order_context: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let tracker = ServerTracker::builder()
//!     .ga4(Ga4Config::new("G-ABC123", "api-secret"))
//!     .build()?;
//! let envelope = ContextEnvelope::parse(order_context)?;
//! let result = tracker
//!     .from_context(&envelope)
//!     .track_purchase(PurchaseInput::new("ORD-1001", Amount::parse("30.03")?, Currency::parse("USD")?))
//!     .await?;
//! for (destination, outcome) in &result.destinations {
//!     println!("{destination}: {outcome}");
//! }
//! # Ok(()) }
//! ```
//!
//! Every call returns a [`TrackResult`] with one [`Outcome`] per configured
//! destination: sent, failed (with a typed [`DeliveryError`]) or skipped with a
//! [`SkipReason`] (consent, duplicate, not configured …). Configuration mistakes
//! fail at [`ServerTrackerBuilder::build`]; delivery failures come back as values.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod collector;
pub mod config;
pub mod destination;
pub mod error;
pub mod ga4;
pub mod input;
pub mod metrics;
pub mod outcome;
pub mod retry;
pub mod store;
pub mod tracker;

pub use config::{Ga4Config, ServerTrackerBuilder};
pub use error::{ConfigError, DeliveryError, TrackError};
pub use input::{
    CartInput, ConversionInput, EventInput, LeadInput, PageViewInput, PurchaseInput, RefundInput, SignUpInput, Visitor,
};
pub use outcome::{Outcome, SkipReason, TrackResult};
pub use store::{Claim, IdempotencyStore, MemoryOutbox, MemoryStore, Outbox};
pub use tracker::{BoundTracker, FlushReport, ServerTracker};
