//! [`ServerTracker`] and its envelope-bound form, [`BoundTracker`].
//!
//! Delivery, per destination and event:
//!
//! 1. the consent policy decides whether the destination may receive it;
//! 2. the event is written to the outbox (durable with the SQLite or Redis store);
//! 3. it goes to the destination's [delivery lane](crate::LaneSettings), which batches
//!    it with other visitors' events where the API allows and keeps a bounded
//!    window of requests in flight; the lane claims the idempotency key
//!    `(destination, event name, event id)` first — a key already delivered is
//!    a duplicate and nothing is sent;
//! 4. confirmed → the key is kept for the retention window and the entry removed;
//!    transient failure → the entry waits for the background worker, which hands
//!    it to the lane again after exponential backoff with jitter (or the
//!    destination's `Retry-After`); permanent failure or retries exhausted → the
//!    entry moves to the dead list with its reason.
//!
//! Inline calls wait for their events' first attempt; the collector's outbox
//! mode and every retry go through the background worker. Store calls run off
//! the async runtime (`spawn_blocking`), so a slow store delays deliveries, never
//! the other requests a process serves. A worker that dies mid-send loses its
//! leases; another worker (or the restarted process) delivers the entries, and
//! the destination deduplicates what was in flight by event id: at most
//! `window × max_batch` events per destination ([`LaneSettings`](crate::LaneSettings)).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tally_core::{ContextEnvelope, DestinationKind, Event, EventId, EventName, ParamValue, RefundId, TransactionId};

use crate::config::ServerTrackerBuilder;
use crate::engine::{Engine, Route};
use crate::error::TrackError;
use crate::input::{
    CartInput, ConversionInput, EventInput, LeadInput, PageViewInput, PurchaseInput, RefundInput, SignUpInput, Visitor,
};
use crate::metrics::Metrics;
use crate::outcome::TrackResult;
use crate::production_qa::{self as qa, OrderCounters, Origin};
use crate::store::{IdempotencyStore, JournalRow, Outbox, OutboxStats, StoreError};

/// How long a sender holds an idempotency key or an outbox entry before
/// another worker may take over (a crashed worker's work resumes after this).
pub const LEASE: Duration = Duration::from_secs(30);

/// The server tracker. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ServerTracker {
    inner: Arc<Engine>,
}

impl std::fmt::Debug for ServerTracker {
    /// The destinations and their settings, secrets redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTracker").field("destinations", &self.inner.destinations).finish_non_exhaustive()
    }
}

use crate::clock::now_ms;

fn random_event_id() -> EventId {
    let u = uuid::Uuid::now_v7();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    EventId::parse(u.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| EventId::random_v7(now_ms() as u64, [0; 10]))
}

/// What [`ServerTracker::flush`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// True when the outbox emptied before the deadline.
    pub complete: bool,
    /// False when the store could not be read at the deadline: `remaining`
    /// is then unknown (zeros), and the flush is not complete.
    pub store_readable: bool,
    /// What is still queued or in flight.
    pub remaining: OutboxStats,
}

impl ServerTracker {
    /// Starts a configuration.
    pub fn builder() -> ServerTrackerBuilder {
        ServerTrackerBuilder::default()
    }

