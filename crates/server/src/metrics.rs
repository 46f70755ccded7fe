//! Delivery counters, exposed in Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::store::OutboxStats;

/// One destination's counters since start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DestinationCounts {
    /// Events confirmed by the destination.
    pub delivered: u64,
    /// Attempts that failed transiently (or could not start) and were scheduled again.
    pub retried: u64,
    /// Events skipped because the same key was already delivered or in flight.
    pub duplicates: u64,
    /// Events not delivered, by reason (a stable snake_case code).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Events of known bots withheld, by [`BotKind::code`](crate::bots::BotKind::code).
    pub bot_filtered: BTreeMap<&'static str, u64>,
    /// Events of known bots sent anyway (confirmed orders, `bots = "send"`), by kind.
    pub bot_flagged: BTreeMap<&'static str, u64>,
}

/// Counters since start, per destination (`ga4`, `webhook:warehouse` …), so an
/// operator sees which destination is failing or falling behind.
#[derive(Debug, Default)]
pub struct Metrics {
    by_destination: Mutex<BTreeMap<String, DestinationCounts>>,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn count(&self, destination: &str, f: impl FnOnce(&mut DestinationCounts)) {
        let mut m = self.by_destination.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(destination) {
            Some(c) => f(c),
            None => f(m.entry(destination.to_owned()).or_default()),
        }
    }

    /// One event delivered to `destination`.
    pub fn delivered(&self, destination: &str) {
        self.count(destination, |c| c.delivered += 1);
    }

    /// One attempt for `destination` failed transiently and was scheduled again.
    pub fn retried(&self, destination: &str) {
        self.count(destination, |c| c.retried += 1);
    }

    /// One event for `destination` skipped as already delivered.
    pub fn duplicate(&self, destination: &str) {
        self.count(destination, |c| c.duplicates += 1);
    }

    /// One event for `destination` dropped for `reason` (a stable snake_case code).
    pub fn dropped(&self, destination: &str, reason: &'static str) {
        self.dropped_n(destination, reason, 1);
    }

    /// A store operation (`ack`, `retry`, …) failed; the store logged why.
    /// The delivery it belonged to stays in the outbox and is tried again.
    pub fn store_error(&self, operation: &'static str) {
        let mut m = self.store_errors.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(operation).or_default() += 1;
    }

    /// Failed store operations since start, by operation.
    pub fn store_errors(&self) -> BTreeMap<&'static str, u64> {
        self.store_errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `n` events of a known bot (`kind`, a [`BotKind::code`](crate::bots::BotKind::code))
    /// withheld from `destination` (also counted as dropped, reason `bot`).
    pub fn bot_filtered(&self, destination: &str, kind: &'static str, n: usize) {
        self.count(destination, |c| {
            *c.bot_filtered.entry(kind).or_default() += n as u64;
            *c.dropped.entry("bot").or_default() += n as u64;
        });
    }

    /// `n` events of a known bot sent to `destination` anyway, flagged.
    pub fn bot_flagged(&self, destination: &str, kind: &'static str, n: usize) {
        self.count(destination, |c| *c.bot_flagged.entry(kind).or_default() += n as u64);
    }

    /// `n` events for `destination` dropped for `reason`.
    pub fn dropped_n(&self, destination: &str, reason: &'static str, n: usize) {
        self.count(destination, |c| *c.dropped.entry(reason).or_default() += n as u64);
    }

    /// Every destination's counters.
    pub fn by_destination(&self) -> BTreeMap<String, DestinationCounts> {
        self.by_destination.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Dropped counts by reason, all destinations together.
    pub fn dropped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for c in self.by_destination().values() {
            for (reason, n) in &c.dropped {
                *out.entry(*reason).or_default() += n;
            }
        }
        out
    }

    /// Delivered so far, all destinations together.
    pub fn delivered_total(&self) -> u64 {
        self.by_destination().values().map(|c| c.delivered).sum()
    }

