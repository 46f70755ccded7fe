//! [`ServerTracker`] and its envelope-bound form, [`BoundTracker`].
//!
//! Delivery, per destination and event:
//!
//! 1. the consent policy decides whether the destination may receive it;
//! 2. the event is written to the outbox (durable with the SQLite or Redis store);
//! 3. one attempt is made at once: the sender claims the idempotency key
//!    `(destination, event name, event id)` first — a key already delivered is a
//!    duplicate and nothing is sent;
//! 4. confirmed → the key is kept for the retention window and the entry removed;
//!    transient failure → the entry waits for the background worker, which retries
//!    with exponential backoff and jitter; permanent failure or retries exhausted →
//!    the entry moves to the dead list with its reason.
//!
//! A worker that dies mid-send loses both leases; another worker (or the
//! restarted process) delivers the entry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally_core::destinations::DeliveryContext;
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    ConsentState, ContextEnvelope, DestinationKind, Event, EventId, EventName, ParamValue, TransactionId,
};

use crate::config::ServerTrackerBuilder;
use crate::destination::Destination;
use crate::error::{DeliveryError, TrackError};
use crate::input::{
    CartInput, ConversionInput, EventInput, LeadInput, PageViewInput, PurchaseInput, RefundInput, SignUpInput, Visitor,
};
use crate::metrics::Metrics;
use crate::outcome::{Outcome, SkipReason, TrackResult};
use crate::retry::RetryPolicy;
use crate::store::{Claim, IdempotencyStore, Outbox, OutboxEntry, OutboxStats, StoreError, idempotency_key};

/// How long a sender holds an idempotency key or an outbox entry before
/// another worker may take over (a crashed worker's work resumes after this).
pub const LEASE: Duration = Duration::from_secs(30);

/// Events handed to a destination between two settlements: one request's worth,
/// so a crash re-sends at most one request (which the destination deduplicates
/// by event id).
fn settle_chunk(kind: DestinationKind) -> usize {
    match kind {
        DestinationKind::Ga4 => tally_core::destinations::ga4::MAX_EVENTS,
        DestinationKind::GoogleAds => tally_core::destinations::google_ads::MAX_CONVERSIONS,
        DestinationKind::Meta => tally_core::destinations::meta::MAX_EVENTS,
        DestinationKind::TikTok => tally_core::destinations::tiktok::MAX_EVENTS,
        DestinationKind::Rokt => tally_core::destinations::rokt::MAX_EVENTS,
        _ => 1,
    }
}

/// The server tracker. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ServerTracker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    retry: RetryPolicy,
    retention: Duration,
    lease: Duration,
    poll: Duration,
    default_consent: ConsentState,
    order_id: tally_core::OrderIdForm,
    store: Arc<dyn IdempotencyStore>,
    outbox: Arc<dyn Outbox>,
    destinations: Vec<Destination>,
    normalize: NormalizeOptions,
    metrics: Metrics,
    wake: tokio::sync::Notify,
    worker_started: AtomicBool,
    stopped: AtomicBool,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

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
    /// What is still queued or in flight.
    pub remaining: OutboxStats,
}

