//! Delivery state: the idempotency store (a key per destination, event name
//! and event id, so a second delivery of the same event is skipped as a
//! duplicate) and the [`outbox`] (every pending delivery, written before any send).

pub mod journal;
pub mod outbox;
pub mod redis;
pub mod sqlite;

pub use journal::{JournalEntry, JournalRow};
pub use outbox::{MemoryOutbox, Outbox, OutboxEntry, OutboxStats, StoreError};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state of a key when a delivery wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Nobody has it: the caller now holds it for the lease.
    Acquired,
    /// Another worker is delivering it right now (lease not expired).
    InFlight,
    /// It was delivered within the retention window.
    Delivered,
    /// The store could not be asked (backend down, I/O error; the store logs
    /// why). Nothing is sent: the event stays in the outbox and is tried again.
    Unavailable,
}

/// Where idempotency keys live. Implementations: [`MemoryStore`] here;
/// SQLite and Redis for durable and shared state.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Tries to take `key` for `lease`. An expired lease can be taken over.
    fn claim(&self, key: &str, lease: Duration) -> Claim;
    /// Marks `key` delivered, kept for `retention`.
    fn complete(&self, key: &str, retention: Duration);
    /// Gives `key` back after a failed delivery, so a later attempt can send it.
    fn release(&self, key: &str);
    /// Whether a call may wait on I/O (a file, a network): the tracker then
    /// makes it on a blocking thread, off the async runtime. In-memory stores
    /// say no and are called directly.
    fn may_block(&self) -> bool {
        true
    }
    /// [`IdempotencyStore::claim`] for many keys, one answer per key in order;
    /// a backend does them in one round trip or transaction where it can.
    fn claim_many(&self, keys: &[String], lease: Duration) -> Vec<Claim> {
        keys.iter().map(|k| self.claim(k, lease)).collect()
    }
    /// [`IdempotencyStore::complete`] for many keys.
    fn complete_many(&self, keys: &[String], retention: Duration) {
        for k in keys {
            self.complete(k, retention);
        }
    }
}

/// The key for (destination, event name, event id).
pub fn idempotency_key(destination: &str, event_name: &str, event_id: &str) -> String {
    let mut k = String::with_capacity(destination.len() + event_name.len() + event_id.len() + 2);
    k.push_str(destination);
    k.push('|');
    k.push_str(event_name);
    k.push('|');
    k.push_str(event_id);
    k
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Leased(Instant),
    Delivered(Instant),
}

/// An in-process store for tests and single-process use. Expired entries are
/// swept when the map has doubled since the last sweep (and holds at least
/// [`MemoryStore::SWEEP_AT`] keys), so memory stays bounded by the retention
/// window and a claim costs O(1) amortised, however many keys are live.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryKeys>,
}

#[derive(Debug, Default)]
struct MemoryKeys {
    map: HashMap<String, Entry>,
    /// The size at which the next sweep runs (0 before the first: `SWEEP_AT`).
    sweep_at: usize,
    /// Sweeps so far (a test checks they stay logarithmic in the keys).
    sweeps: usize,
}

impl MemoryKeys {
    fn sweep(&mut self, now: Instant) {
        if self.map.len() < self.sweep_at.max(MemoryStore::SWEEP_AT) {
            return;
        }
        self.map.retain(|_, e| match e {
            Entry::Leased(until) | Entry::Delivered(until) => *until > now,
        });
        self.sweeps += 1;
        // Live keys stay; sweeping again before the map doubles would scan
        // them all on every claim (quadratic once more than `SWEEP_AT` live).
        self.sweep_at = (self.map.len() * 2).max(MemoryStore::SWEEP_AT);
    }
}

