//! The Redis backend: dedup keys and the outbox shared by several server
//! instances.
//!
//! [`RedisStore`] implements both [`IdempotencyStore`] and [`Outbox`]. Every
//! instance connected to the same Redis with the same key prefix sees the same
//! keys and the same queue, so a webhook delivered to two instances is sent
//! once, and an entry leased by an instance that dies is picked up by another.
//!
//! ```no_run
//! use tally_server::store::redis::RedisStore;
//! use tally_server::store::Outbox;
//!
//! # fn main() -> Result<(), tally_server::store::StoreError> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/", "tally:", 100_000)?;
//! println!("{:?}", store.stats()?);
//! # Ok(()) }
//! ```
//!
//! # Data layout (under the prefix `P`)
//!
//! | key                | type   | holds |
//! |--------------------|--------|-------|
//! | `P idem:<key>`     | string | `leased` (claim, `SET NX PX lease`) or `delivered` (`SET PX retention`); Redis expires it |
//! | `P outbox:seq`     | string | the last entry id (`INCR`) |
//! | `P outbox:due`     | zset   | every queued entry id, scored by when it is next due: `max(next_attempt_at_ms, leased_until_ms)` |
//! | `P outbox:leased`  | zset   | leased ids scored by `leased_until_ms` (for the in-flight count) |
//! | `P outbox:e:<id>`  | hash   | the entry's fields |
//! | `P outbox:dead`    | list   | dead entries as JSON (with the entry's id and `dead_at_ms`), newest first, capped; `replay_dead` moves them back |
//! | `P journal`        | zset   | the [order journal](super::journal)'s rows as JSON, scored by time (Unix ms) |
//!
//! Every outbox operation and the claim are Lua scripts, so each is atomic
//! against all other instances: a lease takes the due ids (score ≤ now),
//! counts an attempt and re-scores them to the lease end in one step, so no
//! entry is handed out twice; the capacity check (`ZCARD`) and the inserts of
//! one [`Outbox::enqueue`] call happen in the same script.
//!
//! The scripts build entry keys from the prefix, so this backend targets a
//! single Redis (or a primary with replicas), not Redis Cluster.
//!
//! # Clocks
//!
//! Idempotency leases and retention are timed by Redis (`PX`). Outbox due
//! times and leases use the `now_ms` the caller passes, as the [`Outbox`]
//! contract says; instances sharing a queue should have synchronised clocks
//! (NTP), and leases should be much longer than any expected skew.
//!
//! # Connections and errors
//!
//! A small pool of connections per store ([`RedisOptions::connections`],
//! 4 by default), each with connect, read and write timeouts: the tracker
//! calls the store on blocking threads, off the async runtime, and the pool
//! lets the calls of several delivery lanes wait on Redis side by side. A
//! connection that fails with an I/O error is dropped and the next call on it
//! reconnects; the failed call itself is not retried (a lost reply to a
//! lease must not lease twice). Outbox methods return [`StoreError::Backend`];
//! the [`IdempotencyStore`] methods cannot return errors, so they log with
//! `tracing` and fail safe: `claim` answers [`Claim::Unavailable`] (do not send
//! now; the outbox entry is retried later, and the caller sees
//! `DeliveryError::StoreUnavailable`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::journal::JournalRow;
use redis::{Client, Connection, RedisResult, Script};
use serde::Deserialize;

use super::outbox::{DeadEntry, Leased, Outbox, OutboxEntry, OutboxStats, StoreError, unix_ms};
use super::{Claim, IdempotencyStore};

/// `KEYS[1]` = the idempotency key, `ARGV[1]` = lease ms. 0 acquired, 1 in flight, 2 delivered.
const CLAIM_LUA: &str = r#"
if redis.call('SET', KEYS[1], 'leased', 'NX', 'PX', ARGV[1]) then return 0 end
if redis.call('GET', KEYS[1]) == 'delivered' then return 2 end
return 1
"#;

