//! Delivery to the GA4 Measurement Protocol: one visitor per request (GA4
//! keys a request by its `client_id`), up to 25 events in it; the API secret
//! travels in the query string and is redacted from every message. The
//! answer means its status alone, except in validation mode, where the
//! debug endpoint's `validationMessages` fail the request and are counted.

use std::sync::Arc;

use tally_core::DestinationKind;
use tally_core::destinations::ga4::{self as core_ga4, Ga4Request, ValidationResponse};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::destinations::DestinationSettings;
use crate::diagnostics::{DiagnosticTally, DiagnosticsReport};
use crate::engine::http::{Answer, with_json};
use crate::engine::{Deliver, Destination, Judgement};
use crate::error::{ConfigError, DeliveryError};

mod config;
pub use config::Ga4Config;

/// A configured GA4 destination.
#[derive(Clone)]
pub(crate) struct Ga4Destination {
    cfg: Ga4Config,
    url: String,
    /// Validation messages by code (validation mode).
    diagnostics: Arc<DiagnosticTally>,
}

impl std::fmt::Debug for Ga4Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the API secret: never shown.
        f.debug_struct("Ga4Destination").field("cfg", &self.cfg).finish()
    }
}

impl Ga4Destination {
    /// From checked configuration.
    pub(crate) fn new(cfg: Ga4Config) -> Ga4Destination {
        let url = core_ga4::collect_url(
            &cfg.base_url,
            cfg.measurement_id.trim(),
            cfg.api_secret.expose().trim(),
            cfg.validate,
        );
        Ga4Destination { cfg, url, diagnostics: Default::default() }
    }
}

impl Destination for Ga4Destination {
    type Request = Ga4Request;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Ga4
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<Ga4Request>> {
        let Some(&(events, ctx)) = visitors.first() else { return Ok(Batch::default()) };
        core_ga4::build(events, ctx)
    }

    fn request(&self, http: &reqwest::Client, request: &Ga4Request) -> Result<reqwest::RequestBuilder, DeliveryError> {
        Ok(with_json(http.post(&self.url), request))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.api_secret.expose(), self.cfg.api_secret.expose().trim()]
    }

    fn judge(&self, answer: &Answer, _: &Ga4Request) -> Judgement {
        if !(self.cfg.validate && answer.is_success()) {
            return Judgement::of_status(answer, &self.secrets());
        }
        let parsed: ValidationResponse = serde_json::from_str(&answer.body).unwrap_or_default();
        if parsed.validation_messages.is_empty() {
            return Judgement::Done { warnings: Vec::new() };
        }
        for m in &parsed.validation_messages {
            self.diagnostics.note("validation", &m.validation_code, 1);
        }
        let message = parsed
            .validation_messages
            .iter()
            .map(|m| format!("{} {}: {}", m.validation_code, m.field_path, m.description))
            .collect::<Vec<_>>()
            .join("; ");
        Judgement::Fail(DeliveryError::Rejected { status: answer.status, message })
    }

    fn diagnostics(&self) -> Option<DiagnosticsReport> {
        self.cfg.validate.then(|| self.diagnostics.report())
    }
}

impl DestinationSettings for Ga4Config {
    fn name(&self) -> String {
        DestinationKind::Ga4.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        Ga4Config::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(Ga4Destination::new(self.clone())))
    }
}
