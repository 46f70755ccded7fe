//! The SQLite store against the store contracts, plus durability, concurrency
//! and bounds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::TempDir;
use tally_server::store::outbox::{self, OutboxEntry, StoreError, unix_ms};
use tally_server::store::sqlite::{SqliteOptions, SqliteStore};
use tally_server::store::{Claim, IdempotencyStore, Outbox, idempotency_conformance};

fn entry(n: usize) -> OutboxEntry {
    OutboxEntry {
        destination: "ga4".into(),
        key: format!("ga4|purchase|{n}"),
        event_json: format!("{{\"n\":{n}}}"),
        visitor_json: "{}".into(),
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
    }
}

#[test]
fn outbox_conformance_on_a_file() {
    let dir = TempDir::new("sqlite");
    let store = SqliteStore::open(dir.join("tally.db"), 100).expect("open");
    outbox::conformance(&store);
}

#[test]
fn idempotency_conformance_on_a_file() {
    let dir = TempDir::new("sqlite");
    let store = SqliteStore::open(dir.join("tally.db"), 100).expect("open");
    idempotency_conformance(&store);
}

#[test]
fn conformance_in_memory() {
    let store = SqliteStore::open_in_memory(100).expect("open");
    outbox::conformance(&store);
    idempotency_conformance(&store);
}

#[test]
fn wal_files_appear() {
    let dir = TempDir::new("sqlite");
    let store = SqliteStore::open(dir.join("tally.db"), 100).expect("open");
    store.enqueue(&[entry(1)]).expect("enqueue");
    assert!(dir.join("tally.db-wal").exists(), "the database runs in WAL mode");
}

#[test]
fn state_survives_reopen() {
    let dir = TempDir::new("sqlite");
    let path = dir.join("tally.db");
    let now = unix_ms();
    {
        let store = SqliteStore::open(&path, 100).expect("open");
        let mut failed = entry(3);
        failed.last_error = Some("503 \"unavailable\" — ünïcode".into());
        failed.attempts = 4;
        store.enqueue(&[entry(1), entry(2), failed]).expect("enqueue");
        // A worker leases one entry and "dies" (the store is dropped without ack).
        let taken = store.lease(1, Duration::from_secs(30), now).expect("lease");
        assert_eq!(taken.len(), 1);
        assert_eq!(store.claim("ga4|purchase|done", Duration::from_secs(30)), Claim::Acquired);
        store.complete("ga4|purchase|done", Duration::from_secs(3600));
        assert_eq!(store.claim("ga4|purchase|busy", Duration::from_secs(30)), Claim::Acquired);
    }
    let store = SqliteStore::open(&path, 100).expect("reopen");
    let s = store.stats().expect("stats");
    assert_eq!((s.queued, s.in_flight), (2, 1), "the lease of the dead worker is still recorded");
    let free = store.lease(10, Duration::from_secs(30), now).expect("lease");
    assert_eq!(free.len(), 2, "the entries nobody held are due at once");
    let failed = free.iter().find(|l| l.entry.key == "ga4|purchase|3").expect("entry 3");
    assert_eq!(failed.entry.last_error.as_deref(), Some("503 \"unavailable\" — ünïcode"));
    assert_eq!(failed.entry.attempts, 5);
    let after_lease = store.lease(10, Duration::from_secs(30), now + 31_000).expect("lease");
    assert_eq!(after_lease.len(), 3, "the dead worker's lease ran out: its entry is due again");
    let re = after_lease.iter().find(|l| l.entry.attempts == 2).expect("the re-leased entry");
    assert_eq!(re.entry.key, "ga4|purchase|1");
    assert_eq!(store.claim("ga4|purchase|done", Duration::from_secs(30)), Claim::Delivered);
    assert_eq!(store.claim("ga4|purchase|busy", Duration::from_secs(30)), Claim::InFlight);
}

#[test]
fn two_connections_never_lease_the_same_entry() {
    const N: usize = 2_000;
    let dir = TempDir::new("sqlite");
    let path = dir.join("tally.db");
    let a = Arc::new(SqliteStore::open(&path, N).expect("open a"));
    let b = Arc::new(SqliteStore::open(&path, N).expect("open b"));
    let entries: Vec<_> = (0..N).map(entry).collect();
    for chunk in entries.chunks(250) {
        a.enqueue(chunk).expect("enqueue");
    }
    let now = unix_ms();
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let batch = store.lease(7, Duration::from_secs(60), now).expect("lease");
                    if batch.is_empty() {
                        break;
                    }
                    for l in batch {
                        got.push(l.entry.key.clone());
                        store.ack(&l.id).expect("ack");
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().expect("worker"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), N, "every entry handed out exactly once");
    assert_eq!(unique.len(), N);
    let s = a.stats().expect("stats");
    assert_eq!((s.queued, s.in_flight), (0, 0));
}

