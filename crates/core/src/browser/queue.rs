//! The outbox: events waiting for the collector, as a pure data structure.
//!
//! The browser keeps it in `localStorage` when analytics storage is allowed
//! (so what a page could not deliver is sent by the next one) and in memory
//! otherwise. This module holds the storage format, the byte cap, batching,
//! the "sent once" memory and the cross-tab drain lease.
//!
//! Storage format: one line per event, `id \t occurredAt \t T|- \t json`. The
//! core's JSON writer escapes every control character, so a line never holds a
//! raw newline or tab inside the JSON.

use super::parse_u64;
use crate::prelude::*;

/// Default cap of the persisted queue, bytes of JSON (far below the ~5 MB
/// `localStorage` quota a site shares with everything else).
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 256 * 1024;
/// Largest single event accepted (an order with 200 items fits).
pub const MAX_EVENT_BYTES: usize = 48 * 1024;
/// Events older than this are dropped (GA4 accepts 72 h; the server decides the rest).
pub const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Most events in one request.
pub const DEFAULT_BATCH_EVENTS: usize = 20;
/// Most bytes of events in one request.
pub const MAX_BATCH_BYTES: usize = 32 * 1024;
/// How many sent transactional ids are remembered.
pub const MAX_SENT_IDS: usize = 100;
/// How long a tab's drain lease lasts without renewal.
pub const LEASE_MS: i64 = 10_000;
/// Most events held in memory while waiting for a consent decision.
pub const MAX_PENDING: usize = 100;

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The event id (the server deduplicates by it).
    pub id: String,
    /// When the event happened, Unix ms.
    pub at: i64,
    /// A purchase or refund: kept over other events when the queue is full.
    pub transactional: bool,
    /// The event's wire JSON (`Event::to_json`).
    pub json: String,
}

impl Entry {
    /// The entry for an event.
    pub fn of(e: &crate::Event) -> Entry {
        Entry {
            id: e.id.as_str().to_owned(),
            at: e.occurred_at_ms,
            transactional: e.transaction_id.is_some(),
            json: e.to_json(),
        }
    }

    /// Approximate stored size.
    pub fn bytes(&self) -> usize {
        self.json.len() + self.id.len() + 24
    }
}

/// Why an event left the queue without being accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was over its byte cap.
    QueueFull,
    /// Older than [`MAX_AGE_MS`].
    Expired,
    /// Larger than [`MAX_EVENT_BYTES`].
    TooLarge,
    /// The in-memory buffer of events waiting for consent was full.
    ConsentBufferFull,
    /// Consent was decided and allows nothing the collector could receive.
    ConsentDenied,
}

impl DropReason {
    /// The reason as reported to `onDrop` / `getDroppedEvents()`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "too_large",
            DropReason::ConsentBufferFull => "consent_buffer_full",
            DropReason::ConsentDenied => "consent_denied",
        }
    }
}

/// Appends one entry's line.
pub fn push_line(s: &mut String, e: &Entry) {
    s.push_str(&e.id);
    s.push('\t');
    crate::json::push_i64(s, e.at);
    s.push_str(if e.transactional { "\tT\t" } else { "\t-\t" });
    s.push_str(&e.json);
    s.push('\n');
}

/// Serialises entries to the storage format.
pub fn encode(entries: &[Entry]) -> String {
    let mut s = String::with_capacity(entries.iter().map(Entry::bytes).sum());
    for e in entries {
        push_line(&mut s, e);
    }
    s
}

/// Appends `e` to a stored queue when that needs no trimming: `None` when the
/// id is already queued (one line starts with it) or the result would exceed
/// `max_bytes` (the caller then takes the full path: parse, dedupe, trim).
pub fn append(stored: &str, e: &Entry, max_bytes: usize) -> Option<String> {
    let dup = stored.split('\n').any(|l| l.split('\t').next() == Some(e.id.as_str()));
    if dup || stored.len() + e.bytes() > max_bytes {
        return None;
    }
    let mut s = String::with_capacity(stored.len() + e.bytes());
    s.push_str(stored);
    push_line(&mut s, e);
    Some(s)
}