/// One event in flight inside the tracker.
struct Pending {
    id: String,
    key: String,
    event: Event,
    attempt: u32,
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
        destinations: Vec<Destination>,
    ) -> ServerTracker {
        ServerTracker {
            inner: Arc::new(Inner {
                http,
                retry: b.retry,
                retention: b.retention,
                lease: b.lease,
                poll: b.poll_interval,
                default_consent: b.default_consent,
                order_id: b.order_id,
                store,
                outbox,
                destinations,
                normalize: b.normalize.clone(),
                metrics: Metrics::default(),
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

    pub(crate) fn bound(&self, base: Visitor) -> BoundTracker<'_> {
        BoundTracker { tracker: self, base }
    }

    /// The delivery counters and outbox gauges in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let outbox = &self.inner.outbox;
        self.inner.metrics.render(outbox.stats().ok(), outbox.stats_by_destination().ok().as_ref())
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
    /// left. Serverless handlers call it before returning.
    pub async fn flush(&self, deadline: Duration) -> FlushReport {
        self.ensure_worker();
        let until = Instant::now() + deadline;
        loop {
            let remaining = self.inner.outbox.stats().unwrap_or_default();
            if remaining.queued == 0 && remaining.in_flight == 0 {
                return FlushReport { complete: true, remaining };
            }
            if Instant::now() >= until {
                return FlushReport { complete: false, remaining };
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
        self.deliver_where(events, visitor, |_| true).await
    }

    /// [`ServerTracker::deliver`] to the destinations `only` accepts; the others
    /// report `Skipped(Unsupported)`.
    pub(crate) async fn deliver_where(
        &self,
        events: Vec<Event>,
        visitor: &Visitor,
        only: impl Fn(DestinationKind) -> bool,
    ) -> Vec<TrackResult> {
        self.ensure_worker();
        let ctx = self.delivery_context(visitor);
        let visitor_json = stored_visitor(&ctx);
        let mut results: Vec<TrackResult> =
            events.iter().map(|e| TrackResult { event_id: e.id.clone(), destinations: BTreeMap::new() }).collect();
        // Every destination at once: a slow or failing one does not hold up the others.
        let (events, ctx, visitor_json, only) = (&events, &ctx, &visitor_json, &only);
        let deliveries = self.inner.destinations.iter().map(|dest| async move {
            if only(dest.kind()) {
                self.deliver_to(dest, events, ctx, visitor_json).await
            } else {
                vec![Outcome::Skipped(SkipReason::Unsupported); events.len()]
            }
        });
        let outcomes = futures_util::future::join_all(deliveries).await;
        for (dest, outcomes) in self.inner.destinations.iter().zip(outcomes) {
            for (r, o) in results.iter_mut().zip(outcomes) {
                r.destinations.insert(dest.name().to_owned(), o);
            }
        }
        results
    }

    /// Writes `events` to the outbox for every destination consent allows, due
    /// at once, and wakes the worker, which delivers them; nothing is sent here.
    /// `Ok(true)` when some destination took them, `Ok(false)` when consent
    /// refused them everywhere, `Err` when the outbox refused the whole batch
    /// (full). The collector's outbox mode.
    pub(crate) fn admit(&self, events: &[Event], visitor: &Visitor) -> Result<bool, StoreError> {
        self.ensure_worker();
        let ctx = self.delivery_context(visitor);
        let visitor_json = stored_visitor(&ctx);
        let now = now_ms();
        let mut entries = Vec::new();
        let mut taken = Vec::new();
        for dest in &self.inner.destinations {
            if ctx.consent.policy(dest.kind()).send.is_err() {
                self.inner.metrics.dropped_n(dest.name(), "consent_denied", events.len());
                continue;
            }
            taken.push(dest.name());
            entries.extend(outbox_entries(dest, events, &visitor_json, now));
        }
        if entries.is_empty() {
            return Ok(!taken.is_empty());
        }
        if let Err(e) = self.inner.outbox.enqueue(&entries) {
            for name in taken {
                self.inner.metrics.dropped_n(name, "queue_full", events.len());
            }
            return Err(e);
        }
        self.inner.wake.notify_one();
        Ok(true)
    }

    async fn deliver_to(
        &self,
        dest: &Destination,
        events: &[Event],
        ctx: &DeliveryContext,
        visitor_json: &str,
    ) -> Vec<Outcome> {
        if let Err(denial) = ctx.consent.policy(dest.kind()).send {
            self.inner.metrics.dropped_n(dest.name(), "consent_denied", events.len());
            return vec![Outcome::Skipped(SkipReason::ConsentDenied(denial)); events.len()];
        }
        // Not due for the worker while this call makes the first attempt.
        let entries = outbox_entries(dest, events, visitor_json, now_ms() + self.inner.lease.as_millis() as i64);
        let ids = match self.inner.outbox.enqueue(&entries) {
            Ok(ids) => ids,
            Err(e) => {
                self.inner.metrics.dropped_n(dest.name(), "queue_full", events.len());
                return vec![Outcome::Failed(DeliveryError::Refused(e.to_string())); events.len()];
            }
        };
        let pending = ids
            .into_iter()
            .zip(entries)
            .zip(events)
            .map(|((id, entry), event)| Pending { id, key: entry.key, event: event.clone(), attempt: 1 })
            .collect();
        self.attempt(dest, pending, ctx).await
    }

    /// One attempt for a batch of one destination and one visitor.
    async fn attempt(&self, dest: &Destination, pending: Vec<Pending>, ctx: &DeliveryContext) -> Vec<Outcome> {
        let inner = &self.inner;
        let mut out: Vec<Option<Outcome>> = vec![None; pending.len()];
        let mut to_send = Vec::new();
        for (i, p) in pending.iter().enumerate() {
            match inner.store.claim(&p.key, inner.lease) {
                Claim::Acquired => to_send.push(i),
                Claim::Delivered => {
                    let _ = inner.outbox.ack(&p.id);
                    inner.metrics.duplicate(dest.name());
                    out[i] = Some(Outcome::Skipped(SkipReason::Duplicate));
                }
                Claim::InFlight => {
                    // Another worker is sending this key now; look again after its lease.
                    let _ = inner.outbox.retry(&p.id, now_ms() + inner.lease.as_millis() as i64, "in flight elsewhere");
                    inner.metrics.duplicate(dest.name());
                    out[i] = Some(Outcome::Skipped(SkipReason::Duplicate));
                }
                Claim::Unavailable => {
                    // Cannot tell whether it was delivered: send nothing, try again later.
                    let wait = inner.retry.delay(p.attempt, None);
                    out[i] = Some(self.reschedule(dest.name(), p, wait, DeliveryError::StoreUnavailable));
                }
            }
        }
        // Settle after every request-sized chunk, so a crash re-sends at most one
        // request's worth of events per destination (which deduplicates them by event id).
        let single = RetryPolicy { max_attempts: 1, ..inner.retry };
        for chunk in to_send.chunks(settle_chunk(dest.kind()).max(1)) {
            let batch: Vec<Event> = chunk.iter().map(|&i| pending[i].event.clone()).collect();
            let outcomes = dest.deliver(&inner.http, &single, &batch, ctx).await;
            for (&i, o) in chunk.iter().zip(outcomes) {
                out[i] = Some(self.settle(dest.name(), &pending[i], o));
            }
        }
        out.into_iter().map(|o| o.unwrap_or(Outcome::Skipped(SkipReason::Duplicate))).collect()
    }

    /// Records the result of an attempt in the store and the outbox.
    fn settle(&self, dest: &str, p: &Pending, outcome: Outcome) -> Outcome {
        let inner = &self.inner;
        // Each call here is a single attempt; the outbox counts attempts.
        let outcome = match outcome {
            Outcome::Failed(e) => Outcome::Failed(e.into_last()),
            other => other,
        };
        match outcome {
            Outcome::Sent { .. } => {
                inner.store.complete(&p.key, inner.retention);
                let _ = inner.outbox.ack(&p.id);
                inner.metrics.delivered(dest);
                Outcome::Sent { attempts: p.attempt }
            }
            Outcome::Failed(e) | Outcome::Queued { error: e } if e.is_transient() => {
                inner.store.release(&p.key);
                if p.attempt >= inner.retry.max_attempts {
                    let reason = format!("retries exhausted after {} attempts: {e}", p.attempt);
                    let _ = inner.outbox.dead(&p.id, &reason);
                    inner.metrics.dropped(dest, "retries_exhausted");
                    Outcome::Failed(DeliveryError::RetriesExhausted { attempts: p.attempt, last: Box::new(e) })
                } else {
                    self.reschedule(dest, p, inner.retry.delay(p.attempt, e.retry_after()), e)
                }
            }
            Outcome::Failed(e) | Outcome::Queued { error: e } => {
                inner.store.release(&p.key);
                // Refused only for being too recent: keep it until it can be accepted.
                if p.attempt < inner.retry.max_attempts
                    && let Some(wait) = e.too_recent_wait()
                {
                    return self.reschedule(dest, p, wait, e);
                }
                let _ = inner.outbox.dead(&p.id, &e.to_string());
                inner.metrics.dropped(dest, "rejected");
                Outcome::Failed(e)
            }
            Outcome::Skipped(r) => {
                inner.store.release(&p.key);
                let _ = inner.outbox.ack(&p.id);
                inner.metrics.dropped(dest, r.code());
                Outcome::Skipped(r)
            }
        }
    }

    /// Puts `p` back in the outbox, due after `wait`, and reports it queued.
    fn reschedule(&self, dest: &str, p: &Pending, wait: Duration, error: DeliveryError) -> Outcome {
        let at = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        let _ = self.inner.outbox.retry(&p.id, at, &error.to_string());
        self.inner.metrics.retried(dest);
        Outcome::Queued { error }
    }

    fn delivery_context(&self, v: &Visitor) -> DeliveryContext {
        let mut user_data = v.hashed_user_data.clone();
        if let Some(raw) = &v.user_data {
            user_data = Some(raw.hashed(&self.inner.normalize));
        }
        DeliveryContext {
            client_id: v.client_id.clone(),
            session_id: v.session_id.clone(),
            user_id: v.user_id.clone(),
            visitor_id: v.visitor_id.clone(),
            click_ids: v.click_ids.clone(),
            consent: v.consent.unwrap_or(self.inner.default_consent),
            user_data,
            page_url: v.page_url.clone(),
            ip_address: v.ip_address.clone(),
            user_agent: v.user_agent.clone(),
            now_ms: now_ms(),
            order_id: self.inner.order_id,
        }
    }

    /// Starts the background worker once, inside the current tokio runtime.
    fn ensure_worker(&self) {
        if self.inner.worker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(worker(Arc::downgrade(&self.inner)));
            }
            Err(_) => self.inner.worker_started.store(false, Ordering::SeqCst),
        }
    }
}

/// The outbox entries of `events` for `dest`, due at `due_at_ms`.
fn outbox_entries(dest: &Destination, events: &[Event], visitor_json: &str, due_at_ms: i64) -> Vec<OutboxEntry> {
    events
        .iter()
        .map(|e| OutboxEntry {
            destination: dest.name().to_owned(),
            key: idempotency_key(dest.name(), e.name.as_str(), e.id.as_str()),
            event_json: e.to_json(),
            visitor_json: visitor_json.to_owned(),
            attempts: 0,
            next_attempt_at_ms: due_at_ms,
            last_error: None,
        })
        .collect()
}

/// What the outbox keeps about a visitor: the envelope form (user data already
/// hashed, never raw) plus IP and user agent.
fn stored_visitor(ctx: &DeliveryContext) -> String {
    let env = ContextEnvelope {
        created_at_ms: ctx.now_ms,
        client_id: ctx.client_id.clone(),
        session_id: ctx.session_id.clone(),
        session_number: None,
        user_id: ctx.user_id.clone(),
        visitor_id: ctx.visitor_id.clone(),
        click_ids: ctx.click_ids.clone(),
        consent: ctx.consent,
        hashed_user_data: ctx.user_data.clone(),
        raw_user_data: None,
        page_url: ctx.page_url.clone(),
        referrer: None,
        event_ids: Vec::new(),
    };
    serde_json::json!({
        "envelope": env.to_json(),
        "ip": ctx.ip_address,
        "ua": ctx.user_agent,
    })
    .to_string()
}

fn restore_visitor(json: &str, order_id: tally_core::OrderIdForm) -> Option<DeliveryContext> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let env = ContextEnvelope::parse_json(v.get("envelope")?.as_str()?).ok()?;
    Some(DeliveryContext {
        client_id: env.client_id,
        session_id: env.session_id,
        user_id: env.user_id,
        visitor_id: env.visitor_id,
        click_ids: env.click_ids,
        consent: env.consent,
        user_data: env.hashed_user_data,
        page_url: env.page_url,
        ip_address: v.get("ip").and_then(|x| x.as_str()).map(str::to_owned),
        user_agent: v.get("ua").and_then(|x| x.as_str()).map(str::to_owned),
        now_ms: now_ms(),
        order_id,
    })
}

/// The background worker: leases due outbox entries and attempts them, until
/// the tracker is dropped or shut down.
async fn worker(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let tracker = ServerTracker { inner };
        let leased = tracker.inner.outbox.lease(200, tracker.inner.lease, now_ms()).unwrap_or_default();
        let busy = !leased.is_empty();
        // Group by (destination, visitor) so each group is one request's worth.
        let mut groups: BTreeMap<(String, String), Vec<Pending>> = BTreeMap::new();
        for l in leased {
            let fallback = || EventId::random_v7(0, [0; 10]);
            match Event::from_json(&l.entry.event_json, fallback) {
                Ok(event) => groups
                    .entry((l.entry.destination.clone(), l.entry.visitor_json.clone()))
                    .or_default()
                    .push(Pending { id: l.id, key: l.entry.key, event, attempt: l.entry.attempts + 1 }),
                Err(e) => {
                    let _ = tracker.inner.outbox.dead(&l.id, &format!("unreadable outbox entry: {e}"));
                    tracker.inner.metrics.dropped(&l.entry.destination, "invalid");
                }
            }
        }
        // Destinations are served at once, so one that times out does not hold up
        // the others' retries; within a destination the groups go one after the
        // other, so a crash re-sends at most one request's worth per destination.
        let mut by_destination: BTreeMap<String, Vec<(String, Vec<Pending>)>> = BTreeMap::new();
        for ((dest_name, visitor_json), pending) in groups {
            by_destination.entry(dest_name).or_default().push((visitor_json, pending));
        }
        let shared = &tracker;
        let deliveries = by_destination.into_iter().map(|(dest_name, groups)| async move {
            for (visitor_json, pending) in groups {
                let dest = shared.inner.destinations.iter().find(|d| d.name() == dest_name);
                let (Some(dest), Some(ctx)) = (dest, restore_visitor(&visitor_json, shared.inner.order_id)) else {
                    for p in pending {
                        let _ = shared.inner.outbox.dead(&p.id, "destination no longer configured");
                        shared.inner.metrics.dropped(&dest_name, "not_configured");
                    }
                    continue;
                };
                shared.attempt(dest, pending, &ctx).await;
            }
        });
        futures_util::future::join_all(deliveries).await;
        let poll = tracker.inner.poll;
        if busy {
            drop(tracker);
            tokio::task::yield_now().await;
            continue;
        }
        // Holding the tracker while waiting delays noticing its drop by at most `poll`.
        let _ = tokio::time::timeout(poll, tracker.inner.wake.notified()).await;
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
    /// restatement); destinations without a refund concept report `Unsupported`.
    pub async fn track_refund(&self, input: RefundInput) -> Result<TrackResult, TrackError> {
        let txn = TransactionId::parse(&input.transaction_id)?;
        let mut e = Event::transactional(EventName::Refund, txn, input.occurred_at_ms.unwrap_or_else(now_ms));
        e.value = input.value;
        e.original_value = input.original_value;
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
        let mut results =
            self.tracker.deliver_where(vec![e.clone()], &visitor, |k| k == DestinationKind::GoogleAds).await;
        Ok(results.pop().unwrap_or(TrackResult { event_id: e.id, destinations: BTreeMap::new() }))
    }

    pub(crate) async fn send_one(&self, event: Event, explicit: Visitor) -> Result<TrackResult, TrackError> {
        event_checked(&event)?;
        let visitor = explicit.over(&self.base);
        let mut results = self.tracker.deliver(vec![event.clone()], &visitor).await;
        Ok(results.pop().unwrap_or(TrackResult { event_id: event.id, destinations: BTreeMap::new() }))
    }
}