/// Set in a child process started by `two_processes_never_lease_the_same_entry`.
const WORKER_ENV: &str = "TALLY_SQLITE_LEASE_WORKER";

/// Leases and acks from `path` until nothing is due; returns the keys it got.
fn drain(store: &SqliteStore, now: i64) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let batch = store.lease(5, Duration::from_secs(60), now).expect("lease");
        if batch.is_empty() {
            return got;
        }
        for l in batch {
            got.push(l.entry.key.clone());
            store.ack(&l.id).expect("ack");
        }
    }
}

#[test]
fn two_processes_never_lease_the_same_entry() {
    // In the child: be a worker on the parent's file, write what was leased.
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let mut parts = spec.splitn(3, '\n');
        let (db, out, now) = (
            parts.next().expect("db"),
            parts.next().expect("out"),
            parts.next().expect("now").parse::<i64>().expect("now"),
        );
        let store = SqliteStore::open(db, 100_000).expect("open in child");
        let got = drain(&store, now);
        std::fs::write(out, got.join("\n")).expect("write result");
        return;
    }
    const N: usize = 3_000;
    let dir = TempDir::new("sqlite");
    let path = dir.join("tally.db");
    let store = SqliteStore::open(&path, N).expect("open");
    let entries: Vec<_> = (0..N).map(entry).collect();
    store.enqueue(&entries).expect("enqueue");
    let now = unix_ms();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.join(&format!("child-{i}.txt"));
            let spec = format!("{}\n{}\n{now}", path.display(), out.display());
            let child = std::process::Command::new(&exe)
                .args(["--exact", "store_sqlite::two_processes_never_lease_the_same_entry", "--test-threads=1"])
                .env(WORKER_ENV, spec)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn worker process");
            (child, out)
        })
        .collect();
    let mut all = drain(&store, now);
    let mut shares = vec![all.len()];
    for (mut child, out) in children {
        assert!(child.wait().expect("wait").success(), "worker process failed");
        let text = std::fs::read_to_string(&out).expect("worker output");
        let before = all.len();
        all.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        shares.push(all.len() - before);
    }
    println!("entries leased per process (parent, child, child): {shares:?}");
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), N, "every entry handed out exactly once across processes");
    assert_eq!(unique.len(), N);
}

#[test]
fn two_connections_claim_a_key_once() {
    let dir = TempDir::new("sqlite");
    let path = dir.join("tally.db");
    let a = Arc::new(SqliteStore::open(&path, 10).expect("open a"));
    let b = Arc::new(SqliteStore::open(&path, 10).expect("open b"));
    let keys: Vec<String> = (0..200).map(|n| format!("webhook|purchase|{n}")).collect();
    let keys = Arc::new(keys);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                keys.iter().filter(|k| store.claim(k, Duration::from_secs(60)) == Claim::Acquired).count()
            })
        })
        .collect();
    let acquired: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(acquired, keys.len(), "each key acquired by exactly one worker");
}

#[test]
fn full_outbox_refuses_the_whole_batch() {
    let store = SqliteStore::open_in_memory(3).expect("open");
    store.enqueue(&[entry(1), entry(2)]).expect("enqueue");
    assert_eq!(store.enqueue(&[entry(3), entry(4)]), Err(StoreError::Full { capacity: 3 }));
    assert_eq!(store.stats().expect("stats").queued, 2, "nothing of the refused batch was stored");
    let ids = store.enqueue(&[entry(3)]).expect("the last slot");
    assert_eq!(store.enqueue(&[entry(4)]), Err(StoreError::Full { capacity: 3 }));
    store.dead(&ids[0], "rejected").expect("dead");
    store.enqueue(&[entry(4)]).expect("dead entries do not count against capacity");
    let err = store.enqueue(&[entry(5)]).expect_err("full");
    assert!(err.to_string().contains("full"), "{err}");
}

#[test]
fn full_outbox_survives_reopen() {
    let dir = TempDir::new("sqlite");
    let path = dir.join("tally.db");
    SqliteStore::open(&path, 2).expect("open").enqueue(&[entry(1), entry(2)]).expect("enqueue");
    let store = SqliteStore::open(&path, 2).expect("reopen");
    assert_eq!(store.enqueue(&[entry(3)]), Err(StoreError::Full { capacity: 2 }));
}

