//! The configured destinations, behind one enum so the tracker treats them alike.

use tally_core::destinations::DeliveryContext;
use tally_core::{DestinationKind, Event};

use crate::ga4::Ga4Destination;
use crate::outcome::Outcome;
use crate::retry::RetryPolicy;

/// One configured destination.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Destination {
    /// GA4 Measurement Protocol.
    Ga4(Ga4Destination),
}

impl Destination {
    /// The name used in results, idempotency keys and metrics (`ga4`, `webhook:warehouse`).
    pub fn name(&self) -> &str {
        match self {
            Destination::Ga4(_) => DestinationKind::Ga4.as_str(),
        }
    }

    /// The kind, for the consent policy.
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Ga4(_) => DestinationKind::Ga4,
        }
    }

    /// Sends `events` for one visitor; one outcome per event, in order. Retries
    /// within the call follow `retry`.
    pub async fn deliver(
        &self,
        http: &reqwest::Client,
        retry: &RetryPolicy,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        match self {
            Destination::Ga4(d) => d.deliver(http, retry, events, ctx).await,
        }
    }
}
