//! Delivery to the shop's own webhook or warehouse sinks, Tally's own contract
//! (the body is [`tally_core::destinations::webhook`]'s).
//!
//! One signed request per event:
//!
//! * body: the core [`WebhookRecord`] JSON (`schema_version` `"1"`);
//! * `X-Tally-Timestamp: <unix seconds>` and
//!   `X-Tally-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//!   (receivers check it with [`tally_core::destinations::webhook::verify`]);
//! * `Idempotency-Key: <event id>`.
//!
//! Any 2xx is sent; 408, 425, 429 and 5xx are retried (honouring
//! `Retry-After`); 401/403 are `Unauthorized`; other 4xx are never retried.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::webhook::{self as core_webhook, WebhookRecord};

use crate::config::WebhookConfig;
use crate::destination::{finish, open, send, send_each, status_verdict};
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use crate::retry::{RetryPolicy, Verdict, with_retries};
use crate::tracker::now_ms;

/// A configured webhook sink, named `webhook:<name>`.
#[derive(Debug, Clone)]
pub struct WebhookDestination {
    name: String,
    cfg: WebhookConfig,
}

impl WebhookDestination {
    /// The sink `name` (without the `webhook:` prefix) from checked configuration.
    pub fn new(name: &str, cfg: WebhookConfig) -> WebhookDestination {
        WebhookDestination { name: format!("webhook:{name}"), cfg }
    }

    /// `webhook:<name>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `events`; returns one outcome per event, in order.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        let (mut out, batch) = match open(events.len(), core_webhook::build(events, ctx)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        send_each(&mut out, &batch.records, &batch.indices, |record| self.send(http, retry, record)).await;
        finish(out)
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        record: &WebhookRecord,
    ) -> Result<u32, DeliveryError> {
        let body = tally_core::destinations::json_body::to_vec(record)
            .map_err(|e| DeliveryError::Rejected { status: 0, message: format!("record not serialisable: {e}") })?;
        let secrets = [self.cfg.secret.as_str()];
        with_retries(retry, |_| {
            // Signed per attempt: a retry carries a fresh timestamp.
            let ts = now_ms().div_euclid(1000);
            let signature = core_webhook::sign(self.cfg.secret.as_bytes(), ts, &body);
            let req = http
                .post(self.cfg.url.trim())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(core_webhook::TIMESTAMP_HEADER, ts.to_string())
                .header(core_webhook::SIGNATURE_HEADER, signature)
                .header(core_webhook::IDEMPOTENCY_HEADER, record.idempotency_key())
                .body(body.clone());
            async move {
                let answer = match send(req, retry, &secrets).await {
                    Ok(a) => a,
                    Err(e) => return Verdict::Retry(e, None),
                };
                status_verdict(&answer, &secrets)
            }
        })
        .await
        .map(|((), attempts)| attempts)
    }
}
