//! One lane round — claim → build → send → judge → settle → apply — and the
//! store effects and lane signal it leaves: what happens to an event, in one file.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::{Duration, Instant};

use tally_core::Event;
use tally_core::destinations::DeliveryContext;

use super::lane::{Job, RoundRunner, Signal};
use super::{Engine, Pending, Route};
use crate::clock::now_ms;
use crate::error::DeliveryError;
use crate::outcome::{Outcome, SkipReason};
use crate::production_qa::{self as qa, Noted};
use crate::store::{Claim, IdempotencyStore, Outbox, StoreError};

impl Engine {
    /// Runs `f` with the stores on a blocking thread, so a slow store never
    /// stalls the async runtime (in-memory stores, which cannot be slow, are
    /// called directly). `None` if the call could not finish (the
    /// runtime is shutting down); counted as a store error.
    pub(crate) async fn store_call<T, F>(&self, operation: &'static str, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn IdempotencyStore, &dyn Outbox) -> T + Send + 'static,
    {
        let (store, outbox) = (self.store.clone(), self.outbox.clone());
        if !store.may_block() && !outbox.may_block() {
            return Some(f(&*store, &*outbox));
        }
        let done = tokio::task::spawn_blocking(move || f(&*store, &*outbox)).await.ok();
        if done.is_none() {
            self.metrics.store_error(operation);
        }
        done
    }

    /// One round of a lane: claims, sends, settles and answers every job.
    pub(super) async fn run_round(&self, index: usize, mut jobs: Vec<Job<Pending>>) -> Signal {
        let inner = self;
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
    pub(super) async fn defer(&self, index: usize, jobs: Vec<Job<Pending>>, until: Instant) {
        let dest = &self.destinations[index];
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
    pub(super) fn settle(&self, dest: &str, p: &Pending, outcome: Outcome, ops: &mut StoreOps) -> Outcome {
        let inner = self;
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
                    tracing::warn!(destination = dest, event_id = %p.event.id, error = %e, attempts = p.attempt, "delivery given up: the event is kept as a dead entry");
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
                tracing::warn!(destination = dest, event_id = %p.event.id, error = %e, "delivery refused: the event is kept as a dead entry");
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
    pub(super) fn reschedule(
        &self,
        dest: &str,
        p: &Pending,
        wait: Duration,
        error: DeliveryError,
        ops: &mut StoreOps,
    ) -> Outcome {
        let at = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        tracing::debug!(destination = dest, event_id = %p.event.id, error = %error, attempt = p.attempt, wait_ms = wait.as_millis() as u64, "delivery failed: the event stays in the outbox");
        ops.retry.push((p.id.clone(), at, error.to_string()));
        self.metrics.retried(dest);
        Outcome::Queued { error }
    }

    /// Carries out `ops` in one blocking call; every failure is logged and
    /// counted (the entry stays in the outbox and comes back after its lease).
    pub(super) async fn apply(&self, ops: StoreOps) {
        if ops.is_empty() {
            return;
        }
        let retention = self.retention;
        let failures = self.store_call("settle", move |s, o| ops.run(s, o, retention)).await.unwrap_or_default();
        for (operation, e) in failures {
            tracing::error!(operation, error = %e, "a store operation failed; the delivery stays in the outbox");
            self.metrics.store_error(operation);
        }
    }
}

/// The store effects of one round, carried out together off the runtime.
#[derive(Debug, Default)]
pub(super) struct StoreOps {
    complete: Vec<String>,
    release: Vec<String>,
    ack: Vec<String>,
    retry: Vec<(String, i64, String)>,
    pub(super) dead: Vec<(String, String)>,
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
pub(super) fn signal_of(outcomes: &[Outcome]) -> Signal {
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
pub(super) fn order_note(dest: &Route, p: &Pending, settled: &Outcome, ctx: &DeliveryContext) -> Option<Noted> {
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
pub(super) struct LaneRunner {
    pub(super) inner: Weak<Engine>,
    pub(super) index: usize,
}

impl RoundRunner<Pending> for LaneRunner {
    fn run(&self, round: Vec<Job<Pending>>) -> Pin<Box<dyn Future<Output = Signal> + Send + '_>> {
        Box::pin(async move {
            match self.inner.upgrade() {
                Some(inner) => inner.run_round(self.index, round).await,
                None => Signal::Idle,
            }
        })
    }

    fn defer(&self, jobs: Vec<Job<Pending>>, until: Instant) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Some(inner) = self.inner.upgrade() {
                inner.defer(self.index, jobs, until).await;
            }
        })
    }
}
