//! The SQLite backend: the embedded default for one server instance.
//!
//! [`SqliteStore`] implements both [`IdempotencyStore`] and [`Outbox`] over one
//! database file, so dedup keys and pending deliveries survive a crash or a
//! `kill -9` together:
//!
//! ```no_run
//! use tally_server::store::sqlite::SqliteStore;
//! use tally_server::store::Outbox;
//!
//! # fn main() -> Result<(), tally_server::store::StoreError> {
//! let store = SqliteStore::open("/var/lib/tally/tally.db", 100_000)?;
//! println!("{:?}", store.stats()?);
//! # Ok(()) }
//! ```
//!
//! # Durability and concurrency
//!
//! - The file is opened in WAL mode with `synchronous=NORMAL`: a committed
//!   transaction survives a crash of the process (the `kill -9` case); a power
//!   loss may lose the last few transactions but never corrupts the file.
//! - Several processes may open the same file (a restarted server while the old
//!   one is still shutting down, a CLI inspecting the queue). Every write runs in
//!   a `BEGIN IMMEDIATE` transaction and waits up to the busy timeout for the
//!   write lock, so [`Outbox::lease`] never hands the same entry to two workers,
//!   in this process or another.
//! - Inside one process the connection sits behind a mutex: calls are
//!   serialised, which is what SQLite does with writers anyway.
//!
//! # Batched commits
//!
//! [`Outbox::enqueue`] writes every entry of one call in a single transaction:
//! one fsync-free WAL append and one commit for the whole batch, and all or
//! nothing (the capacity check covers the batch). Callers that accept many
//! events at once (the collector's `POST /collect` batch) should enqueue them in
//! one call rather than one call per event.
//!
//! # Bounds
//!
//! - The outbox holds at most `capacity` entries; over that, enqueue returns
//!   [`StoreError::Full`]. The count is kept by triggers, so the check is O(1).
//! - The dead list keeps the newest [`SqliteOptions::dead_capacity`] entries.
//! - Expired idempotency rows (leases that ran out, deliveries older than their
//!   retention) are deleted on open and every [`SqliteOptions::sweep_every`]
//!   claims, so the table stays bounded by the retention window.
//!
//! # Errors
//!
//! Outbox methods return [`StoreError::Backend`] with context. The
//! [`IdempotencyStore`] methods cannot return errors; on a backend failure they
//! log with `tracing` and fail safe: `claim` answers [`Claim::Unavailable`] (do
//! not send now; the outbox entry is retried later, and the caller sees
//! `DeliveryError::StoreUnavailable`) rather than risking a second delivery.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::journal::JournalRow;
use super::outbox::{DeadEntry, Leased, Outbox, OutboxEntry, OutboxStats, StoreError, unix_ms};
use super::{Claim, IdempotencyStore};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS idempotency (
    key      TEXT PRIMARY KEY NOT NULL,
    state    INTEGER NOT NULL,          -- 0 = leased (in flight), 1 = delivered
    until_ms INTEGER NOT NULL           -- unix ms when the lease / retention ends
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_until ON idempotency (until_ms);

-- AUTOINCREMENT: ids are never reused, so a late ack from a worker that lost
-- its lease can never remove a newer entry that happens to get the same id.
CREATE TABLE IF NOT EXISTS outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    destination        TEXT NOT NULL,
    key                TEXT NOT NULL,
    event_json         TEXT NOT NULL,
    visitor_json       TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    leased_until_ms    INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL
);
-- The due-lease query orders by this expression: an entry is due when both
-- its next attempt time and its lease (if any) are in the past.
CREATE INDEX IF NOT EXISTS outbox_due
    ON outbox (max(next_attempt_at_ms, leased_until_ms), id);
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (leased_until_ms);

CREATE TABLE IF NOT EXISTS dead (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id          INTEGER NOT NULL,
    destination        TEXT NOT NULL,
    key                TEXT NOT NULL,
    event_json         TEXT NOT NULL,
    visitor_json       TEXT NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL,
    reason             TEXT NOT NULL,
    dead_at_ms         INTEGER NOT NULL
);

