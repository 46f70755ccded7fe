//! What destinations say about requests they accepted or refused, counted per
//! kind and reason for `tally_destination_diagnostics_total`: Meta's
//! `messages` and Graph error codes, GA4's validation messages (validation
//! mode), and the Data Manager API's request statuses
//! ([`DiagnosticsReport`](crate::google_ads::DiagnosticsReport)).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::google_ads::{DiagnosticCount, DiagnosticsReport};

/// Distinct reasons kept per kind; more are counted under `other`, so a
/// destination that puts ids in its messages cannot grow the metrics without bound.
pub const MAX_REASONS: usize = 50;

/// The longest reason kept (longer ones are cut at a character boundary).
const MAX_REASON_LEN: usize = 80;

/// Counts by (kind, reason), bounded per kind.
#[derive(Debug, Default)]
pub(crate) struct DiagnosticTally {
    counts: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl DiagnosticTally {
    /// Counts `n` of `reason` under `kind`.
    pub(crate) fn note(&self, kind: &'static str, reason: &str, n: u64) {
        let mut reason = reason.trim();
        if reason.len() > MAX_REASON_LEN {
            let mut end = MAX_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind, reason.to_owned());
        if !c.contains_key(&key) && c.keys().filter(|(k, _)| *k == kind).count() >= MAX_REASONS {
            *c.entry((kind, "other".to_owned())).or_default() += n;
            return;
        }
        *c.entry(key).or_default() += n;
    }

    /// The counts as a report (nothing pending, no request history).
    pub(crate) fn report(&self) -> DiagnosticsReport {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        DiagnosticsReport {
            counts: c
                .iter()
                .map(|((kind, reason), n)| DiagnosticCount { kind, reason: reason.clone(), count: *n })
                .collect(),
            pending: 0,
            recent: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_cut_and_bounded_per_kind() {
        let t = DiagnosticTally::default();
        t.note("message", "  too little customer information ", 1);
        t.note("message", "too little customer information", 2);
        t.note("error", &"é".repeat(100), 1);
        for n in 0..MAX_REASONS + 5 {
            t.note("validation", &format!("CODE_{n}"), 1);
        }
        let r = t.report();
        assert_eq!(r.count("message", "too little customer information"), 3);
        assert_eq!(r.count("error", &"é".repeat(40)), 1, "cut at 80 bytes, on a character boundary");
        assert_eq!(r.counts.iter().filter(|c| c.kind == "validation").count(), MAX_REASONS + 1);
        assert_eq!(r.count("validation", "other"), 5);
        assert_eq!(r.count("message", "other"), 0, "the bound is per kind");
    }
}
