//! Delivery state: the idempotency store (a key per destination, event name
//! and event id, so a second delivery of the same event is skipped as a
//! duplicate) and the [`outbox`] (every pending delivery, written before any send).

pub mod outbox;
pub mod redis;
pub mod sqlite;

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
/// swept on access, so memory stays bounded by the retention window.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn sweep(map: &mut HashMap<String, Entry>, now: Instant) {
        if map.len() > 10_000 {
            map.retain(|_, e| match e {
                Entry::Leased(until) | Entry::Delivered(until) => *until > now,
            });
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn may_block(&self) -> bool {
        false
    }

    fn claim(&self, key: &str, lease: Duration) -> Claim {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Self::sweep(&mut map, now);
        match map.get(key) {
            Some(Entry::Delivered(until)) if *until > now => Claim::Delivered,
            Some(Entry::Leased(until)) if *until > now => Claim::InFlight,
            _ => {
                map.insert(key.to_owned(), Entry::Leased(now + lease));
                Claim::Acquired
            }
        }
    }

    fn complete(&self, key: &str, retention: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(key.to_owned(), Entry::Delivered(Instant::now() + retention));
    }

    fn release(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
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
    fn expired_lease_is_taken_over() {
        let s = MemoryStore::new();
        assert_eq!(s.claim("k", Duration::ZERO), Claim::Acquired);
        assert_eq!(s.claim("k", Duration::from_secs(5)), Claim::Acquired);
        s.complete("k", Duration::ZERO);
        assert_eq!(s.claim("k", Duration::from_secs(5)), Claim::Acquired);
    }
}
