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
//! `window × max_batch` events per destination ([`LaneSettings`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tally_core::destinations::DeliveryContext;
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    ConsentState, ContextEnvelope, DestinationKind, Event, EventId, EventName, ParamValue, RefundId, TransactionId,
};

use crate::bots::{self, BotDecision, BotMatch, BotPolicy, EventSource};
use crate::config::ServerTrackerBuilder;
use crate::engine::Route;
use crate::engine::lane::{Job, Lane, LaneSettings, RoundRunner, Signal};
use crate::engine::retry::RetryPolicy;
use crate::error::{DeliveryError, TrackError};
use crate::input::{
    CartInput, ConversionInput, EventInput, LeadInput, PageViewInput, PurchaseInput, RefundInput, SignUpInput, Visitor,
};
use crate::metrics::Metrics;
use crate::outcome::{Outcome, SkipReason, TrackResult};
use crate::production_qa::{self as qa, Noted, OrderCounters, Origin};
use crate::store::idempotency_key;
use crate::store::{Claim, IdempotencyStore, JournalEntry, JournalRow, Outbox, OutboxEntry, OutboxStats, StoreError};

/// How long a sender holds an idempotency key or an outbox entry before
/// another worker may take over (a crashed worker's work resumes after this).
pub const LEASE: Duration = Duration::from_secs(30);

/// The most outbox entries the worker leases at once.
const MAX_LEASE: usize = 5_000;

/// The server tracker. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ServerTracker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServerTracker {
    /// The destinations and their settings, secrets redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTracker").field("destinations", &self.inner.destinations).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    retry: RetryPolicy,
    retention: Duration,
    journal_retention: Duration,
    lease: Duration,
    poll: Duration,
    default_consent: ConsentState,
    order_id: tally_core::OrderIdForm,
    store: Arc<dyn IdempotencyStore>,
    outbox: Arc<dyn Outbox>,
    destinations: Vec<Route>,
    lane_settings: Vec<LaneSettings>,
    /// What each destination does with known bots' events, in destination order.
    bot_policies: Vec<BotPolicy>,
    lanes: OnceLock<Vec<Lane<Pending>>>,
    normalize: NormalizeOptions,
    metrics: Metrics,
    /// Production QA: the order counters (`production_qa`).
    orders: OrderCounters,
    wake: tokio::sync::Notify,
    worker_started: AtomicBool,
    stopped: AtomicBool,
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