/// Deletes the key only while it is a lease: a delivered mark stays.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == 'leased' then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// `KEYS` = seq, due, per-destination counts; `ARGV` = capacity, n, now, entry-key prefix, then 8 per
/// entry: destination, key, event_json, visitor_json, attempts,
/// next_attempt_at_ms, has_error ('0'/'1'), error. Returns {0} when full, else
/// {1, id...}.
const ENQUEUE_LUA: &str = r#"
local cap = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[2]) + n > cap then return {0} end
local out = {1}
for i = 0, n - 1 do
  local b = 5 + i * 8
  local id = redis.call('INCR', KEYS[1])
  local k = ARGV[4] .. id
  redis.call('HSET', k,
    'destination', ARGV[b], 'key', ARGV[b + 1], 'event_json', ARGV[b + 2],
    'visitor_json', ARGV[b + 3], 'attempts', ARGV[b + 4],
    'next_attempt_at_ms', ARGV[b + 5], 'leased_until_ms', '0', 'created_at_ms', ARGV[3])
  if ARGV[b + 6] == '1' then redis.call('HSET', k, 'last_error', ARGV[b + 7]) end
  redis.call('ZADD', KEYS[2], ARGV[b + 5], id)
  redis.call('HINCRBY', KEYS[3], ARGV[b], 1)
  out[#out + 1] = id
end
return out
"#;

/// `KEYS` = due, leased; `ARGV` = now, lease end, max, entry-key prefix.
/// Returns {{id, destination, key, event_json, visitor_json, attempts, next_attempt_at_ms, last_error}...}.
const LEASE_LUA: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  if redis.call('EXISTS', k) == 1 then
    redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'leased_until_ms', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    local f = redis.call('HMGET', k, 'destination', 'key', 'event_json', 'visitor_json',
      'attempts', 'next_attempt_at_ms', 'last_error')
    table.insert(f, 1, id)
    out[#out + 1] = f
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
"#;

/// `KEYS` = due, leased, entry, per-destination counts; `ARGV` = id.
const ACK_LUA: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local d = redis.call('HGET', KEYS[3], 'destination')
local n = redis.call('DEL', KEYS[3])
if n == 1 and d then redis.call('HINCRBY', KEYS[4], d, -1) end
return n
"#;

/// `KEYS` = due, leased, entry; `ARGV` = id, next_attempt_at_ms, error.
const RETRY_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'next_attempt_at_ms', ARGV[2], 'last_error', ARGV[3], 'leased_until_ms', '0')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// `KEYS` = due, leased, entry, dead list, per-destination counts, per-destination
/// dead counts; `ARGV` = id, reason, dead_at_ms, dead capacity.
const DEAD_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local f = redis.call('HMGET', KEYS[3], 'destination', 'key', 'event_json', 'visitor_json',
  'attempts', 'next_attempt_at_ms', 'last_error', 'created_at_ms')
local rec = {
  id = ARGV[1], destination = f[1], key = f[2], event_json = f[3], visitor_json = f[4],
  attempts = f[5], next_attempt_at_ms = f[6], created_at_ms = f[8],
  reason = ARGV[2], dead_at_ms = ARGV[3]
}
if f[7] then rec['last_error'] = f[7] end
local cap = tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[5], f[1], -1)
if cap > 0 then
  redis.call('LPUSH', KEYS[4], cjson.encode(rec))
  redis.call('HINCRBY', KEYS[6], f[1], 1)
  for _, old in ipairs(redis.call('LRANGE', KEYS[4], cap, -1)) do
    local ok, r = pcall(cjson.decode, old)
    if ok and r.destination then redis.call('HINCRBY', KEYS[6], r.destination, -1) end
  end
  redis.call('LTRIM', KEYS[4], 0, cap - 1)
else
  redis.call('DEL', KEYS[4], KEYS[6])
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// `KEYS` = seq, due, dead list, per-destination counts, per-destination dead
/// counts; `ARGV` = capacity, now, entry-key prefix, then the dead ids.
/// Returns {0} when full, else {1, replayed id...}.
const REPLAY_LUA: &str = r#"
local dead = redis.call('LRANGE', KEYS[3], 0, -1)
local wanted = {}
for i = 4, #ARGV do wanted[ARGV[i]] = true end
local found = {}
for _, raw in ipairs(dead) do
  local ok, r = pcall(cjson.decode, raw)
  if ok and r.id and wanted[tostring(r.id)] and not found[tostring(r.id)] then
    found[tostring(r.id)] = {raw = raw, rec = r}
  end
