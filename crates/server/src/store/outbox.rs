//! The outbox: every (destination, event) pair is written here before any
//! send and removed only after the destination confirmed it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::journal::{JournalRow, MemoryJournal};

/// Errors of a store backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The outbox holds its maximum; the event is refused rather than memory growing.
    #[error("the outbox is full ({capacity} entries): delivery is falling behind; try again later")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// The backend failed (I/O, SQL, Redis).
    #[error("store backend error: {0}")]
    Backend(String),
    /// The store does not do this (e.g. a custom outbox that keeps no order journal).
    #[error("this store does not support {0}: use the SQLite, Redis or in-memory store")]
    Unsupported(&'static str),
}

/// One pending delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Destination name (`ga4`, `webhook:warehouse`, …).
    pub destination: String,
    /// The idempotency key this entry holds.
    pub key: String,
    /// The event, as canonical wire JSON (`Event::to_json`).
    pub event_json: String,
    /// The visitor, as JSON (user data already hashed: raw PII never rests here).
    pub visitor_json: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms before which the entry is not due.
    pub next_attempt_at_ms: i64,
    /// The last error, for the inspector.
    pub last_error: Option<String>,
}

/// An entry handed to a worker, with its store id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// Store id.
    pub id: String,
    /// The entry.
    pub entry: OutboxEntry,
}

/// Counts for metrics and the inspector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Waiting (due or not).
    pub queued: usize,
    /// Leased by a worker right now.
    pub in_flight: usize,
    /// Given up on (retries exhausted or permanently rejected), kept for inspection.
    pub dead: usize,
}

/// A dead (dropped) entry and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadEntry {
    /// Its id in the dead list: what `tally dead show` and `tally dead replay` take.
    pub id: String,
    /// When it was given up on (Unix ms).
    pub dead_at_ms: i64,
    /// The entry.
    pub entry: OutboxEntry,
    /// Why it was dropped.
    pub reason: String,
}

impl DeadEntry {
    /// The event's name (`purchase` …), from the stored event.
    pub fn event_name(&self) -> Option<String> {
        self.event_field("name")
    }

    /// The event's id, which a replay sends again unchanged (the destinations deduplicate on it).
    pub fn event_id(&self) -> Option<String> {
        self.event_field("eventId")
    }

    /// The order (`transactionId`) of a purchase or refund.
    pub fn order_id(&self) -> Option<String> {
        self.event_field("transactionId")
    }

    fn event_field(&self, name: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.entry.event_json).ok()?;
        v.get(name).and_then(serde_json::Value::as_str).map(str::to_owned)
    }
}

/// The text a replayed entry carries as its `last_error` until it is tried again.
pub fn replayed_note(reason: &str) -> String {
    format!("replayed from the dead list (it had died: {reason})")
}

/// The outbox contract. Every method is atomic with respect to other workers
/// (other threads or, for shared backends, other processes).
pub trait Outbox: Send + Sync + 'static {
    /// Adds entries; refuses them all with [`StoreError::Full`] when over capacity.
    fn enqueue(&self, entries: &[OutboxEntry]) -> Result<Vec<String>, StoreError>;
    /// Takes up to `max` due entries (`next_attempt_at_ms <= now_ms`, not leased or
    /// lease expired) for `lease`. A worker that dies loses its lease; the entries
    /// become due again for others.
    fn lease(&self, max: usize, lease: Duration, now_ms: i64) -> Result<Vec<Leased>, StoreError>;
    /// The destination confirmed: remove.
    fn ack(&self, id: &str) -> Result<(), StoreError>;
    /// Whether a call may wait on I/O; see [`IdempotencyStore::may_block`](crate::IdempotencyStore::may_block).
    fn may_block(&self) -> bool {
        true
    }
    /// [`Outbox::ack`] for many entries, in one transaction where the backend can.
    fn ack_many(&self, ids: &[String]) -> Result<(), StoreError> {
        ids.iter().try_for_each(|id| self.ack(id))
    }
    /// A transient failure: record it and make the entry due again at `next_attempt_at_ms`.
    fn retry(&self, id: &str, next_attempt_at_ms: i64, error: &str) -> Result<(), StoreError>;
    /// Give up: move the entry to the dead list with `reason`.
    fn dead(&self, id: &str, reason: &str) -> Result<(), StoreError>;
    /// Counts.
    fn stats(&self) -> Result<OutboxStats, StoreError>;
    /// The same counts per destination (`ga4`, `webhook:warehouse` …), for
    /// seeing which destination is falling behind. Destinations with nothing
    /// queued, in flight or dead are left out.
    fn stats_by_destination(&self) -> Result<BTreeMap<String, OutboxStats>, StoreError>;
    /// The most recent dead entries, newest first.
    fn dead_entries(&self, limit: usize) -> Result<Vec<DeadEntry>, StoreError>;
    /// Moves the dead entries `ids` ([`DeadEntry::id`]) back into the outbox,
    /// due at `now_ms` with no attempt counted: the same destination,
    /// idempotency key and event (so the same event id, which the destinations
    /// deduplicate on). Returns the ids moved, in the order given; an id no
    /// longer in the dead list (replayed by someone else, trimmed) is left out.
    /// All or none: [`StoreError::Full`] when the outbox cannot take them all.
    fn replay_dead(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, StoreError> {
        let _ = (ids, now_ms);
        Err(StoreError::Unsupported("replaying dead entries"))
    }
    /// When the oldest entry still waiting or in flight was written (Unix ms),
    /// per destination: how far behind a destination is. Empty where the
    /// store does not keep creation times (the Redis store).
    fn oldest_by_destination(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(BTreeMap::new())
    }
    /// Appends `rows` to the [order journal](super::journal) and deletes the
    /// rows older than `keep_since_ms` (Unix ms).
    fn journal_append(&self, rows: &[JournalRow], keep_since_ms: i64) -> Result<(), StoreError> {
        let _ = (rows, keep_since_ms);
        Err(StoreError::Unsupported("the order journal"))
    }
    /// The journal rows written at or after `since_ms` (Unix ms), oldest first.
    fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalRow>, StoreError> {
        let _ = since_ms;
        Err(StoreError::Unsupported("the order journal"))
    }
}