-- O(1) capacity check: the number of outbox rows, kept by triggers.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('outbox', 0);
-- The order journal (production QA), added without a version bump: older
-- builds never read it.
CREATE TABLE IF NOT EXISTS journal (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    row   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_at ON journal (at_ms);
CREATE TRIGGER IF NOT EXISTS outbox_count_insert AFTER INSERT ON outbox
BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'outbox';
END;
CREATE TRIGGER IF NOT EXISTS outbox_count_delete AFTER DELETE ON outbox
BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'outbox';
END;
"#;

const LEASE_SQL: &str = "UPDATE outbox
    SET attempts = attempts + 1, leased_until_ms = ?2
    WHERE id IN (
        SELECT id FROM outbox
        WHERE max(next_attempt_at_ms, leased_until_ms) <= ?1
        ORDER BY max(next_attempt_at_ms, leased_until_ms), id
        LIMIT ?3
    )
    RETURNING id, destination, key, event_json, visitor_json, attempts,
              next_attempt_at_ms, last_error";

/// Idempotency row states.
const STATE_LEASED: i64 = 0;
const STATE_DELIVERED: i64 = 1;

/// Settings of a [`SqliteStore`]. `SqliteOptions::new(capacity)` gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The most entries the outbox holds; more are refused with [`StoreError::Full`].
    pub capacity: usize,
    /// How many dead entries are kept for inspection (oldest are dropped). Default 10 000.
    pub dead_capacity: usize,
    /// Expired idempotency rows are deleted every this many claims. Default 1 000.
    pub sweep_every: u64,
    /// How long a call waits for another connection's write lock. Default 5 s.
    pub busy_timeout: Duration,
}

impl SqliteOptions {
    /// Defaults with an outbox of `capacity` entries.
    pub fn new(capacity: usize) -> SqliteOptions {
        SqliteOptions { capacity, dead_capacity: 10_000, sweep_every: 1_000, busy_timeout: Duration::from_secs(5) }
    }

    /// Sets [`SqliteOptions::dead_capacity`].
    pub fn dead_capacity(mut self, n: usize) -> SqliteOptions {
        self.dead_capacity = n;
        self
    }

    /// Sets [`SqliteOptions::sweep_every`] (0 is treated as 1).
    pub fn sweep_every(mut self, n: u64) -> SqliteOptions {
        self.sweep_every = n.max(1);
        self
    }

    /// Sets [`SqliteOptions::busy_timeout`].
    pub fn busy_timeout(mut self, t: Duration) -> SqliteOptions {
        self.busy_timeout = t;
        self
    }
}

/// Outbox and idempotency store in one SQLite file. See the [module docs](self).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    options: SqliteOptions,
    claims: AtomicU64,
}

fn backend(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("sqlite: {context}: {e}"))
}

