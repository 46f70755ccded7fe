//! Collector ingest on loopback: accepted events per second and request latency
//! at fixed concurrency levels, with the in-memory store, with the SQLite
//! outbox, and beside a bare axum handler that only reads the body (this
//! machine's ceiling). Destinations are the local GA4 sandbox. Then the SQLite
//! outbox with `deliver_inline = false` (the answer comes once the events are
//! in the outbox), each cell followed by the time the worker took to deliver
//! the backlog.
//!
//! Run: `cargo bench -p tally-server --bench collector_ingest` (bounded: about
//! 3 s per cell, loopback only; it stops by itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::json;
use tally_sandbox::Sandbox;
use tally_server::collector::{CollectorConfig, router};
use tally_server::store::sqlite::SqliteStore;
use tally_server::{Ga4Config, ServerTracker};

const EVENTS_PER_REQUEST: usize = 10;
/// Request numbers, never reused across cells: every event is new to every store.
static SEQ: AtomicU64 = AtomicU64::new(0);
const SECONDS: u64 = 3;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    format!("http://{addr}/collect")
}

fn body(seq: u64) -> String {
    let events: Vec<_> = (0..EVENTS_PER_REQUEST)
        .map(|i| json!({"name":"page_view","eventId":format!("b{seq}-{i}"),"params":{"page_location":"https://shop.example/p"}}))
        .collect();
    json!({"siteKey":"bench","context":{"v":1,"createdAt":1,"clientId":"1.2","consent":{"analytics_storage":"granted"}},"events":events})
        .to_string()
}

struct Cell {
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(url: &str, concurrency: usize) -> Cell {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let seq = &SEQ;
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let http = http.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut accepted = 0usize;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("origin", "https://shop.example")
                    .body(body(n))
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status().is_success()
                {
                    let _ = r.bytes().await;
                    accepted += EVENTS_PER_REQUEST;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (accepted, lat)
        }));
    }
    let mut accepted = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (a, l) = t.await.unwrap();
        accepted += a;
        lat.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0);
    Cell { events_per_sec: accepted as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

fn collector_config() -> CollectorConfig {
    CollectorConfig {
        site_keys: ["bench".to_owned()].into(),
        allowed_origins: ["https://shop.example".to_owned()].into(),
        rate_per_ip: 0,
        ..CollectorConfig::default()
    }
}

/// The most a backlog may take to drain before the bench stops waiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let sandbox = Sandbox::new();
    let ga4 = sandbox.serve("127.0.0.1:0").await.unwrap();
    let ga4_cfg = || Ga4Config::new("G-BENCH1", "s").base_url(format!("{}/ga4", ga4.base_url));

    let bare = serve(Router::new().route("/collect", post(|b: Bytes| async move { b.len().to_string() }))).await;
    let memory = serve(router(ServerTracker::builder().ga4(ga4_cfg()).build().unwrap(), collector_config())).await;
    let dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(dir.join("bench.db"), 1_000_000).unwrap();
    let sqlite_tracker = ServerTracker::builder().ga4(ga4_cfg()).durable(Arc::new(sqlite)).build().unwrap();
    let sqlite_url = serve(router(sqlite_tracker, collector_config())).await;

    println!(
        "collector ingest, {EVENTS_PER_REQUEST} events per request, {SECONDS} s per cell, loopback, GA4 sandbox as destination"
    );
    println!(
        "| concurrency | bare axum (ceiling) ev/s | memory store ev/s | p50 ms | p99 ms | SQLite outbox ev/s | p50 ms | p99 ms | SQLite / ceiling |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ceilings = Vec::new();
    for c in [1usize, 8, 32] {
        let b = load(&bare, c).await;
        ceilings.push((c, b.events_per_sec));
        let m = load(&memory, c).await;
        let s = load(&sqlite_url, c).await;
        println!(
            "| {c} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} |",
            b.events_per_sec,
            m.events_per_sec,
            m.p50_ms,
            m.p99_ms,
            s.events_per_sec,
            s.p50_ms,
            s.p99_ms,
            s.events_per_sec / b.events_per_sec
        );
    }
    let queued_db = SqliteStore::open(dir.join("queued.db"), 10_000_000).unwrap();
    let queued_tracker = ServerTracker::builder().ga4(ga4_cfg()).durable(Arc::new(queued_db)).build().unwrap();
    let queued_url =
        serve(router(queued_tracker.clone(), CollectorConfig { deliver_inline: false, ..collector_config() })).await;
    println!();
    println!(
        "SQLite outbox with `deliver_inline = false`: the answer comes once the events are in the outbox; the worker delivers them after"
    );
    println!(
        "| concurrency | ev/s answered | p50 ms | p99 ms | ÷ ceiling (row above) | backlog delivered in s | delivered ev/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (c, ceiling) in ceilings {
        let before = sandbox.ga4.events().len();
        let q = load(&queued_url, c).await;
        let started = Instant::now();
        let report = queued_tracker.flush(DRAIN_LIMIT).await;
        let drained = started.elapsed().as_secs_f64();
        let sent = sandbox.ga4.events().len() - before;
        println!(
            "| {c} | {:.0} | {:.2} | {:.2} | {:.2} | {}{drained:.1} | {:.0} |",
            q.events_per_sec,
            q.p50_ms,
            q.p99_ms,
            q.events_per_sec / ceiling,
            if report.complete { "" } else { "over " },
            sent as f64 / (SECONDS as f64 + drained)
        );
    }
    let delivered = sandbox.ga4.events().len();
    println!("GA4 sandbox accepted {delivered} events; dropped {}", sandbox.ga4.dropped().len());
    let _ = std::fs::remove_dir_all(&dir);
}
