//! Delivery to a Servoki-style server-events endpoint
//! (`POST https://servoki.com/api/events/server`; the request shape is what the stand-in in
//! `crates/sandbox/src/servoki.rs` checks).
//!
//! One event per request (the API takes one), `Authorization: Bearer <api key>`,
//! the JSON body built by the core. Any 2xx is sent; 408/429/5xx are
//! transient (the outbox retries, honouring `Retry-After`); 401/403 are
//! `Unauthorized`; other 4xx are permanent. Servoki counts repeated
//! `event_id`s once, so retries are safe.

use tally_core::Event;
use tally_core::destinations::DeliveryContext;
use tally_core::destinations::servoki::{self as core_servoki, ServokiEvent};

use crate::destinations::{BoxFuture, DestinationSettings, Sender, each_visitor};
use crate::destinations::{finish, open, send, send_each, status_verdict, with_json};
use crate::engine::retry::{RetryPolicy, Verdict, with_retries};
use crate::error::ConfigError;
use crate::error::DeliveryError;
use crate::outcome::Outcome;
use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

mod config;
pub use config::ServokiConfig;

/// A configured Servoki-style destination.
#[derive(Debug, Clone)]
pub struct ServokiDestination {
    cfg: ServokiConfig,
    core: core_servoki::ServokiConfig,
}

impl ServokiDestination {
    /// From checked configuration.
    pub fn new(cfg: ServokiConfig) -> ServokiDestination {
        let core = core_servoki::ServokiConfig { site: cfg.site.trim().to_owned() };
        ServokiDestination { cfg, core }
    }

    /// Sends `events`; returns one outcome per event, in order.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        let (mut out, batch) = match open(events.len(), core_servoki::build(events, ctx, &self.core)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        send_each(&mut out, &batch.requests, &batch.indices, |body| self.send(http, retry, body)).await;
        finish(out)
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        body: &ServokiEvent,
    ) -> Result<u32, DeliveryError> {
        let key = self.cfg.api_key.expose().trim();
        let secrets = [key];
        with_retries(retry, |_| async {
            let req = with_json(http.post(self.cfg.url.trim()).bearer_auth(key), body);
            let answer = match send(req, retry, &secrets).await {
                Ok(a) => a,
                Err(e) => return Verdict::Retry(e, None),
            };
            status_verdict(&answer, &secrets)
        })
        .await
        .map(|((), attempts)| attempts)
    }
}

impl DestinationSettings for ServokiConfig {
    fn name(&self) -> String {
        DestinationKind::Servoki.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        ServokiConfig::check(self)
    }

    fn sender(&self) -> Result<Box<dyn Sender>, ConfigError> {
        Ok(Box::new(ServokiDestination::new(self.clone())))
    }
}

impl Sender for ServokiDestination {
    fn name(&self) -> &str {
        DestinationKind::Servoki.as_str()
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Servoki
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
