//! Delivery to the GA4 Measurement Protocol.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::ga4::{self as core_ga4, ValidationResponse};

use crate::config::check_url;
use crate::destination::{BoxFuture, DestinationSettings, Sender, each_visitor};
use crate::destination::{finish, open, send, send_each, status_verdict, with_json};
use crate::diagnostics::DiagnosticTally;
use crate::error::ConfigError;
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use crate::retry::{RetryPolicy, StatusClass, Verdict, classify_status, with_retries};
use crate::secret::Secret;
use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

/// GA4 Measurement Protocol settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ga4Config {
    /// `G-…` measurement id of the web stream.
    pub measurement_id: String,
    /// Measurement Protocol API secret (Admin › Data streams › Measurement Protocol API secrets).
    pub api_secret: Secret,
    /// Base URL; default Google's, `EU_BASE_URL` for EU collection, loopback in tests.
    pub base_url: String,
    /// Send to `/debug/mp/collect` and turn `validationMessages` into errors.
    pub validate: bool,
}

impl Ga4Config {
    /// GA4 with Google's default endpoint.
    pub fn new(measurement_id: impl Into<String>, api_secret: impl Into<Secret>) -> Ga4Config {
        Ga4Config {
            measurement_id: measurement_id.into(),
            api_secret: api_secret.into(),
            base_url: core_ga4::DEFAULT_BASE_URL.to_owned(),
            validate: false,
        }
    }

    /// Overrides the base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Uses the EU collection endpoint.
    pub fn eu(self) -> Self {
        self.base_url(core_ga4::EU_BASE_URL)
    }

    /// Validation mode (debug endpoint).
    pub fn validate(mut self, on: bool) -> Self {
        self.validate = on;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.measurement_id.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "ga4.measurement_id",
                hint: "the G-… id of your web data stream",
            });
        }
        core_ga4::validate_measurement_id(self.measurement_id.trim()).map_err(|e| ConfigError::Invalid {
            setting: "ga4.measurement_id",
            // The core error names the setting too; keep only its reason.
            reason: match e {
                tally_core::Error::Invalid { reason, .. } => format!("{:?}: {reason}", self.measurement_id),
                other => other.to_string(),
            },
        })?;
        if self.api_secret.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "ga4.api_secret",
                hint: "create one in GA4 Admin › Data streams › Measurement Protocol API secrets",
            });
        }
        check_url("ga4.base_url", &self.base_url)
    }
}

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

    fn diagnostics(&self) -> Option<crate::google_ads::DiagnosticsReport> {
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