end
local n = 0
for _ in pairs(found) do n = n + 1 end
if redis.call('ZCARD', KEYS[2]) + n > tonumber(ARGV[1]) then return {0} end
local out = {1}
for i = 4, #ARGV do
  local f = found[ARGV[i]]
  if f then
    found[ARGV[i]] = nil
    local r = f.rec
    redis.call('LREM', KEYS[3], 1, f.raw)
    redis.call('HINCRBY', KEYS[5], r.destination, -1)
    local id = redis.call('INCR', KEYS[1])
    local k = ARGV[3] .. id
    redis.call('HSET', k,
      'destination', r.destination, 'key', r.key, 'event_json', r.event_json,
      'visitor_json', r.visitor_json, 'attempts', '0',
      'next_attempt_at_ms', ARGV[2], 'leased_until_ms', '0', 'created_at_ms', ARGV[2],
      'last_error', 'replayed from the dead list (it had died: ' .. r.reason .. ')')
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HINCRBY', KEYS[4], r.destination, 1)
    out[#out + 1] = ARGV[i]
  end
end
return out
"#;

/// `KEYS` = due, leased, dead; `ARGV` = now. Returns {total, in flight, dead}.
const STATS_LUA: &str = r#"
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[1], '+inf'),
  redis.call('LLEN', KEYS[3])
}
"#;

/// `KEYS` = leased, per-destination counts, per-destination dead counts;
/// `ARGV` = now, entry-key prefix. Returns {counts, dead counts, in-flight
/// destinations}, the first two as flat field/value lists.
const STATS_BY_DESTINATION_LUA: &str = r#"
local flying = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')) do
  local d = redis.call('HGET', ARGV[2] .. id, 'destination')
  if d then flying[#flying + 1] = d end
end
return { redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), flying }
"#;

struct Scripts {
    claim: Script,
    release: Script,
    enqueue: Script,
    lease: Script,
    ack: Script,
    retry: Script,
    dead: Script,
    replay: Script,
    stats: Script,
    stats_by_destination: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            claim: Script::new(CLAIM_LUA),
            release: Script::new(RELEASE_LUA),
            enqueue: Script::new(ENQUEUE_LUA),
            lease: Script::new(LEASE_LUA),
            ack: Script::new(ACK_LUA),
            retry: Script::new(RETRY_LUA),
            dead: Script::new(DEAD_LUA),
            replay: Script::new(REPLAY_LUA),
            stats: Script::new(STATS_LUA),
            stats_by_destination: Script::new(STATS_BY_DESTINATION_LUA),
        }
    }
}

/// Settings of a [`RedisStore`]. `RedisOptions::new(capacity)` gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The most entries the shared outbox holds; more are refused with [`StoreError::Full`].
    pub capacity: usize,
    /// How many dead entries are kept for inspection (oldest are dropped). Default 10 000.
    pub dead_capacity: usize,
    /// Connect, read and write timeout of the connection. Default 5 s.
    pub timeout: Duration,
    /// Connections kept open, so calls from several delivery lanes (each on
    /// a blocking thread) wait on Redis side by side instead of one after the
    /// other. Default 4; each opens on first use.
    pub connections: usize,
}

impl RedisOptions {
    /// Defaults with an outbox of `capacity` entries.
    pub fn new(capacity: usize) -> RedisOptions {
        RedisOptions { capacity, dead_capacity: 10_000, timeout: Duration::from_secs(5), connections: 4 }
    }

    /// Sets [`RedisOptions::dead_capacity`].
    pub fn dead_capacity(mut self, n: usize) -> RedisOptions {
        self.dead_capacity = n;
        self
    }

    /// Sets [`RedisOptions::timeout`] (zero is treated as 1 ms).
    pub fn timeout(mut self, t: Duration) -> RedisOptions {
        self.timeout = t.max(Duration::from_millis(1));
        self
    }

    /// Sets [`RedisOptions::connections`] (zero is treated as 1).
    pub fn connections(mut self, n: usize) -> RedisOptions {
        self.connections = n.max(1);
        self
    }
}

/// Outbox and idempotency store in Redis, shared by every instance using the
/// same prefix. See the [module docs](self).
pub struct RedisStore {
    client: Client,
    /// The pool: a call takes a free connection, or waits for the next one in turn.
    conns: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
    prefix: String,
    options: RedisOptions,
    scripts: Scripts,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.client.get_connection_info().addr().to_string())
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A dead entry as the dead script writes it (all strings, from `cjson`).
#[derive(Deserialize)]
struct DeadRecord {
    id: String,
    dead_at_ms: String,
    destination: String,
    key: String,
    event_json: String,
    visitor_json: String,
    attempts: String,
    next_attempt_at_ms: String,
    #[serde(default)]
    last_error: Option<String>,
    reason: String,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_id(id: &str) -> Result<u64, StoreError> {
    id.parse().map_err(|_| StoreError::Backend(format!("redis: bad outbox id {id:?}")))
}

fn parse_num<T: std::str::FromStr>(what: &str, v: Option<&str>) -> Result<T, StoreError> {
    v.and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Backend(format!("redis: corrupt outbox entry: bad {what} {v:?}")))
}