/// One event in flight inside the tracker.
pub(crate) struct Pending {
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
        destinations: Vec<Route>,
    ) -> ServerTracker {
        ServerTracker {
            inner: Arc::new(Inner {
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

    /// Counts `notes`, each once: the marks of those that have one are
    /// claimed in the idempotency store first, and a mark already taken means
    /// the order was counted before. A store that cannot answer does not
    /// lose the count (it may then count twice).
    pub(crate) async fn record_orders(&self, notes: Vec<Noted>) {
        if notes.is_empty() {
            return;
        }
        let (keyed, plain): (Vec<Noted>, Vec<Noted>) = notes.into_iter().partition(|n| n.once.is_some());
        let mut counted = Vec::with_capacity(plain.len() + keyed.len());
        for n in plain {
            if let Some(note) = n.note {
                self.inner.orders.count(note);
            }
            counted.push(n.entry);
        }
        if !keyed.is_empty() {
            self.count_once(keyed, &mut counted).await;
        }
        self.journal(counted).await;
    }

    /// Counts the `keyed` notes whose once-only mark is still free, and adds
    /// their journal rows to `counted`. An order newly reported by one side
    /// (backend or browser) whose mark the other side already holds is
    /// counted as matched: both reported it under the same id.
    async fn count_once(&self, keyed: Vec<Noted>, counted: &mut Vec<JournalEntry>) {
        let keys: Vec<String> = keyed.iter().filter_map(|n| n.once.clone()).collect();
        let partners: Vec<Option<String>> = keyed.iter().map(qa::partner_mark).collect();
        let (lease, retention) = (self.inner.lease, self.inner.retention);
        let answered = self
            .store_call("claim", move |s, _| {
                let claims = s.claim_many(&keys, lease);
                let first: Vec<String> = keys
                    .iter()
                    .zip(&claims)
                    .filter(|(_, c)| matches!(c, Claim::Acquired))
                    .map(|(k, _)| k.clone())
                    .collect();
                s.complete_many(&first, retention);
                // The other side's mark, for the orders counted now: held (delivered)
                // means matched; taken here means absent, and is given back at once.
                let asked: Vec<(usize, String)> = partners
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(claims.get(*i), Some(Claim::Acquired)))
                    .filter_map(|(i, p)| Some((i, p?)))
                    .collect();
                let partner_keys: Vec<String> = asked.iter().map(|(_, k)| k.clone()).collect();
                let answers = s.claim_many(&partner_keys, lease);
                let mut matched = vec![false; claims.len()];
                for ((i, key), answer) in asked.iter().zip(&answers) {
                    match answer {
                        Claim::Delivered => matched[*i] = true,
                        Claim::Acquired => s.release(key),
                        _ => {}
                    }
                }
                (claims, matched)
            })
            .await
            .unwrap_or_default();
        let (claims, matched) = answered;
        let answers = claims.into_iter().chain(std::iter::repeat(Claim::Unavailable));
        for ((n, claim), matched) in
            keyed.into_iter().zip(answers).zip(matched.into_iter().chain(std::iter::repeat(false)))
        {
            if matches!(claim, Claim::Acquired | Claim::Unavailable) {
                if let Some(note) = n.note {
                    self.inner.orders.count(note);
                }
                if matched {
                    self.inner.orders.count(qa::Note::Matched);
                }
                counted.push(n.entry);
            }
        }
    }

    /// Writes the journal rows of what was just counted. A store that keeps
    /// no journal is not an error here (the status page says so); any other
    /// failure is logged and counted.
    async fn journal(&self, entries: Vec<JournalEntry>) {
        if entries.is_empty() {
            return;
        }
        let at_ms = now_ms();
        let keep_ms = i64::try_from(self.inner.journal_retention.as_millis()).unwrap_or(i64::MAX);
        let keep_since_ms = at_ms.saturating_sub(keep_ms);
        let rows: Vec<JournalRow> = entries.into_iter().map(|entry| JournalRow { at_ms, entry }).collect();
        let written = self.store_call("journal", move |_, o| o.journal_append(&rows, keep_since_ms)).await;
        match written {
            Some(Ok(())) | Some(Err(StoreError::Unsupported(_))) | None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, "the order journal could not be written; the status page will miss these orders");
                self.inner.metrics.store_error("journal");
            }
        }
    }

    /// The [status page](crate::status)'s data now: the journal of the last
    /// 48 hours reconciled over the last hour and the last 24 hours, and the
    /// outbox's backlog per destination.
    pub async fn status(&self) -> crate::status::StatusReport {
        use crate::status::{Backlog, StatusReport};
        let now = now_ms();
        let backlog = self
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
        self.store_call("journal", move |_, o| o.journal_since(since_ms))
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
        self.ensure_worker();
        let until = Instant::now() + deadline;
        loop {
            let stats = self.store_call("stats", |_, o| o.stats()).await;
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
        self.record_orders(qa::reported(origin, &events)).await;
        self.deliver_where(origin, events, visitor, |_| true).await
    }

    /// [`ServerTracker::deliver`] to the destinations `only` accepts; the others
    /// report `Skipped(Unsupported)`.
    pub(crate) async fn deliver_where(
        &self,
        origin: Origin,
        events: Vec<Event>,
        visitor: &Visitor,
        only: impl Fn(DestinationKind) -> bool,
    ) -> Vec<TrackResult> {
        self.ensure_worker();
        let ctx = Arc::new(self.delivery_context(visitor));
        // The user agent is classified once, for every event and destination.
        let bot = ctx.user_agent.as_deref().and_then(bots::classify);
        let from_server = origin == Origin::Server;
        let visitor_json = stored_visitor(&ctx);
        let mut results: Vec<TrackResult> =
            events.iter().map(|e| TrackResult { event_id: e.id.clone(), destinations: BTreeMap::new() }).collect();
        // Every destination at once: a slow or failing one does not hold up the others.
        let (events, ctx, visitor_json, only) = (&events, &ctx, &visitor_json, &only);
        let deliveries = self.inner.destinations.iter().enumerate().map(|(i, dest)| async move {
            if only(dest.kind()) {
                self.deliver_to(i, events, ctx, visitor_json, (bot, from_server)).await
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
    /// (full, or the store unavailable). The collector's outbox mode.
    pub(crate) async fn admit(&self, events: &[Event], visitor: &Visitor) -> Result<bool, StoreError> {
        self.ensure_worker();
        let ctx = self.delivery_context(visitor);
        let visitor_json = stored_visitor(&ctx);
        let now = now_ms();
        let mut entries = Vec::new();
        let mut taken = Vec::new();
        let mut notes = qa::reported(Origin::Browser, events);
        let bot = ctx.user_agent.as_deref().and_then(bots::classify);
        for (index, dest) in self.inner.destinations.iter().enumerate() {
            if ctx.consent.policy(dest.kind()).send.is_err() {
                self.inner.metrics.dropped_n(dest.name(), "consent_denied", events.len());
                notes.extend(qa::withheld(dest.name(), events, "consent_denied"));
                continue;
            }
            let (verdicts, withheld) = self.screen_bots(index, bot, false, events);
            notes.extend(withheld);
            let kept: Vec<Event> =
                events.iter().zip(&verdicts).filter(|(_, v)| v.is_none()).map(|(e, _)| e.clone()).collect();
            if kept.is_empty() {
                continue;
            }
            taken.push(dest.name());
            entries.extend(outbox_entries(dest, &kept, &visitor_json, now));
        }
        self.record_orders(notes).await;
        if entries.is_empty() {
            return Ok(!taken.is_empty());
        }
        let stored = self.store_call("enqueue", move |_, o| o.enqueue(&entries)).await;
        match stored {
            Some(Ok(_)) => {
                self.inner.wake.notify_one();
                Ok(true)
            }
            failed => {
                for name in taken {
                    self.inner.metrics.dropped_n(name, "queue_full", events.len());
                }
                Err(match failed {
                    Some(Err(e)) => e,
                    _ => StoreError::Backend("the store call did not finish".into()),
                })
            }
        }
    }

    /// The bot rule ([`bots::decide_for`]) for `events` at destination
    /// `index`, the visitor's user agent being `bot`: per event, `Some(skip)`
    /// when it is withheld, `None` when it goes on (flagged ones counted); and
    /// the production QA notes of the withheld orders.
    fn screen_bots(
        &self,
        index: usize,
        bot: Option<BotMatch>,
        from_server: bool,
        events: &[Event],
    ) -> (Vec<Option<Outcome>>, Vec<Noted>) {
        let dest = &self.inner.destinations[index];
        if bot.is_none() {
            return (vec![None; events.len()], Vec::new());
        }
        let policy = self.inner.bot_policies.get(index).copied().unwrap_or_else(|| BotPolicy::default_for(dest.kind()));
        let mut withheld = Vec::new();
        let verdicts = events
            .iter()
            .map(|e| match bots::decide_for(bot, EventSource::of(from_server, e), policy) {
                BotDecision::Send => None,
                BotDecision::Flag(m) => {
                    self.inner.metrics.bot_flagged(dest.name(), m.kind.code(), 1);
                    tracing::info!(
                        destination = dest.name(),
                        event = e.name.as_str(),
                        bot = m.kind.code(),
                        pattern = m.pattern,
                        "sending a known bot's event (flagged)"
                    );
                    None
                }
                BotDecision::Withhold(m) => {
                    self.inner.metrics.bot_filtered(dest.name(), m.kind.code(), 1);
                    withheld.push(e.clone());
                    Some(Outcome::Skipped(SkipReason::Bot(m)))
                }
            })
            .collect();
        (verdicts, qa::withheld(dest.name(), &withheld, "bot"))
    }

    /// The first attempt of an inline call at destination `index`: consent and
    /// the bot rule (`bot`: the visitor's user agent classified, and whether a
    /// backend reported the events) first, then [`ServerTracker::send_inline`].
    async fn deliver_to(
        &self,
        index: usize,
        events: &[Event],
        ctx: &Arc<DeliveryContext>,
        visitor_json: &str,
        bot: (Option<BotMatch>, bool),
    ) -> Vec<Outcome> {
        let dest = &self.inner.destinations[index];
        if let Err(denial) = ctx.consent.policy(dest.kind()).send {
            self.inner.metrics.dropped_n(dest.name(), "consent_denied", events.len());
            self.record_orders(qa::withheld(dest.name(), events, "consent_denied")).await;
            return vec![Outcome::Skipped(SkipReason::ConsentDenied(denial)); events.len()];
        }
        let (verdicts, withheld) = self.screen_bots(index, bot.0, bot.1, events);
        if verdicts.iter().all(Option::is_none) {
            return self.send_inline(index, events, ctx, visitor_json).await;
        }
        self.record_orders(withheld).await;
        let kept: Vec<Event> =
            events.iter().zip(&verdicts).filter(|(_, v)| v.is_none()).map(|(e, _)| e.clone()).collect();
        let mut sent =
            if kept.is_empty() { Vec::new() } else { self.send_inline(index, &kept, ctx, visitor_json).await }
                .into_iter();
        verdicts
            .into_iter()
            .map(|v| {
                v.or_else(|| sent.next()).unwrap_or_else(|| Outcome::Queued {
                    error: DeliveryError::Transport("the delivery lane stopped".into()),
                })
            })
            .collect()
    }

    /// Into the outbox (not due for the worker while this call waits), then
    /// through the destination's lane; one outcome per event, in order.
    async fn send_inline(
        &self,
        index: usize,
        events: &[Event],
        ctx: &Arc<DeliveryContext>,
        visitor_json: &str,
    ) -> Vec<Outcome> {
        let dest = &self.inner.destinations[index];
        let entries = outbox_entries(dest, events, visitor_json, now_ms() + self.inner.lease.as_millis() as i64);
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        let ids = match self.store_call("enqueue", move |_, o| o.enqueue(&entries)).await {
            Some(Ok(ids)) => ids,
            failed => {
                self.inner.metrics.dropped_n(dest.name(), "queue_full", events.len());
                let why = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => "the store call did not finish".to_owned(),
                };
                return vec![Outcome::Failed(DeliveryError::Refused(why)); events.len()];
            }
        };
        let pending = ids
            .into_iter()
            .zip(keys)
            .zip(events)
            .map(|((id, key), event)| Pending { id, key, event: event.clone(), attempt: 1 })
            .collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job { pending, ctx: ctx.clone(), reply: Some(reply), leased_until: None };
        match self.inner.lanes.get().and_then(|l| l.get(index)) {
            Some(lane) => {
                if let Err(job) = lane.submit(job).await {
                    self.run_round(index, vec![job]).await;
                }
            }
            None => {
                self.run_round(index, vec![job]).await;
            }
        }
        answer.await.unwrap_or_else(|_| {
            vec![Outcome::Queued { error: DeliveryError::Transport("the delivery lane stopped".into()) }; events.len()]
        })
    }

    /// Runs `f` with the stores on a blocking thread, so a slow store never
    /// stalls the async runtime (in-memory stores, which cannot be slow, are
    /// called directly). `None` if the call could not finish (the
    /// runtime is shutting down); counted as a store error.
    async fn store_call<T, F>(&self, operation: &'static str, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn IdempotencyStore, &dyn Outbox) -> T + Send + 'static,
    {
        let (store, outbox) = (self.inner.store.clone(), self.inner.outbox.clone());
        if !store.may_block() && !outbox.may_block() {
            return Some(f(&*store, &*outbox));
        }
        let done = tokio::task::spawn_blocking(move || f(&*store, &*outbox)).await.ok();
        if done.is_none() {
            self.inner.metrics.store_error(operation);
        }
        done
    }

    /// One round of a lane: claims, sends, settles and answers every job.
    async fn run_round(&self, index: usize, mut jobs: Vec<Job<Pending>>) -> Signal {
        let inner = &self.inner;
        let dest = &inner.destinations[index];
        let keys: Vec<String> = jobs.iter().flat_map(|j| j.pending.iter().map(|p| p.key.clone())).collect();
        let n = keys.len();
        let lease = inner.lease;
        let claims = self
            .store_call("claim", move |s, _| s.claim_many(&keys, lease))
            .await
            .unwrap_or_else(|| vec![Claim::Unavailable; n]);
        let mut ops = StoreOps::default();
        let mut notes: Vec<Noted> = Vec::new();
        let mut outcomes: Vec<Vec<Option<Outcome>>> = jobs.iter().map(|j| vec![None; j.pending.len()]).collect();
        let mut to_send: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
        let mut claims = claims.into_iter();
        for (j, job) in jobs.iter().enumerate() {
            for (k, p) in job.pending.iter().enumerate() {
                let outcome = match claims.next().unwrap_or(Claim::Unavailable) {
                    Claim::Acquired => {
                        to_send[j].push(k);
                        continue;
                    }
                    Claim::Delivered => {
                        ops.ack.push(p.id.clone());
                        inner.metrics.duplicate(dest.name());
                        notes.extend(qa::deduplicated(dest.name(), &p.event));
                        Outcome::Skipped(SkipReason::Duplicate)
                    }
                    Claim::InFlight => {
                        // Another worker is sending this key now; look again after its lease.
                        ops.retry.push((
                            p.id.clone(),
                            now_ms() + lease.as_millis() as i64,
                            "in flight elsewhere".into(),
                        ));
                        inner.metrics.duplicate(dest.name());
                        Outcome::Skipped(SkipReason::Duplicate)
                    }
                    Claim::Unavailable => {
                        // Cannot tell whether it was delivered: send nothing, try again later.
                        let wait = inner.retry.delay(p.attempt, None);
                        self.reschedule(dest.name(), p, wait, DeliveryError::StoreUnavailable, &mut ops)
                    }
                };
                outcomes[j][k] = Some(outcome);
            }
        }
        // One request per round where the destination merges visitors; each
        // attempt here is a single one — retries go through the outbox.
        let groups: Vec<(usize, Vec<Event>)> = to_send
            .iter()
            .enumerate()
            .filter(|(_, ks)| !ks.is_empty())
            .map(|(j, ks)| (j, ks.iter().map(|&k| jobs[j].pending[k].event.clone()).collect()))
            .collect();
        let mut signal = Signal::Idle;
        if !groups.is_empty() {
            let visitors: Vec<(&[Event], &DeliveryContext)> =
                groups.iter().map(|(j, events)| (events.as_slice(), &*jobs[*j].ctx)).collect();
            let sent = dest.deliver_round(&inner.http, inner.retry.timeout, &visitors).await;
            let mut results = Vec::new();
            for ((j, _), group_outcomes) in groups.iter().zip(sent) {
                for (&k, o) in to_send[*j].iter().zip(group_outcomes) {
                    results.push(o.clone());
                    let p = &jobs[*j].pending[k];
                    let settled = self.settle(dest.name(), p, o, &mut ops);
                    notes.extend(order_note(dest, p, &settled, &jobs[*j].ctx));
                    outcomes[*j][k] = Some(settled);
                }
            }
            signal = signal_of(&results);
        }
        self.apply(ops).await;
        self.record_orders(notes).await;
        for (job, outs) in jobs.iter_mut().zip(outcomes) {
            if let Some(reply) = job.reply.take() {
                let outs = outs.into_iter().map(|o| o.unwrap_or(Outcome::Skipped(SkipReason::Duplicate))).collect();
                // The caller may have gone (a client that hung up): its events are settled anyway.
                if reply.send(outs).is_err() {
                    tracing::debug!(destination = dest.name(), "an inline caller left before its answer");
                }
            }
        }
        signal
    }

    /// The lane is paused by the destination until `until`: the jobs' events
    /// wait in the outbox until then, and inline callers hear that at once.
    async fn defer(&self, index: usize, jobs: Vec<Job<Pending>>, until: Instant) {
        let dest = &self.inner.destinations[index];
        let wait = until.saturating_duration_since(Instant::now());
        let error = DeliveryError::RateLimited {
            retry_after_secs: Some(wait.as_secs().max(1)),
            message: "the destination asked to wait (Retry-After); the lane is paused".into(),
        };
        let mut ops = StoreOps::default();
        let mut replies = Vec::new();
        for mut job in jobs {
            let outs: Vec<Outcome> =
                job.pending.iter().map(|p| self.reschedule(dest.name(), p, wait, error.clone(), &mut ops)).collect();
            if let Some(reply) = job.reply.take() {
                replies.push((reply, outs));
            }
        }
        // Keys were not claimed: nothing to release.
        self.apply(ops).await;
        for (reply, outs) in replies {
            if reply.send(outs).is_err() {
                tracing::debug!(destination = dest.name(), "an inline caller left before its answer");
            }
        }
    }

    /// The store effects of a settled outcome, into `ops`; the outcome as the caller sees it.
    fn settle(&self, dest: &str, p: &Pending, outcome: Outcome, ops: &mut StoreOps) -> Outcome {
        let inner = &self.inner;
        // Each call here is a single attempt; the outbox counts attempts.
        // Queued: the destination judged the answer worth another try.
        let judged_retry = matches!(outcome, Outcome::Queued { .. });
        match outcome {
            Outcome::Sent { warnings, .. } => {
                ops.complete.push(p.key.clone());
                ops.ack.push(p.id.clone());
                inner.metrics.delivered(dest);
                Outcome::Sent { attempts: p.attempt, warnings }
            }
            Outcome::Queued { error: e } | Outcome::Failed(e) if judged_retry || e.is_transient() => {
                ops.release.push(p.key.clone());
                // Being rate limited says nothing about the event: it waits as
                // long as the destination asks, without using up its retries.
                let throttled = matches!(e, DeliveryError::RateLimited { .. });
                if p.attempt >= inner.retry.max_attempts && !throttled {
                    let reason = format!("retries exhausted after {} attempts: {e}", p.attempt);
                    ops.dead.push((p.id.clone(), reason));
                    inner.metrics.dropped(dest, "retries_exhausted");
                    Outcome::Failed(DeliveryError::RetriesExhausted { attempts: p.attempt, last: Box::new(e) })
                } else {
                    self.reschedule(dest, p, inner.retry.delay(p.attempt, e.retry_after()), e, ops)
                }
            }
            Outcome::Failed(e) | Outcome::Queued { error: e } => {
                ops.release.push(p.key.clone());
                // Refused only for being too recent: keep it until it can be accepted.
                if p.attempt < inner.retry.max_attempts
                    && let Some(wait) = e.too_recent_wait()
                {
                    return self.reschedule(dest, p, wait, e, ops);
                }
                ops.dead.push((p.id.clone(), e.to_string()));
                inner.metrics.dropped(dest, "rejected");
                Outcome::Failed(e)
            }
            Outcome::Skipped(r) => {
                ops.release.push(p.key.clone());
                ops.ack.push(p.id.clone());
                inner.metrics.dropped(dest, r.code());
                Outcome::Skipped(r)
            }
        }
    }

    /// Puts `p` back in the outbox, due after `wait`, and reports it queued.
    fn reschedule(&self, dest: &str, p: &Pending, wait: Duration, error: DeliveryError, ops: &mut StoreOps) -> Outcome {
        let at = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        ops.retry.push((p.id.clone(), at, error.to_string()));
        self.inner.metrics.retried(dest);
        Outcome::Queued { error }
    }

    /// Carries out `ops` in one blocking call; every failure is logged and
    /// counted (the entry stays in the outbox and comes back after its lease).
    async fn apply(&self, ops: StoreOps) {
        if ops.is_empty() {
            return;
        }
        let retention = self.inner.retention;
        let failures = self.store_call("settle", move |s, o| ops.run(s, o, retention)).await.unwrap_or_default();
        for (operation, e) in failures {
            tracing::error!(operation, error = %e, "a store operation failed; the delivery stays in the outbox");
            self.inner.metrics.store_error(operation);
        }
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

    /// Starts the lanes and the background worker once, inside the current
    /// tokio runtime.
    fn ensure_worker(&self) {
        if self.inner.worker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let _entered = rt.enter();
                let weak = Arc::downgrade(&self.inner);
                let lanes = self
                    .inner
                    .destinations
                    .iter()
                    .zip(&self.inner.lane_settings)
                    .enumerate()
                    .map(|(index, (dest, settings))| {
                        let runner: Arc<dyn RoundRunner<Pending>> = Arc::new(LaneRunner { inner: weak.clone(), index });
                        Lane::start(*settings, dest.merges_visitors(), runner)
                    })
                    .collect();
                // Only this call gets here (the swap above), so the cell is empty.
                let _unset = self.inner.lanes.set(lanes);
                rt.spawn(worker(weak));
                // The bot list compiles once per process: now, off the runtime,
                // rather than in the first visitor's request.
                drop(rt.spawn_blocking(|| bots::classify("")));
            }
            Err(_) => self.inner.worker_started.store(false, Ordering::SeqCst),
        }
    }
}

/// The store effects of one round, carried out together off the runtime.
#[derive(Debug, Default)]
struct StoreOps {
    complete: Vec<String>,
    release: Vec<String>,
    ack: Vec<String>,
    retry: Vec<(String, i64, String)>,
    dead: Vec<(String, String)>,
}

impl StoreOps {
    fn is_empty(&self) -> bool {
        self.complete.is_empty()
            && self.release.is_empty()
            && self.ack.is_empty()
            && self.retry.is_empty()
            && self.dead.is_empty()
    }

    /// Runs every operation; the failures, by operation.
    fn run(self, s: &dyn IdempotencyStore, o: &dyn Outbox, retention: Duration) -> Vec<(&'static str, StoreError)> {
        let mut failures = Vec::new();
        // The key first: once it says delivered, a crash before the ack only
        // makes the outbox hand out an entry that is then skipped as a duplicate.
        s.complete_many(&self.complete, retention);
        for k in &self.release {
            s.release(k);
        }
        if let Err(e) = o.ack_many(&self.ack) {
            failures.push(("ack", e));
        }
        for (id, at, error) in &self.retry {
            if let Err(e) = o.retry(id, *at, error) {
                failures.push(("retry", e));
            }
        }
        for (id, reason) in &self.dead {
            if let Err(e) = o.dead(id, reason) {
                failures.push(("dead", e));
            }
        }
        failures
    }
}

/// How a round's outcomes speak of the destination: throttled (pause for the
/// longest `Retry-After`), struggling (transient failures), healthy, or idle.
fn signal_of(outcomes: &[Outcome]) -> Signal {
    let errors = outcomes.iter().filter_map(|o| match o {
        Outcome::Failed(e) => Some((e, false)),
        // Queued: the destination judged the answer worth another try.
        Outcome::Queued { error: e } => Some((e, true)),
        _ => None,
    });
    let mut signal = if outcomes.is_empty() { Signal::Idle } else { Signal::Healthy };
    for (e, judged_retry) in errors {
        let last = match e {
            DeliveryError::RetriesExhausted { last, .. } => last,
            e => e,
        };
        match last {
            DeliveryError::RateLimited { retry_after_secs, .. } => {
                let after = retry_after_secs.map(Duration::from_secs);
                signal = match signal {
                    Signal::Throttled(prev) => Signal::Throttled(prev.max(after)),
                    _ => Signal::Throttled(after),
                };
            }
            // Throttling, once seen, decides the round.
            e if (judged_retry || e.is_transient()) && signal == Signal::Healthy => signal = Signal::Struggling,
            _ => {}
        }
    }
    signal
}

/// Production QA: the order counter a settled outcome of `p` at `dest` moves, if any.
fn order_note(dest: &Route, p: &Pending, settled: &Outcome, ctx: &DeliveryContext) -> Option<Noted> {
    match settled {
        Outcome::Sent { .. } => qa::delivered(dest.name(), dest.kind(), &p.event, ctx),
        Outcome::Skipped(SkipReason::Duplicate) => qa::deduplicated(dest.name(), &p.event),
        Outcome::Skipped(r) => qa::withheld(dest.name(), std::slice::from_ref(&p.event), r.code()).pop(),
        Outcome::Failed(DeliveryError::RetriesExhausted { .. }) => qa::dead(dest.name(), &p.event, "retries_exhausted"),
        Outcome::Failed(_) => qa::dead(dest.name(), &p.event, "rejected"),
        Outcome::Queued { .. } => None,
    }
}

/// Connects a lane to the tracker that owns it, without keeping it alive.
struct LaneRunner {
    inner: Weak<Inner>,
    index: usize,
}

impl RoundRunner<Pending> for LaneRunner {
    fn run(&self, round: Vec<Job<Pending>>) -> Pin<Box<dyn Future<Output = Signal> + Send + '_>> {
        Box::pin(async move {
            match self.inner.upgrade() {
                Some(inner) => ServerTracker { inner }.run_round(self.index, round).await,
                None => Signal::Idle,
            }
        })
    }

    fn defer(&self, jobs: Vec<Job<Pending>>, until: Instant) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Some(inner) = self.inner.upgrade() {
                ServerTracker { inner }.defer(self.index, jobs, until).await;
            }
        })
    }
}

