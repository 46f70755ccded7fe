//! Production QA marks: what the engine counts per order, once, and the
//! order journal it writes (see [`crate::production_qa`]).

use super::Engine;
use crate::clock::now_ms;
use crate::production_qa::{self as qa, Noted};
use crate::store::{Claim, JournalEntry, JournalRow, StoreError};

impl Engine {
    /// Counts `notes`, each once: the marks of those that have one are
    /// claimed in the idempotency store first, and a mark already taken means
    /// the order was counted before. A store that cannot answer does not
    /// lose the count (it may then count twice).
    pub(crate) async fn record_orders(&self, notes: Vec<Noted>) {
        if notes.is_empty() {
            return;
        }
        let (keyed, plain): (Vec<Noted>, Vec<Noted>) = notes.into_iter().partition(|n| n.once.is_some());
        let mut counted = Vec::with_capacity(plain.len() + keyed.len());
        for n in plain {
            if let Some(note) = n.note {
                self.orders.count(note);
            }
            counted.push(n.entry);
        }
        if !keyed.is_empty() {
            self.count_once(keyed, &mut counted).await;
        }
        self.journal(counted).await;
    }

    /// Counts the `keyed` notes whose once-only mark is still free, and adds
    /// their journal rows to `counted`. An order newly reported by one side
    /// (backend or browser) whose mark the other side already holds is
    /// counted as matched: both reported it under the same id.
    pub(super) async fn count_once(&self, keyed: Vec<Noted>, counted: &mut Vec<JournalEntry>) {
        let keys: Vec<String> = keyed.iter().filter_map(|n| n.once.clone()).collect();
        let partners: Vec<Option<String>> = keyed.iter().map(qa::partner_mark).collect();
        let (lease, retention) = (self.lease, self.retention);
        let answered = self
            .store_call("claim", move |s, _| {
                let claims = s.claim_many(&keys, lease);
                let first: Vec<String> = keys
                    .iter()
                    .zip(&claims)
                    .filter(|(_, c)| matches!(c, Claim::Acquired))
                    .map(|(k, _)| k.clone())
                    .collect();
                s.complete_many(&first, retention);
                // The other side's mark, for the orders counted now: held (delivered)
                // means matched; taken here means absent, and is given back at once.
                let asked: Vec<(usize, String)> = partners
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| matches!(claims.get(*i), Some(Claim::Acquired)))
                    .filter_map(|(i, p)| Some((i, p?)))
                    .collect();
                let partner_keys: Vec<String> = asked.iter().map(|(_, k)| k.clone()).collect();
                let answers = s.claim_many(&partner_keys, lease);
                let mut matched = vec![false; claims.len()];
                for ((i, key), answer) in asked.iter().zip(&answers) {
                    match answer {
                        Claim::Delivered => matched[*i] = true,
                        Claim::Acquired => s.release(key),
                        _ => {}
                    }
                }
                (claims, matched)
            })
            .await
            .unwrap_or_default();
        let (claims, matched) = answered;
        let answers = claims.into_iter().chain(std::iter::repeat(Claim::Unavailable));
        for ((n, claim), matched) in
            keyed.into_iter().zip(answers).zip(matched.into_iter().chain(std::iter::repeat(false)))
        {
            if matches!(claim, Claim::Acquired | Claim::Unavailable) {
                if let Some(note) = n.note {
                    self.orders.count(note);
                }
                if matched {
                    self.orders.count(qa::Note::Matched);
                }
                counted.push(n.entry);
            }
        }
    }

    /// Writes the journal rows of what was just counted. A store that keeps
    /// no journal is not an error here (the status page says so); any other
    /// failure is logged and counted.
    pub(super) async fn journal(&self, entries: Vec<JournalEntry>) {
        if entries.is_empty() {
            return;
        }
        let at_ms = now_ms();
        let keep_ms = i64::try_from(self.journal_retention.as_millis()).unwrap_or(i64::MAX);
        let keep_since_ms = at_ms.saturating_sub(keep_ms);
        let rows: Vec<JournalRow> = entries.into_iter().map(|entry| JournalRow { at_ms, entry }).collect();
        let written = self.store_call("journal", move |_, o| o.journal_append(&rows, keep_since_ms)).await;
        match written {
            Some(Ok(())) | Some(Err(StoreError::Unsupported(_))) | None => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, "the order journal could not be written; the status page will miss these orders");
                self.metrics.store_error("journal");
            }
        }
    }
}
