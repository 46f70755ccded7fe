//! Delivery lanes against the stand-ins at real-API latency: batches across
//! visitors, GA4 never mixing clients, the in-flight window, `Retry-After`
//! pausing a lane, a 429 storm and an outage, and a slow store that must not
//! stall the collector (loopback only, real SQLite).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{TempDir, fast_retry, tracker_on_sandbox};
use serde_json::{Value, json};
use tally_core::{ContextEnvelope, DestinationKind};
use tally_sandbox::Mode;
use tally_sandbox::meta::ACCESS_TOKEN;
use tally_server::collector::{self, CollectorConfig};
use tally_server::store::redis::RedisStore;
use tally_server::store::sqlite::SqliteStore;
use tally_server::{
    DeliveryError, Ga4Config, LaneSettings, MetaConfig, Outcome, ServerTracker, Visitor, WebhookConfig,
};

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

/// Visitor `i`: its own client id and Meta browser id.
fn visitor(i: usize) -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"{i}.1757409569","clickIds":{{"fbp":"fb.1.1596403881668.{i}"}},
            "consent":{GRANTED},"pageUrl":"https://shop.example/checkout/done"}}"#
    ))
}

fn browser() -> Visitor {
    Visitor { user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()), ..Default::default() }
}

fn order(i: usize) -> String {
    format!("ORD-{i}")
}

