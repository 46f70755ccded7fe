//! Admission: consent, bots and the outbox, before a destination's lane sees
//! an event (inline calls, and the collector's outbox mode).

use std::collections::BTreeMap;
use std::sync::Arc;

use tally_core::destinations::DeliveryContext;
use tally_core::{DestinationKind, Event};

use super::lane::Job;
use super::worker::stored_visitor;
use super::{Engine, Pending, Route};
use crate::bots::{self, BotDecision, BotMatch, BotPolicy, EventSource};
use crate::clock::now_ms;
use crate::error::DeliveryError;
use crate::input::Visitor;
use crate::outcome::{Outcome, SkipReason, TrackResult};
use crate::production_qa::{self as qa, Noted, Origin};
use crate::store::idempotency_key;
use crate::store::{OutboxEntry, StoreError};

impl Engine {
    /// [`ServerTracker::deliver`] to the destinations `only` accepts; the others
    /// report `Skipped(Unsupported)`.
    pub(crate) async fn deliver_where(
        self: &Arc<Self>,
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
        let deliveries = self.destinations.iter().enumerate().map(|(i, dest)| async move {
            if only(dest.kind()) {
                self.deliver_to(i, events, ctx, visitor_json, (bot, from_server)).await
            } else {
                vec![Outcome::Skipped(SkipReason::Unsupported); events.len()]
            }
        });
        let outcomes = futures_util::future::join_all(deliveries).await;
        for (dest, outcomes) in self.destinations.iter().zip(outcomes) {
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
    pub(crate) async fn admit(self: &Arc<Self>, events: &[Event], visitor: &Visitor) -> Result<bool, StoreError> {
        self.ensure_worker();
        let ctx = self.delivery_context(visitor);
        let visitor_json = stored_visitor(&ctx);
        let now = now_ms();
        let mut entries = Vec::new();
        let mut taken = Vec::new();
        let mut notes = qa::reported(Origin::Browser, events);
        let bot = ctx.user_agent.as_deref().and_then(bots::classify);
        for (index, dest) in self.destinations.iter().enumerate() {
            if ctx.consent.policy(dest.kind()).send.is_err() {
                self.metrics.dropped_n(dest.name(), "consent_denied", events.len());
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
                self.wake.notify_one();
                Ok(true)
            }
            failed => {
                for name in taken {
                    self.metrics.dropped_n(name, "queue_full", events.len());
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
    pub(super) fn screen_bots(
        &self,
        index: usize,
        bot: Option<BotMatch>,
        from_server: bool,
        events: &[Event],
    ) -> (Vec<Option<Outcome>>, Vec<Noted>) {
        let dest = &self.destinations[index];
        if bot.is_none() {
            return (vec![None; events.len()], Vec::new());
        }
        let policy = self.bot_policies.get(index).copied().unwrap_or_else(|| BotPolicy::default_for(dest.kind()));
        let mut withheld = Vec::new();
        let verdicts = events
            .iter()
            .map(|e| match bots::decide_for(bot, EventSource::of(from_server, e), policy) {
                BotDecision::Send => None,
                BotDecision::Flag(m) => {
                    self.metrics.bot_flagged(dest.name(), m.kind.code(), 1);
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
                    self.metrics.bot_filtered(dest.name(), m.kind.code(), 1);
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
    pub(super) async fn deliver_to(
        self: &Arc<Self>,
        index: usize,
        events: &[Event],
        ctx: &Arc<DeliveryContext>,
        visitor_json: &str,
        bot: (Option<BotMatch>, bool),
    ) -> Vec<Outcome> {
        let dest = &self.destinations[index];
        if let Err(denial) = ctx.consent.policy(dest.kind()).send {
            self.metrics.dropped_n(dest.name(), "consent_denied", events.len());
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
    pub(super) async fn send_inline(
        self: &Arc<Self>,
        index: usize,
        events: &[Event],
        ctx: &Arc<DeliveryContext>,
        visitor_json: &str,
    ) -> Vec<Outcome> {
        let dest = &self.destinations[index];
        let entries = outbox_entries(dest, events, visitor_json, now_ms() + self.lease.as_millis() as i64);
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        let ids = match self.store_call("enqueue", move |_, o| o.enqueue(&entries)).await {
            Some(Ok(ids)) => ids,
            failed => {
                self.metrics.dropped_n(dest.name(), "queue_full", events.len());
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
        match self.lanes.get().and_then(|l| l.get(index)) {
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

    pub(crate) fn delivery_context(&self, v: &Visitor) -> DeliveryContext {
        let mut user_data = v.hashed_user_data.clone();
        if let Some(raw) = &v.user_data {
            user_data = Some(raw.hashed(&self.normalize));
        }
        DeliveryContext {
            client_id: v.client_id.clone(),
            session_id: v.session_id.clone(),
            user_id: v.user_id.clone(),
            visitor_id: v.visitor_id.clone(),
            click_ids: v.click_ids.clone(),
            consent: v.consent.unwrap_or(self.default_consent),
            user_data,
            page_url: v.page_url.clone(),
            ip_address: v.ip_address.clone(),
            user_agent: v.user_agent.clone(),
            now_ms: now_ms(),
            order_id: self.order_id,
        }
    }
}

/// The outbox entries of `events` for `dest`, due at `due_at_ms`.
pub(super) fn outbox_entries(dest: &Route, events: &[Event], visitor_json: &str, due_at_ms: i64) -> Vec<OutboxEntry> {
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
