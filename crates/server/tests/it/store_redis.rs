//! The Redis store against the store contracts, on a real `redis-server`
//! started by the harness (tests/it/support), plus two instances sharing it.
//! Without /usr/bin/redis-server these tests fail with instructions; they never skip.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::RedisServer;
use tally_server::store::outbox::{self, OutboxEntry, StoreError, unix_ms};
use tally_server::store::redis::{RedisOptions, RedisStore};
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

fn store(server: &RedisServer, prefix: &str, capacity: usize) -> RedisStore {
    RedisStore::connect(&server.url(), prefix, capacity).expect("connect")
}

#[test]
fn outbox_conformance() {
    let server = RedisServer::start();
    outbox::conformance(&store(&server, "tally:", 100));
}

#[test]
fn idempotency_conformance_on_redis() {
    let server = RedisServer::start();
    idempotency_conformance(&store(&server, "tally:", 100));
}

#[test]
fn two_instances_claim_a_key_once() {
    let server = RedisServer::start();
    let a = Arc::new(store(&server, "tally:", 10));
    let b = Arc::new(store(&server, "tally:", 10));
    // The same payment webhook arrives at both instances at once.
    let key = "webhook|purchase|ORD-1001";
    let barrier = Arc::new(Barrier::new(2));
    let claims: Vec<_> = [Arc::clone(&a), Arc::clone(&b)]
        .into_iter()
        .map(|s| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                s.claim(key, Duration::from_secs(60))
            })
        })
        .collect();
    let mut claims: Vec<Claim> = claims.into_iter().map(|t| t.join().expect("thread")).collect();
    claims.sort_by_key(|c| *c as u8);
    assert_eq!(claims, [Claim::Acquired, Claim::InFlight]);
    a.complete(key, Duration::from_secs(3600));
    assert_eq!(b.claim(key, Duration::from_secs(60)), Claim::Delivered);
    b.release(key);
    assert_eq!(a.claim(key, Duration::from_secs(60)), Claim::Delivered, "release keeps a delivered mark");

    // Many keys, many threads: each key acquired exactly once.
    let keys = Arc::new((0..300).map(|n| format!("webhook|purchase|{n}")).collect::<Vec<_>>());
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                keys.iter().filter(|k| s.claim(k, Duration::from_secs(60)) == Claim::Acquired).count()
            })
        })
        .collect();
    let acquired: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(acquired, keys.len());
}

#[test]
fn two_instances_never_lease_the_same_entry() {
    const N: usize = 2_000;
    let server = RedisServer::start();
    let a = Arc::new(store(&server, "tally:", N));
    let b = Arc::new(store(&server, "tally:", N));
    let entries: Vec<_> = (0..N).map(entry).collect();
    for (i, chunk) in entries.chunks(200).enumerate() {
        let s = if i % 2 == 0 { &a } else { &b };
        s.enqueue(chunk).expect("enqueue");
    }
    assert_eq!(a.stats().expect("stats").queued, N);
    let now = unix_ms();
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let batch = s.lease(7, Duration::from_secs(60), now).expect("lease");
                    if batch.is_empty() {
                        break;
                    }
                    for l in batch {
                        got.push(l.entry.key.clone());
                        s.ack(&l.id).expect("ack");
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
    let s = b.stats().expect("stats");
    assert_eq!((s.queued, s.in_flight), (0, 0));
}

#[test]
fn an_instance_that_dies_loses_its_lease_to_the_other() {
    let server = RedisServer::start();
    let now = unix_ms();
    {
        let dying = store(&server, "tally:", 10);
        dying.enqueue(&[entry(1)]).expect("enqueue");
        assert_eq!(dying.lease(10, Duration::from_secs(30), now).expect("lease").len(), 1);
    } // dropped without ack
    let other = store(&server, "tally:", 10);
    assert_eq!(other.stats().expect("stats").in_flight, 1);
    assert!(other.lease(10, Duration::from_secs(30), now + 1_000).expect("lease").is_empty());
    let again = other.lease(10, Duration::from_secs(30), now + 30_000).expect("lease");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].entry.attempts, 2);
}

