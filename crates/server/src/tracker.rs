//! [`ServerTracker`] and its envelope-bound form, [`BoundTracker`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_core::destinations::DeliveryContext;
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    ConsentState, ContextEnvelope, DestinationKind, Event, EventId, EventName, TransactionId,
};

use crate::config::ServerTrackerBuilder;
use crate::error::TrackError;
use crate::ga4::Ga4Destination;
use crate::input::{EventInput, PurchaseInput, Visitor};
use crate::outcome::{Outcome, SkipReason, TrackResult};
use crate::retry::RetryPolicy;
use crate::store::{Claim, IdempotencyStore, idempotency_key};

/// How long a delivery holds its idempotency key before another worker may take over.
const LEASE: Duration = Duration::from_secs(120);

/// The server tracker. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct ServerTracker {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    retry: RetryPolicy,
    retention: Duration,
    default_consent: ConsentState,
    store: Arc<dyn IdempotencyStore>,
    ga4: Option<Ga4Destination>,
    normalize: NormalizeOptions,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_event_id() -> EventId {
    let u = uuid::Uuid::now_v7();
    EventId::parse(&u.hyphenated().to_string()).unwrap_or_else(|_| EventId::random_v7(now_ms() as u64, [0; 10]))
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
    ) -> ServerTracker {
        ServerTracker {
            inner: Arc::new(Inner {
                http,
                retry: b.retry,
                retention: b.retention,
                default_consent: b.default_consent,
                store,
                ga4: b.ga4.map(Ga4Destination::new),
                normalize: NormalizeOptions::default(),
            }),
        }
    }

    /// Names of the configured destinations, in result order.
    pub fn destination_names(&self) -> Vec<String> {
        self.destinations().into_iter().map(|(n, _)| n).collect()
    }

    /// Binds the browser state of `envelope`: every helper of the result uses
    /// its client id, session, click ids, consent and user data unless the call
    /// says otherwise (see [`Visitor`]).
    pub fn from_context(&self, envelope: &ContextEnvelope) -> BoundTracker<'_> {
        BoundTracker {
            tracker: self,
            base: Visitor::from_envelope(envelope),
        }
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

    fn bound(&self, base: Visitor) -> BoundTracker<'_> {
        BoundTracker { tracker: self, base }
    }

    /// Delivers already-built events for one visitor to every destination,
    /// with consent, idempotency and retries. One result per event, in order.
    /// This is what the collector and the helpers call.
    pub async fn deliver(&self, events: Vec<Event>, visitor: &Visitor) -> Vec<TrackResult> {
        let ctx = self.delivery_context(visitor);
        let mut results: Vec<TrackResult> = events
            .iter()
            .map(|e| TrackResult {
                event_id: e.id.clone(),
                destinations: BTreeMap::new(),
            })
            .collect();
        for (name, kind) in self.destinations() {
            let outcomes = self.deliver_to(&name, kind, &events, &ctx).await;
            for (r, o) in results.iter_mut().zip(outcomes) {
                r.destinations.insert(name.clone(), o);
            }
        }
        results
    }

    fn destinations(&self) -> Vec<(String, DestinationKind)> {
        let mut v = Vec::new();
        if self.inner.ga4.is_some() {
            v.push((DestinationKind::Ga4.as_str().to_owned(), DestinationKind::Ga4));
        }
        v
    }

    /// Consent pre-check, idempotency claim, delivery, then complete or release.
    async fn deliver_to(
        &self,
        name: &str,
        kind: DestinationKind,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        if let Err(denial) = ctx.consent.policy(kind).send {
            return vec![Outcome::Skipped(SkipReason::ConsentDenied(denial)); events.len()];
        }
        let mut out = vec![Outcome::Skipped(SkipReason::Duplicate); events.len()];
        let mut claimed = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let key = idempotency_key(name, e.name.as_str(), e.id.as_str());
            if self.inner.store.claim(&key, LEASE) == Claim::Acquired {
                claimed.push((i, key));
            }
        }
        if claimed.is_empty() {
            return out;
        }
        let subset: Vec<Event> = claimed.iter().map(|(i, _)| events[*i].clone()).collect();
        let outcomes = self.send_to_kind(kind, &subset, ctx).await;
        for ((i, key), o) in claimed.into_iter().zip(outcomes) {
            self.settle(&key, &o);
            out[i] = o;
        }
        out
    }

    async fn send_to_kind(&self, kind: DestinationKind, events: &[Event], ctx: &DeliveryContext) -> Vec<Outcome> {
        match (kind, &self.inner.ga4) {
            (DestinationKind::Ga4, Some(g)) => g.deliver(&self.inner.http, &self.inner.retry, events, ctx).await,
            _ => vec![Outcome::Skipped(SkipReason::NotConfigured); events.len()],
        }
    }

    fn settle(&self, key: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Sent { .. } => self.inner.store.complete(key, self.inner.retention),
            _ => self.inner.store.release(key),
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
        }
    }
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

    async fn send_one(&self, event: Event, explicit: Visitor) -> Result<TrackResult, TrackError> {
        event.validate()?;
        let visitor = explicit.over(&self.base);
        let mut results = self.tracker.deliver(vec![event.clone()], &visitor).await;
        Ok(results.pop().unwrap_or(TrackResult {
            event_id: event.id,
            destinations: BTreeMap::new(),
        }))
    }
}
