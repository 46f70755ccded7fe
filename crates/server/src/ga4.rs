//! Delivery to the GA4 Measurement Protocol.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::ga4::{self as core_ga4, ValidationResponse};

use crate::config::Ga4Config;
use crate::destination::{finish, open, send, send_each, status_verdict, with_json};
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use crate::retry::{RetryPolicy, StatusClass, Verdict, classify_status, with_retries};

/// A configured GA4 destination.
#[derive(Clone)]
pub struct Ga4Destination {
    cfg: Ga4Config,
    url: String,
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
        let url = core_ga4::collect_url(&cfg.base_url, cfg.measurement_id.trim(), cfg.api_secret.trim(), cfg.validate);
        Ga4Destination { cfg, url }
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
        let secret = self.cfg.api_secret.as_str();
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