    pub(crate) fn from_parts(
        b: ServerTrackerBuilder,
        http: reqwest::Client,
        store: Arc<dyn IdempotencyStore>,
        outbox: Arc<dyn Outbox>,
        destinations: Vec<Route>,
    ) -> ServerTracker {
        ServerTracker {
            inner: Arc::new(Engine {
                http,
                retry: b.retry,
                retention: b.retention,
                journal_retention: b.journal_retention,
                lease: b.lease,
                poll: b.poll_interval,
                default_consent: b.default_consent,
                order_id: b.order_id,
                store,
                outbox,
                lane_settings: destinations.iter().map(|d| b.lane_settings_for(d)).collect(),
                bot_policies: destinations.iter().map(|d| b.bot_policy_for(d)).collect(),
                lanes: OnceLock::new(),
                destinations,
                normalize: b.normalize.clone(),
                metrics: Metrics::default(),
                orders: OrderCounters::default(),
                wake: tokio::sync::Notify::new(),
                worker_started: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Names of the configured destinations, in result order.
    pub fn destination_names(&self) -> Vec<String> {
        self.inner.destinations.iter().map(|d| d.name().to_owned()).collect()
    }

    /// Kinds of the configured destinations, in result order.
    pub fn destination_kinds(&self) -> Vec<DestinationKind> {
        self.inner.destinations.iter().map(|d| d.kind()).collect()
    }

    /// Binds the browser state of `envelope`: every helper of the result uses
    /// its client id, session, click ids, consent and user data unless the call
    /// says otherwise (see [`Visitor`]).
    pub fn from_context(&self, envelope: &ContextEnvelope) -> BoundTracker<'_> {
        BoundTracker { tracker: self, base: Visitor::from_envelope(envelope) }
    }

    /// Reports a purchase. The event id is derived from the transaction id, so
    /// it equals the browser's for the same order.
    pub async fn track_purchase(&self, input: PurchaseInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_purchase(input).await
    }

    /// Reports any event.
    pub async fn track_event(&self, input: EventInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_event(input).await
    }

    /// Reports a page view.
    pub async fn track_page_view(&self, input: PageViewInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_page_view(input).await
    }

    /// Reports `view_item`.
    pub async fn track_view_item(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_view_item(input).await
    }

    /// Reports `add_to_cart`.
    pub async fn track_add_to_cart(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_add_to_cart(input).await
    }

    /// Reports `begin_checkout`.
    pub async fn track_begin_checkout(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_begin_checkout(input).await
    }

    /// Reports `add_payment_info`.
    pub async fn track_add_payment_info(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_add_payment_info(input).await
    }

    /// Reports a refund; see [`RefundInput`].
    pub async fn track_refund(&self, input: RefundInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_refund(input).await
    }

    /// Reports `sign_up`.
    pub async fn track_sign_up(&self, input: SignUpInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_sign_up(input).await
    }

    /// Reports `generate_lead`.
    pub async fn track_lead(&self, input: LeadInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_lead(input).await
    }

    /// Reports a conversion for a labelled Google Ads conversion action only.
    pub async fn track_conversion(&self, input: ConversionInput) -> Result<TrackResult, TrackError> {
        self.bound(Visitor::default()).track_conversion(input).await
    }

    /// The engine behind this tracker (the collector admits through it).
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.inner
    }

    pub(crate) fn bound(&self, base: Visitor) -> BoundTracker<'_> {
        BoundTracker { tracker: self, base }
    }

    /// The delivery counters and outbox gauges in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let outbox = &self.inner.outbox;
        let mut text = self.inner.metrics.render(outbox.stats().ok(), outbox.stats_by_destination().ok().as_ref());
        if let Some(lanes) = self.inner.lanes.get() {
            let gauges: Vec<(&str, usize, usize)> = self
                .inner
                .destinations
                .iter()
                .zip(lanes)
                .map(|(d, l)| {
                    let (window, in_flight) = l.gauge();
                    (d.name(), window, in_flight)
                })
                .collect();
            text.push_str(&crate::metrics::render_lanes(&gauges));
        }
        let diagnostics = self.destination_diagnostics();
        if !diagnostics.is_empty() {
            text.push_str(&crate::metrics::render_diagnostics(&diagnostics));
        }
        // Production QA: the order counters.
        let names: Vec<&str> = self.inner.destinations.iter().map(Route::name).collect();
        text.push_str(&self.inner.orders.render(&names));
        if let Ok(oldest) = outbox.oldest_by_destination() {
            text.push_str(&qa::render_outbox_age(&oldest, now_ms()));
        }
        text
    }