fn parse_id(id: &str) -> Result<i64, StoreError> {
    id.parse().map_err(|_| StoreError::Backend(format!("sqlite: bad outbox id {id:?}")))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn attempts_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with an outbox of at
    /// most `capacity` entries and default [`SqliteOptions`].
    pub fn open(path: impl AsRef<Path>, capacity: usize) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::new(capacity))
    }

    /// Opens (creating if needed) the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("sqlite: opening {}: {e}", path.display())))?;
        SqliteStore::init(conn, options, true)
    }

    /// A private in-memory database (tests; nothing survives the store).
    pub fn open_in_memory(capacity: usize) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_in_memory_with(SqliteOptions::new(capacity))
    }

    /// A private in-memory database with `options` (tests; no WAL, nothing survives the store).
    pub fn open_in_memory_with(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend("opening in-memory database"))?;
        SqliteStore::init(conn, options, false)
    }

    fn init(mut conn: Connection, options: SqliteOptions, wal: bool) -> Result<SqliteStore, StoreError> {
        // The busy timeout first: switching to WAL and creating the schema may
        // wait for another process that opens the same file right now.
        conn.busy_timeout(options.busy_timeout).map_err(backend("setting busy_timeout"))?;
        if wal {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(backend("enabling WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Backend(format!(
                    "sqlite: the database refused WAL mode (journal_mode is {mode})"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend("setting synchronous=NORMAL"))?;
        conn.set_prepared_statement_cache_capacity(32);
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("starting schema transaction"))?;
            let version: i64 =
                tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(backend("reading schema version"))?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::Backend(format!(
                    "sqlite: the database has schema version {version}, newer than this build \
                     understands ({SCHEMA_VERSION}); upgrade tally"
                )));
            }
            tx.execute_batch(SCHEMA).map_err(backend("creating schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(backend("writing schema version"))?;
            // Resynchronise the counter (cheap, and repairs any drift).
            tx.execute("UPDATE counters SET value = (SELECT count(*) FROM outbox) WHERE name = 'outbox'", [])
                .map_err(backend("counting outbox"))?;
            tx.commit().map_err(backend("committing schema"))?;
        }
        let store = SqliteStore { conn: Mutex::new(conn), options, claims: AtomicU64::new(0) };
        store.sweep_idempotency()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back (the
        // Transaction guard's drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// Deletes expired idempotency rows now; returns how many. Also runs on
    /// open and every [`SqliteOptions::sweep_every`] claims.
    pub fn sweep_idempotency(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM idempotency WHERE until_ms <= ?1")
            .and_then(|mut st| st.execute([unix_ms()]))
            .map_err(backend("sweeping idempotency keys"))
    }

    /// How many idempotency rows the table holds (live and not yet swept).
    pub fn idempotency_len(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
            .map_err(backend("counting idempotency keys"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn try_claim(&self, key: &str, lease: Duration) -> Result<Claim, StoreError> {
        Ok(self.try_claim_many(std::slice::from_ref(&key), lease)?.pop().unwrap_or(Claim::Unavailable))
    }

    /// Claims every key in one transaction.
    fn try_claim_many<K: AsRef<str>>(&self, keys: &[K], lease: Duration) -> Result<Vec<Claim>, StoreError> {
        let mut conn = self.lock();
        let now = unix_ms();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("claim: begin"))?;
        let claims = keys.iter().map(|k| claim_in(&tx, k.as_ref(), lease, now)).collect::<Result<Vec<_>, _>>()?;
        tx.commit().map_err(backend("claim: commit"))?;
        Ok(claims)
    }

    fn try_complete_many(&self, keys: &[String], retention: Duration) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let until = unix_ms().saturating_add(duration_ms(retention));
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("complete: begin"))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO idempotency (key, state, until_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET state = excluded.state, until_ms = excluded.until_ms",
                )
                .map_err(backend("complete: preparing"))?;
            for k in keys {
                st.execute(params![k, STATE_DELIVERED, until]).map_err(backend("complete: writing key"))?;
            }
        }
        tx.commit().map_err(backend("complete: commit"))
    }
}

/// Claims `key` inside `tx`.
fn claim_in(tx: &rusqlite::Transaction<'_>, key: &str, lease: Duration, now: i64) -> Result<Claim, StoreError> {
    let current: Option<(i64, i64)> = tx
        .prepare_cached("SELECT state, until_ms FROM idempotency WHERE key = ?1")
        .and_then(|mut st| st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(backend("claim: reading key"))?;
    let claim = match current {
        Some((STATE_DELIVERED, until)) if until > now => Claim::Delivered,
        Some((_, until)) if until > now => Claim::InFlight,
        _ => {
            tx.prepare_cached(
                "INSERT INTO idempotency (key, state, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET state = excluded.state, until_ms = excluded.until_ms",
            )
            .and_then(|mut st| st.execute(params![key, STATE_LEASED, now.saturating_add(duration_ms(lease))]))
            .map_err(backend("claim: writing lease"))?;
            Claim::Acquired
        }
    };
    Ok(claim)
}

impl SqliteStore {
    fn try_complete(&self, key: &str, retention: Duration) -> Result<(), StoreError> {
        let conn = self.lock();
        let until = unix_ms().saturating_add(duration_ms(retention));
        conn.prepare_cached(
            "INSERT INTO idempotency (key, state, until_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET state = excluded.state, until_ms = excluded.until_ms",
        )
        .and_then(|mut st| st.execute(params![key, STATE_DELIVERED, until]))
        .map_err(backend("complete: writing key"))?;
        Ok(())
    }

    fn try_release(&self, key: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        // Only a lease is given back: a delivered mark stays until its retention ends.
        conn.prepare_cached("DELETE FROM idempotency WHERE key = ?1 AND state = ?2")
            .and_then(|mut st| st.execute(params![key, STATE_LEASED]))
            .map_err(backend("release: deleting key"))?;
        Ok(())
    }
}

impl IdempotencyStore for SqliteStore {
    fn claim(&self, key: &str, lease: Duration) -> Claim {
        let n = self.claims.fetch_add(1, Ordering::Relaxed) + 1;
        if n % self.options.sweep_every.max(1) == 0 {
            if let Err(e) = self.sweep_idempotency() {
                tracing::warn!(error = %e, "idempotency sweep failed; will retry");
            }
        }
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

    fn claim_many(&self, keys: &[String], lease: Duration) -> Vec<Claim> {
        let n = self.claims.fetch_add(keys.len() as u64, Ordering::Relaxed) + keys.len() as u64;
        let every = self.options.sweep_every.max(1);
        if n / every != (n - keys.len() as u64) / every
            && let Err(e) = self.sweep_idempotency()
        {
            tracing::warn!(error = %e, "idempotency sweep failed; will retry");
        }
        match self.try_claim_many(keys, lease) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, keys = keys.len(), "idempotency claims failed; the events stay in the outbox");
                vec![Claim::Unavailable; keys.len()]
            }
        }
    }

    fn complete_many(&self, keys: &[String], retention: Duration) {
        if let Err(e) = self.try_complete_many(keys, retention) {
            tracing::error!(error = %e, keys = keys.len(), "marking keys delivered failed; duplicates may be sent after the lease ends");
        }
    }
}