/// Unix ms now.
pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug)]
struct MemEntry {
    entry: OutboxEntry,
    leased_until_ms: i64,
    created_at_ms: i64,
}

#[derive(Debug, Default)]
struct MemInner {
    next_id: u64,
    entries: BTreeMap<u64, MemEntry>,
    dead: Vec<DeadEntry>,
    journal: MemoryJournal,
}

/// An in-process outbox (tests, single process without durability).
#[derive(Debug)]
pub struct MemoryOutbox {
    capacity: usize,
    inner: Mutex<MemInner>,
}

impl MemoryOutbox {
    /// An outbox holding at most `capacity` entries.
    pub fn new(capacity: usize) -> MemoryOutbox {
        MemoryOutbox { capacity, inner: Mutex::new(MemInner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn parse_id(id: &str) -> Result<u64, StoreError> {
    id.parse().map_err(|_| StoreError::Backend(format!("bad outbox id {id:?}")))
}

impl Outbox for MemoryOutbox {
    fn may_block(&self) -> bool {
        false
    }

    fn enqueue(&self, entries: &[OutboxEntry]) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock();
        if g.entries.len() + entries.len() > self.capacity {
            return Err(StoreError::Full { capacity: self.capacity });
        }
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            g.next_id += 1;
            let id = g.next_id;
            g.entries.insert(id, MemEntry { entry: e.clone(), leased_until_ms: 0, created_at_ms: unix_ms() });
            ids.push(id.to_string());
        }
        Ok(ids)
    }

    fn lease(&self, max: usize, lease: Duration, now_ms: i64) -> Result<Vec<Leased>, StoreError> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for (id, e) in g.entries.iter_mut() {
            if out.len() >= max {
                break;
            }
            if e.entry.next_attempt_at_ms <= now_ms && e.leased_until_ms <= now_ms {
                e.leased_until_ms = now_ms + lease.as_millis() as i64;
                e.entry.attempts += 1;
                out.push(Leased { id: id.to_string(), entry: e.entry.clone() });
            }
        }
        Ok(out)
    }

    fn ack(&self, id: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        self.lock().entries.remove(&id);
        Ok(())
    }

    fn retry(&self, id: &str, next_attempt_at_ms: i64, error: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.entry.next_attempt_at_ms = next_attempt_at_ms;
            e.entry.last_error = Some(error.to_owned());
            e.leased_until_ms = 0;
        }
        Ok(())
    }