    /// What a person setting the destinations up should know, one line each
    /// (`tally check` prints them): e.g. which Google Ads API is used and what
    /// becomes of full refunds there.
    pub fn configuration_notes(&self) -> Vec<String> {
        self.inner.destinations.iter().flat_map(|d| d.notes()).collect()
    }

    /// What each destination that reports on accepted requests has said
    /// (Google Ads through the Data Manager API), by destination name.
    pub fn destination_diagnostics(&self) -> BTreeMap<String, crate::diagnostics::DiagnosticsReport> {
        self.inner.destinations.iter().filter_map(|d| Some((d.name().to_owned(), d.diagnostics()?))).collect()
    }

    /// The production QA counters: orders confirmed, delivered, withheld …
    /// per destination (see [`crate::production_qa`]).
    pub fn orders(&self) -> &OrderCounters {
        &self.inner.orders
    }

    /// The [status page](crate::status)'s data now: the journal of the last
    /// 48 hours reconciled over the last hour and the last 24 hours, and the
    /// outbox's backlog per destination.
    pub async fn status(&self) -> crate::status::StatusReport {
        use crate::status::{Backlog, StatusReport};
        let now = now_ms();
        let backlog = self
            .inner
            .store_call("status", |_, o| {
                let stats = o.stats_by_destination().unwrap_or_default();
                let oldest = o.oldest_by_destination().unwrap_or_default();
                let dead = o.dead_entries(crate::status::DEAD_LETTERS_SHOWN).unwrap_or_default();
                (stats, oldest, dead)
            })
            .await
            .unwrap_or_default();
        let (stats, oldest, dead) = backlog;
        let mut backlog: BTreeMap<String, Backlog> = BTreeMap::new();
        for d in &self.inner.destinations {
            backlog.insert(d.name().to_owned(), Backlog::default());
        }
        for (d, s) in stats {
            backlog.entry(d).or_default().stats = s;
        }
        for (d, at) in oldest {
            backlog.entry(d).or_default().oldest_age_s = Some(now.saturating_sub(at).max(0) as f64 / 1000.0);
        }
        let names: Vec<&str> = self.inner.destinations.iter().map(Route::name).collect();
        let mut report = match self.journal_since(now - 48 * 3_600_000).await {
            Ok(rows) => StatusReport::build(&rows, &names, now, &backlog),
            Err(e) => StatusReport::unavailable(e.to_string(), now, &backlog),
        };
        report.dead_letters = dead.iter().map(crate::status::DeadLetter::from).collect();
        let owned = |m: &BTreeMap<&'static str, u64>| -> BTreeMap<String, u64> {
            m.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        report.bots = self
            .inner
            .metrics
            .by_destination()
            .into_iter()
            .filter(|(_, c)| !c.bot_filtered.is_empty() || !c.bot_flagged.is_empty())
            .map(|(d, c)| {
                (d, crate::status::BotCounts { filtered: owned(&c.bot_filtered), flagged: owned(&c.bot_flagged) })
            })
            .collect();
        report
    }

    /// The order journal since `since_ms` (Unix ms), oldest first: what the
    /// status page and `tally reconcile --since` read.
    pub async fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalRow>, StoreError> {
        self.inner
            .store_call("journal", move |_, o| o.journal_since(since_ms))
            .await
            .unwrap_or_else(|| Err(StoreError::Backend("the store call did not finish".into())))
    }

