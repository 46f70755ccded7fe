//! Delivery to the Rokt Event API v2 (`POST https://api.rokt.com/v2/events`).
//!
//! `Authorization: Basic base64(rpub:rsec)`, `Rokt-Version` pinned, batches of
//! at most 100 events built by the core. A 200 answer may still list
//! `unprocessedRecords`: those events (matched by `clientEventId`) fail with
//! [`DeliveryError::PartialFailure`], the rest are sent. If Rokt does not echo
//! a record's id, its error is reported for every event of the request that
//! was not matched otherwise (the conservative reading: they may have failed).
//! 429 / 5xx are transient, 401 / 403 `Unauthorized`, other 4xx permanent.

use tally_core::DestinationKind;
use tally_core::destinations::rokt::{self as core_rokt, RoktRequest, RoktResponse};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::destinations::DestinationSettings;
use crate::engine::http::{Answer, excerpt, redact, status_error, with_json};
use crate::engine::{Deliver, Destination, Judgement};
use crate::error::{ConfigError, DeliveryError, RowError};

mod config;
pub use config::RoktConfig;

/// A configured Rokt destination.
#[derive(Clone)]
pub(crate) struct RoktDestination {
    cfg: RoktConfig,
    core: core_rokt::RoktOptions,
    authorization: String,
}

impl std::fmt::Debug for RoktDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoktDestination").field("cfg", &self.cfg).field("authorization", &"[redacted]").finish()
    }
}

impl RoktDestination {
    /// From checked configuration.
    pub(crate) fn new(cfg: RoktConfig) -> Result<RoktDestination, ConfigError> {
        let authorization = core_rokt::basic_auth(&cfg.public_key, cfg.secret.expose())
            .map_err(|e| ConfigError::Invalid { setting: "rokt.secret", reason: e.to_string() })?;
        let core = core_rokt::RoktOptions { account_id: cfg.account_id.trim().to_owned() };
        Ok(RoktDestination { cfg, core, authorization })
    }
}

impl Destination for RoktDestination {
    type Request = RoktRequest;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Rokt
    }

    fn merges_visitors(&self) -> bool {
        true
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<RoktRequest>> {
        core_rokt::build_many(visitors, &self.core)
    }

    fn request(&self, http: &reqwest::Client, request: &RoktRequest) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let req = http
            .post(self.cfg.url.trim())
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(core_rokt::HEADER_ROKT_VERSION, self.cfg.rokt_version.trim())
            .header("Charset", "utf-8");
        Ok(with_json(req, request))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![
            self.cfg.secret.expose().trim(),
            self.authorization.as_str(),
            self.authorization.trim_start_matches("Basic "),
        ]
    }

    /// A 2xx lists the records Rokt did not process (each a
    /// [`DeliveryError::PartialFailure`] of its own); any other status means
    /// what the one status rule says.
    fn judge(&self, answer: &Answer, request: &RoktRequest) -> Judgement {
        let secrets = self.secrets();
        let status = answer.status;
        if !answer.is_success() {
            let message = redact(&excerpt(&answer.body), &secrets);
            return Judgement::of_error(status_error(status, message, answer.retry_after));
        }
        match RoktResponse::parse(&answer.body) {
            Ok(r) => {
                let rows = rows(&r, request, &secrets);
                if rows.iter().all(Option::is_none) {
                    return Judgement::Done { warnings: Vec::new() };
                }
                Judgement::Partial(
                    rows.into_iter().map(|row| row.map(|err| DeliveryError::PartialFailure(vec![err]))).collect(),
                )
            }
            Err(_) => Judgement::Fail(DeliveryError::Rejected {
                status,
                message: format!("unreadable success answer: {}", redact(&excerpt(&answer.body), &secrets)),
            }),
        }
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

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(RoktDestination::new(self.clone())?))
    }
}