    fn dead(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        let mut g = self.lock();
        if let Some(e) = g.entries.remove(&id) {
            g.dead.push(DeadEntry {
                id: id.to_string(),
                dead_at_ms: unix_ms(),
                entry: e.entry,
                reason: reason.to_owned(),
            });
            if g.dead.len() > 10_000 {
                g.dead.remove(0);
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<OutboxStats, StoreError> {
        let g = self.lock();
        let now = unix_ms();
        let in_flight = g.entries.values().filter(|e| e.leased_until_ms > now).count();
        Ok(OutboxStats { queued: g.entries.len() - in_flight, in_flight, dead: g.dead.len() })
    }

    fn stats_by_destination(&self) -> Result<BTreeMap<String, OutboxStats>, StoreError> {
        let g = self.lock();
        let now = unix_ms();
        let mut out: BTreeMap<String, OutboxStats> = BTreeMap::new();
        for e in g.entries.values() {
            let s = out.entry(e.entry.destination.clone()).or_default();
            if e.leased_until_ms > now {
                s.in_flight += 1;
            } else {
                s.queued += 1;
            }
        }
        for d in &g.dead {
            out.entry(d.entry.destination.clone()).or_default().dead += 1;
        }
        Ok(out)
    }

    fn dead_entries(&self, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        Ok(self.lock().dead.iter().rev().take(limit).cloned().collect())
    }

    fn replay_dead(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock();
        let found: Vec<usize> = ids.iter().filter_map(|id| g.dead.iter().position(|d| &d.id == id)).collect();
        if g.entries.len() + found.len() > self.capacity {
            return Err(StoreError::Full { capacity: self.capacity });
        }
        let mut moved = Vec::with_capacity(found.len());
        for id in ids {
            let Some(at) = g.dead.iter().position(|d| &d.id == id) else { continue };
            let d = g.dead.remove(at);
            g.next_id += 1;
            let new_id = g.next_id;
            let entry = OutboxEntry {
                attempts: 0,
                next_attempt_at_ms: now_ms,
                last_error: Some(replayed_note(&d.reason)),
                ..d.entry
            };
            g.entries.insert(new_id, MemEntry { entry, leased_until_ms: 0, created_at_ms: unix_ms() });
            moved.push(d.id);
        }
        Ok(moved)
    }

    fn oldest_by_destination(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for e in self.lock().entries.values() {
            let t = out.entry(e.entry.destination.clone()).or_insert(e.created_at_ms);
            *t = (*t).min(e.created_at_ms);
        }
        Ok(out)
    }

    fn journal_append(&self, rows: &[JournalRow], keep_since_ms: i64) -> Result<(), StoreError> {
        self.lock().journal.append(rows, keep_since_ms);
        Ok(())
    }

    fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalRow>, StoreError> {
        Ok(self.lock().journal.since(since_ms))
    }
}

#[allow(clippy::expect_used)] // A test contract: a failure here is the report.
/// Tests any [`Outbox`] implementation against the contract. Backends call it
/// from their own tests (`tally_server::store::outbox::conformance(&backend)`).
pub fn conformance(o: &dyn Outbox) {
    let entry = |n: u32| OutboxEntry {
        destination: "ga4".into(),
        key: format!("ga4|purchase|{n}"),
        event_json: format!("{{\"n\":{n}}}"),
        visitor_json: "{}".into(),
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
    };
    let now = unix_ms();
    let ids = o.enqueue(&[entry(1), entry(2), entry(3)]).expect("enqueue");
    assert_eq!(ids.len(), 3);
    let first = o.lease(2, Duration::from_secs(60), now).expect("lease");
    assert_eq!(first.len(), 2, "leases at most max");
    assert_eq!(first[0].entry.attempts, 1, "a lease counts an attempt");
    let second = o.lease(10, Duration::from_secs(60), now).expect("lease");
    assert_eq!(second.len(), 1, "leased entries are not handed out twice");
    assert!(o.lease(10, Duration::from_secs(60), now).expect("lease").is_empty());
    // An expired lease (a dead worker) makes the entries due again.
    let later = now + 61_000;
    let again = o.lease(10, Duration::from_secs(60), later).expect("lease");
    assert_eq!(again.len(), 3);
    o.ack(&again[0].id).expect("ack");
    o.retry(&again[1].id, later + 5_000, "503").expect("retry");
    o.dead(&again[2].id, "retries exhausted").expect("dead");
    assert!(o.lease(10, Duration::from_secs(60), later + 1).expect("lease").is_empty(), "not due yet");
    let due = o.lease(10, Duration::from_secs(60), later + 5_000).expect("lease");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].entry.last_error.as_deref(), Some("503"));
    assert_eq!(due[0].entry.attempts, 3);
    let dead = o.dead_entries(10).expect("dead entries");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "retries exhausted");
    assert_eq!(dead[0].entry.key, again[2].entry.key);
    assert!((now - 1_000..=unix_ms() + 1_000).contains(&dead[0].dead_at_ms), "{:?}", dead[0]);
    o.ack(&due[0].id).expect("ack");
    let s = o.stats().expect("stats");
    assert_eq!((s.queued, s.in_flight, s.dead), (0, 0, 1));
    replay_conformance(o, &dead[0]);

