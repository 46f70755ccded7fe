//! Delivery to a Servoki-style server-events endpoint
//! (`POST https://servoki.com/api/events/server`; the request shape is what the stand-in in
//! `crates/sandbox/src/servoki.rs` checks).
//!
//! One event per request (the API takes one), `Authorization: Bearer <api key>`,
//! the JSON body built by the core. Any 2xx is sent; 408/429/5xx are
//! transient (the outbox retries, honouring `Retry-After`); 401/403 are
//! `Unauthorized`; other 4xx are permanent. Servoki counts repeated
//! `event_id`s once, so retries are safe.

use tally_core::DestinationKind;
use tally_core::destinations::servoki::{self as core_servoki, ServokiEvent};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::destinations::DestinationSettings;
use crate::engine::http::with_json;
use crate::engine::{Deliver, Destination};
use crate::error::{ConfigError, DeliveryError};

mod config;
pub use config::ServokiConfig;

/// A configured Servoki-style destination.
#[derive(Debug, Clone)]
pub(crate) struct ServokiDestination {
    cfg: ServokiConfig,
    core: core_servoki::ServokiOptions,
}

impl ServokiDestination {
    /// From checked configuration.
    pub(crate) fn new(cfg: ServokiConfig) -> ServokiDestination {
        let core = core_servoki::ServokiOptions { site: cfg.site.trim().to_owned() };
        ServokiDestination { cfg, core }
    }
}

impl Destination for ServokiDestination {
    type Request = ServokiEvent;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Servoki
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<ServokiEvent>> {
        let Some(&(events, ctx)) = visitors.first() else { return Ok(Batch::default()) };
        let built = core_servoki::build(events, ctx, &self.core)?;
        // One event per request.
        Ok(Batch {
            indices: built.indices.into_iter().map(|i| vec![i]).collect(),
            requests: built.requests,
            skipped: built.skipped,
        })
    }

    fn request(&self, http: &reqwest::Client, body: &ServokiEvent) -> Result<reqwest::RequestBuilder, DeliveryError> {
        Ok(with_json(http.post(self.cfg.url.trim()).bearer_auth(self.cfg.api_key.expose().trim()), body))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.api_key.expose().trim()]
    }
}

impl DestinationSettings for ServokiConfig {
    fn name(&self) -> String {
        DestinationKind::Servoki.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        ServokiConfig::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(ServokiDestination::new(self.clone())))
    }
}