fn field(what: &str, v: Option<String>) -> Result<String, StoreError> {
    v.ok_or_else(|| StoreError::Backend(format!("redis: corrupt outbox entry: missing {what}")))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `redis://:password@host/`),
    /// keeping every key under `prefix` (e.g. `"tally:"`), with an outbox of at
    /// most `capacity` entries. Fails if Redis does not answer a `PING`.
    pub fn connect(url: &str, prefix: &str, capacity: usize) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with(url, prefix, RedisOptions::new(capacity))
    }

    /// Like [`RedisStore::connect`], with `options`.
    pub fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::Backend(format!("redis: bad URL: {e}")))?;
        let conns = (0..options.connections.max(1)).map(|_| Mutex::new(None)).collect();
        let store = RedisStore {
            client,
            conns,
            next: AtomicUsize::new(0),
            prefix: prefix.to_owned(),
            options,
            scripts: Scripts::new(),
        };
        let pong: String = store.run("PING", |c| redis::cmd("PING").query(c))?;
        if pong != "PONG" {
            return Err(StoreError::Backend(format!("redis: PING answered {pong:?}")));
        }
        Ok(store)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The options this store was created with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// A connection slot of the pool: the first free one from the next in
    /// turn, else (all busy) the next in turn, waited for.
    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.conns[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.conns[start].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_connection(&self) -> Result<Connection, StoreError> {
        let t = self.options.timeout;
        let conn = self
            .client
            .get_connection_with_timeout(t)
            .map_err(|e| StoreError::Backend(format!("redis: connecting: {e}")))?;
        conn.set_read_timeout(Some(t))
            .and_then(|()| conn.set_write_timeout(Some(t)))
            .map_err(|e| StoreError::Backend(format!("redis: setting timeouts: {e}")))?;
        Ok(conn)
    }

    /// Runs `f` on the connection (connecting first if needed); a broken
    /// connection is dropped so the next call reconnects.
    fn run<T>(&self, what: &'static str, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, StoreError> {
        let mut guard = self.lock();
        if guard.is_none() {
            *guard = Some(self.open_connection()?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Backend("redis: no connection".into()));
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    *guard = None;
                }
                Err(StoreError::Backend(format!("redis: {what}: {e}")))
            }
        }
    }

    fn journal_key(&self) -> String {
        format!("{}journal", self.prefix)
    }

    fn idem_key(&self, key: &str) -> String {
        format!("{}idem:{key}", self.prefix)
    }

    fn seq_key(&self) -> String {
        format!("{}outbox:seq", self.prefix)
    }

    fn due_key(&self) -> String {
        format!("{}outbox:due", self.prefix)
    }

    fn leased_key(&self) -> String {
        format!("{}outbox:leased", self.prefix)
    }

    fn dead_key(&self) -> String {
        format!("{}outbox:dead", self.prefix)
    }

    fn counts_key(&self) -> String {
        format!("{}outbox:by_destination", self.prefix)
    }

    fn dead_counts_key(&self) -> String {
        format!("{}outbox:dead_by_destination", self.prefix)
    }

    fn entry_prefix(&self) -> String {
        format!("{}outbox:e:", self.prefix)
    }

    fn entry_key(&self, id: u64) -> String {
        format!("{}outbox:e:{id}", self.prefix)
    }

    fn try_claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        let k = self.idem_key(key);
        // PX must be positive; a zero lease is a lease that ends at once.
        let lease_ms = ms(lease).max(1);
        let state: i64 = self.run("claim", |c| self.scripts.claim.key(&k).arg(lease_ms).invoke(c))?;
        Ok(match state {
            0 => Claim::Acquired,
            2 => Claim::Delivered,
            _ => Claim::InFlight,
        })
    }

    fn try_complete(&self, key: &str, retention: Duration) -> Result<(), StoreError> {
        let k = self.idem_key(key);
        let retention_ms = ms(retention);
        self.run("complete", |c| {
            if retention_ms <= 0 {
                redis::cmd("DEL").arg(&k).query::<()>(c)
            } else {
                redis::cmd("SET").arg(&k).arg("delivered").arg("PX").arg(retention_ms).query::<()>(c)
            }
        })
    }

    fn try_release(&self, key: &str) -> Result<(), StoreError> {
        let k = self.idem_key(key);
        self.run("release", |c| self.scripts.release.key(&k).invoke::<i64>(c))?;
        Ok(())
    }
}

