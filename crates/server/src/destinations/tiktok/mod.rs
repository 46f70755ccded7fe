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

use tally_core::DestinationKind;
use tally_core::destinations::tiktok::{self as core_tiktok, ErrorClass, TikTokOutcome, TikTokRequest, TikTokResponse};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::destinations::DestinationSettings;
use crate::engine::http::{Answer, excerpt, redact, transient_error, with_json};
use crate::engine::{Deliver, Destination, Judgement};
use crate::error::{ConfigError, DeliveryError, RowError};

mod config;
pub use config::TikTokConfig;

/// A configured TikTok destination.
#[derive(Debug, Clone)]
pub(crate) struct TikTokDestination {
    cfg: TikTokConfig,
    core: core_tiktok::TikTokOptions,
}

impl TikTokDestination {
    /// From checked configuration.
    pub(crate) fn new(cfg: TikTokConfig) -> TikTokDestination {
        let core = core_tiktok::TikTokOptions {
            pixel_code: cfg.pixel_code.trim().to_owned(),
            test_event_code: cfg.test_event_code.as_deref().map(str::trim).map(str::to_owned),
        };
        TikTokDestination { cfg, core }
    }
}

impl Destination for TikTokDestination {
    type Request = TikTokRequest;

    fn kind(&self) -> DestinationKind {
        DestinationKind::TikTok
    }

    fn merges_visitors(&self) -> bool {
        true
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<TikTokRequest>> {
        core_tiktok::build_many(visitors, &self.core)
    }

    fn request(
        &self,
        http: &reqwest::Client,
        request: &TikTokRequest,
    ) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let token = self.cfg.access_token.expose().trim();
        Ok(with_json(http.post(self.cfg.url.trim()).header(core_tiktok::HEADER_ACCESS_TOKEN, token), request))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.access_token.expose().trim()]
    }

    fn judge(&self, answer: &Answer, request: &TikTokRequest) -> Judgement {
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
            &self.secrets(),
        );
        let after = answer.retry_after;
        match core_tiktok::classify(status, parsed.as_ref()) {
            TikTokOutcome::Success => Judgement::Done { warnings: Vec::new() },
            // 20001 does not say which events failed: every event of the request carries TikTok's message.
            TikTokOutcome::PartialSuccess => Judgement::Partial(
                (0..request.data.len())
                    .map(|index| {
                        Some(DeliveryError::PartialFailure(vec![RowError {
                            index,
                            code: "20001".into(),
                            message: message.clone(),
                        }]))
                    })
                    .collect(),
            ),
            TikTokOutcome::Failed(ErrorClass::Transient) if ErrorClass::of_status(status) == ErrorClass::Transient => {
                Judgement::Retry(transient_error(status, message, after))
            }
            TikTokOutcome::Failed(ErrorClass::Transient) if parsed.as_ref().is_some_and(|b| b.code == 40100) => {
                Judgement::Retry(DeliveryError::RateLimited { retry_after_secs: after.map(|d| d.as_secs()), message })
            }
            TikTokOutcome::Failed(ErrorClass::Transient) => {
                Judgement::Retry(DeliveryError::Transport(format!("TikTok asked to retry (HTTP {status}): {message}")))
            }
            TikTokOutcome::Failed(ErrorClass::Credentials) => {
                Judgement::Fail(DeliveryError::Unauthorized { status, message })
            }
            TikTokOutcome::Failed(ErrorClass::Permanent) => {
                Judgement::Fail(DeliveryError::Rejected { status, message })
            }
        }
    }
}

impl DestinationSettings for TikTokConfig {
    fn name(&self) -> String {
        DestinationKind::TikTok.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        TikTokConfig::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(TikTokDestination::new(self.clone())))
    }
}
