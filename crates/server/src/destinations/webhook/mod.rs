//! Delivery to the shop's own webhook or warehouse sinks, Tally's own contract
//! (the body is [`tally_core::destinations::webhook`]'s).
//!
//! One signed request per event, or with [`WebhookConfig::batch`] above 1, up
//! to that many events of any visitors per request:
//!
//! * body: the core [`WebhookRecord`] JSON (`schema_version` `"1"`); batched,
//!   `{"schema_version":"1","records":[…]}` ([`WebhookRecords`]);
//! * `X-Tally-Timestamp: <unix seconds>` and
//!   `X-Tally-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//!   (receivers check it with [`tally_core::destinations::webhook::verify`]);
//! * `Idempotency-Key: <event id>`; batched,
//!   [`batch_idempotency_key`](tally_core::destinations::webhook::batch_idempotency_key)
//!   of the records (receivers still deduplicate records by `event_id`).
//!
//! Any 2xx is sent; 408, 425, 429 and 5xx are retried (honouring
//! `Retry-After`); 401/403 are `Unauthorized`; other 4xx are never retried.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::webhook::{self as core_webhook, WebhookRecord, WebhookRecords};

use crate::clock::now_ms;
use crate::destinations::{BoxFuture, DestinationSettings, Sender, each_visitor};
use crate::destinations::{finish, open, send, send_each, status_verdict};
use crate::engine::lane::LaneSettings;
use crate::engine::retry::{RetryPolicy, Verdict, with_retries};
use crate::error::ConfigError;
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

mod config;
pub use config::WebhookConfig;

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

    /// Sends `events`; returns one outcome per event, in order.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        self.deliver_many(http, retry, &[(events, ctx)]).await
    }

    /// Sends the events of `visitors`: one request per record, or records in
    /// requests of [`WebhookConfig::batch`]. One outcome per event, in order.
    async fn deliver_many(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        visitors: &[VisitorEvents<'_>],
    ) -> Vec<Outcome> {
        let len = visitors.iter().map(|(events, _)| events.len()).sum();
        let (mut out, batch) = match open(len, core_webhook::build_many(visitors)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        if self.cfg.batch <= 1 {
            send_each(&mut out, &batch.records, &batch.indices, |record| {
                let body = tally_core::destinations::json_body::to_vec(record);
                self.send(http, retry, body, record.idempotency_key().to_owned())
            })
            .await;
        } else {
            let chunks: Vec<&[WebhookRecord]> = batch.records.chunks(self.cfg.batch).collect();
            let carried: Vec<Vec<usize>> = batch.indices.chunks(self.cfg.batch).map(<[usize]>::to_vec).collect();
            send_each(&mut out, &chunks, &carried, |records| {
                let body = tally_core::destinations::json_body::to_vec(&WebhookRecords::new(records));
                self.send(http, retry, body, core_webhook::batch_idempotency_key(records))
            })
            .await;
        }
        finish(out)
    }

    /// Sends one signed body under `key`, retrying per `retry`.
    async fn send<E: std::fmt::Display>(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        body: Result<Vec<u8>, E>,
        key: String,
    ) -> Result<u32, DeliveryError> {
        let body =
            body.map_err(|e| DeliveryError::Rejected { status: 0, message: format!("record not serialisable: {e}") })?;
        let secrets = [self.cfg.secret.expose()];
        with_retries(retry, |_| {
            // Signed per attempt: a retry carries a fresh timestamp.
            let ts = now_ms().div_euclid(1000);
            let signature = core_webhook::sign(self.cfg.secret.expose().as_bytes(), ts, &body);
            let req = http
                .post(self.cfg.url.trim())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(core_webhook::TIMESTAMP_HEADER, ts.to_string())
                .header(core_webhook::SIGNATURE_HEADER, signature)
                .header(core_webhook::IDEMPOTENCY_HEADER, key.as_str())
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

    fn merges_visitors(&self) -> bool {
        self.cfg.batch > 1
    }

    fn lane_defaults(&self) -> LaneSettings {
        let kind = LaneSettings::for_kind(DestinationKind::Webhook);
        if self.cfg.batch > 1 { kind.max_batch(self.cfg.batch).window(8) } else { kind }
    }

    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        retry: &'a RetryPolicy,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        if self.cfg.batch > 1 {
            Box::pin(self.deliver_many(http, retry, visitors))
        } else {
            each_visitor(visitors, move |events, ctx| self.deliver(http, retry, events, ctx))
        }
    }
}
