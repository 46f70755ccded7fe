//! The configured destinations, behind one `Sender` trait so the tracker
//! treats them alike, and the request plumbing every sender shares.
//!
//! Every sender follows the same shape: the core builder turns events into
//! request bodies (applying consent, windows and limits, and batching up to
//! the destination's limit); each request is sent with a per-request timeout
//! and classified (success, transient — retried by the outbox, honouring
//! `Retry-After` —, credentials, permanent); and the answer is spread back to
//! one [`Outcome`] per input event, in order. Secrets are redacted from every
//! error message, and each delivery runs in a `tracing` span named `deliver`.

pub(crate) mod diagnostics;
pub(crate) mod ga4;
pub(crate) mod google_ads;
pub(crate) mod meta;
pub(crate) mod registry;
pub(crate) mod rokt;
pub(crate) mod servoki;
pub(crate) mod tiktok;
pub(crate) mod webhook;

pub use diagnostics::{DiagnosticCount, DiagnosticsReport, RequestReport};

use std::future::Future;
use std::time::Duration;

use tally_core::destinations::servoki::ServokiBatch;
use tally_core::destinations::webhook::WebhookBatch;
use tally_core::destinations::{Batch, DeliveryContext, Skip, VisitorEvents};
use tally_core::{DestinationKind, Event};

use crate::engine::retry::{RetryPolicy, StatusClass, Verdict, classify_status, redact, retry_after, transient_error};
use crate::error::{ConfigError, DeliveryError};
use crate::outcome::{Outcome, SkipReason};

/// One destination's sender: what the tracker, its lanes and its outbox need
/// of it. Each destination module implements it beside its settings (which
/// implement [`DestinationSettings`]), so adding a destination is its module
/// and one line in the builder.
pub(crate) trait Sender: std::fmt::Debug + Send + Sync + 'static {
    /// The name used in results, idempotency keys and metrics (`ga4`, `webhook:warehouse`).
    fn name(&self) -> &str;
    /// The kind, for the consent policy and the lane defaults.
    fn kind(&self) -> DestinationKind;
    /// Whether one request may carry events of many visitors: then a lane
    /// merges visitors into full requests.
    fn merges_visitors(&self) -> bool {
        false
    }
    /// Sends the events of `visitors` (one visitor unless
    /// [`Sender::merges_visitors`]); one outcome per event, in the order of
    /// the visitors and their events. Retries within the call follow `retry`.
    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        retry: &'a RetryPolicy,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>>;
    /// Its lane's defaults (its kind's, unless its settings say more, as a
    /// batched webhook's do).
    fn lane_defaults(&self) -> crate::engine::lane::LaneSettings {
        crate::engine::lane::LaneSettings::for_kind(self.kind())
    }
    /// What the destination reported about requests it accepted.
    fn diagnostics(&self) -> Option<crate::destinations::DiagnosticsReport> {
        None
    }
    /// What a person setting this destination up should know, for `tally check`.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A destination's settings as the builder holds them: checked when the
/// tracker is built, then turned into its [`Sender`].
pub(crate) trait DestinationSettings: std::fmt::Debug + Send + Sync + 'static {
    /// The name its results will carry (replacing settings of the same name).
    fn name(&self) -> String;
    /// Refuses settings that cannot work, naming the setting and the fix.
    fn check(&self) -> Result<(), ConfigError>;
    /// The sender for checked settings.
    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError>;
}