/// Reads the storage format; malformed lines are skipped, and a repeated id keeps its first copy.
pub fn decode(s: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for line in s.split('\n') {
        let mut p = line.splitn(4, '\t');
        let (Some(id), Some(at), Some(flag), Some(json)) = (p.next(), p.next(), p.next(), p.next()) else {
            continue;
        };
        let Some(at) = parse_u64(at) else { continue };
        if id.is_empty() || !json.starts_with('{') || out.iter().any(|e| e.id == id) {
            continue;
        }
        out.push(Entry { id: id.to_owned(), at: at as i64, transactional: flag == "T", json: json.to_owned() });
    }
    out
}

/// Which element to give up when a bounded list is full: the oldest that is
/// not transactional, else the oldest.
pub fn eviction_index<T>(items: &[T], transactional: impl Fn(&T) -> bool) -> usize {
    items.iter().position(|x| !transactional(x)).unwrap_or(0)
}

/// Drops expired entries and, while over `max_bytes`, the entry
/// [`eviction_index`] picks. Returns what was dropped, and why.
pub fn enforce_limits(entries: &mut Vec<Entry>, now_ms: i64, max_bytes: usize) -> Vec<(Entry, DropReason)> {
    let mut dropped = Vec::new();
    let mut kept = Vec::with_capacity(entries.len());
    for e in core::mem::take(entries) {
        if now_ms - e.at > MAX_AGE_MS {
            dropped.push((e, DropReason::Expired));
        } else {
            kept.push(e);
        }
    }
    *entries = kept;
    let mut total: usize = entries.iter().map(Entry::bytes).sum();
    while total > max_bytes && !entries.is_empty() {
        let e = entries.remove(eviction_index(entries, |e| e.transactional));
        total -= e.bytes();
        dropped.push((e, DropReason::QueueFull));
    }
    dropped
}

