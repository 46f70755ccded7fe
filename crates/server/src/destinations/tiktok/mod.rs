//! Delivery to the TikTok Events API 2.0 (`POST /open_api/v1.3/event/track/`),
//! an optional destination.
//!
//! `Access-Token` header, batches of at most 1,000 events built by the core.
//! TikTok answers HTTP 200 for most errors, so the body's `code` decides
//! ([`tally_core::destinations::tiktok::classify`]): `0` sent; `40100`
//! (throttled) [`DeliveryError::RateLimited`] and `5xxxx` transient;
//! `40001`/`40104`/`40105` `Unauthorized`; other codes permanent. `20001`
//! (partial success) does not say which events failed, so every event of
//! that request is reported as a [`DeliveryError::PartialFailure`] carrying
//! TikTok's message.

use tally_core::destinations::VisitorEvents;
use tally_core::destinations::tiktok::{self as core_tiktok, TikTokOutcome, TikTokRequest, TikTokResponse};

use crate::destinations::{BoxFuture, DestinationSettings, Sender};
use crate::destinations::{excerpt, fan_out, finish, open, send, with_json};
use crate::engine::retry::{RetryPolicy, StatusClass, Verdict, classify_status, redact, transient_error, with_retries};
use crate::error::ConfigError;
use crate::error::{DeliveryError, RowError};
use crate::outcome::Outcome;
use tally_core::DestinationKind;

mod config;
pub use config::TikTokConfig;

/// A configured TikTok destination.
#[derive(Debug, Clone)]
pub struct TikTokDestination {
    cfg: TikTokConfig,
    core: core_tiktok::TikTokConfig,
}

enum Answered {
    Sent,
    Partial(String),
}

impl TikTokDestination {
    /// From checked configuration.
    pub fn new(cfg: TikTokConfig) -> TikTokDestination {
        let core = core_tiktok::TikTokConfig {
            pixel_code: cfg.pixel_code.trim().to_owned(),
            test_event_code: cfg.test_event_code.as_deref().map(str::trim).map(str::to_owned),
        };
        TikTokDestination { cfg, core }
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
        let (mut out, batch) = match open(total, core_tiktok::build_many(visitors, &self.core)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        for (request, indices) in batch.requests.iter().zip(&batch.indices) {
            match self.send(http, retry, request).await {
                Ok((Answered::Sent, attempts)) => fan_out(&mut out, indices, &Outcome::sent(attempts)),
                Ok((Answered::Partial(message), _)) => {
                    for (pos, &i) in indices.iter().enumerate() {
                        out[i] = Some(Outcome::Failed(DeliveryError::PartialFailure(vec![RowError {
                            index: pos,
                            code: "20001".into(),
                            message: message.clone(),
                        }])));
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
        request: &TikTokRequest,
    ) -> Result<(Answered, u32), DeliveryError> {
        let token = self.cfg.access_token.expose().trim();
        let secrets = [token];
        with_retries(retry, |_| async {
            let req =
                with_json(http.post(self.cfg.url.trim()).header(core_tiktok::HEADER_ACCESS_TOKEN, token), request);
            let answer = match send(req, retry, &secrets).await {
                Ok(a) => a,
                Err(e) => return Verdict::Retry(e, None),
            };
            let status = answer.status;
            let parsed = TikTokResponse::parse(&answer.body).ok();
            let message = redact(
                &match &parsed {
                    Some(b) => format!(
                        "code {}: {}{}",
                        b.code,
                        b.message,
                        b.request_id.as_deref().map(|r| format!(" (request_id {r})")).unwrap_or_default()
                    ),
                    None => excerpt(&answer.body),
                },
                &secrets,
            );
            let after = answer.retry_after;
            match core_tiktok::classify(status, parsed.as_ref()) {
                TikTokOutcome::Success => Verdict::Done(Answered::Sent),
                TikTokOutcome::PartialSuccess => Verdict::Done(Answered::Partial(message)),
                TikTokOutcome::Retryable if classify_status(status) == StatusClass::Transient => {
                    Verdict::Retry(transient_error(status, message, after), after)
                }
                TikTokOutcome::Retryable if parsed.as_ref().is_some_and(|b| b.code == 40100) => Verdict::Retry(
                    DeliveryError::RateLimited { retry_after_secs: after.map(|d| d.as_secs()), message },
                    after,
                ),
                TikTokOutcome::Retryable => Verdict::Retry(
                    DeliveryError::Transport(format!("TikTok asked to retry (HTTP {status}): {message}")),
                    after,
                ),
                TikTokOutcome::Credentials => Verdict::Fail(DeliveryError::Unauthorized { status, message }),
                TikTokOutcome::Permanent => Verdict::Fail(DeliveryError::Rejected { status, message }),
            }
        })
        .await
    }
}

impl DestinationSettings for TikTokConfig {
    fn name(&self) -> String {
        DestinationKind::TikTok.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        TikTokConfig::check(self)
    }

    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError> {
        Ok(Box::new(TikTokDestination::new(self.clone())))
    }
}

impl Sender for TikTokDestination {
    fn name(&self) -> &str {
        DestinationKind::TikTok.as_str()
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::TikTok
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