/// A boxed future that can cross threads (what [`Sender::deliver`] returns).
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Sender::deliver`] for a destination whose requests carry one visitor:
/// every visitor's request at once (the lane counts each against its
/// window), outcomes flattened in order.
pub(crate) fn each_visitor<'a, F, Fut>(visitors: &'a [VisitorEvents<'a>], deliver: F) -> BoxFuture<'a, Vec<Outcome>>
where
    F: Fn(&'a [Event], &'a DeliveryContext) -> Fut + Send + 'a,
    Fut: Future<Output = Vec<Outcome>> + Send + 'a,
{
    Box::pin(async move {
        let each = visitors.iter().map(|&(events, ctx)| deliver(events, ctx));
        futures_util::future::join_all(each).await.into_iter().flatten().collect()
    })
}

/// One configured destination.
#[derive(Debug)]
pub struct Destination(Box<dyn Sender>);

impl Destination {
    pub(crate) fn new(sender: Box<dyn Sender>) -> Destination {
        Destination(sender)
    }

    /// The name used in results, idempotency keys and metrics (`ga4`, `webhook:warehouse`).
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The kind, for the consent policy.
    pub fn kind(&self) -> DestinationKind {
        self.0.kind()
    }

    /// What the destination reported about requests it accepted (Google Ads
    /// through the Data Manager API: field warnings and processing results).
    pub fn diagnostics(&self) -> Option<crate::destinations::DiagnosticsReport> {
        self.0.diagnostics()
    }

    /// What a person setting this destination up should know (the chosen
    /// API, settings it ignores), for `tally check`.
    pub fn notes(&self) -> Vec<String> {
        self.0.notes()
    }

    /// Whether one request may carry events of many visitors (Meta, TikTok,
    /// Rokt, Google Ads through the Data Manager API): then a lane merges
    /// visitors into full requests.
    pub fn merges_visitors(&self) -> bool {
        self.0.merges_visitors()
    }

    /// Its lane's defaults, before the builder's `lane` settings.
    pub(crate) fn lane_defaults(&self) -> crate::engine::lane::LaneSettings {
        self.0.lane_defaults()
    }

    /// Sends one lane round: every visitor's events, merged into shared
    /// requests where the destination allows it, else visitor by visitor.
    /// One list of outcomes per visitor, in order.
    pub(crate) async fn deliver_round(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        visitors: &[VisitorEvents<'_>],
    ) -> Vec<Vec<Outcome>> {
        use tracing::Instrument;
        let total: usize = visitors.iter().map(|(e, _)| e.len()).sum();
        let span = tracing::info_span!("deliver", destination = self.name(), events = total, visitors = visitors.len());
        let flat = self.0.deliver(http, retry, visitors).instrument(span).await;
        let mut flat = flat.into_iter();
        visitors.iter().map(|(events, _)| flat.by_ref().take(events.len()).collect()).collect()
    }
}

/// An HTTP answer, read in full.
pub(crate) struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, if given.
    pub retry_after: Option<Duration>,
    /// The body (lossy UTF-8).
    pub body: String,
}

/// Sends `req` with the policy's per-request timeout and reads the answer.
/// A request that gets no answer is a [`DeliveryError::Transport`] with
/// `secrets` redacted from the message.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    retry: &RetryPolicy,
    secrets: &[&str],
) -> Result<Answer, DeliveryError> {
    let resp = req
        .timeout(retry.timeout)
        .send()
        .await
        .map_err(|e| DeliveryError::Transport(redact(&transport_message(&e), secrets)))?;
    let status = resp.status().as_u16();
    let after = retry_after(&resp);
    let body = resp.text().await.map_err(|e| DeliveryError::Transport(redact(&transport_message(&e), secrets)))?;
    Ok(Answer { status, retry_after: after, body })
}

fn transport_message(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL, which may carry a token: callers redact.
    if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() }
}

/// Attaches `body` as the JSON request body, written by tally-core's
/// [`json_body::to_vec`](tally_core::destinations::json_body::to_vec) (the bytes
/// serde_json would write, in less time).
pub(crate) fn with_json<T: serde::Serialize>(req: reqwest::RequestBuilder, body: &T) -> reqwest::RequestBuilder {
    match tally_core::destinations::json_body::to_vec(body) {
        Ok(bytes) => req.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes),
        // reqwest reports why the body cannot be serialised when the request is sent.
        Err(_) => req.json(body),
    }
}

/// The verdict for a destination whose answer means only its HTTP status:
/// 2xx done, 408/429/5xx retried (honouring `Retry-After`), 401/403
/// credentials refused, other 4xx rejected; the body excerpt, with `secrets`
/// redacted, is the message.
pub(crate) fn status_verdict(answer: &Answer, secrets: &[&str]) -> Verdict<()> {
    let status = answer.status;
    let message = redact(&excerpt(&answer.body), secrets);
    match classify_status(status) {
        StatusClass::Success => Verdict::Done(()),
        StatusClass::Transient => {
            Verdict::Retry(transient_error(status, message, answer.retry_after), answer.retry_after)
        }
        StatusClass::Unauthorized => Verdict::Fail(DeliveryError::Unauthorized { status, message }),
        StatusClass::Permanent => Verdict::Fail(DeliveryError::Rejected { status, message }),
    }
}

/// A body excerpt for an error message: at most 500 characters.
pub(crate) fn excerpt(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// Fills `out[i]` for every `i` in `indices` with `outcome`.
pub(crate) fn fan_out(out: &mut [Option<Outcome>], indices: &[usize], outcome: &Outcome) {
    for &i in indices {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(outcome.clone());
        }
    }
}

/// A core builder's batch, which lists the input events it left out.
pub(crate) trait Built {
    /// `(index into the input, reason)` for the events left out, taken out of the batch.
    fn take_skipped(&mut self) -> Vec<(usize, Skip)>;
}

impl<R> Built for Batch<R> {
    fn take_skipped(&mut self) -> Vec<(usize, Skip)> {
        std::mem::take(&mut self.skipped)
    }
}

impl Built for ServokiBatch {
    fn take_skipped(&mut self) -> Vec<(usize, Skip)> {
        std::mem::take(&mut self.skipped)
    }
}

impl Built for WebhookBatch {
    fn take_skipped(&mut self) -> Vec<(usize, Skip)> {
        std::mem::take(&mut self.skipped)
    }
}

/// The opening every single-builder sender shares: for `len` input events and
/// the core builder's result, one outcome slot per event with the builder's
/// skips filled in, and the batch to send. If the builder failed, every event
/// is `Skipped(Invalid)` and that (`Err`) is the whole answer.
pub(crate) fn open<B: Built>(
    len: usize,
    built: tally_core::Result<B>,
) -> Result<(Vec<Option<Outcome>>, B), Vec<Outcome>> {
    let mut batch = match built {
        Ok(b) => b,
        Err(e) => return Err(vec![Outcome::Skipped(SkipReason::Invalid(e)); len]),
    };
    let mut out: Vec<Option<Outcome>> = vec![None; len];
    for (i, skip) in batch.take_skipped() {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(Outcome::Skipped(SkipReason::from(skip)));
        }
    }
    Ok((out, batch))
}

/// The input events one request carries: one (one request per event) or several (a batch).
pub(crate) trait Carried {
    /// The indices into the input.
    fn indices(&self) -> &[usize];
}

impl Carried for usize {
    fn indices(&self) -> &[usize] {
        std::slice::from_ref(self)
    }
}

impl Carried for Vec<usize> {
    fn indices(&self) -> &[usize] {
        self
    }
}

/// Sends `requests` one after the other with `send` (which answers the
/// attempts it took) and fills the slots of the events each carries
/// (`carried[k]` for `requests[k]`): `Sent` or `Failed`, alike for all of a
/// request's events. For destinations whose answer is all or nothing per request.
pub(crate) async fn send_each<'a, R, C, F, Fut>(
    out: &mut [Option<Outcome>],
    requests: &'a [R],
    carried: &[C],
    mut send: F,
) where
    C: Carried,
    F: FnMut(&'a R) -> Fut,
    Fut: Future<Output = Result<u32, DeliveryError>>,
{
    for (request, c) in requests.iter().zip(carried) {
        let outcome = match send(request).await {
            Ok(attempts) => Outcome::sent(attempts),
            Err(e) => Outcome::Failed(e),
        };
        fan_out(out, c.indices(), &outcome);
    }
}

/// The outcomes; an event no request or skip accounted for (none should be)
/// is reported as `Skipped(Unsupported)`, as GA4 does.
pub(crate) fn finish(out: Vec<Option<Outcome>>) -> Vec<Outcome> {
    out.into_iter().map(|o| o.unwrap_or(Outcome::Skipped(SkipReason::Unsupported))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_marks_every_event_invalid_when_the_builder_fails() {
        let err = tally_core::Error::Missing { field: "transactionId" };
        let opened = open::<Batch<()>>(3, Err(err.clone()));
        assert_eq!(opened.err(), Some(vec![Outcome::Skipped(SkipReason::Invalid(err)); 3]));
    }

    #[test]
    fn open_fills_the_builders_skips_and_leaves_the_rest_empty() {
        let batch = Batch {
            requests: vec![()],
            indices: vec![vec![1]],
            skipped: vec![(0, Skip::Unsupported), (2, Skip::NoAttribution), (9, Skip::Unsupported)],
        };
        let Ok((out, batch)) = open(3, Ok(batch)) else { panic!("the builder succeeded") };
        assert_eq!(
            out,
            [Some(Outcome::Skipped(SkipReason::Unsupported)), None, Some(Outcome::Skipped(SkipReason::NoAttribution))]
        );
        assert!(batch.skipped.is_empty());
        assert_eq!(batch.indices, [vec![1]]);
    }

    #[tokio::test]
    async fn send_each_fills_every_event_a_request_carries() {
        let failed = DeliveryError::Transport("down".into());
        let answer = |r: &&str| if *r == "ok" { Ok(2) } else { Err(failed.clone()) };
        // One request per event.
        let mut out = vec![None; 3];
        send_each(&mut out, &["ok", "down"], &[2usize, 0], |r| std::future::ready(answer(r))).await;
        assert_eq!(out, [Some(Outcome::Failed(failed.clone())), None, Some(Outcome::sent(2))]);
        // Batches.
        let mut out = vec![None; 3];
        send_each(&mut out, &["down", "ok"], &[vec![0, 2], vec![1]], |r| std::future::ready(answer(r))).await;
        let f = Some(Outcome::Failed(failed.clone()));
        assert_eq!(out, [f.clone(), Some(Outcome::sent(2)), f]);
    }
}
