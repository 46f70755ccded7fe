//! Two collector instances sharing one real Redis: one delivery per key, even
//! when the same webhook arrives three times at both, and when both workers
//! drain a queue built up during an outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::RedisServer;
use serde_json::{Value, json};
use tally_sandbox::Mode;
use tally_server::RetryPolicy;
use tally_server::collector::{CollectorConfig, router};
use tally_server::store::redis::RedisStore;
use tally_server::{Ga4Config, ServerTracker};

struct Instance {
    url: String,
    tracker: ServerTracker,
    _task: tokio::task::JoinHandle<()>,
}

async fn instance(redis: &RedisServer, ga4_base: &str) -> Instance {
    let store = RedisStore::connect(&redis.url(), "tally-test", 10_000).expect("redis store");
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-SHARED1", "s").base_url(format!("{ga4_base}/ga4")))
        .durable(Arc::new(store))
        .retry(RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        })
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let config =
        CollectorConfig { server_secrets: ["s2s".to_owned()].into(), rate_per_ip: 0, ..CollectorConfig::default() };
    let app = router(tracker.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Instance { url: format!("http://{addr}"), tracker, _task: task }
}

fn purchase_batch(txns: &[String]) -> Value {
    let events: Vec<Value> =
        txns.iter().map(|t| json!({"name":"purchase","transactionId":t,"value":49.9,"currency":"EUR"})).collect();
    json!({"context":{"v":1,"createdAt":1,"clientId":"7.8","consent":{"analytics_storage":"granted"}},"events":events})
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = http.post(format!("{url}/collect")).bearer_auth("s2s").json(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_webhook_three_times_across_two_instances_is_one_delivery() {
    let redis = RedisServer::start();
    let (sandbox, ga4) = crate::support::sandbox().await;
    let a = instance(&redis, &ga4.base_url).await;
    let b = instance(&redis, &ga4.base_url).await;
    let http = reqwest::Client::new();
    let body = purchase_batch(&["ORD-77".to_owned()]);
    let (r1, r2, r3) = tokio::join!(post(&http, &a.url, &body), post(&http, &b.url, &body), post(&http, &a.url, &body));
    let statuses: Vec<&str> = [&r1, &r2, &r3].iter().map(|r| r["results"][0]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "accepted").count(), 1, "{statuses:?}");
    assert!(a.tracker.flush(Duration::from_secs(10)).await.complete);
    assert!(b.tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.ga4.events().len(), 1, "exactly one request reached GA4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_backlog_is_drained_once_by_two_workers() {
    const N: usize = 200;
    let redis = RedisServer::start();
    let (sandbox, ga4) = crate::support::sandbox().await;
    sandbox.ga4.faults.set(Mode::Down);
    let a = instance(&redis, &ga4.base_url).await;
    let b = instance(&redis, &ga4.base_url).await;
    let http = reqwest::Client::new();
    for chunk in 0..N / 50 {
        let txns: Vec<String> = (0..50).map(|i| format!("T-{}", chunk * 50 + i)).collect();
        let target = if chunk % 2 == 0 { &a.url } else { &b.url };
        let v = post(&http, target, &purchase_batch(&txns)).await;
        assert!(v["results"].as_array().unwrap().iter().all(|r| r["status"] == "accepted"));
    }
    assert_eq!(sandbox.ga4.events().len(), 0);
    sandbox.ga4.faults.set(Mode::Up);
    let (ra, rb) = tokio::join!(a.tracker.flush(Duration::from_secs(30)), b.tracker.flush(Duration::from_secs(30)));
    assert!(ra.complete && rb.complete, "{ra:?} {rb:?}");
    let purchases = sandbox.ga4.purchases();
    assert_eq!(purchases.len(), N, "every key delivered");
    assert_eq!(sandbox.ga4.events().len(), N, "and none twice");
}
