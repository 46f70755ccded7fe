//! The contract between the engine and a destination.
//!
//! A destination implements [`Destination`]: it builds requests from the
//! visitors' events through one tally-core call, turns one into an HTTP
//! request (URL, auth, body), names its secrets, and judges an answer into
//! one vocabulary, [`Judgement`]. Everything else — consent, the outbox,
//! claims and keys, lanes and batching across visitors, the one HTTP helper
//! ([`http::send`]), the one retry policy and the one status rule — is the
//! engine's, the same for every destination.
//!
//! A destination that cannot be put in those terms (Google Ads: two APIs,
//! OAuth, action routing, status polls) implements the lower-level
//! [`Deliver`] itself, as Vector lets a sink write its own stream.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tally_core::DestinationKind;
use tally_core::destinations::{Batch, VisitorEvents};

use super::http::{self, Answer};
use super::lane::LaneSettings;
use crate::diagnostics::DiagnosticsReport;
use crate::error::DeliveryError;
use crate::outcome::{Outcome, SkipReason};

/// A boxed future that can cross threads (what [`Deliver::deliver`] returns).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one answer means for the events its request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Every event was taken, with what the destination accepted but could not use.
    Done {
        /// Warnings, one list for every event of the request.
        warnings: Vec<String>,
    },
    /// Not taken this time: the outbox tries again (after the error's
    /// `Retry-After`, else the retry policy's backoff).
    Retry(DeliveryError),
    /// Not taken, and trying again cannot help.
    Fail(DeliveryError),
    /// Some events taken, some refused: one entry per event of the request,
    /// in order (`None`: taken).
    Partial(Vec<Option<DeliveryError>>),
}

impl Judgement {
    /// The judgement of an answer that means only its status, by the one
    /// status rule ([`tally_core::http`]): 2xx done; 408/425/429/5xx retried;
    /// 401/403 credentials and other statuses failed. The body excerpt, with
    /// `secrets` redacted, is the message.
    pub(crate) fn of_status(answer: &Answer, secrets: &[&str]) -> Judgement {
        if answer.is_success() {
            return Judgement::Done { warnings: Vec::new() };
        }
        let message = http::redact(&http::excerpt(&answer.body), secrets);
        Judgement::of_error(http::status_error(answer.status, message, answer.retry_after))
    }

    /// [`Judgement::Retry`] for a transient error, else [`Judgement::Fail`].
    pub(crate) fn of_error(error: DeliveryError) -> Judgement {
        if error.is_transient() { Judgement::Retry(error) } else { Judgement::Fail(error) }
    }
}

/// A destination in the engine's terms (see the [module](self) docs).
pub(crate) trait Destination: std::fmt::Debug + Send + Sync + 'static {
    /// One request body as the core builds it.
    type Request: Send + Sync;

    /// Its kind: the consent policy and the lane defaults.
    fn kind(&self) -> DestinationKind;

    /// The name used in results, idempotency keys and metrics (`ga4`, `webhook:warehouse`).
    fn name(&self) -> &str {
        self.kind().as_str()
    }

    /// Whether one request may carry events of many visitors: then a lane
    /// merges visitors into full requests, and [`Destination::build`] gets them together.
    fn merges_visitors(&self) -> bool {
        false
    }

    /// Its lane's defaults.
    fn lane_defaults(&self) -> LaneSettings {
        LaneSettings::for_kind(self.kind())
    }

    /// The requests for `visitors`' events (one visitor unless
    /// [`Destination::merges_visitors`]), through one tally-core call: each
    /// with the input indices it carries, and the events left out with why.
    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<Self::Request>>;

    /// `request` as an HTTP request: URL, auth and body. Called for every
    /// attempt (a signature may carry the time).
    fn request(
        &self,
        http: &reqwest::Client,
        request: &Self::Request,
    ) -> Result<reqwest::RequestBuilder, DeliveryError>;

    /// Every secret that may appear in a URL, a message or a log line, to be redacted.
    fn secrets(&self) -> Vec<&str>;

    /// What `answer` means for `request`'s events; by default, its status alone.
    fn judge(&self, answer: &Answer, request: &Self::Request) -> Judgement {
        let _ = request;
        Judgement::of_status(answer, &self.secrets())
    }

    /// What the destination reported about requests it accepted.
    fn diagnostics(&self) -> Option<DiagnosticsReport> {
        None
    }

    /// What a person setting this destination up should know, for `tally check`.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What the engine needs of a destination: the lower-level hook every
