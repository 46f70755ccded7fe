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
//! [`SkipReason`] (consent, duplicate, a known [bot](bots), not configured …). Configuration mistakes
//! fail at [`ServerTrackerBuilder::build`]; delivery failures come back as values.
//!
//! Every event is written to the [outbox](store) before it is sent, then goes
//! through its destination's [delivery lane](LaneSettings): batched with other
//! visitors' events where the API allows, a bounded and adaptive window of
//! requests in flight, paused by `Retry-After` ([`LaneSettings`]). Store calls
//! run off the async runtime.
//!
//! What reached each destination is counted per order ([`production_qa`]) and
//! kept in the store's [order journal](store::journal), which the
//! [status page](status) (`GET /status` of the [collector]) and
//! `tally reconcile --since 24h` reconcile against the backend's orders.
//!
//! ## How the crate is built
//!
//! One engine (`src/engine/`) owns everything that is the same for every
//! destination: admission (consent, bots, the outbox), the lanes, the round
//! (claim the idempotency key → build → send → judge → settle → acknowledge),
//! the outbox worker, the one [`RetryPolicy`] and the one HTTP helper, with
//! the one status rule of [`tally_core::http`]. A destination is one folder
//! (`src/destinations/<name>/`: `config.rs`, its settings as the builder and
//! the TOML file take them; `mod.rs`, its request built by one tally-core
//! call, its URL and auth, and its judgement of an answer) plus one line in
//! `src/destinations/registry.rs`, from which the file's sections and the
//! error messages' lists are derived. Every destination runs through the same
//! compliance suite (`tests/it/compliance.rs`) against its stand-in in
//! `tally-sandbox`. `cargo xtask modules` keeps the modules free of import
//! cycles (the one allowed: the builder and the tracker it builds).
//!
//! ## Example: a payment webhook delivering to several destinations
//!
//! One tracker per process, configured for GA4, Google Ads (through the Data
//! Manager API: purchases, and partial refunds as restatements), Meta, Rokt
//! and the shop's warehouse; the handler
//! reports the payment with the browser's envelope and answers the payment
//! provider at once — failures come back as values and transient ones wait in
//! the outbox. A serverless handler flushes before returning.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::extract::State;
//! use axum::http::StatusCode;
//! use axum::routing::post;
//! use axum::{Json, Router};
//! use serde::Deserialize;
//! use tally_core::{Amount, ContextEnvelope, Currency, UserData};
//! use tally_server::{
//!     ConfigError, Ga4Config, GoogleAdsConfig, MetaConfig, Outcome, PurchaseInput, RefundInput, RoktConfig,
//!     ServerTracker, Visitor, WebhookConfig,
//! };
//!
//! /// What the payment provider posts (simplified).
//! #[derive(Deserialize)]
//! struct PaymentEvent {
//!     kind: String,
//!     order_id: String,
//!     /// What the order is worth (before this refund, for a refund).
//!     amount: String,
//!     amount_refunded: Option<String>,
//!     /// The provider's id of this refund: each refund of an order counts once.
//!     refund_id: Option<String>,
//!     currency: String,
//!     customer_email: Option<String>,
//!     /// The envelope the browser exported at checkout, stored with the order.
//!     tally_context: String,
//! }
//!
//! fn tracker() -> Result<ServerTracker, ConfigError> {
//!     let env = |k: &str| std::env::var(k).unwrap_or_default();
//!     ServerTracker::builder()
//!         .ga4(Ga4Config::new(env("GA4_MEASUREMENT_ID"), env("GA4_API_SECRET")))
//!         .google_ads(
//!             GoogleAdsConfig::new(
//!                 env("GOOGLE_ADS_CUSTOMER_ID"),
//!                 env("GOOGLE_OAUTH_CLIENT_ID"),
//!                 env("GOOGLE_OAUTH_CLIENT_SECRET"),
//!                 env("GOOGLE_ADS_REFRESH_TOKEN"),
//!             )
//!             .login_customer_id(env("GOOGLE_ADS_LOGIN_CUSTOMER_ID"))
//!             // The browser's gtag label keys the conversion action …
//!             .conversion_action("AbC-D_efG-h12_34-567", env("GOOGLE_ADS_PURCHASE_ACTION_ID"))
//!             // … and purchases (and refunds, as adjustments) feed it.
//!             .label("purchase", "AbC-D_efG-h12_34-567"),
//!         )
//!         .meta(MetaConfig::new(env("META_PIXEL_ID"), env("META_ACCESS_TOKEN")))
//!         .rokt(RoktConfig::new(env("ROKT_ACCOUNT_ID"), env("ROKT_PUBLIC_KEY"), env("ROKT_SECRET")))
//!         .webhook("warehouse", WebhookConfig::new("https://warehouse.example/tally", env("WAREHOUSE_SECRET")))
//!         .build()
//! }
//!
//! async fn payment_webhook(State(tracker): State<ServerTracker>, Json(ev): Json<PaymentEvent>) -> StatusCode {
//!     let Ok(envelope) = ContextEnvelope::parse(&ev.tally_context) else {
//!         return StatusCode::BAD_REQUEST;
//!     };
//!     let (Ok(amount), Ok(currency)) = (Amount::parse(&ev.amount), Currency::parse(&ev.currency)) else {
//!         return StatusCode::BAD_REQUEST;
//!     };
//!     // Explicit input wins over the envelope, field by field.
//!     let visitor = Visitor {
//!         user_data: ev.customer_email.map(|email| UserData { email: Some(email), ..Default::default() }),
//!         ..Default::default()
//!     };
//!     let bound = tracker.from_context(&envelope);
//!     let result = match (ev.kind.as_str(), ev.amount_refunded.as_deref().map(Amount::parse)) {
//!         ("payment.succeeded", _) => {
//!             bound.track_purchase(PurchaseInput::new(&ev.order_id, amount, currency).visitor(visitor)).await
//!         }
//!         ("payment.refunded", Some(Ok(refunded))) => {
//!             let mut refund = RefundInput { visitor, ..RefundInput::partial(&ev.order_id, refunded, amount, currency) };
//!             refund.refund_id = ev.refund_id;
//!             bound.track_refund(refund).await
//!         }
//!         _ => return StatusCode::NO_CONTENT,
//!     };
//!     match result {
//!         Ok(r) => {
//!             for (destination, outcome) in &r.destinations {
//!                 if let Outcome::Failed(e) = outcome {
//!                     tracing::warn!(%destination, error = %e, order = %ev.order_id, "conversion not delivered");
//!                 }
//!             }
//!         }
//!         // Bad input (e.g. an empty order id): nothing was sent.
//!         Err(e) => {
//!             tracing::error!(error = %e, "payment event rejected");
//!             return StatusCode::UNPROCESSABLE_ENTITY;
//!         }
//!     }
//!     // Serverless: give queued retries a moment before the process freezes.
//!     let report = tracker.flush(Duration::from_secs(3)).await;
//!     if !report.complete {
//!         tracing::info!(remaining = ?report.remaining, "left in the outbox for later");
//!     }
//!     StatusCode::OK
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/webhooks/payments", post(payment_webhook)).with_state(tracker()?);
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bots;
mod clock;
pub mod collector;
mod config;
pub mod config_file;
mod destinations;
mod diagnostics;
mod engine;
mod error;
mod input;
mod metrics;
mod outcome;
pub mod production_qa;
mod secret;
pub mod serve;
pub mod status;
pub mod store;
mod tracker;

pub use clock::now_ms;
pub use config::{
    AdsLabels, Ga4Config, GoogleAdsApi, GoogleAdsConfig, MetaConfig, PinterestConfig, Retractions, RoktConfig,
    ServerTrackerBuilder, ServokiConfig, TikTokConfig, WebhookConfig,
};
pub use destinations::google_ads::oauth;
pub use diagnostics::{DiagnosticCount, DiagnosticsReport, RequestReport};
pub use engine::lane::LaneSettings;
pub use engine::retry::RetryPolicy;
pub use error::{ConfigError, DeliveryError, RowError, TrackError};
pub use input::{
    CartInput, ConversionInput, EventInput, LeadInput, PageViewInput, PurchaseInput, RefundInput, SignUpInput, Visitor,
};
pub use metrics::Metrics;
pub use outcome::{ErrorReport, Outcome, OutcomeReport, SkipReason, TrackResult};
pub use secret::Secret;
pub use store::{Claim, IdempotencyStore, MemoryOutbox, MemoryStore, Outbox};
pub use tracker::{BoundTracker, FlushReport, LEASE, ServerTracker};