impl MemoryStore {
    /// The fewest keys at which expired ones are swept.
    pub const SWEEP_AT: usize = 10_000;

    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, MemoryKeys> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IdempotencyStore for MemoryStore {
    fn may_block(&self) -> bool {
        false
    }

    fn claim(&self, key: &str, lease: Duration) -> Claim {
        let now = Instant::now();
        let mut keys = self.keys();
        keys.sweep(now);
        match keys.map.get(key) {
            Some(Entry::Delivered(until)) if *until > now => Claim::Delivered,
            Some(Entry::Leased(until)) if *until > now => Claim::InFlight,
            _ => {
                keys.map.insert(key.to_owned(), Entry::Leased(now + lease));
                Claim::Acquired
            }
        }
    }

    fn complete(&self, key: &str, retention: Duration) {
        self.keys().map.insert(key.to_owned(), Entry::Delivered(Instant::now() + retention));
    }

    fn release(&self, key: &str) {
        self.keys().map.remove(key);
    }
}

/// Tests any [`IdempotencyStore`] against the contract (backends call it from their tests).
pub fn idempotency_conformance(s: &dyn IdempotencyStore) {
    let k = idempotency_key("ga4", "purchase", "conformance");
    assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Acquired);
    assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::InFlight);
    s.release(&k);
    assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Acquired);
    s.complete(&k, Duration::from_secs(60));
    assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Delivered);
    let short = idempotency_key("ga4", "purchase", "short-lease");
    assert_eq!(s.claim(&short, Duration::from_millis(1)), Claim::Acquired);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.claim(&short, Duration::from_secs(60)), Claim::Acquired, "an expired lease is taken over");
    // The batched forms agree with the single ones.
    let keys: Vec<String> = ["a", "b", "c"].iter().map(|k| idempotency_key("meta", "purchase", k)).collect();
    s.complete(&keys[1], Duration::from_secs(60));
    assert_eq!(s.claim(&keys[2], Duration::from_secs(60)), Claim::Acquired);
    let lease = Duration::from_secs(60);
    assert_eq!(s.claim_many(&keys, lease), [Claim::Acquired, Claim::Delivered, Claim::InFlight]);
    s.complete_many(&keys[..1], Duration::from_secs(60));
    assert_eq!(s.claim_many(&keys[..1], lease), [Claim::Delivered]);
    assert!(s.claim_many(&[], lease).is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_conforms() {
        idempotency_conformance(&MemoryStore::new());
    }

    #[test]
    fn claim_complete_release() {
        let s = MemoryStore::new();
        let k = idempotency_key("ga4", "purchase", "abc");
        assert_eq!(k, "ga4|purchase|abc");
        assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Acquired);
        assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::InFlight);
        s.release(&k);
        assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Acquired);
        s.complete(&k, Duration::from_secs(60));
        assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Delivered);
    }

    #[test]
    fn many_live_keys_are_swept_rarely_and_expired_ones_go() {
        let s = MemoryStore::new();
        let live = 3 * MemoryStore::SWEEP_AT;
        for i in 0..live {
            let k = idempotency_key("meta", "purchase", &i.to_string());
            assert_eq!(s.claim(&k, Duration::from_secs(60)), Claim::Acquired);
            s.complete(&k, Duration::from_secs(3600));
        }
        // Doubling thresholds: sweeps at 10k and 20k, not one per claim past 10k.
        assert_eq!(s.keys().sweeps, 2);
        assert_eq!(s.keys().map.len(), live, "live keys are never swept");
        for i in 0..live {
            s.complete(&idempotency_key("meta", "purchase", &i.to_string()), Duration::ZERO);
        }
        let fresh = idempotency_key("meta", "purchase", "fresh");
        let sweeps = s.keys().sweeps;
        // Now all 30k have expired; growing the map to its next threshold sweeps them.
        for i in 0..(2 * live) {
            s.claim(&idempotency_key("ga4", "purchase", &i.to_string()), Duration::ZERO);
        }
        assert!(s.keys().sweeps > sweeps, "a sweep ran once the map doubled");
        assert!(s.keys().map.len() < 2 * live, "expired keys were dropped: {}", s.keys().map.len());
        assert_eq!(s.claim(&fresh, Duration::from_secs(60)), Claim::Acquired);
    }

    #[test]
    fn expired_lease_is_taken_over() {
        let s = MemoryStore::new();
        assert_eq!(s.claim("k", Duration::ZERO), Claim::Acquired);
        assert_eq!(s.claim("k", Duration::from_secs(5)), Claim::Acquired);
        s.complete("k", Duration::ZERO);
        assert_eq!(s.claim("k", Duration::from_secs(5)), Claim::Acquired);
    }
}