/// How many entries from the front make one request: at most `max_events`
/// and `max_bytes` of JSON (always at least one when there is one).
pub fn batch_len(entries: &[Entry], max_events: usize, max_bytes: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for e in entries.iter().take(max_events.max(1)) {
        bytes += e.json.len() + 1;
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// Removes the entries with the given ids.
pub fn remove_ids(entries: &mut Vec<Entry>, ids: &[String]) {
    entries.retain(|e| !ids.contains(&e.id));
}

/// Adds an entry unless its id is queued already (a reload re-tracking the
/// same purchase). Returns false when it was a repeat.
pub fn push_unique(entries: &mut Vec<Entry>, e: Entry) -> bool {
    if entries.iter().any(|x| x.id == e.id) {
        return false;
    }
    entries.push(e);
    true
}

/// The remembered ids of transactional events already queued once (space-separated).
pub fn sent_contains(sent: &str, id: &str) -> bool {
    sent.split(' ').any(|s| s == id)
}

/// Adds an id to the remembered list, keeping the newest [`MAX_SENT_IDS`].
pub fn sent_add(sent: &str, id: &str) -> String {
    let others = sent.split(' ').filter(|s| !s.is_empty() && *s != id);
    let skip = (others.clone().count() + 1).saturating_sub(MAX_SENT_IDS);
    let mut out = String::with_capacity(sent.len() + id.len() + 1);
    for s in others.skip(skip).chain([id]) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    }
    out
}

/// Merges two remembered lists (`b`'s ids count as newer).
pub fn sent_merge(a: &str, b: &str) -> String {
    b.split(' ').filter(|x| !x.is_empty()).fold(a.to_owned(), |acc, id| sent_add(&acc, id))
}

/// The newest `max` remembered ids, oldest first.
pub fn sent_newest(sent: &str, max: usize) -> Vec<&str> {
    let ids = sent.split(' ').filter(|x| !x.is_empty());
    let skip = ids.clone().count().saturating_sub(max);
    ids.skip(skip).collect()
}

/// Whether tab `me` may drain now, given the stored lease `tab:expiresMs`.
pub fn lease_free(current: Option<&str>, me: &str, now_ms: i64) -> bool {
    match current.and_then(|c| c.split_once(':')) {
        None => true,
        Some((tab, exp)) => tab == me || parse_u64(exp).is_none_or(|exp| exp as i64 <= now_ms),
    }
}

/// The lease value for tab `me` from `now_ms`.
pub fn lease_value(me: &str, now_ms: i64) -> String {
    let mut s = String::with_capacity(me.len() + 16);
    s.push_str(me);
    s.push(':');
    crate::json::push_i64(&mut s, now_ms + LEASE_MS);
    s
}

/// When the current lease expires (ms), if any.
pub fn lease_expiry(current: Option<&str>) -> Option<i64> {
    parse_u64(current?.split_once(':')?.1).map(|e| e as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, at: i64, t: bool, n: usize) -> Entry {
        Entry {
            id: id.into(),
            at,
            transactional: t,
            json: format!("{{\"eventId\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(n)),
        }
    }

    #[test]
    fn round_trip_and_skips_garbage() {
        let v = vec![e("a", 1, true, 3), e("b", 2, false, 0)];
        let s = encode(&v);
        assert_eq!(decode(&s), v);
        let junk = format!("garbage\n\tx\t-\t{{}}\nz\tNaN\t-\t{{}}\n{s}a\t9\t-\t{{}}\n");
        assert_eq!(decode(&junk), v, "malformed lines and repeated ids are skipped");
        assert!(decode("").is_empty());
    }

    #[test]
    fn append_fast_path() {
        let a = e("a", 1, false, 3);
        let s = encode(core::slice::from_ref(&a));
        let both = append(&s, &e("b", 2, true, 0), 1 << 20).unwrap();
        assert_eq!(decode(&both).len(), 2);
        assert_eq!(append(&both, &a, 1 << 20), None, "already queued");
        assert_eq!(append(&s, &e("c", 3, false, 5000), 100), None, "over the cap");
    }

    #[test]
    fn cap_keeps_transactions() {
        let mut v = vec![e("p", 10, true, 500), e("a", 11, false, 500), e("b", 12, false, 500)];
        let dropped = enforce_limits(&mut v, 20, 1200);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0.id, "a");
        assert_eq!(dropped[0].1, DropReason::QueueFull);
        assert_eq!(v.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["p", "b"]);
        let mut old = vec![e("o", 0, true, 1), e("n", MAX_AGE_MS, false, 1)];
        let dropped = enforce_limits(&mut old, MAX_AGE_MS + 1, 1 << 20);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].1, DropReason::Expired);
        assert_eq!(old.len(), 1);
        assert_eq!(eviction_index(&[true, true], |t| *t), 0);
        assert_eq!(eviction_index(&[true, false], |t| *t), 1);
    }

    #[test]
    fn batches_are_small() {
        let v: Vec<Entry> = (0..50).map(|i| e(&i.to_string(), 1, false, 10)).collect();
        assert_eq!(batch_len(&v, 20, MAX_BATCH_BYTES), 20);
        let big: Vec<Entry> = (0..5).map(|i| e(&i.to_string(), 1, false, 20_000)).collect();
        assert_eq!(batch_len(&big, 20, MAX_BATCH_BYTES), 1);
        assert_eq!(batch_len(&[], 20, MAX_BATCH_BYTES), 0);
    }

    #[test]
    fn unique_and_remove() {
        let mut v = vec![e("a", 1, true, 0)];
        assert!(!push_unique(&mut v, e("a", 2, true, 0)));
        assert!(push_unique(&mut v, e("b", 2, false, 0)));
        remove_ids(&mut v, &["a".into()]);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn sent_list_is_bounded() {
        let mut s = String::new();
        for i in 0..150 {
            s = sent_add(&s, &i.to_string());
        }
        assert!(!sent_contains(&s, "0"));
        assert!(sent_contains(&s, "149"));
        assert_eq!(s.split(' ').count(), MAX_SENT_IDS);
        assert_eq!(sent_add("a b", "a"), "b a");
        assert_eq!(sent_merge("a b", "c a"), "b c a");
        assert_eq!(sent_merge("", ""), "");
        assert_eq!(sent_newest(" a b c", 2), ["b", "c"]);
    }

    #[test]
    fn lease() {
        assert!(lease_free(None, "1", 0));
        let v = lease_value("1", 100);
        assert!(lease_free(Some(&v), "1", 101));
        assert!(!lease_free(Some(&v), "2", 101));
        assert!(lease_free(Some(&v), "2", 100 + LEASE_MS));
        assert!(lease_free(Some("junk"), "2", 0));
        assert!(lease_free(Some("1:junk"), "2", 0));
        assert_eq!(lease_expiry(Some(&v)), Some(100 + LEASE_MS));
        assert_eq!(lease_expiry(Some("x")), None);
    }
}
