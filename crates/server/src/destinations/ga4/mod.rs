//! Delivery to the GA4 Measurement Protocol.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::ga4::{self as core_ga4, ValidationResponse};

use crate::destinations::diagnostics::DiagnosticTally;
use crate::destinations::{BoxFuture, DestinationSettings, Sender, each_visitor};
use crate::destinations::{finish, open, send, send_each, status_verdict, with_json};
use crate::engine::retry::{RetryPolicy, StatusClass, Verdict, classify_status, with_retries};
use crate::error::ConfigError;
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

mod config;
pub use config::Ga4Config;

/// A configured GA4 destination.
#[derive(Clone)]
pub struct Ga4Destination {
    cfg: Ga4Config,
    url: String,
    /// Validation messages by code (validation mode).
    diagnostics: std::sync::Arc<DiagnosticTally>,
}

impl std::fmt::Debug for Ga4Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the API secret: never shown.
        f.debug_struct("Ga4Destination").field("cfg", &self.cfg).finish()
    }
}

impl Ga4Destination {
    /// From checked configuration.
    pub fn new(cfg: Ga4Config) -> Ga4Destination {
        let url = core_ga4::collect_url(
            &cfg.base_url,
            cfg.measurement_id.trim(),
            cfg.api_secret.expose().trim(),
            cfg.validate,
        );
        Ga4Destination { cfg, url, diagnostics: Default::default() }
    }

    /// Sends `events`; returns one outcome per event, in order.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        let (mut out, batch) = match open(events.len(), core_ga4::build(events, ctx)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        send_each(&mut out, &batch.requests, &batch.indices, |request| self.send(http, retry, request)).await;
        finish(out)
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        request: &core_ga4::Ga4Request,
    ) -> Result<u32, DeliveryError> {
        let secret = self.cfg.api_secret.expose();
        let validate = self.cfg.validate;
        with_retries(retry, |_| async {
            let answer = match send(with_json(http.post(&self.url), request), retry, &[secret]).await {
                Ok(a) => a,
                Err(e) => return Verdict::Retry(e, None),
            };
            if !(validate && classify_status(answer.status) == StatusClass::Success) {
                return status_verdict(&answer, &[secret]);
            }
            let parsed: ValidationResponse = serde_json::from_str(&answer.body).unwrap_or_default();
            if parsed.validation_messages.is_empty() {
                return Verdict::Done(());
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
            Verdict::Fail(DeliveryError::Rejected { status: answer.status, message })
        })
        .await
        .map(|((), attempts)| attempts)
    }
}

impl DestinationSettings for Ga4Config {
    fn name(&self) -> String {
        DestinationKind::Ga4.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        Ga4Config::check(self)
    }

    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError> {
        Ok(Box::new(Ga4Destination::new(self.clone())))
    }
}

impl Sender for Ga4Destination {
    fn name(&self) -> &str {
        DestinationKind::Ga4.as_str()
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Ga4
    }

    fn diagnostics(&self) -> Option<crate::destinations::DiagnosticsReport> {
        self.cfg.validate.then(|| self.diagnostics.report())
    }

    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        retry: &'a RetryPolicy,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        each_visitor(visitors, move |events, ctx| self.deliver(http, retry, events, ctx))
    }
}