    // Per destination: two queued for Meta, one of them leased; one dead for ga4.
    let meta = |n: u32| OutboxEntry { destination: "meta".into(), key: format!("meta|purchase|{n}"), ..entry(n) };
    o.enqueue(&[meta(7), meta(8)]).expect("enqueue");
    assert_eq!(o.lease(1, Duration::from_secs(60), unix_ms()).expect("lease").len(), 1);
    let by = o.stats_by_destination().expect("stats by destination");
    assert_eq!(by.get("meta"), Some(&OutboxStats { queued: 1, in_flight: 1, dead: 0 }), "{by:?}");
    assert_eq!(by.get("ga4"), Some(&OutboxStats { queued: 0, in_flight: 0, dead: 1 }), "{by:?}");
    assert_eq!(by.len(), 2, "{by:?}");
    // The oldest waiting entry's age: only Meta has entries waiting (dead ones do not count).
    let oldest = o.oldest_by_destination().expect("oldest by destination");
    if !oldest.is_empty() {
        assert_eq!(oldest.keys().collect::<Vec<_>>(), ["meta"], "{oldest:?}");
        assert!((now - 1_000..=unix_ms()).contains(&oldest["meta"]), "{oldest:?} (now {now})");
    }
    let total = o.stats().expect("stats");
    assert_eq!(by.values().map(|s| s.queued + s.in_flight).sum::<usize>(), total.queued + total.in_flight);
    assert_eq!(by.values().map(|s| s.dead).sum::<usize>(), total.dead);
    for l in o.lease(10, Duration::from_secs(60), unix_ms() + 61_000).expect("lease") {
        o.ack(&l.id).expect("ack");
    }
    let by = o.stats_by_destination().expect("stats by destination");
    assert_eq!(by.get("meta"), None, "an emptied destination is left out: {by:?}");
    journal_conformance(o);
}

/// A dead entry goes back into the outbox, due now, with its event unchanged;
/// then it is dead again (as it was before the replay).
#[allow(clippy::expect_used)]
fn replay_conformance(o: &dyn Outbox, dead: &DeadEntry) {
    let now = unix_ms();
    assert_eq!(o.replay_dead(&["no-such-id".into()], now).expect("replay an unknown id"), Vec::<String>::new());
    let moved = o.replay_dead(&[dead.id.clone(), "no-such-id".into()], now).expect("replay");
    assert_eq!(moved, std::slice::from_ref(&dead.id), "the id replayed");
    assert!(o.dead_entries(10).expect("dead entries").is_empty(), "it left the dead list");
    assert!(o.replay_dead(std::slice::from_ref(&dead.id), now).expect("replay twice").is_empty(), "once only");
    let leased = o.lease(10, Duration::from_secs(60), now).expect("lease");
    assert_eq!(leased.len(), 1, "due at once: {leased:?}");
    let e = &leased[0].entry;
    assert_eq!(
        (&e.destination, &e.key, &e.event_json),
        (&dead.entry.destination, &dead.entry.key, &dead.entry.event_json)
    );
    assert_eq!(e.attempts, 1, "no earlier attempt counts");
    assert_eq!(e.last_error.as_deref(), Some(replayed_note(&dead.reason).as_str()));
    o.dead(&leased[0].id, &dead.reason).expect("dead again");
    let again = o.dead_entries(10).expect("dead entries");
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, "", "{again:?}");
}

#[allow(clippy::expect_used)]
fn journal_conformance(o: &dyn Outbox) {
    use super::journal::JournalEntry;
    let row = |at_ms: i64, id: &str| JournalRow {
        at_ms,
        entry: JournalEntry::Withheld {
            destination: "meta".into(),
            order_id: id.into(),
            reason: "consent_denied".into(),
        },
    };
    let base = unix_ms();
    o.journal_append(&[row(base + 2, "B"), row(base + 1, "A")], 0).expect("journal append");
    o.journal_append(&[row(base + 3, "C")], 0).expect("journal append");
    let all = o.journal_since(base).expect("journal since");
    assert_eq!(all, [row(base + 1, "A"), row(base + 2, "B"), row(base + 3, "C")], "oldest first");
    assert_eq!(o.journal_since(base + 2).expect("journal since").len(), 2);
    // Appending prunes what is older than the retention.
    o.journal_append(&[row(base + 4, "D")], base + 3).expect("journal append");
    let kept: Vec<i64> = o.journal_since(0).expect("journal since").iter().map(|r| r.at_ms).collect();
    assert_eq!(kept, [base + 3, base + 4]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_outbox_conforms() {
        conformance(&MemoryOutbox::new(100));
    }

    #[test]
    fn bounded() {
        let o = MemoryOutbox::new(1);
        let e = OutboxEntry {
            destination: "d".into(),
            key: "k".into(),
            event_json: "{}".into(),
            visitor_json: "{}".into(),
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
        };
        o.enqueue(std::slice::from_ref(&e)).unwrap();
        assert_eq!(o.enqueue(&[e]), Err(StoreError::Full { capacity: 1 }));
    }
}
