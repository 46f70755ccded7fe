//! Delivery counters, exposed in Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::OutboxStats;

/// Counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    delivered: AtomicU64,
    retried: AtomicU64,
    duplicates: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// One event delivered.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// One attempt failed transiently and was scheduled again.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// One event skipped as already delivered.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// One event dropped for `reason` (a stable snake_case code).
    pub fn dropped(&self, reason: &'static str) {
        let mut m = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// Dropped counts by reason.
    pub fn dropped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Delivered so far.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the outbox gauges.
    pub fn render(&self, outbox: Option<OutboxStats>) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
        };
        counter("tally_events_delivered_total", "Events confirmed by a destination.", self.delivered_total());
        counter(
            "tally_events_retried_total",
            "Attempts that failed transiently and were scheduled again.",
            self.retried.load(Ordering::Relaxed),
        );
        counter(
            "tally_events_duplicate_total",
            "Events skipped because the same key was already delivered.",
            self.duplicates.load(Ordering::Relaxed),
        );
        s.push_str("# HELP tally_events_dropped_total Events not delivered, by reason.\n# TYPE tally_events_dropped_total counter\n");
        for (reason, n) in self.dropped_by_reason() {
            s.push_str(&format!("tally_events_dropped_total{{reason=\"{reason}\"}} {n}\n"));
        }
        if let Some(o) = outbox {
            for (name, help, v) in [
                ("tally_outbox_queued", "Deliveries waiting in the outbox.", o.queued),
                ("tally_outbox_in_flight", "Deliveries leased by a worker.", o.in_flight),
                ("tally_outbox_dead", "Deliveries given up on, kept for inspection.", o.dead),
            ] {
                s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.delivered();
        m.dropped("consent_denied");
        m.dropped("consent_denied");
        let t = m.render(Some(OutboxStats { queued: 2, in_flight: 1, dead: 0 }));
        assert!(t.contains("tally_events_delivered_total 1\n"));
        assert!(t.contains("tally_events_dropped_total{reason=\"consent_denied\"} 2\n"));
        assert!(t.contains("tally_outbox_queued 2\n"));
    }
}
