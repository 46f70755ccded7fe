//! Delivery to the Rokt Event API v2 (`POST https://api.rokt.com/v2/events`).
//!
//! `Authorization: Basic base64(rpub:rsec)`, `Rokt-Version` pinned, batches of
//! at most 100 events built by the core. A 200 answer may still list
//! `unprocessedRecords`: those events (matched by `clientEventId`) fail with
//! [`DeliveryError::PartialFailure`], the rest are sent. If Rokt does not echo
//! a record's id, its error is reported for every event of the request that
//! was not matched otherwise (the conservative reading: they may have failed).
//! 429 / 5xx are transient, 401 / 403 `Unauthorized`, other 4xx permanent.

use tally_core::destinations::VisitorEvents;
use tally_core::destinations::rokt::{self as core_rokt, RoktErrorClass, RoktRequest, RoktResponse};

use crate::destinations::{BoxFuture, DestinationSettings, Sender};
use crate::destinations::{excerpt, fan_out, finish, open, send, with_json};
use crate::engine::retry::{RetryPolicy, Verdict, redact, transient_error, with_retries};
use crate::error::{ConfigError, DeliveryError, RowError};
use crate::outcome::Outcome;
use tally_core::DestinationKind;

mod config;
pub use config::RoktConfig;

/// A configured Rokt destination.
#[derive(Clone)]
pub struct RoktDestination {
    cfg: RoktConfig,
    core: core_rokt::RoktConfig,
    authorization: String,
}

impl std::fmt::Debug for RoktDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoktDestination").field("cfg", &self.cfg).field("authorization", &"[redacted]").finish()
    }
}

impl RoktDestination {
    /// From checked configuration.
    pub fn new(cfg: RoktConfig) -> Result<RoktDestination, ConfigError> {
        let authorization = core_rokt::basic_auth(&cfg.public_key, cfg.secret.expose())
            .map_err(|e| ConfigError::Invalid { setting: "rokt.secret", reason: e.to_string() })?;
        let core = core_rokt::RoktConfig { account_id: cfg.account_id.trim().to_owned() };
        Ok(RoktDestination { cfg, core, authorization })
    }

    fn secrets(&self) -> [&str; 3] {
        [self.cfg.secret.expose().trim(), self.authorization.as_str(), self.authorization.trim_start_matches("Basic ")]
    }

    /// Sends the events of one or several visitors, batched together; one
    /// outcome per event, in the order of the visitors and their events.
    pub async fn deliver_many(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        visitors: &[VisitorEvents<'_>],
    ) -> Vec<Outcome> {
        let total = visitors.iter().map(|(events, _)| events.len()).sum();
        let (mut out, batch) = match open(total, core_rokt::build_many(visitors, &self.core)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        for (request, indices) in batch.requests.iter().zip(&batch.indices) {
            match self.send(http, retry, request).await {
                Ok((rows, attempts)) => {
                    for (pos, &i) in indices.iter().enumerate() {
                        out[i] = Some(match rows.get(pos).cloned().flatten() {
                            None => Outcome::sent(attempts),
                            Some(err) => Outcome::Failed(DeliveryError::PartialFailure(vec![err])),
                        });
                    }
                }
                Err(e) => fan_out(&mut out, indices, &Outcome::Failed(e)),
            }
        }
        finish(out)
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        request: &RoktRequest,
    ) -> Result<(Vec<Option<RowError>>, u32), DeliveryError> {
        let secrets = self.secrets();
        with_retries(retry, |_| async {
            let req = http
                .post(self.cfg.url.trim())
                .header(reqwest::header::AUTHORIZATION, &self.authorization)
                .header(core_rokt::HEADER_ROKT_VERSION, self.cfg.rokt_version.trim())
                .header("Charset", "utf-8");
            let req = with_json(req, request);
            let answer = match send(req, retry, &secrets).await {
                Ok(a) => a,
                Err(e) => return Verdict::Retry(e, None),
            };
            let status = answer.status;
            if (200..300).contains(&status) {
                return match RoktResponse::parse(&answer.body) {
                    Ok(r) => Verdict::Done(rows(&r, request, &secrets)),
                    Err(_) => Verdict::Fail(DeliveryError::Rejected {
                        status,
                        message: format!("unreadable success answer: {}", redact(&excerpt(&answer.body), &secrets)),
                    }),
                };
            }
            let message = redact(&excerpt(&answer.body), &secrets);
            match core_rokt::classify(status) {
                RoktErrorClass::Retryable => {
                    Verdict::Retry(transient_error(status, message, answer.retry_after), answer.retry_after)
                }
                RoktErrorClass::Credentials => Verdict::Fail(DeliveryError::Unauthorized { status, message }),
                RoktErrorClass::Permanent => Verdict::Fail(DeliveryError::Rejected { status, message }),
            }
        })
        .await
    }
}

/// The unprocessed records, per position in the request.
fn rows(r: &RoktResponse, sent: &RoktRequest, secrets: &[&str]) -> Vec<Option<RowError>> {
    let mut out: Vec<Option<RowError>> = vec![None; sent.events.len()];
    let mut unmatched = Vec::new();
    for e in r.row_errors(sent) {
        tracing::warn!(client_event_id = ?e.client_event_id, code = %e.code, message = %e.message, "Rokt did not process a record");
        let row =
            RowError { index: e.position.unwrap_or(0), code: e.code.clone(), message: redact(&e.message, secrets) };
        match e.position {
            Some(p) if p < out.len() => out[p] = Some(row),
            _ => unmatched.push(row),
        }
    }
    if let Some(first) = unmatched.first() {
        for (i, slot) in out.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = Some(RowError { index: i, ..first.clone() });
            }
        }
    }
    out
}

impl DestinationSettings for RoktConfig {
    fn name(&self) -> String {
        DestinationKind::Rokt.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        RoktConfig::check(self)
    }

    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError> {
        Ok(Box::new(RoktDestination::new(self.clone())?))
    }
}

impl Sender for RoktDestination {
    fn name(&self) -> &str {
        DestinationKind::Rokt.as_str()
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Rokt
    }

    fn merges_visitors(&self) -> bool {
        true
    }

    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        retry: &'a RetryPolicy,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(self.deliver_many(http, retry, visitors))
    }
}
