//! The outbox worker: leases due entries and hands them to the lanes; and the
//! visitor as the outbox keeps it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tally_core::destinations::DeliveryContext;
use tally_core::{ContextEnvelope, Event, EventId};

use super::lane::{Job, Lane, RoundRunner};
use super::round::{LaneRunner, StoreOps};
use super::{Engine, Pending};
use crate::bots::{self};
use crate::clock::now_ms;

impl Engine {
    /// Starts the lanes and the background worker once, inside the current
    /// tokio runtime.
    pub(crate) fn ensure_worker(self: &Arc<Self>) {
        if self.worker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let _entered = rt.enter();
                let weak = Arc::downgrade(self);
                let lanes = self
                    .destinations
                    .iter()
                    .zip(&self.lane_settings)
                    .enumerate()
                    .map(|(index, (dest, settings))| {
                        let runner: Arc<dyn RoundRunner<Pending>> = Arc::new(LaneRunner { inner: weak.clone(), index });
                        Lane::start(*settings, dest.merges_visitors(), runner)
                    })
                    .collect();
                // Only this call gets here (the swap above), so the cell is empty.
                let _unset = self.lanes.set(lanes);
                rt.spawn(worker(weak));
                // The bot list compiles once per process: now, off the runtime,
                // rather than in the first visitor's request.
                drop(rt.spawn_blocking(|| bots::classify("")));
            }
            Err(_) => self.worker_started.store(false, Ordering::SeqCst),
        }
    }
}

/// The most outbox entries the worker leases at once.
pub(super) const MAX_LEASE: usize = 5_000;

/// What the outbox keeps about a visitor: the envelope form (user data already
/// hashed, never raw) plus IP and user agent.
pub(super) fn stored_visitor(ctx: &DeliveryContext) -> String {
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

pub(super) fn restore_visitor(json: &str, order_id: tally_core::OrderIdForm) -> Option<DeliveryContext> {
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
pub(super) async fn worker(weak: Weak<Engine>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let tracker = inner;
        let room: usize = tracker.lanes.get().map_or(0, |l| l.iter().map(Lane::room).sum());
        let room = room.min(MAX_LEASE);
        let lease = tracker.lease;
        let leased = if room == 0 {
            Vec::new()
        } else {
            match tracker.store_call("lease", move |_, o| o.lease(room, lease, now_ms())).await {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "leasing outbox entries failed; trying again");
                    tracker.metrics.store_error("lease");
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
                    tracker.metrics.dropped(&l.entry.destination, "invalid");
                }
            }
        }
        for ((dest_name, visitor_json), pending) in groups {
            let index = tracker.destinations.iter().position(|d| d.name() == dest_name);
            let lane = index.and_then(|i| tracker.lanes.get().and_then(|l| l.get(i)));
            let (Some(lane), Some(ctx)) = (lane, restore_visitor(&visitor_json, tracker.order_id)) else {
                for p in pending {
                    dead.dead.push((p.id, "destination no longer configured".into()));
                    tracker.metrics.dropped(&dest_name, "not_configured");
                }
                continue;
            };
            // No job above a round's size, so what one crash can re-send stays
            // within window × max_batch.
            let ctx = Arc::new(ctx);
            let max = index.and_then(|i| tracker.lane_settings.get(i)).map_or(1, |s| s.max_batch.max(1));
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
        let poll = tracker.poll;
        if busy {
            drop(tracker);
            tokio::task::yield_now().await;
            continue;
        }
        // Holding the tracker while waiting delays noticing its drop by at most `poll`.
        let _woken = tokio::time::timeout(poll, tracker.wake.notified()).await;
    }
}