/// The outbox entries of `events` for `dest`, due at `due_at_ms`.
fn outbox_entries(dest: &Route, events: &[Event], visitor_json: &str, due_at_ms: i64) -> Vec<OutboxEntry> {
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

/// The background worker: leases due outbox entries, as many as the lanes
/// have room for, and hands them to the lanes, until the tracker is dropped or
/// shut down. Entries a lane cannot take stay leased and come back when the
/// lease ends.
async fn worker(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let tracker = ServerTracker { inner };
        let room: usize = tracker.inner.lanes.get().map_or(0, |l| l.iter().map(Lane::room).sum());
        let room = room.min(MAX_LEASE);
        let lease = tracker.inner.lease;
        let leased = if room == 0 {
            Vec::new()
        } else {
            match tracker.store_call("lease", move |_, o| o.lease(room, lease, now_ms())).await {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "leasing outbox entries failed; trying again");
                    tracker.inner.metrics.store_error("lease");
                    Vec::new()
                }
                None => Vec::new(),
            }
        };
        let busy = !leased.is_empty();
        let leased_until = Instant::now() + lease;
        // One job per (destination, visitor), restored once.
        let mut groups: BTreeMap<(String, String), Vec<Pending>> = BTreeMap::new();
        let mut dead = StoreOps::default();
        for l in leased {
            let fallback = || EventId::random_v7(0, [0; 10]);
            match Event::from_json(&l.entry.event_json, fallback) {
                Ok(event) => groups
                    .entry((l.entry.destination.clone(), l.entry.visitor_json.clone()))
                    .or_default()
                    .push(Pending { id: l.id, key: l.entry.key, event, attempt: l.entry.attempts + 1 }),
                Err(e) => {
                    dead.dead.push((l.id, format!("unreadable outbox entry: {e}")));
                    tracker.inner.metrics.dropped(&l.entry.destination, "invalid");
                }
            }
        }
        for ((dest_name, visitor_json), pending) in groups {
            let index = tracker.inner.destinations.iter().position(|d| d.name() == dest_name);
            let lane = index.and_then(|i| tracker.inner.lanes.get().and_then(|l| l.get(i)));
            let (Some(lane), Some(ctx)) = (lane, restore_visitor(&visitor_json, tracker.inner.order_id)) else {
                for p in pending {
                    dead.dead.push((p.id, "destination no longer configured".into()));
                    tracker.inner.metrics.dropped(&dest_name, "not_configured");
                }
                continue;
            };
            // No job above a round's size, so what one crash can re-send stays
            // within window × max_batch.
            let ctx = Arc::new(ctx);
            let max = index.and_then(|i| tracker.inner.lane_settings.get(i)).map_or(1, |s| s.max_batch.max(1));
            let mut pending = pending.into_iter().peekable();
            while pending.peek().is_some() {
                let chunk: Vec<Pending> = pending.by_ref().take(max).collect();
                let job = Job { pending: chunk, ctx: ctx.clone(), reply: None, leased_until: Some(leased_until) };
                if lane.offer(job).is_err() {
                    tracing::debug!(destination = dest_name, "lane full; the entries come back when their lease ends");
                }
            }
        }
        tracker.apply(dead).await;
        let poll = tracker.inner.poll;
        if busy {
            drop(tracker);
            tokio::task::yield_now().await;
            continue;
        }
        // Holding the tracker while waiting delays noticing its drop by at most `poll`.
        let _woken = tokio::time::timeout(poll, tracker.inner.wake.notified()).await;
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
