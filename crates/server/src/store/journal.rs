//! The order journal: every purchase production QA counted, one row each,
//! kept by the store so the status page and `tally reconcile --since` answer
//! from the collector's own data, across restarts.
//!
//! A row is written where a [production QA](crate::production_qa) counter is
//! incremented, under the same once-only mark, so the journal and the
//! counters agree: an order confirmed by the shop's backend, a purchase only
//! a browser reported, a refund the backend reported, a purchase or refund a
//! destination confirmed (with the match keys it carried), a purchase
//! deduplicated, withheld or given up on, and each dead entry an operator
//! replayed (`tally dead replay`). Rows older
//! than the journal's retention ([`JOURNAL_RETENTION`] by default) are
//! deleted as new ones are written.
//!
//! The SQLite store keeps rows in a `journal` table indexed by time, the
//! Redis store in a sorted set scored by time, the in-memory outbox in
//! memory (at most [`MEMORY_JOURNAL_ROWS`] rows). A custom [`Outbox`](super::Outbox)
//! that keeps none answers [`StoreError::Unsupported`](super::StoreError::Unsupported).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tally_core::reconcile::{Delivery, OrderRecord};

/// How long rows are kept unless the tracker is told otherwise: 8 days, so
/// `tally reconcile --since 7d` still has a whole week.
pub const JOURNAL_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);

/// The most rows the in-memory journal holds (oldest dropped first).
pub const MEMORY_JOURNAL_ROWS: usize = 200_000;

/// One journal row: what happened, and when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRow {
    /// When it was counted (Unix ms).
    pub at_ms: i64,
    /// What was counted.
    pub entry: JournalEntry,
}

/// What a journal row records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalEntry {
    /// An order the shop's backend confirmed (a server-reported purchase).
    Confirmed {
        /// The order.
        order: OrderRecord,
    },
    /// A purchase only a browser reported (so far).
    Browser {
        /// The order as the browser reported it.
        order: OrderRecord,
    },
    /// A refund the shop's backend reported.
    Refunded {
        /// The order refunded.
        order_id: String,
        /// The amount refunded (`None`: the whole order).
        #[serde(default)]
        value: Option<tally_core::Amount>,
        /// ISO 4217 code.
        currency: String,
    },
    /// A purchase (or a refund) a destination confirmed.
    Delivered {
        /// What it received.
        delivery: Delivery,
        /// The match keys it carried ([`MatchKey::as_str`](tally_core::match_keys::MatchKey::as_str)).
        #[serde(default)]
        match_keys: Vec<String>,
    },
    /// A purchase already delivered to `destination` that came again, not re-sent.
    Deduplicated {
        /// Destination name.
        destination: String,
        /// The order id.
        order_id: String,
    },
    /// A purchase deliberately not sent to `destination`.
    Withheld {
        /// Destination name.
        destination: String,
        /// The order id.
        order_id: String,
        /// Why ([`SkipReason::code`](crate::SkipReason::code), e.g. `consent_denied`).
        reason: String,
    },
    /// A purchase given up on at `destination`.
    Dead {
        /// Destination name.
        destination: String,
        /// The order id.
        order_id: String,
        /// `rejected` or `retries_exhausted`.
        reason: String,
    },
    /// A dead entry an operator put back into the outbox (`tally dead replay`),
    /// to be sent again with its original event id.
    Replayed {
        /// Destination name.
        destination: String,
        /// The event's name (`purchase` …).
        event: String,
        /// The event id, unchanged.
        event_id: String,
        /// The order, for a purchase or refund.
        #[serde(default)]
        order_id: Option<String>,
        /// Why it had died.
        reason: String,
    },
}

impl JournalRow {
    /// The row as one line of JSON (how the stores keep it).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A row read back from [`JournalRow::to_json`]; `None` for text that is
    /// not one (a row written by a newer version is skipped, not fatal).
    pub fn from_json(text: &str) -> Option<JournalRow> {
        serde_json::from_str(text).ok()
    }
}

/// The in-memory journal of [`MemoryOutbox`](super::MemoryOutbox).
#[derive(Debug, Default)]
pub(crate) struct MemoryJournal {
    rows: VecDeque<JournalRow>,
}

impl MemoryJournal {
    /// Appends `rows` and forgets those before `keep_since_ms` and beyond
    /// [`MEMORY_JOURNAL_ROWS`].
    pub(crate) fn append(&mut self, rows: &[JournalRow], keep_since_ms: i64) {
        self.rows.extend(rows.iter().cloned());
        while self.rows.front().is_some_and(|r| r.at_ms < keep_since_ms) || self.rows.len() > MEMORY_JOURNAL_ROWS {
            self.rows.pop_front();
        }
    }

    /// The rows at or after `since_ms`, oldest first.
    pub(crate) fn since(&self, since_ms: i64) -> Vec<JournalRow> {
        let mut rows: Vec<JournalRow> = self.rows.iter().filter(|r| r.at_ms >= since_ms).cloned().collect();
        rows.sort_by_key(|r| r.at_ms);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::Amount;

    fn confirmed(at_ms: i64, id: &str) -> JournalRow {
        JournalRow {
            at_ms,
            entry: JournalEntry::Confirmed {
                order: OrderRecord {
                    order_id: id.into(),
                    value: Amount::parse("19.99").unwrap(),
                    currency: "EUR".into(),
                    refunded: None,
                },
            },
        }
    }

    #[test]
    fn rows_round_trip_as_json_and_unknown_rows_are_skipped() {
        let row = confirmed(1_000, "ORD-1");
        let text = row.to_json();
        assert!(text.contains("\"kind\":\"confirmed\""), "{text}");
        assert_eq!(JournalRow::from_json(&text), Some(row));
        assert_eq!(JournalRow::from_json("{\"at_ms\":1,\"entry\":{\"kind\":\"from_the_future\"}}"), None);
    }

    #[test]
    fn the_memory_journal_forgets_by_age_and_by_count() {
        let mut j = MemoryJournal::default();
        j.append(&[confirmed(1_000, "A"), confirmed(2_000, "B")], 0);
        j.append(&[confirmed(3_000, "C")], 1_500);
        let ids: Vec<i64> = j.since(0).iter().map(|r| r.at_ms).collect();
        assert_eq!(ids, [2_000, 3_000]);
        assert_eq!(j.since(2_500).len(), 1);
        let many: Vec<JournalRow> = (0..MEMORY_JOURNAL_ROWS as i64 + 10).map(|i| confirmed(10_000 + i, "X")).collect();
        j.append(&many, 0);
        assert_eq!(j.since(0).len(), MEMORY_JOURNAL_ROWS);
        assert_eq!(j.since(0)[0].at_ms, 10_010);
    }
}