impl IdempotencyStore for RedisStore {
    fn claim(&self, key: &str, lease: Duration) -> Claim {
        match self.try_claim(key, lease) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, key, "idempotency claim failed; the event stays in the outbox");
                Claim::Unavailable
            }
        }
    }

    fn complete(&self, key: &str, retention: Duration) {
        if let Err(e) = self.try_complete(key, retention) {
            tracing::error!(error = %e, key, "marking a key delivered failed; a duplicate may be sent after the lease ends");
        }
    }

    fn release(&self, key: &str) {
        if let Err(e) = self.try_release(key) {
            tracing::warn!(error = %e, key, "releasing a key failed; it frees itself when the lease ends");
        }
    }
}

impl Outbox for RedisStore {
    /// Adds all `entries` in one script run: all are stored or none.
    fn enqueue(&self, entries: &[OutboxEntry]) -> Result<Vec<String>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.enqueue.prepare_invoke();
        inv.key(self.seq_key())
            .key(self.due_key())
            .key(self.counts_key())
            .arg(self.options.capacity)
            .arg(entries.len())
            .arg(unix_ms())
            .arg(self.entry_prefix());
        for e in entries {
            inv.arg(&e.destination)
                .arg(&e.key)
                .arg(&e.event_json)
                .arg(&e.visitor_json)
                .arg(e.attempts)
                .arg(e.next_attempt_at_ms)
                .arg(if e.last_error.is_some() { "1" } else { "0" })
                .arg(e.last_error.as_deref().unwrap_or(""));
        }
        let reply: Vec<i64> = self.run("enqueue", |c| inv.invoke(c))?;
        match reply.split_first() {
            Some((1, ids)) => Ok(ids.iter().map(i64::to_string).collect()),
            Some((0, _)) => Err(StoreError::Full { capacity: self.options.capacity }),
            _ => Err(StoreError::Backend(format!("redis: enqueue: unexpected reply {reply:?}"))),
        }
    }

    fn lease(&self, max: usize, lease: Duration, now_ms: i64) -> Result<Vec<Leased>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let until = now_ms.saturating_add(ms(lease));
        let rows: Vec<Vec<Option<String>>> = self.run("lease", |c| {
            self.scripts
                .lease
                .key(self.due_key())
                .key(self.leased_key())
                .arg(now_ms)
                .arg(until)
                .arg(max)
                .arg(self.entry_prefix())
                .invoke(c)
        })?;
        rows.into_iter()
            .map(|row| {
                let mut it = row.into_iter();
                let mut next = || it.next().flatten();
                let id = field("id", next())?;
                let destination = field("destination", next())?;
                let key = field("key", next())?;
                let event_json = field("event_json", next())?;
                let visitor_json = field("visitor_json", next())?;
                let attempts = parse_num("attempts", next().as_deref())?;
                let next_attempt_at_ms = parse_num("next_attempt_at_ms", next().as_deref())?;
                let last_error = next();
                Ok(Leased {
                    id,
                    entry: OutboxEntry {
                        destination,
                        key,
                        event_json,
                        visitor_json,
                        attempts,
                        next_attempt_at_ms,
                        last_error,
                    },
                })
            })
            .collect()
    }

    fn ack(&self, id: &str) -> Result<(), StoreError> {
        let n = parse_id(id)?;
        self.run("ack", |c| {
            self.scripts
                .ack
                .key(self.due_key())
                .key(self.leased_key())
                .key(self.entry_key(n))
                .key(self.counts_key())
                .arg(n)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    fn retry(&self, id: &str, next_attempt_at_ms: i64, error: &str) -> Result<(), StoreError> {
        let n = parse_id(id)?;
        self.run("retry", |c| {
            self.scripts
                .retry
                .key(self.due_key())
                .key(self.leased_key())
                .key(self.entry_key(n))
                .arg(n)
                .arg(next_attempt_at_ms)
                .arg(error)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    fn dead(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let n = parse_id(id)?;
        self.run("dead", |c| {
            self.scripts
                .dead
                .key(self.due_key())
                .key(self.leased_key())
                .key(self.entry_key(n))
                .key(self.dead_key())
                .key(self.counts_key())
                .key(self.dead_counts_key())
                .arg(n)
                .arg(reason)
                .arg(unix_ms())
                .arg(self.options.dead_capacity)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    fn stats(&self) -> Result<OutboxStats, StoreError> {
        let (total, in_flight, dead): (usize, usize, usize) = self.run("stats", |c| {
            self.scripts.stats.key(self.due_key()).key(self.leased_key()).key(self.dead_key()).arg(unix_ms()).invoke(c)
        })?;
        Ok(OutboxStats { queued: total.saturating_sub(in_flight), in_flight, dead })
    }

    fn stats_by_destination(&self) -> Result<BTreeMap<String, OutboxStats>, StoreError> {
        type Counts = (Vec<(String, i64)>, Vec<(String, i64)>, Vec<String>);
        let (counts, dead, flying): Counts = self.run("stats_by_destination", |c| {
            self.scripts
                .stats_by_destination
                .key(self.leased_key())
                .key(self.counts_key())
                .key(self.dead_counts_key())
                .arg(unix_ms())
                .arg(self.entry_prefix())
                .invoke(c)
        })?;
        let n = |v: i64| usize::try_from(v).unwrap_or(0);
        let mut out: BTreeMap<String, OutboxStats> = BTreeMap::new();
        for (d, total) in counts {
            out.entry(d).or_default().queued = n(total);
        }
        for d in flying {
            let s = out.entry(d).or_default();
            s.in_flight += 1;
            s.queued = s.queued.saturating_sub(1);
        }
        for (d, v) in dead {
            out.entry(d).or_default().dead = n(v);
        }
        out.retain(|_, s| *s != OutboxStats::default());
        Ok(out)
    }

    fn dead_entries(&self, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let raw: Vec<String> =
            self.run("dead_entries", |c| redis::cmd("LRANGE").arg(self.dead_key()).arg(0).arg(last).query(c))?;
        raw.iter()
            .map(|s| {
                let r: DeadRecord = serde_json::from_str(s)
                    .map_err(|e| StoreError::Backend(format!("redis: corrupt dead entry: {e}")))?;
                Ok(DeadEntry {
                    id: r.id,
                    dead_at_ms: parse_num("dead_at_ms", Some(&r.dead_at_ms))?,
                    entry: OutboxEntry {
                        destination: r.destination,
                        key: r.key,
                        event_json: r.event_json,
                        visitor_json: r.visitor_json,
                        attempts: parse_num("attempts", Some(&r.attempts))?,
                        next_attempt_at_ms: parse_num("next_attempt_at_ms", Some(&r.next_attempt_at_ms))?,
                        last_error: r.last_error,
                    },
                    reason: r.reason,
                })
            })
            .collect()
    }

    fn replay_dead(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out: Vec<String> = self.run("replay_dead", |c| {
            let mut inv = self.scripts.replay.prepare_invoke();
            inv.key(self.seq_key())
                .key(self.due_key())
                .key(self.dead_key())
                .key(self.counts_key())
                .key(self.dead_counts_key())
                .arg(self.options.capacity)
                .arg(now_ms)
                .arg(self.entry_prefix());
            for id in ids {
                inv.arg(id);
            }
            inv.invoke(c)
        })?;
        match out.split_first() {
            Some((flag, moved)) if flag == "1" => Ok(moved.to_vec()),
            _ => Err(StoreError::Full { capacity: self.options.capacity }),
        }
    }

    /// `ZADD` of the rows and `ZREMRANGEBYSCORE` of the expired ones, in one
    /// `MULTI`/`EXEC` pipeline.
    fn journal_append(&self, rows: &[JournalRow], keep_since_ms: i64) -> Result<(), StoreError> {
        let key = self.journal_key();
        self.run("journal_append", |c| {
            let mut p = redis::pipe();
            p.atomic();
            if !rows.is_empty() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&key);
                for r in rows {
                    zadd.arg(r.at_ms).arg(r.to_json());
                }
                p.add_command(zadd).ignore();
            }
            p.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(format!("({keep_since_ms}")).ignore();
            p.query::<()>(c)
        })
    }

    fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalRow>, StoreError> {
        let raw: Vec<String> = self.run("journal_since", |c| {
            redis::cmd("ZRANGEBYSCORE").arg(self.journal_key()).arg(since_ms).arg("+inf").query(c)
        })?;
        Ok(raw.iter().filter_map(|t| JournalRow::from_json(t)).collect())
    }
}