    /// The Prometheus text exposition, every counter labelled by destination,
    /// with the outbox gauges: the totals, and per destination when known.
    pub fn render(
        &self,
        outbox: Option<OutboxStats>,
        by_destination: Option<&BTreeMap<String, OutboxStats>>,
    ) -> String {
        let all = self.by_destination();
        let mut s = String::new();
        type Counter = (&'static str, &'static str, fn(&DestinationCounts) -> u64);
        let counters: [Counter; 3] = [
            ("tally_events_delivered_total", "Events confirmed by a destination.", |c| c.delivered),
            ("tally_events_retried_total", "Attempts that failed transiently and were scheduled again.", |c| c.retried),
            ("tally_events_duplicate_total", "Events skipped because the same key was already delivered.", |c| {
                c.duplicates
            }),
        ];
        for (name, help, get) in counters {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (d, c) in &all {
                s.push_str(&format!("{name}{{destination=\"{}\"}} {}\n", label(d), get(c)));
            }
        }
        s.push_str("# HELP tally_events_dropped_total Events not delivered, by destination and reason.\n");
        s.push_str("# TYPE tally_events_dropped_total counter\n");
        for (d, c) in &all {
            for (reason, n) in &c.dropped {
                s.push_str(&format!(
                    "tally_events_dropped_total{{destination=\"{}\",reason=\"{reason}\"}} {n}\n",
                    label(d)
                ));
            }
        }
        type BotCounter = (&'static str, &'static str, fn(&DestinationCounts) -> &BTreeMap<&'static str, u64>);
        let bots: [BotCounter; 2] = [
            (
                "tally_bot_filtered_total",
                "Events of known bots (crawler, link_preview, headless) withheld from a destination.",
                |c| &c.bot_filtered,
            ),
            (
                "tally_bot_flagged_total",
                "Events of known bots sent anyway: orders a backend confirmed, or bots = \"send\".",
                |c| &c.bot_flagged,
            ),
        ];
        for (name, help, get) in bots {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (d, c) in &all {
                for (reason, n) in get(c) {
                    s.push_str(&format!("{name}{{destination=\"{}\",reason=\"{reason}\"}} {n}\n", label(d)));
                }
            }
        }
        s.push_str(
            "# HELP tally_store_errors_total Store operations that failed, by operation (the work stays queued).\n",
        );
        s.push_str("# TYPE tally_store_errors_total counter\n");
        for (op, n) in self.store_errors() {
            s.push_str(&format!("tally_store_errors_total{{operation=\"{op}\"}} {n}\n"));
        }
        if let Some(o) = outbox {
            type Gauge = (&'static str, &'static str, fn(&OutboxStats) -> usize);
            let gauges: [Gauge; 3] = [
                ("tally_outbox_queued", "Deliveries waiting in the outbox.", |o| o.queued),
                ("tally_outbox_in_flight", "Deliveries leased by a worker.", |o| o.in_flight),
                ("tally_outbox_dead", "Deliveries given up on, kept for inspection.", |o| o.dead),
            ];
            for (name, help, get) in gauges {
                s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n", get(&o)));
                for (d, per) in by_destination.into_iter().flatten() {
                    s.push_str(&format!("{name}{{destination=\"{}\"}} {}\n", label(d), get(per)));
                }
            }
        }
        s
    }
}

/// The lane gauges: `(destination, window, rounds in flight)` each.
pub(crate) fn render_lanes(lanes: &[(&str, usize, usize)]) -> String {
    let mut s = String::new();
    s.push_str("# HELP tally_lane_window Requests a destination's lane may have in flight now (adaptive).\n");
    s.push_str("# TYPE tally_lane_window gauge\n");
    for (d, w, _) in lanes {
        s.push_str(&format!("tally_lane_window{{destination=\"{}\"}} {w}\n", label(d)));
    }
    s.push_str("# HELP tally_lane_in_flight Requests a destination's lane has in flight.\n");
    s.push_str("# TYPE tally_lane_in_flight gauge\n");
    for (d, _, n) in lanes {
        s.push_str(&format!("tally_lane_in_flight{{destination=\"{}\"}} {n}\n", label(d)));
    }
    s
}

/// What destinations reported about accepted requests:
/// `tally_destination_diagnostics_total{destination,kind,reason}`, and the
/// requests still awaiting a processing result.
pub(crate) fn render_diagnostics(by_destination: &BTreeMap<String, crate::diagnostics::DiagnosticsReport>) -> String {
    let mut s = String::new();
    s.push_str(
        "# HELP tally_destination_diagnostics_total What destinations reported, by kind and reason: \
         Data Manager field warnings, request statuses, processing errors and warnings (records); \
         Meta messages and error codes; GA4 validation messages.\n",
    );
    s.push_str("# TYPE tally_destination_diagnostics_total counter\n");
    for (d, r) in by_destination {
        for c in &r.counts {
            s.push_str(&format!(
                "tally_destination_diagnostics_total{{destination=\"{}\",kind=\"{}\",reason=\"{}\"}} {}\n",
                label(d),
                c.kind,
                label(&c.reason),
                c.count
            ));
        }
    }
    s.push_str("# HELP tally_destination_requests_processing Accepted requests whose processing result is awaited.\n");
    s.push_str("# TYPE tally_destination_requests_processing gauge\n");
    for (d, r) in by_destination {
        s.push_str(&format!("tally_destination_requests_processing{{destination=\"{}\"}} {}\n", label(d), r.pending));
    }
    s
}

/// A Prometheus label value: backslash, quote and newline escaped.
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.delivered("ga4");
        m.delivered("meta");
        m.delivered("meta");
        m.dropped("meta", "consent_denied");
        m.dropped("meta", "consent_denied");
        m.dropped("webhook:\"odd\"", "rejected");
        let per = BTreeMap::from([("meta".to_owned(), OutboxStats { queued: 2, in_flight: 1, dead: 0 })]);
        let t = m.render(Some(OutboxStats { queued: 2, in_flight: 1, dead: 0 }), Some(&per));
        assert!(t.contains("tally_events_delivered_total{destination=\"ga4\"} 1\n"), "{t}");
        assert!(t.contains("tally_events_delivered_total{destination=\"meta\"} 2\n"), "{t}");
        assert!(t.contains("tally_events_dropped_total{destination=\"meta\",reason=\"consent_denied\"} 2\n"), "{t}");
        assert!(
            t.contains("tally_events_dropped_total{destination=\"webhook:\\\"odd\\\"\",reason=\"rejected\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("tally_outbox_queued 2\n"));
        assert!(t.contains("tally_outbox_queued{destination=\"meta\"} 2\n"), "{t}");
        assert!(t.contains("tally_outbox_in_flight{destination=\"meta\"} 1\n"), "{t}");
        assert_eq!(t.matches("# TYPE tally_events_delivered_total counter").count(), 1);
        assert_eq!(m.delivered_total(), 3);
        assert_eq!(m.dropped_by_reason().get("consent_denied"), Some(&2));
        m.store_error("ack");
        assert!(m.render(None, None).contains("tally_store_errors_total{operation=\"ack\"} 1\n"));
        m.bot_filtered("meta", "crawler", 2);
        m.bot_flagged("webhook:wh", "headless", 1);
        let t = m.render(None, None);
        assert!(t.contains("tally_bot_filtered_total{destination=\"meta\",reason=\"crawler\"} 2\n"), "{t}");
        assert!(t.contains("tally_bot_flagged_total{destination=\"webhook:wh\",reason=\"headless\"} 1\n"), "{t}");
        assert!(t.contains("tally_events_dropped_total{destination=\"meta\",reason=\"bot\"} 2\n"), "{t}");
    }
}
