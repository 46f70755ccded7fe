//! The outbox: events waiting for the collector, as a pure data structure.
//!
//! The browser side ([`crate::tracker`]) keeps it in `localStorage` when
//! analytics storage is allowed (so what a page could not deliver is sent by
//! the next one) and in memory otherwise. This module holds the storage format,
//! the byte cap, batching, the "sent once" memory and the cross-tab lease; it
//! has no browser code and is tested natively.
//!
//! Storage format: one line per event, `id \t occurredAt \t T|- \t json`. The
//! core's JSON writer escapes every control character, so a line never holds a
//! raw newline or tab inside the JSON.

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
}

impl DropReason {
    /// The reason as reported to `onDrop` / `getDroppedEvents()`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// Serialises entries to the storage format.
pub fn encode(entries: &[Entry]) -> String {
    let mut s = String::with_capacity(entries.iter().map(Entry::bytes).sum());
    for e in entries {
        push_line(&mut s, e);
    }
    s
}

/// Appends one entry's line.
pub fn push_line(s: &mut String, e: &Entry) {
    s.push_str(&e.id);
    s.push('\t');
    tally_core::json::push_i64(s, e.at);
    s.push('\t');
    s.push(if e.transactional { 'T' } else { '-' });
    s.push('\t');
    s.push_str(&e.json);
    s.push('\n');
}

/// Appends `e` to a stored queue when that needs no trimming: `None` when the
/// id is already queued (one line starts with it) or the result would exceed
/// `max_bytes` (the caller then takes the full path: parse, dedupe, trim).
pub fn append(stored: &str, e: &Entry, max_bytes: usize) -> Option<String> {
    let dup = stored
        .split('\n')
        .any(|l| l.split('\t').next() == Some(e.id.as_str()));
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
        let (Some(id), Some(at), Some(flag), Some(json)) = (p.next(), p.next(), p.next(), p.next())
        else {
            continue;
        };
        let Ok(at) = at.parse::<i64>() else { continue };
        if id.is_empty() || !json.starts_with('{') || out.iter().any(|e| e.id == id) {
            continue;
        }
        out.push(Entry {
            id: id.to_owned(),
            at,
            transactional: flag == "T",
            json: json.to_owned(),
        });
    }
    out
}

/// Drops expired entries and, while over `max_bytes`, the oldest
/// non-transactional entry (then the oldest of any kind). Returns what was dropped.
pub fn enforce_limits(
    entries: &mut Vec<Entry>,
    now_ms: i64,
    max_bytes: usize,
) -> Vec<(Entry, DropReason)> {
    let mut dropped = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        if now_ms - entries[i].at > MAX_AGE_MS {
            dropped.push((entries.remove(i), DropReason::Expired));
        } else {
            i += 1;
        }
    }
    let mut total: usize = entries.iter().map(Entry::bytes).sum();
    while total > max_bytes && !entries.is_empty() {
        let idx = entries.iter().position(|e| !e.transactional).unwrap_or(0);
        let e = entries.remove(idx);
        total -= e.bytes();
        dropped.push((e, DropReason::QueueFull));
    }
    dropped
}

/// How many entries from the front make one request: at most `max_events`
/// and [`MAX_BATCH_BYTES`] (always at least one when there is one).
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
    let mut ids: Vec<&str> = sent
        .split(' ')
        .filter(|s| !s.is_empty() && *s != id)
        .collect();
    ids.push(id);
    let skip = ids.len().saturating_sub(MAX_SENT_IDS);
    let mut out = String::with_capacity(sent.len() + id.len() + 1);
    for (i, s) in ids.iter().skip(skip).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(s);
    }
    out
}

/// Whether tab `me` may drain now, given the stored lease `tab:expiresMs`.
pub fn lease_free(current: Option<&str>, me: &str, now_ms: i64) -> bool {
    let Some(cur) = current else { return true };
    let Some((tab, exp)) = cur.split_once(':') else {
        return true;
    };
    tab == me || exp.parse::<i64>().map_or(true, |exp| exp <= now_ms)
}

/// The lease value for tab `me` from `now_ms`.
pub fn lease_value(me: &str, now_ms: i64) -> String {
    let mut s = String::with_capacity(me.len() + 16);
    s.push_str(me);
    s.push(':');
    tally_core::json::push_i64(&mut s, now_ms + LEASE_MS);
    s
}

/// When the current lease expires (ms), if any.
pub fn lease_expiry(current: Option<&str>) -> Option<i64> {
    current?.split_once(':')?.1.parse().ok()
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
        assert_eq!(
            decode(&junk),
            v,
            "malformed lines and repeated ids are skipped"
        );
        assert!(decode("").is_empty());
    }

    #[test]
    fn append_fast_path() {
        let a = e("a", 1, false, 3);
        let s = encode(std::slice::from_ref(&a));
        let both = append(&s, &e("b", 2, true, 0), 1 << 20).unwrap();
        assert_eq!(decode(&both).len(), 2);
        assert_eq!(append(&both, &a, 1 << 20), None, "already queued");
        assert_eq!(
            append(&s, &e("c", 3, false, 5000), 100),
            None,
            "over the cap"
        );
    }

    #[test]
    fn cap_keeps_transactions() {
        let mut v = vec![
            e("p", 10, true, 500),
            e("a", 11, false, 500),
            e("b", 12, false, 500),
        ];
        let dropped = enforce_limits(&mut v, 20, 1200);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0.id, "a");
        assert_eq!(dropped[0].1, DropReason::QueueFull);
        assert_eq!(
            v.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["p", "b"]
        );
        let mut old = vec![e("o", 0, true, 1)];
        assert_eq!(
            enforce_limits(&mut old, MAX_AGE_MS + 1, 1 << 20)[0].1,
            DropReason::Expired
        );
    }

    #[test]
    fn batches_are_small() {
        let v: Vec<Entry> = (0..50).map(|i| e(&i.to_string(), 1, false, 10)).collect();
        assert_eq!(batch_len(&v, 20, MAX_BATCH_BYTES), 20);
        let big: Vec<Entry> = (0..5)
            .map(|i| e(&i.to_string(), 1, false, 20_000))
            .collect();
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
    }

    #[test]
    fn lease() {
        assert!(lease_free(None, "1", 0));
        let v = lease_value("1", 100);
        assert!(lease_free(Some(&v), "1", 101));
        assert!(!lease_free(Some(&v), "2", 101));
        assert!(lease_free(Some(&v), "2", 100 + LEASE_MS));
        assert!(lease_free(Some("junk"), "2", 0));
        assert_eq!(lease_expiry(Some(&v)), Some(100 + LEASE_MS));
    }
}