/// [`Destination`] gets for free, and Google Ads implements itself.
pub(crate) trait Deliver: std::fmt::Debug + Send + Sync + 'static {
    /// See [`Destination::name`].
    fn name(&self) -> &str;
    /// See [`Destination::kind`].
    fn kind(&self) -> DestinationKind;
    /// See [`Destination::merges_visitors`].
    fn merges_visitors(&self) -> bool;
    /// See [`Destination::lane_defaults`].
    fn lane_defaults(&self) -> LaneSettings;
    /// One attempt at every event of `visitors` (one visitor unless
    /// [`Deliver::merges_visitors`]), each request within `timeout`: one
    /// outcome per event, in the order of the visitors and their events. A
    /// transient failure is [`Outcome::Queued`] (or a transient
    /// [`Outcome::Failed`]); the engine owns every retry.
    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        timeout: Duration,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>>;
    /// See [`Destination::diagnostics`].
    fn diagnostics(&self) -> Option<DiagnosticsReport>;
    /// See [`Destination::notes`].
    fn notes(&self) -> Vec<String>;
}

impl<D: Destination> Deliver for D {
    fn name(&self) -> &str {
        Destination::name(self)
    }

    fn kind(&self) -> DestinationKind {
        Destination::kind(self)
    }

    fn merges_visitors(&self) -> bool {
        Destination::merges_visitors(self)
    }

    fn lane_defaults(&self) -> LaneSettings {
        Destination::lane_defaults(self)
    }

    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        timeout: Duration,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        by_merge(Destination::merges_visitors(self), visitors, move |group| deliver_batch(self, http, timeout, group))
    }

    fn diagnostics(&self) -> Option<DiagnosticsReport> {
        Destination::diagnostics(self)
    }

    fn notes(&self) -> Vec<String> {
        Destination::notes(self)
    }
}

/// Delivers `visitors` through `deliver`: all together when the destination
/// `merges` visitors into shared requests, else each visitor's group at once
/// (the lane counts each against its window). The outcomes in the order of
/// the visitors and their events.
pub(crate) fn by_merge<'a, F, Fut>(
    merges: bool,
    visitors: &'a [VisitorEvents<'a>],
    deliver: F,
) -> BoxFuture<'a, Vec<Outcome>>
where
    F: Fn(&'a [VisitorEvents<'a>]) -> Fut + Send + 'a,
    Fut: Future<Output = Vec<Outcome>> + Send + 'a,
{
    Box::pin(async move {
        if merges || visitors.len() <= 1 {
            return deliver(visitors).await;
        }
        let each = visitors.iter().map(|v| deliver(std::slice::from_ref(v)));
        futures_util::future::join_all(each).await.into_iter().flatten().collect()
    })
}

/// Builds `visitors`' requests, sends them one after the other and spreads
/// each judgement over the events it carried.
async fn deliver_batch<D: Destination>(
    dest: &D,
    http: &reqwest::Client,
    timeout: Duration,
    visitors: &[VisitorEvents<'_>],
) -> Vec<Outcome> {
    let total = visitors.iter().map(|(events, _)| events.len()).sum();
    let (mut out, batch) = match open(total, dest.build(visitors)) {
        Ok(opened) => opened,
        Err(invalid) => return invalid,
    };
    let secrets = dest.secrets();
    for (request, carried) in batch.requests.iter().zip(&batch.indices) {
        let judgement = match dest.request(http, request) {
            Ok(req) => match http::send(req, timeout, &secrets).await {
                Ok(answer) => dest.judge(&answer, request),
                Err(e) => Judgement::Retry(e),
            },
            Err(e) => Judgement::Fail(e),
        };
        settle_request(&mut out, carried, judgement);
    }
    finish(out)
}

/// What [`open`] gives: an outcome slot per event, and the requests to send.
pub(crate) type Opened<R> = (Vec<Option<Outcome>>, Batch<R>);

/// One outcome slot per input event with the core builder's skips filled
/// in, and the requests to send; if the builder failed, every event is
/// `Skipped(Invalid)` and that (`Err`) is the whole answer.
pub(crate) fn open<R>(len: usize, built: tally_core::Result<Batch<R>>) -> Result<Opened<R>, Vec<Outcome>> {
    let mut batch = match built {
        Ok(b) => b,
        Err(e) => return Err(vec![Outcome::Skipped(SkipReason::Invalid(e)); len]),
    };
    let mut out: Vec<Option<Outcome>> = vec![None; len];
    for (i, skip) in std::mem::take(&mut batch.skipped) {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(Outcome::Skipped(SkipReason::from(skip)));
        }
    }
    Ok((out, batch))
}