impl Outbox for SqliteStore {
    /// Writes all `entries` in one transaction (the batch): all are stored or none.
    fn enqueue(&self, entries: &[OutboxEntry]) -> Result<Vec<String>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("enqueue: begin"))?;
        let len: i64 = tx
            .prepare_cached("SELECT value FROM counters WHERE name = 'outbox'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(backend("enqueue: reading queue length"))?;
        if len.saturating_add(to_i64(entries.len())) > to_i64(self.options.capacity) {
            return Err(StoreError::Full { capacity: self.options.capacity });
        }
        let now = unix_ms();
        let mut ids = Vec::with_capacity(entries.len());
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO outbox (destination, key, event_json, visitor_json, attempts,
                         next_attempt_at_ms, leased_until_ms, last_error, created_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
                )
                .map_err(backend("enqueue: preparing insert"))?;
            for e in entries {
                st.execute(params![
                    e.destination,
                    e.key,
                    e.event_json,
                    e.visitor_json,
                    i64::from(e.attempts),
                    e.next_attempt_at_ms,
                    e.last_error,
                    now
                ])
                .map_err(backend("enqueue: inserting entry"))?;
                ids.push(tx.last_insert_rowid().to_string());
            }
        }
        tx.commit().map_err(backend("enqueue: commit"))?;
        Ok(ids)
    }

    fn lease(&self, max: usize, lease: Duration, now_ms: i64) -> Result<Vec<Leased>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.lock();
        let until = now_ms.saturating_add(duration_ms(lease));
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("lease: begin"))?;
        let mut out = {
            let mut st = tx.prepare_cached(LEASE_SQL).map_err(backend("lease: preparing"))?;
            let rows = st
                .query_map(params![now_ms, until, to_i64(max)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        OutboxEntry {
                            destination: r.get(1)?,
                            key: r.get(2)?,
                            event_json: r.get(3)?,
                            visitor_json: r.get(4)?,
                            attempts: attempts_u32(r.get(5)?),
                            next_attempt_at_ms: r.get(6)?,
                            last_error: r.get(7)?,
                        },
                    ))
                })
                .map_err(backend("lease: updating"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend("lease: reading rows"))?
        };
        tx.commit().map_err(backend("lease: commit"))?;
        // RETURNING has no defined order: hand out the oldest-due first.
        out.sort_by_key(|(id, e)| (e.next_attempt_at_ms, *id));
        Ok(out.into_iter().map(|(id, entry)| Leased { id: id.to_string(), entry }).collect())
    }

    fn ack(&self, id: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        let conn = self.lock();
        conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(backend("ack: deleting entry"))?;
        Ok(())
    }

    fn ack_many(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.iter().map(|id| parse_id(id)).collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("ack: begin"))?;
        {
            let mut st = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1").map_err(backend("ack: preparing"))?;
            for id in ids {
                st.execute([id]).map_err(backend("ack: deleting entry"))?;
            }
        }
        tx.commit().map_err(backend("ack: commit"))
    }

    fn retry(&self, id: &str, next_attempt_at_ms: i64, error: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        let conn = self.lock();
        conn.prepare_cached(
            "UPDATE outbox SET next_attempt_at_ms = ?2, last_error = ?3, leased_until_ms = 0 WHERE id = ?1",
        )
        .and_then(|mut st| st.execute(params![id, next_attempt_at_ms, error]))
        .map_err(backend("retry: updating entry"))?;
        Ok(())
    }

    fn dead(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let id = parse_id(id)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("dead: begin"))?;
        let moved = tx
            .prepare_cached(
                "INSERT INTO dead (outbox_id, destination, key, event_json, visitor_json, attempts,
                     next_attempt_at_ms, last_error, created_at_ms, reason, dead_at_ms)
                 SELECT id, destination, key, event_json, visitor_json, attempts,
                     next_attempt_at_ms, last_error, created_at_ms, ?2, ?3
                 FROM outbox WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, reason, unix_ms()]))
            .map_err(backend("dead: copying entry"))?;
        if moved > 0 {
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")
                .and_then(|mut st| st.execute([id]))
                .map_err(backend("dead: deleting entry"))?;
            tx.prepare_cached("DELETE FROM dead WHERE id <= (SELECT id FROM dead ORDER BY id DESC LIMIT 1 OFFSET ?1)")
                .and_then(|mut st| st.execute([to_i64(self.options.dead_capacity)]))
                .map_err(backend("dead: trimming dead list"))?;
        }
        tx.commit().map_err(backend("dead: commit"))?;
        Ok(())
    }

    fn stats(&self) -> Result<OutboxStats, StoreError> {
        let conn = self.lock();
        let now = unix_ms();
        // One read transaction, so the three counts are one snapshot.
        let tx = conn.unchecked_transaction().map_err(backend("stats: begin"))?;
        let total: i64 = tx
            .prepare_cached("SELECT value FROM counters WHERE name = 'outbox'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(backend("stats: counting queue"))?;
        let in_flight: i64 = tx
            .prepare_cached("SELECT count(*) FROM outbox WHERE leased_until_ms > ?1")
            .and_then(|mut st| st.query_row([now], |r| r.get(0)))
            .map_err(backend("stats: counting leases"))?;
        let dead: i64 = tx
            .prepare_cached("SELECT count(*) FROM dead")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(backend("stats: counting dead"))?;
        tx.commit().map_err(backend("stats: end"))?;
        let n = |v: i64| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
        Ok(OutboxStats { queued: n(total - in_flight), in_flight: n(in_flight), dead: n(dead) })
    }

    fn stats_by_destination(&self) -> Result<BTreeMap<String, OutboxStats>, StoreError> {
        let conn = self.lock();
        let now = unix_ms();
        let n = |v: i64| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
        let mut out: BTreeMap<String, OutboxStats> = BTreeMap::new();
        let tx = conn.unchecked_transaction().map_err(backend("stats by destination: begin"))?;
        {
            let mut st = tx
                .prepare_cached(
                    "SELECT destination, count(*), coalesce(sum(leased_until_ms > ?1), 0) FROM outbox GROUP BY destination",
                )
                .map_err(backend("stats by destination: queue"))?;
            let rows = st
                .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .map_err(backend("stats by destination: queue"))?;
            for row in rows {
                let (d, total, in_flight) = row.map_err(backend("stats by destination: queue row"))?;
                let s = out.entry(d).or_default();
                s.queued = n(total - in_flight);
                s.in_flight = n(in_flight);
            }
            let mut st = tx
                .prepare_cached("SELECT destination, count(*) FROM dead GROUP BY destination")
                .map_err(backend("stats by destination: dead"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(backend("stats by destination: dead"))?;
            for row in rows {
                let (d, dead) = row.map_err(backend("stats by destination: dead row"))?;
                out.entry(d).or_default().dead = n(dead);
            }
        }
        tx.commit().map_err(backend("stats by destination: end"))?;
        Ok(out)
    }

    fn dead_entries(&self, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT destination, key, event_json, visitor_json, attempts, next_attempt_at_ms,
                        last_error, reason, id, dead_at_ms
                 FROM dead ORDER BY id DESC LIMIT ?1",
            )
            .map_err(backend("dead_entries: preparing"))?;
        let rows = st
            .query_map([to_i64(limit)], |r| {
                Ok(DeadEntry {
                    id: r.get::<_, i64>(8)?.to_string(),
                    dead_at_ms: r.get(9)?,
                    entry: OutboxEntry {
                        destination: r.get(0)?,
                        key: r.get(1)?,
                        event_json: r.get(2)?,
                        visitor_json: r.get(3)?,
                        attempts: attempts_u32(r.get(4)?),
                        next_attempt_at_ms: r.get(5)?,
                        last_error: r.get(6)?,
                    },
                    reason: r.get(7)?,
                })
            })
            .map_err(backend("dead_entries: querying"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend("dead_entries: reading rows"))
    }

    /// One transaction: the capacity check, then each dead row copied into the
    /// outbox and deleted from the dead list.
    fn replay_dead(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, StoreError> {
        // An id that is not a number names no dead row.
        let numbers: Vec<(i64, &String)> = ids.iter().filter_map(|id| Some((id.parse().ok()?, id))).collect();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("replay: begin"))?;
        let mut found = 0i64;
        for (n, _) in &numbers {
            let exists: Option<i64> = tx
                .prepare_cached("SELECT id FROM dead WHERE id = ?1")
                .and_then(|mut st| st.query_row([n], |r| r.get(0)).optional())
                .map_err(backend("replay: finding dead entry"))?;
            found += i64::from(exists.is_some());
        }
        let len: i64 = tx
            .prepare_cached("SELECT value FROM counters WHERE name = 'outbox'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(backend("replay: reading queue length"))?;
        if len.saturating_add(found) > to_i64(self.options.capacity) {
            return Err(StoreError::Full { capacity: self.options.capacity });
        }
        let mut moved = Vec::new();
        for (n, id) in numbers {
            let reason: Option<String> = tx
                .prepare_cached("SELECT reason FROM dead WHERE id = ?1")
                .and_then(|mut st| st.query_row([n], |r| r.get(0)).optional())
                .map_err(backend("replay: reading dead entry"))?;
            let Some(reason) = reason else { continue };
            tx.prepare_cached(
                "INSERT INTO outbox (destination, key, event_json, visitor_json, attempts,
                     next_attempt_at_ms, leased_until_ms, last_error, created_at_ms)
                 SELECT destination, key, event_json, visitor_json, 0, ?2, 0, ?3, ?4 FROM dead WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![n, now_ms, super::outbox::replayed_note(&reason), unix_ms()]))
            .map_err(backend("replay: copying entry"))?;
            tx.prepare_cached("DELETE FROM dead WHERE id = ?1")
                .and_then(|mut st| st.execute([n]))
                .map_err(backend("replay: deleting dead entry"))?;
            moved.push(id.clone());
        }
        tx.commit().map_err(backend("replay: commit"))?;
        Ok(moved)
    }

    fn oldest_by_destination(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT destination, min(created_at_ms) FROM outbox GROUP BY destination")
            .map_err(backend("oldest by destination: preparing"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(backend("oldest by destination: querying"))?;
        rows.collect::<Result<BTreeMap<_, _>, _>>().map_err(backend("oldest by destination: reading rows"))
    }

    /// One transaction: the rows in, the expired rows out (through the time index).
    fn journal_append(&self, rows: &[JournalRow], keep_since_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend("journal: begin"))?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO journal (at_ms, row) VALUES (?1, ?2)")
                .map_err(backend("journal: preparing insert"))?;
            for r in rows {
                insert.execute(params![r.at_ms, r.to_json()]).map_err(backend("journal: insert"))?;
            }
            tx.prepare_cached("DELETE FROM journal WHERE at_ms < ?1")
                .and_then(|mut st| st.execute(params![keep_since_ms]))
                .map_err(backend("journal: pruning"))?;
        }
        tx.commit().map_err(backend("journal: commit"))
    }

    fn journal_since(&self, since_ms: i64) -> Result<Vec<JournalRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached("SELECT row FROM journal WHERE at_ms >= ?1 ORDER BY at_ms, id")
            .map_err(backend("journal: preparing read"))?;
        let rows = st.query_map(params![since_ms], |r| r.get::<_, String>(0)).map_err(backend("journal: reading"))?;
        let mut out = Vec::new();
        for text in rows {
            if let Some(row) = JournalRow::from_json(&text.map_err(backend("journal: reading a row"))?) {
                out.push(row);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_query_uses_the_due_index() {
        let store = SqliteStore::open_in_memory(10).unwrap();
        let conn = store.lock();
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {LEASE_SQL}")).unwrap();
        let plan: Vec<String> = st
            .query_map(params![0i64, 0i64, 10i64], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("outbox_due"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
    }
}