    /// The delivery counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The outbox (for the inspector: stats and dead entries).
    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.inner.outbox
    }

    /// Waits until the outbox is empty or `deadline` passes, and says what is
    /// left. Serverless handlers call it before returning. A store that cannot
    /// be read is never reported complete: the report says so.
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        self.inner.ensure_worker();
        let until = Instant::now() + deadline;
        loop {
            let stats = self.inner.store_call("stats", |_, o| o.stats()).await;
            let (remaining, readable) = match stats {
                Some(Ok(s)) => (s, true),
                _ => (OutboxStats::default(), false),
            };
            if readable && remaining.queued == 0 && remaining.in_flight == 0 {
                return FlushReport { complete: true, store_readable: true, remaining };
            }
            if Instant::now() >= until {
                return FlushReport { complete: false, store_readable: readable, remaining };
            }
            self.inner.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the background worker. Queued entries stay in a durable outbox for
    /// the next process.
    pub fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
    }

    /// Delivers already-built events for one visitor to every destination,
    /// with consent, the outbox, idempotency and retries. One result per event,
    /// in order. This is what the collector and the helpers call.
    pub async fn deliver(&self, events: Vec<Event>, visitor: &Visitor) -> Vec<TrackResult> {
        self.deliver_from(Origin::Server, events, visitor).await
    }

    /// [`ServerTracker::deliver`] of events `origin` reported (the collector
    /// tells browsers from backends): their purchases are counted as
    /// confirmed orders or as browser purchases.
    pub(crate) async fn deliver_from(&self, origin: Origin, events: Vec<Event>, visitor: &Visitor) -> Vec<TrackResult> {
        self.inner.record_orders(qa::reported(origin, &events)).await;
        self.inner.deliver_where(origin, events, visitor, |_| true).await
    }
}

fn event_checked(e: &Event) -> Result<(), TrackError> {
    e.validate().map_err(TrackError::from)
}

/// A tracker bound to an envelope: see [`ServerTracker::from_context`].
pub struct BoundTracker<'t> {
    tracker: &'t ServerTracker,
    base: Visitor,
}

