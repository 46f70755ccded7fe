//! The one delivery engine: everything between a tracker call (or the
//! collector) and a destination's [`Destination`] — admission (consent, bots,
//! the outbox), lanes, rounds (claim → build → send → judge → settle), the
//! outbox worker, the one retry policy, the one HTTP helper — the same for
//! every destination.

mod admit;
mod destination;
pub(crate) mod http;
pub(crate) mod lane;
mod marks;
pub(crate) mod retry;
mod round;
mod route;
mod worker;

pub(crate) use destination::{BoxFuture, Deliver, Destination, Judgement, by_merge, fan_out, finish, open};
pub(crate) use route::Route;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tally_core::normalize::NormalizeOptions;
use tally_core::{ConsentState, Event};

use crate::bots::BotPolicy;
use crate::metrics::Metrics;
use crate::production_qa::OrderCounters;
use crate::store::{IdempotencyStore, Outbox};
use lane::{Lane, LaneSettings};
use retry::RetryPolicy;

/// What the engine holds — the destinations' routes, the stores, the lanes
/// and the counters — shared by every clone of a tracker.
pub(crate) struct Engine {
    pub(crate) http: reqwest::Client,
    pub(crate) retry: RetryPolicy,
    pub(crate) retention: Duration,
    pub(crate) journal_retention: Duration,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) default_consent: ConsentState,
    pub(crate) order_id: tally_core::OrderIdForm,
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) outbox: Arc<dyn Outbox>,
    pub(crate) destinations: Vec<Route>,
    pub(crate) lane_settings: Vec<LaneSettings>,
    /// What each destination does with known bots' events, in destination order.
    pub(crate) bot_policies: Vec<BotPolicy>,
    pub(crate) lanes: OnceLock<Vec<Lane<Pending>>>,
    pub(crate) normalize: NormalizeOptions,
    pub(crate) metrics: Metrics,
    /// Production QA: the order counters (`production_qa`).
    pub(crate) orders: OrderCounters,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) worker_started: AtomicBool,
    pub(crate) stopped: AtomicBool,
}

/// One event in flight inside the tracker.
pub(crate) struct Pending {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) event: Event,
    pub(crate) attempt: u32,
}