/// `n` visitors each buy once, all at the same time; every answer, in order.
async fn purchases_at_once(tracker: &ServerTracker, n: usize) -> Vec<tally_server::TrackResult> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let t = tracker.clone();
            tokio::spawn(async move {
                let p = crate::support::purchase(&order(i), "10.5", "EUR").visitor(browser());
                t.from_context(&visitor(i)).track_purchase(p).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_batches_many_visitors_into_few_requests_each_event_with_its_own_visitor() {
    let lane = LaneSettings::for_kind(DestinationKind::Meta).window(2);
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.meta(MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(run.url("/meta"))).lane("meta", lane)
    })
    .await;
    sandbox.meta.latency.set(Duration::from_millis(100));
    let results = purchases_at_once(&tracker, 200).await;
    assert!(results.iter().all(|r| r.get("meta").is_some_and(Outcome::is_sent)), "{:?}", results[0]);
    let events = sandbox.meta.events();
    assert_eq!(events.len(), 200, "dropped: {:?}", sandbox.meta.dropped());
    let requests = sandbox.meta.requests();
    assert!(requests <= 20, "{requests} requests for 200 events from 200 visitors: not batched");
    assert!(sandbox.meta.faults.peak_in_flight() <= 2, "window of 2 exceeded");
    // Each event kept its own visitor's browser id, though they shared requests.
    let event_ids: BTreeMap<String, usize> =
        results.iter().enumerate().map(|(i, r)| (r.event_id.as_str().to_owned(), i)).collect();
    for e in &events {
        let i = event_ids[e.event_id.as_deref().unwrap()];
        assert_eq!(e.user_data["fbp"], format!("fb.1.1596403881668.{i}"));
    }
    assert!(sandbox.meta.deduplicated().is_empty(), "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_webhook_carries_many_visitors_per_signed_request_and_stores_each_record_once() {
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.webhook(
            "warehouse",
            WebhookConfig::new(run.url("/webhook/warehouse"), tally_sandbox::webhook::DEFAULT_SECRET).batch(50),
        )
    })
    .await;
    sandbox.webhook.latency.set(Duration::from_millis(100));
    let results = purchases_at_once(&tracker, 120).await;
    assert!(
        results.iter().all(|r| r.get("webhook:warehouse").is_some_and(Outcome::is_sent)),
        "{:?} {:?}",
        results[0],
        sandbox.webhook.dropped()
    );
    let stored = sandbox.webhook.events("warehouse");
    assert_eq!(stored.len(), 120, "dropped: {:?}", sandbox.webhook.dropped());
    let requests = sandbox.webhook.requests();
    assert!(requests <= 24, "{requests} requests for 120 events: not batched");
    let largest = sandbox.webhook.largest_batch();
    assert!((2..=50).contains(&largest), "the largest request carried {largest} records (batch 50)");
    // Each record kept its own visitor's client id, though they shared requests.
    let event_ids: BTreeMap<String, usize> =
        results.iter().enumerate().map(|(i, r)| (r.event_id.as_str().to_owned(), i)).collect();
    for r in &stored {
        let i = event_ids[&r.event_id];
        assert_eq!(r.body["user"]["client_id"], format!("{i}.1757409569"));
    }
    assert!(sandbox.webhook.records().iter().all(|r| !r.duplicate), "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ga4_requests_never_mix_clients_and_the_window_is_never_exceeded() {
    let lane = LaneSettings::for_kind(DestinationKind::Ga4).window(8);
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url))).lane("ga4", lane)
    })
    .await;
    sandbox.ga4.latency.set(Duration::from_millis(50));
    let results = purchases_at_once(&tracker, 60).await;
    assert!(results.iter().all(|r| r.get("ga4").is_some_and(Outcome::is_sent)));
    assert_eq!(sandbox.ga4.purchases().len(), 60);
    let peak = sandbox.ga4.faults.peak_in_flight();
    assert!(peak <= 8, "{peak} requests at once, window 8");
    assert!(peak >= 2, "requests overlap ({peak}): one client at a time would take 60 round trips");
    for r in sandbox.traffic.under("/ga4/mp/collect") {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let client = body["client_id"].as_str().unwrap();
        let i: usize = client.split('.').next().unwrap().parse().unwrap();
        for e in body["events"].as_array().unwrap() {
            assert_eq!(e["params"]["transaction_id"], order(i), "an event of another client in {client}'s request");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_the_whole_lane_and_inline_callers_hear_it_at_once() {
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.meta(MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(run.url("/meta")))
    })
    .await;
    sandbox.meta.faults.set(Mode::RateLimited); // 429, Retry-After: 1
    let first = purchases_at_once(&tracker, 1).await;
    assert!(
        matches!(first[0].get("meta"), Some(Outcome::Queued { error: DeliveryError::RateLimited { .. } })),
        "{first:?}"
    );
    sandbox.meta.faults.set(Mode::Up);
    let asked = sandbox.meta.requests();
    // Within the pause: answered queued without a request.
    let p = crate::support::purchase("ORD-PAUSED", "1", "EUR").visitor(browser());
    let paused = tracker.from_context(&visitor(7)).track_purchase(p).await.unwrap();
    assert!(
        matches!(paused.get("meta"), Some(Outcome::Queued { error: DeliveryError::RateLimited { .. } })),
        "{paused:?}"
    );
    assert_eq!(sandbox.meta.requests(), asked, "nothing was sent while the lane was paused");
    // After it: both delivered, once.
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    let ids: BTreeSet<_> = sandbox.meta.events().into_iter().filter_map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 2);
    assert!(sandbox.meta.deduplicated().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_an_outage_lose_nothing_and_count_nothing_twice() {
    // Small Meta requests, so there are many of them to throttle.
    let meta_lane = LaneSettings::for_kind(DestinationKind::Meta).max_batch(10);
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.meta(MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(run.url("/meta")))
            .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url)))
            .lane("meta", meta_lane)
    })
    .await;
    sandbox.meta.latency.set(Duration::from_millis(20));
    sandbox.ga4.latency.set(Duration::from_millis(20));
    sandbox.meta.faults.rate_limit(2); // two requests a second, 429 above
    sandbox.ga4.faults.rate_limit(20);
    sandbox.ga4.faults.fail_next(10); // and an outage for GA4's first requests
    let results = purchases_at_once(&tracker, 300).await;
    assert_eq!(results.len(), 300);
    let report = tracker.flush(Duration::from_secs(60)).await;
    assert!(report.complete, "{report:?}");
    let meta: BTreeSet<_> = sandbox.meta.events().into_iter().filter_map(|e| e.event_id).collect();
    assert_eq!(meta.len(), 300, "every purchase reached Meta");
    assert!(sandbox.meta.deduplicated().is_empty(), "none twice");
    assert!(sandbox.meta.faults.rate_limited() > 0, "the storm happened");
    let ga4: BTreeSet<_> =
        sandbox.ga4.purchases().iter().filter_map(|p| p.transaction_id().map(str::to_owned)).collect();
    assert_eq!(ga4.len(), 300, "every purchase reached GA4");
    assert_eq!(sandbox.ga4.purchases().len(), 300, "none twice");
    assert_eq!(tracker.outbox().stats().unwrap().dead, 0);
}

