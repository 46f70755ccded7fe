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

use crate::config::{REDACTED, check_url};
use crate::destination::{BoxFuture, DestinationSettings, Sender, each_visitor};
use crate::destination::{finish, open, send, send_each, status_verdict};
use crate::error::ConfigError;
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use crate::retry::{RetryPolicy, Verdict, with_retries};
use crate::tracker::now_ms;
use std::fmt;
use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

/// A webhook or warehouse sink: every event as signed JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to `POST`.
    pub url: String,
    /// The HMAC-SHA256 secret the receiver verifies `X-Tally-Signature` with.
    pub secret: String,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url).field("secret", &REDACTED).finish()
    }
}

impl WebhookConfig {
    /// A sink at `url` signing with `secret`.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> WebhookConfig {
        WebhookConfig { url: url.into(), secret: secret.into() }
    }

    fn check(&self, name: &str) -> Result<(), ConfigError> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::Invalid {
                setting: "webhook.name",
                reason: format!(
                    "{name:?}: use 1–64 lower-case letters, digits, '_' or '-' (it names the destination webhook:<name>)"
                ),
            });
        }
        check_url("webhook.url", &self.url).map_err(|e| match e {
            ConfigError::Invalid { setting, reason } => {
                ConfigError::Invalid { setting, reason: format!("webhook {name:?}: {reason}") }
            }
            other => other,
        })?;
        if self.secret.is_empty() {
            return Err(ConfigError::Missing {
                setting: "webhook.secret",
                hint: "a random secret shared with the receiver, which verifies X-Tally-Signature with it",
            });
        }
        Ok(())
    }
}

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

/// A webhook's settings under its sink name, as the builder holds them.
#[derive(Debug, Clone)]
pub(crate) struct NamedWebhook {
    /// The sink name, without the `webhook:` prefix.
    pub(crate) name: String,
    /// Its settings.
    pub(crate) cfg: WebhookConfig,
}

impl DestinationSettings for NamedWebhook {
    fn name(&self) -> String {
        format!("webhook:{}", self.name)
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.cfg.check(&self.name)
    }

    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError> {
        Ok(Box::new(WebhookDestination::new(&self.name, self.cfg.clone())))
    }
}

impl Sender for WebhookDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Webhook
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