impl BoundTracker<'_> {
    /// Reports a purchase; see [`ServerTracker::track_purchase`].
    pub async fn track_purchase(&self, input: PurchaseInput) -> Result<TrackResult, TrackError> {
        let txn = TransactionId::parse(&input.transaction_id)?;
        let mut e = Event::transactional(EventName::Purchase, txn, input.occurred_at_ms.unwrap_or_else(now_ms));
        e.value = Some(input.value);
        e.currency = Some(input.currency);
        e.items = input.items;
        e.coupon = input.coupon;
        e.shipping = input.shipping;
        e.tax = input.tax;
        e.affiliation = input.affiliation;
        self.send_one(e, input.visitor).await
    }

    /// Reports any event; a transactional one gets the deterministic id.
    pub async fn track_event(&self, input: EventInput) -> Result<TrackResult, TrackError> {
        let name = EventName::parse(&input.name)?;
        let at = input.occurred_at_ms.unwrap_or_else(now_ms);
        let mut e = match input.transaction_id.as_deref() {
            Some(t) => Event::transactional(name, TransactionId::parse(t)?, at),
            None => Event::new(name, random_event_id(), at),
        };
        e.value = input.value;
        e.currency = input.currency;
        e.items = input.items;
        for (k, v) in input.params {
            e.params.insert(k, v);
        }
        self.send_one(e, input.visitor).await
    }

    /// Reports a page view.
    pub async fn track_page_view(&self, input: PageViewInput) -> Result<TrackResult, TrackError> {
        let mut e = Event::new(EventName::PageView, random_event_id(), input.occurred_at_ms.unwrap_or_else(now_ms));
        for (k, v) in [
            ("page_location", input.page_location.or_else(|| self.base.page_url.clone())),
            ("page_title", input.page_title),
            ("page_referrer", input.page_referrer),
        ] {
            if let Some(v) = v {
                e.set_text(k, v);
            }
        }
        self.send_one(e, input.visitor).await
    }

    /// Reports `view_item`.
    pub async fn track_view_item(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.cart_event(EventName::ViewItem, input).await
    }

    /// Reports `add_to_cart`.
    pub async fn track_add_to_cart(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.cart_event(EventName::AddToCart, input).await
    }

    /// Reports `begin_checkout`.
    pub async fn track_begin_checkout(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.cart_event(EventName::BeginCheckout, input).await
    }

    /// Reports `add_payment_info`.
    pub async fn track_add_payment_info(&self, input: CartInput) -> Result<TrackResult, TrackError> {
        self.cart_event(EventName::AddPaymentInfo, input).await
    }

    async fn cart_event(&self, name: EventName, input: CartInput) -> Result<TrackResult, TrackError> {
        let mut e = Event::new(name, random_event_id(), input.occurred_at_ms.unwrap_or_else(now_ms));
        e.value = input.value;
        e.currency = input.currency;
        e.items = input.items;
        e.coupon = input.coupon;
        if let Some(p) = input.payment_type {
            e.set_text("payment_type", p);
        }
        if let Some(t) = input.shipping_tier {
            e.set_text("shipping_tier", t);
        }
        self.send_one(e, input.visitor).await
    }

    /// Reports a refund: GA4 `refund`, a Google Ads adjustment (retraction or
    /// restatement), the webhook's record; destinations without a refund
    /// concept report `Unsupported`. Each refund of an order is its own event
    /// (see [`RefundInput`]): a second partial refund is sent, not taken for
    /// a duplicate of the first.
    pub async fn track_refund(&self, input: RefundInput) -> Result<TrackResult, TrackError> {
        let txn = TransactionId::parse(&input.transaction_id)?;
        let mut e = Event::transactional(EventName::Refund, txn, input.occurred_at_ms.unwrap_or_else(now_ms));
        e.value = input.value;
        e.original_value = input.original_value;
        e.refund_id = input.refund_id.as_deref().map(RefundId::parse).transpose()?;
        e.key_refund();
        e.currency = Some(input.currency);
        e.items = input.items;
        self.send_one(e, input.visitor).await
    }

    /// Reports `sign_up`.
    pub async fn track_sign_up(&self, input: SignUpInput) -> Result<TrackResult, TrackError> {
        let mut e = Event::new(EventName::SignUp, random_event_id(), input.occurred_at_ms.unwrap_or_else(now_ms));
        if let Some(m) = input.method {
            e.set_text("method", m);
        }
        self.send_one(e, input.visitor).await
    }

    /// Reports `generate_lead`.
    pub async fn track_lead(&self, input: LeadInput) -> Result<TrackResult, TrackError> {
        let at = input.occurred_at_ms.unwrap_or_else(now_ms);
        let mut e = match input.lead_id.as_deref() {
            Some(id) => Event::transactional(EventName::GenerateLead, TransactionId::parse(id)?, at),
            None => Event::new(EventName::GenerateLead, random_event_id(), at),
        };
        e.value = input.value;
        e.currency = input.currency;
        if let Some(s) = input.lead_source {
            e.params.insert("lead_source".into(), ParamValue::Text(s));
        }
        self.send_one(e, input.visitor).await
    }

    /// Reports a conversion for the Google Ads action labelled `input.label`;
    /// every other destination reports `Unsupported`.
    pub async fn track_conversion(&self, input: ConversionInput) -> Result<TrackResult, TrackError> {
        let txn = TransactionId::parse(&input.transaction_id)?;
        let name = EventName::parse("conversion")?;
        let mut e = Event::transactional(name, txn, input.occurred_at_ms.unwrap_or_else(now_ms));
        e.value = input.value;
        e.currency = input.currency;
        e.conversion_label = Some(input.label);
        event_checked(&e)?;
        let visitor = input.visitor.over(&self.base);
        let mut results = self
            .tracker
            .inner
            .deliver_where(Origin::Server, vec![e.clone()], &visitor, |k| k == DestinationKind::GoogleAds)
            .await;
        Ok(results.pop().unwrap_or(TrackResult { event_id: e.id, destinations: BTreeMap::new() }))
    }

    pub(crate) async fn send_one(&self, event: Event, explicit: Visitor) -> Result<TrackResult, TrackError> {
        event_checked(&event)?;
        let visitor = explicit.over(&self.base);
        let mut results = self.tracker.deliver(vec![event.clone()], &visitor).await;
        Ok(results.pop().unwrap_or(TrackResult { event_id: event.id, destinations: BTreeMap::new() }))
    }
}
