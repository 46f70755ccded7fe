//! What destinations say about requests they accepted or refused, counted per
//! kind and reason for `tally_destination_diagnostics_total`: Meta's
//! `messages` and Graph error codes, GA4's validation messages (validation
//! mode), and the Data Manager API's request statuses
//! ([`DiagnosticsReport`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

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

/// What Google reported about a Data Manager destination's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiagnosticsReport {
    /// Counts by kind and reason.
    pub counts: Vec<DiagnosticCount>,
    /// Requests whose processing result is still awaited.
    pub pending: usize,
    /// The latest finished requests, newest first.
    pub recent: Vec<RequestReport>,
}

impl DiagnosticsReport {
    /// The count of `kind` (`field_warning`, `request_status`,
    /// `processing_error`, `processing_warning`) and `reason`.
    pub fn count(&self, kind: &str, reason: &str) -> u64 {
        self.counts.iter().filter(|c| c.kind == kind && c.reason == reason).map(|c| c.count).sum()
    }
}

/// One diagnostic counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiagnosticCount {
    /// `field_warning` (200 `fieldWarnings`), `request_status` (the final
    /// status of a request: `SUCCESS`, `PARTIAL_SUCCESS`, `FAILED`, or
    /// `UNAVAILABLE` when it could not be learnt), `processing_error` and
    /// `processing_warning` (records, from the status).
    pub kind: &'static str,
    /// Google's reason or status name.
    pub reason: String,
    /// Occurrences (records, for the processing kinds).
    pub count: u64,
}

/// The processing result of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestReport {
    /// Google's request id.
    pub request_id: String,
    /// Events it carried.
    pub events: usize,
    /// Status polls it took.
    pub polls: u32,
    /// The final status.
    pub status: String,
    /// Failed records by reason.
    pub errors: Vec<(String, u64)>,
    /// Records with warnings, by reason.
    pub warnings: Vec<(String, u64)>,
}
