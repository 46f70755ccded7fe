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

use tally_core::DestinationKind;
use tally_core::destinations::webhook::{self as core_webhook, WebhookRecords};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::clock::now_ms;
use crate::destinations::DestinationSettings;
use crate::engine::lane::LaneSettings;
use crate::engine::{Deliver, Destination};
use crate::error::{ConfigError, DeliveryError};

mod config;
pub use config::WebhookConfig;

/// A configured webhook sink, named `webhook:<name>`.
#[derive(Debug, Clone)]
pub(crate) struct WebhookDestination {
    name: String,
    cfg: WebhookConfig,
}

impl WebhookDestination {
    /// The sink `name` (without the `webhook:` prefix) from checked configuration.
    pub(crate) fn new(name: &str, cfg: WebhookConfig) -> WebhookDestination {
        WebhookDestination { name: format!("webhook:{name}"), cfg }
    }
}

/// One request's body, serialised once and signed at each attempt, and its `Idempotency-Key`.
#[derive(Debug)]
pub(crate) struct SignedBody {
    body: Result<Vec<u8>, String>,
    key: String,
}

impl Destination for WebhookDestination {
    type Request = SignedBody;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Webhook
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn merges_visitors(&self) -> bool {
        self.cfg.batch > 1
    }

    fn lane_defaults(&self) -> LaneSettings {
        let kind = LaneSettings::for_kind(DestinationKind::Webhook);
        if self.cfg.batch > 1 { kind.max_batch(self.cfg.batch).window(8) } else { kind }
    }

    /// One request per record, or records in requests of [`WebhookConfig::batch`].
    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<SignedBody>> {
        let built = core_webhook::build_many(visitors)?;
        let (requests, indices) = if self.cfg.batch <= 1 {
            let requests = built
                .records
                .iter()
                .map(|record| SignedBody {
                    body: tally_core::destinations::json_body::to_vec(record).map_err(|e| e.to_string()),
                    key: record.idempotency_key().to_owned(),
                })
                .collect();
            (requests, built.indices.iter().map(|&i| vec![i]).collect())
        } else {
            let requests = built
                .records
                .chunks(self.cfg.batch)
                .map(|records| SignedBody {
                    body: tally_core::destinations::json_body::to_vec(&WebhookRecords::new(records))
                        .map_err(|e| e.to_string()),
                    key: core_webhook::batch_idempotency_key(records),
                })
                .collect();
            (requests, built.indices.chunks(self.cfg.batch).map(<[usize]>::to_vec).collect())
        };
        Ok(Batch { requests, indices, skipped: built.skipped })
    }

    /// Signed per attempt: a retry carries a fresh timestamp.
    fn request(&self, http: &reqwest::Client, signed: &SignedBody) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let body = signed
            .body
            .as_ref()
            .map_err(|e| DeliveryError::Rejected { status: 0, message: format!("record not serialisable: {e}") })?;
        let ts = now_ms().div_euclid(1000);
        let signature = core_webhook::sign(self.cfg.secret.expose().as_bytes(), ts, body);
        Ok(http
            .post(self.cfg.url.trim())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(core_webhook::TIMESTAMP_HEADER, ts.to_string())
            .header(core_webhook::SIGNATURE_HEADER, signature)
            .header(core_webhook::IDEMPOTENCY_HEADER, signed.key.as_str())
            .body(body.clone()))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.secret.expose()]
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

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(WebhookDestination::new(&self.name, self.cfg.clone())))
    }
}