#[test]
fn sweep_keeps_the_idempotency_table_bounded() {
    let store = SqliteStore::open_in_memory_with(SqliteOptions::new(10).sweep_every(100)).expect("open");
    let live = "ga4|purchase|live";
    assert_eq!(store.claim(live, Duration::from_secs(600)), Claim::Acquired);
    store.complete(live, Duration::from_secs(600));
    let mut max_len = 0;
    for n in 0..5_000 {
        let k = format!("ga4|page_view|{n}");
        // Leases and retentions that end at once: everything but `live` expires.
        assert_eq!(store.claim(&k, Duration::ZERO), Claim::Acquired);
        if n % 2 == 0 {
            store.complete(&k, Duration::ZERO);
        }
        max_len = max_len.max(store.idempotency_len().expect("len"));
    }
    assert!(max_len <= 101 + 1, "the table stayed bounded: at most {max_len} rows");
    std::thread::sleep(Duration::from_millis(5));
    store.sweep_idempotency().expect("sweep");
    assert_eq!(store.idempotency_len().expect("len"), 1, "only the live key is left");
    assert_eq!(store.claim(live, Duration::from_secs(1)), Claim::Delivered);
}

#[test]
fn dead_list_is_capped_and_newest_first() {
    let store = SqliteStore::open_in_memory_with(SqliteOptions::new(10).dead_capacity(2)).expect("open");
    let ids = store.enqueue(&[entry(1), entry(2), entry(3)]).expect("enqueue");
    for (i, id) in ids.iter().enumerate() {
        store.dead(id, &format!("reason {i}")).expect("dead");
    }
    let dead = store.dead_entries(10).expect("dead entries");
    let reasons: Vec<_> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["reason 2", "reason 1"]);
    assert_eq!(store.stats().expect("stats").dead, 2);
    assert!(store.dead_entries(0).expect("dead entries").is_empty());
}

#[test]
fn acks_of_unknown_ids_are_harmless_and_bad_ids_are_errors() {
    let store = SqliteStore::open_in_memory(10).expect("open");
    store.ack("12345").expect("unknown id");
    store.retry("12345", 0, "x").expect("unknown id");
    store.dead("12345", "x").expect("unknown id");
    assert!(matches!(store.ack("not-a-number"), Err(StoreError::Backend(_))));
    // Ids are never reused, so a late ack of an acked id cannot hit a newer entry.
    let first = store.enqueue(&[entry(1)]).expect("enqueue");
    store.ack(&first[0]).expect("ack");
    let second = store.enqueue(&[entry(2)]).expect("enqueue");
    assert_ne!(first, second);
}

#[test]
fn open_errors_are_backend_errors() {
    let dir = TempDir::new("sqlite");
    let missing = dir.join("no/such/dir/tally.db");
    assert!(matches!(SqliteStore::open(&missing, 10), Err(StoreError::Backend(_))));
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
    let err = SqliteStore::open(&garbage, 10).expect_err("not a database");
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

/// Not a timed test: prints the throughput of the full outbox cycle on a file
/// (`cargo test -p tally-server --test it -- --nocapture store_sqlite::throughput`).
#[test]
fn throughput_enqueue_lease_ack_10k() {
    const N: usize = 10_000;
    let dir = TempDir::new("sqlite");
    for batch in [1usize, 100] {
        let store = SqliteStore::open(dir.join(&format!("bench-{batch}.db")), N).expect("open");
        let entries: Vec<_> = (0..N).map(entry).collect();
        let t0 = Instant::now();
        for chunk in entries.chunks(batch) {
            store.enqueue(chunk).expect("enqueue");
        }
        let t_enqueue = t0.elapsed();
        let t1 = Instant::now();
        let now = unix_ms();
        let mut leased = 0;
        let mut acked = Duration::ZERO;
        loop {
            let got = store.lease(100, Duration::from_secs(60), now).expect("lease");
            if got.is_empty() {
                break;
            }
            leased += got.len();
            let ta = Instant::now();
            for l in &got {
                store.ack(&l.id).expect("ack");
            }
            acked += ta.elapsed();
        }
        let t_drain = t1.elapsed();
        assert_eq!(leased, N);
        let total = t_enqueue + t_drain;
        let rate = |d: Duration| N as f64 / d.as_secs_f64();
        println!(
            "sqlite outbox, {N} entries, enqueue batch {batch:>3}, lease batch 100, ack one by one: \
             enqueue {:.0}/s, lease {:.0}/s, ack {:.0}/s, full cycle {:.0} entries/s ({:.2?})",
            rate(t_enqueue),
            rate(t_drain - acked),
            rate(acked),
            rate(total),
            total
        );
    }
}