#[test]
fn full_outbox_refuses_the_whole_batch() {
    let server = RedisServer::start();
    let a = store(&server, "tally:", 3);
    let b = store(&server, "tally:", 3);
    a.enqueue(&[entry(1), entry(2)]).expect("enqueue");
    assert_eq!(b.enqueue(&[entry(3), entry(4)]), Err(StoreError::Full { capacity: 3 }));
    assert_eq!(a.stats().expect("stats").queued, 2, "nothing of the refused batch was stored");
    let ids = b.enqueue(&[entry(3)]).expect("the last slot");
    assert_eq!(a.enqueue(&[entry(4)]), Err(StoreError::Full { capacity: 3 }));
    a.dead(&ids[0], "rejected").expect("dead");
    a.enqueue(&[entry(4)]).expect("dead entries do not count against capacity");
}

#[test]
fn prefixes_isolate_deployments() {
    let server = RedisServer::start();
    let shop = store(&server, "shop:", 10);
    let staging = store(&server, "staging:", 10);
    shop.enqueue(&[entry(1)]).expect("enqueue");
    assert_eq!(shop.claim("k", Duration::from_secs(60)), Claim::Acquired);
    assert_eq!(staging.claim("k", Duration::from_secs(60)), Claim::Acquired);
    assert!(staging.lease(10, Duration::from_secs(60), unix_ms()).expect("lease").is_empty());
    assert_eq!(shop.lease(10, Duration::from_secs(60), unix_ms()).expect("lease").len(), 1);
    assert_eq!(shop.prefix(), "shop:");
}

#[test]
fn fields_round_trip_and_dead_list_is_capped() {
    let server = RedisServer::start();
    let s = RedisStore::connect_with(&server.url(), "t:", RedisOptions::new(10).dead_capacity(2)).expect("connect");
    let mut odd = entry(7);
    odd.event_json = r#"{"name":"purchase","q":"a\"b\\c/d","u":"ünïcode 🎉","nl":"x\ny"}"#.into();
    odd.last_error = Some("502 <html>\"bad\"</html>".into());
    odd.attempts = 3;
    odd.next_attempt_at_ms = -5;
    let ids = s.enqueue(&[odd.clone(), entry(2), entry(3)]).expect("enqueue");
    let got = s.lease(1, Duration::from_secs(60), unix_ms()).expect("lease");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, ids[0], "the earliest due first");
    let mut expected = odd.clone();
    expected.attempts = 4;
    assert_eq!(got[0].entry, expected);
    s.retry(&ids[0], 1, "timeout").expect("retry");
    for (i, id) in ids.iter().enumerate() {
        s.dead(id, &format!("reason {i} \"quoted\"")).expect("dead");
    }
    let dead = s.dead_entries(10).expect("dead entries");
    assert_eq!(dead.len(), 2, "capped");
    assert_eq!(dead[0].reason, "reason 2 \"quoted\"");
    assert_eq!(dead[0].entry.last_error, None);
    assert_eq!(dead[1].entry.key, "ga4|purchase|2");
    assert_eq!(s.stats().expect("stats").dead, 2);
    let by = s.stats_by_destination().expect("stats by destination");
    assert_eq!(by.get("ga4").map(|g| (g.queued, g.dead)), Some((0, 2)), "the capped-off entry is not counted: {by:?}");
    assert!(s.dead_entries(0).expect("dead entries").is_empty());
    // The first one went dead too (dropped from the capped list), after a retry:
    // check the retry fields via a fresh entry.
    let id = s.enqueue(&[odd]).expect("enqueue").remove(0);
    s.lease(1, Duration::from_secs(60), unix_ms()).expect("lease");
    s.retry(&id, 0, "timeout").expect("retry");
    s.dead(&id, "gave up").expect("dead");
    let dead = s.dead_entries(1).expect("dead entries");
    assert_eq!(dead[0].entry.last_error.as_deref(), Some("timeout"));
    assert_eq!(dead[0].entry.attempts, 4);
    assert_eq!(dead[0].entry.event_json, r#"{"name":"purchase","q":"a\"b\\c/d","u":"ünïcode 🎉","nl":"x\ny"}"#);
}