/// Fills `out[i]` for every `i` in `indices` with `outcome`.
pub(crate) fn fan_out(out: &mut [Option<Outcome>], indices: &[usize], outcome: &Outcome) {
    for &i in indices {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(outcome.clone());
        }
    }
}

/// The outcomes; an event no request or skip accounted for (none should be)
/// is reported as `Skipped(Unsupported)`.
pub(crate) fn finish(out: Vec<Option<Outcome>>) -> Vec<Outcome> {
    out.into_iter().map(|o| o.unwrap_or(Outcome::Skipped(SkipReason::Unsupported))).collect()
}

/// Fills the outcome of every event `carried` (indices into `out`) from the judgement of their request.
fn settle_request(out: &mut [Option<Outcome>], carried: &[usize], judgement: Judgement) {
    let mut fill = |pos: usize, outcome: Outcome| {
        if let Some(slot) = carried.get(pos).and_then(|&i| out.get_mut(i)) {
            *slot = Some(outcome);
        }
    };
    for pos in 0..carried.len() {
        let outcome = match &judgement {
            Judgement::Done { warnings } => Outcome::Sent { attempts: 1, warnings: warnings.clone() },
            Judgement::Retry(e) => Outcome::Queued { error: e.clone() },
            Judgement::Fail(e) => Outcome::Failed(e.clone()),
            Judgement::Partial(rows) => match rows.get(pos).cloned().flatten() {
                None => Outcome::sent(1),
                Some(e) => Outcome::Failed(e),
            },
        };
        fill(pos, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::destinations::Skip;

    #[test]
    fn open_marks_every_event_invalid_when_the_builder_fails() {
        let err = tally_core::Error::Missing { field: "transactionId" };
        let opened = open::<()>(3, Err(err.clone()));
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

    #[test]
    fn a_judgement_reaches_every_event_its_request_carried() {
        let down = DeliveryError::Transport("down".into());
        let mut out = vec![None; 4];
        settle_request(&mut out, &[3, 1], Judgement::Retry(down.clone()));
        assert_eq!(
            out,
            [None, Some(Outcome::Queued { error: down.clone() }), None, Some(Outcome::Queued { error: down })]
        );
        let refused = DeliveryError::Rejected { status: 400, message: "bad".into() };
        let mut out = vec![None; 3];
        settle_request(&mut out, &[0, 2], Judgement::Partial(vec![Some(refused.clone()), None]));
        assert_eq!(out, [Some(Outcome::Failed(refused)), None, Some(Outcome::sent(1))]);
        let mut out = vec![None; 1];
        settle_request(&mut out, &[0], Judgement::Done { warnings: vec!["w".into()] });
        assert_eq!(out, [Some(Outcome::Sent { attempts: 1, warnings: vec!["w".into()] })]);
    }

    #[test]
    fn a_bare_status_is_judged_by_the_one_rule() {
        let answer =
            |status| Answer { status, retry_after: Some(Duration::from_secs(3)), body: "token tok_secret_1".into() };
        assert_eq!(Judgement::of_status(&answer(204), &[]), Judgement::Done { warnings: vec![] });
        assert_eq!(
            Judgement::of_status(&answer(429), &["tok_secret_1"]),
            Judgement::Retry(DeliveryError::RateLimited {
                retry_after_secs: Some(3),
                message: "token [redacted]".into()
            })
        );
        assert!(matches!(Judgement::of_status(&answer(503), &[]), Judgement::Retry(_)));
        assert!(matches!(Judgement::of_status(&answer(401), &[]), Judgement::Fail(DeliveryError::Unauthorized { .. })));
        assert!(matches!(Judgement::of_status(&answer(422), &[]), Judgement::Fail(DeliveryError::Rejected { .. })));
    }
}