/// The collector on `tracker`, on a free port; its `/collect` URL's base.
async fn serve_collector(tracker: &ServerTracker) -> String {
    let cfg = CollectorConfig {
        server_secrets: ["s2s".to_owned()].into_iter().collect(),
        rate_per_ip: 0,
        ..CollectorConfig::default()
    };
    let app = collector::router(tracker.clone(), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    base
}

/// While the store is held up (`hold` starts it, `release` ends it), a
/// purchase waits for the store and every request that does not need it is
/// answered; after it, the purchase succeeds and is delivered once. On a
/// single-threaded runtime, so a store call made on the runtime would stall
/// everything.
async fn collector_answers_while_the_store_is_slow(
    tracker: ServerTracker,
    sandbox: &tally_sandbox::Sandbox,
    hold: impl FnOnce(),
    release: impl FnOnce(),
) {
    let base = serve_collector(&tracker).await;
    let http = reqwest::Client::new();
    // Warm up (connections, schema) before the store is held.
    let r = http.post(format!("{base}/collect")).bearer_auth("wrong").body("{}").send().await.unwrap();
    assert!(r.status().is_client_error());
    hold();
    let body = json!({"context":{"v":1,"createdAt":1,"clientId":"1.2","consent":{"analytics_storage":"granted"}},
                      "events":[{"name":"purchase","transactionId":"ORD-SLOW","value":5,"currency":"EUR"}]});
    let slow = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move { http.post(format!("{base}/collect")).bearer_auth("s2s").json(&body).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slow.is_finished(), "the store is held: this call waits for it");
    for _ in 0..10 {
        let r = http.post(format!("{base}/collect")).bearer_auth("wrong").body("{}").send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert!(!slow.is_finished(), "the other answers came while the store was still held");
    release();
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.ga4.purchases().len(), 1);
}

fn ga4_tracker_on<S>(run: &tally_sandbox::RunningSandbox, store: Arc<S>) -> ServerTracker
where
    S: tally_server::IdempotencyStore + tally_server::Outbox,
{
    ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url)))
        .retry(fast_retry())
        .durable(store)
        .build()
        .unwrap()
}

/// SQLite held by another process's `BEGIN EXCLUSIVE`.
#[tokio::test(flavor = "current_thread")]
async fn a_locked_sqlite_store_does_not_stall_the_collector() {
    let dir = TempDir::new("slow-store");
    let db = dir.join("tally.db");
    let (sandbox, run) = crate::support::sandbox().await;
    let tracker = ga4_tracker_on(&run, Arc::new(SqliteStore::open(&db, 1000).unwrap()));
    let lock = rusqlite::Connection::open(&db).unwrap();
    collector_answers_while_the_store_is_slow(
        tracker,
        &sandbox,
        || lock.execute_batch("BEGIN EXCLUSIVE").unwrap(),
        || lock.execute_batch("COMMIT").unwrap(),
    )
    .await;
}

/// A real Redis busy for 1.5 s (`DEBUG SLEEP`).
#[tokio::test(flavor = "current_thread")]
async fn a_slow_redis_does_not_stall_the_collector() {
    use std::io::Write;
    let redis = crate::support::RedisServer::start();
    let (sandbox, run) = crate::support::sandbox().await;
    let store = RedisStore::connect(&redis.url(), "slow", 1000).unwrap();
    let tracker = ga4_tracker_on(&run, Arc::new(store));
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    collector_answers_while_the_store_is_slow(
        tracker,
        &sandbox,
        || admin.write_all(b"DEBUG SLEEP 1.5\r\n").unwrap(),
        || {},
    )
    .await;
}
