//! One configured destination as the engine routes events to it.

use std::time::Duration;

use tally_core::DestinationKind;
use tally_core::destinations::VisitorEvents;

use super::destination::Deliver;
use super::lane::LaneSettings;
use crate::diagnostics::DiagnosticsReport;
use crate::outcome::Outcome;

/// One configured destination.
#[derive(Debug)]
pub(crate) struct Route(Box<dyn Deliver>);

impl Route {
    pub(crate) fn new(dest: Box<dyn Deliver>) -> Route {
        Route(dest)
    }

    /// The name used in results, idempotency keys and metrics (`ga4`, `webhook:warehouse`).
    pub(crate) fn name(&self) -> &str {
        self.0.name()
    }

    /// The kind, for the consent policy.
    pub(crate) fn kind(&self) -> DestinationKind {
        self.0.kind()
    }

    /// What the destination reported about requests it accepted.
    pub(crate) fn diagnostics(&self) -> Option<DiagnosticsReport> {
        self.0.diagnostics()
    }

    /// What a person setting this destination up should know, for `tally check`.
    pub(crate) fn notes(&self) -> Vec<String> {
        self.0.notes()
    }

    /// Whether one request may carry events of many visitors.
    pub(crate) fn merges_visitors(&self) -> bool {
        self.0.merges_visitors()
    }

    /// Its lane's defaults, before the builder's `lane` settings.
    pub(crate) fn lane_defaults(&self) -> LaneSettings {
        self.0.lane_defaults()
    }

    /// One attempt at one lane round: every visitor's events, merged into
    /// shared requests where the destination allows it. One list of outcomes
    /// per visitor, in order.
    pub(crate) async fn deliver_round(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        visitors: &[VisitorEvents<'_>],
    ) -> Vec<Vec<Outcome>> {
        use tracing::Instrument;
        let total: usize = visitors.iter().map(|(e, _)| e.len()).sum();
        let span = tracing::info_span!("deliver", destination = self.name(), events = total, visitors = visitors.len());
        let flat = self.0.deliver(http, timeout, visitors).instrument(span).await;
        let mut flat = flat.into_iter();
        visitors.iter().map(|(events, _)| flat.by_ref().take(events.len()).collect()).collect()
    }
}