#[test]
fn a_lost_server_gives_errors_not_panics() {
    let server = RedisServer::start();
    let s = store(&server, "tally:", 10);
    s.enqueue(&[entry(1)]).expect("enqueue");
    drop(server);
    assert!(matches!(s.enqueue(&[entry(2)]), Err(StoreError::Backend(_))));
    assert!(matches!(s.stats(), Err(StoreError::Backend(_))));
    assert_eq!(s.claim("k", Duration::from_secs(1)), Claim::Unavailable, "fails safe: do not send");
    s.complete("k", Duration::from_secs(1));
    s.release("k");
    let err = RedisStore::connect("redis://127.0.0.1:1/", "tally:", 10).expect_err("nothing listens on port 1");
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(matches!(RedisStore::connect("not a url", "p", 1), Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn an_event_tracked_while_the_idempotency_store_is_down_stays_queued() {
    use tally_server::{DeliveryError, Ga4Config, Outcome, ServerTracker};

    let (sandbox, running) = crate::support::sandbox().await;
    let server = RedisServer::start();
    let redis =
        RedisStore::connect_with(&server.url(), "tally:", RedisOptions::new(10).timeout(Duration::from_secs(1)))
            .expect("connect");
    let outbox = Arc::new(outbox::MemoryOutbox::new(100));
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", running.base_url)))
        .store(Arc::new(redis))
        .outbox(outbox.clone())
        .build()
        .unwrap();
    drop(server);
    let env = crate::support::envelope(
        r#"{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","consent":{"analytics_storage":"granted"}}"#,
    );
    let purchase = crate::support::purchase("ORD-DOWN", "30.03", "USD");
    let r = tracker.from_context(&env).track_purchase(purchase).await.unwrap();
    match r.get("ga4") {
        Some(Outcome::Queued { error: DeliveryError::StoreUnavailable }) => {}
        other => panic!("{other:?}"),
    }
    // Nothing went out (it might have been a duplicate), and nothing was lost.
    assert!(sandbox.ga4.events().is_empty());
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.queued, stats.dead), (1, 0), "{stats:?}");
    assert!(tracker.metrics_text().contains("retried"), "{}", tracker.metrics_text());
}

/// How many clients Redis has connected now, this query's own left out.
fn clients(server: &RedisServer) -> usize {
    let mut c = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    list.lines().count() - 1
}

/// Calls made while Redis is busy (here: `DEBUG SLEEP`, as a slow network
/// would be) each take a connection of the pool and wait side by side; with
/// one connection they would queue behind each other in the process.
fn calls_during_a_stall_use(connections: usize) -> usize {
    use std::io::Write;
    let server = RedisServer::start();
    let store = Arc::new(
        RedisStore::connect_with(&server.url(), "pool:", RedisOptions::new(100).connections(connections)).unwrap(),
    );
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    admin.write_all(b"DEBUG SLEEP 1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || s.claim(&format!("k{i}"), Duration::from_secs(30)))
        })
        .collect();
    for c in calls {
        assert_eq!(c.join().unwrap(), Claim::Acquired, "every call is answered after the stall");
    }
    clients(&server) - 1 // the admin connection
}

#[test]
fn calls_wait_on_redis_side_by_side_on_a_pool_of_connections() {
    assert_eq!(calls_during_a_stall_use(4), 4, "four calls in the stall, four connections");
    assert_eq!(calls_during_a_stall_use(1), 1, "one connection: the calls queued for it");
}
