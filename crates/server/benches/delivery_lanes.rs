//! Delivery at production latency: a backlog built up in the SQLite outbox
//! while the destination is down, then drained after it recovers, with the
//! stand-in answering after 0, 50, 100 and 250 ms. Per cell: delivered events
//! per second, requests per delivered event, the most requests the stand-in saw
//! at once, and CPU per delivered event. Then the peak RSS of the process while
//! a large backlog waits in the outbox.
//!
//! The path is the production one: browsers' `/collect` calls with
//! `deliver_inline = false` (events go to the outbox, the worker hands them to
//! the destination's lane). Every event comes from its own visitor (GA4 cannot
//! merge clients; Meta and Google Ads through the Data Manager API merge any,
//! Google Ads within its 300 requests a minute). Backoff is capped at one second for the
//! bench, so a drain measures delivery, not the wait of a long backoff.
//! CPU is this process's, and the stand-in (which validates every event) runs
//! in it too: the figure is an upper bound for Tally alone.
//!
//! Run: `cargo bench -p tally-server --bench delivery_lanes` (about three
//! minutes; loopback only). `TALLY_BENCH_BACKLOG` sets the size of the RSS
//! backlog (default 1,000,000 events).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use tally_sandbox::meta::ACCESS_TOKEN;
use tally_sandbox::{Mode, Sandbox};
use tally_server::RetryPolicy;
use tally_server::collector::{CollectorConfig, router};
use tally_server::store::sqlite::SqliteStore;
use tally_server::{Ga4Config, GoogleAdsConfig, MetaConfig, ServerTracker};

#[derive(Clone, Copy, PartialEq)]
enum Dest {
    Ga4,
    Meta,
    GoogleAds,
}

impl Dest {
    fn name(self) -> &'static str {
        match self {
            Dest::Ga4 => "ga4",
            Dest::Meta => "meta",
            Dest::GoogleAds => "google_ads",
        }
    }
}

/// Counts the bytes the process holds on its heap, so the RSS figure can be
/// told apart from allocator fragmentation.
struct CountingAlloc;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK_LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK_LIVE.fetch_max(now, Relaxed);
        // SAFETY: same layout, same contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the pointer came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Drain {
    events: usize,
    seconds: f64,
    requests: u32,
    peak_in_flight: u32,
    cpu_us_per_event: f64,
}

/// User + system CPU of this process, in µs.
fn cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")".
    (ticks(11) + ticks(12)) * 1e6 / 100.0
}

/// Peak resident set (VmHWM) in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Setup {
    sandbox: Sandbox,
    tracker: ServerTracker,
    url: String,
    _run: tally_sandbox::RunningSandbox,
    dir: std::path::PathBuf,
}

async fn setup(dest: Dest, tag: &str, capacity: usize) -> Setup {
    let sandbox = Sandbox::new();
    sandbox.traffic.set_recording(false);
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    let dir = std::env::temp_dir().join(format!("tally-bench-lanes-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(dir.join("tally.db"), capacity).unwrap());
    let retry = RetryPolicy {
        max_attempts: 10_000,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
    };
    let b = ServerTracker::builder().retry(retry).durable(store).poll_interval(Duration::from_millis(50));
    let b = match dest {
        Dest::Ga4 => b.ga4(Ga4Config::new("G-BENCH1", "secret").base_url(format!("{}/ga4", run.base_url))),
        Dest::Meta => b.meta(MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(run.url("/meta"))),
        Dest::GoogleAds => b.google_ads(
            GoogleAdsConfig::new("123-456-7890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                .data_manager_url(run.url("/data-manager"))
                .token_url(run.url("/data-manager/token"))
                .diagnostics(None)
                .conversion_action("purchase", "555666777")
                .label("purchase", "purchase"),
        ),
    };
    let tracker = b.build().unwrap();
    let cfg = CollectorConfig {
        site_keys: ["bench".to_owned()].into_iter().collect(),
        rate_per_ip: 0,
        deliver_inline: false,
        ..CollectorConfig::default()
    };
    let app = router(tracker.clone(), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/collect", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Setup { sandbox, tracker, url, _run: run, dir }
}

/// Posts `n` purchases, `per_request` per call, every call from another visitor.
async fn ingest(url: &str, n: usize, per_request: usize, tag: &str) {
    let http = reqwest::Client::builder().user_agent("Mozilla/5.0 (bench)").build().unwrap();
    let requests = n.div_ceil(per_request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, next, tag) = (http.clone(), url.to_owned(), next.clone(), tag.to_owned());
            tokio::spawn(async move {
                loop {
                    let r = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if r >= requests {
                        return;
                    }
                    let events: Vec<_> = (0..per_request)
                        .map(|i| json!({"name":"purchase","transactionId":format!("{tag}-{r}-{i}"),"value":12.5,"currency":"EUR"}))
                        .collect();
                    let body = json!({
                        "siteKey":"bench",
                        "context":{"v":1,"createdAt":1,"clientId":format!("{}.1757409569", r + 1),
                                   "clickIds":{"fbp":format!("fb.1.1596403881668.{r}"),"gclid":format!("Cj0KCQjw-bench-{r}")},
                                   "consent":{"analytics_storage":"granted","ad_storage":"granted","ad_user_data":"granted"},
                                   "pageUrl":"https://shop.example/checkout/done"},
                        "events":events});
                    let resp = http.post(&url).json(&body).send().await.unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn delivered(s: &Sandbox, dest: Dest) -> usize {
    match dest {
        Dest::Ga4 => s.ga4.purchase_count(),
        Dest::Meta => s.meta.purchase_count(),
        Dest::GoogleAds => s.data_manager.conversion_count(),
    }
}

async fn drain_cell(dest: Dest, latency_ms: u64, n: usize, per_request: usize) -> Drain {
    let tag = format!("{}-{latency_ms}", dest.name());
    let s = setup(dest, &tag, n * 2).await;
    let faults = match dest {
        Dest::Ga4 => &s.sandbox.ga4.faults,
        Dest::Meta => &s.sandbox.meta.faults,
        Dest::GoogleAds => &s.sandbox.data_manager.faults,
    };
    faults.set(Mode::Down);
    ingest(&s.url, n, per_request, &tag).await;
    match dest {
        Dest::Ga4 => s.sandbox.ga4.latency.set(Duration::from_millis(latency_ms)),
        Dest::Meta => s.sandbox.meta.latency.set(Duration::from_millis(latency_ms)),
        Dest::GoogleAds => s.sandbox.data_manager.latency.set(Duration::from_millis(latency_ms)),
    }
    let before = match dest {
        Dest::Ga4 => s.sandbox.ga4.requests(),
        Dest::Meta => s.sandbox.meta.requests(),
        Dest::GoogleAds => s.sandbox.data_manager.requests(),
    };
    faults.reset_peak_in_flight();
    let cpu0 = cpu_us();
    let started = Instant::now();
    faults.set(Mode::Up);
    let deadline = started + Duration::from_secs(300);
    while delivered(&s.sandbox, dest) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_us() - cpu0;
    let requests = match dest {
        Dest::Ga4 => s.sandbox.ga4.requests(),
        Dest::Meta => s.sandbox.meta.requests(),
        Dest::GoogleAds => s.sandbox.data_manager.requests(),
    } - before;
    let events = delivered(&s.sandbox, dest);
    s.tracker.shutdown();
    let _ = std::fs::remove_dir_all(&s.dir);
    Drain {
        events,
        seconds,
        requests,
        peak_in_flight: faults.peak_in_flight(),
        cpu_us_per_event: cpu / events.max(1) as f64,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // First, while the process is fresh: its peak RSS is then the backlog's.
    let backlog: usize = std::env::var("TALLY_BENCH_BACKLOG").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let s = setup(Dest::Meta, "rss", backlog + 1000).await;
    s.sandbox.meta.faults.set(Mode::Down);
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    ingest(&s.url, backlog, 50, "rss").await;
    let ingest_s = started.elapsed().as_secs_f64();
    let queued = s.tracker.outbox().stats().map(|o| o.queued + o.in_flight).unwrap_or(0);
    println!(
        "peak RSS with {queued} events waiting in the SQLite outbox (Meta down, the worker retrying): {:.1} MiB (before the backlog: {rss_before:.1} MiB; ingest took {ingest_s:.1} s, {:.0} ev/s); heap in use at most {:.1} MiB, {:.1} MiB at the end",
        peak_rss_mib(),
        backlog as f64 / ingest_s,
        mib(PEAK_LIVE.load(std::sync::atomic::Ordering::Relaxed)),
        mib(LIVE.load(std::sync::atomic::Ordering::Relaxed)),
    );
    s.tracker.shutdown();
    let _ = std::fs::remove_dir_all(&s.dir);
    println!();
    let cells: [(Dest, usize, usize); 3] =
        [(Dest::Ga4, 5_000, 1), (Dest::Meta, 100_000, 10), (Dest::GoogleAds, 100_000, 10)];
    println!(
        "delivery after an outage, outbox mode (SQLite), backlog built while the destination was down; every event from its own visitor"
    );
    println!(
        "| destination | latency ms | backlog events | drained in s | delivered ev/s | requests / event | peak requests in flight | CPU µs / event (incl. stand-in) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (dest, n, per_request) in cells {
        for latency in [0u64, 50, 100, 250] {
            let d = drain_cell(dest, latency, n, per_request).await;
            println!(
                "| {} | {latency} | {} | {:.1} | {:.0} | {:.4} | {} | {:.1} |",
                dest.name(),
                d.events,
                d.seconds,
                d.events as f64 / d.seconds.max(1e-9),
                d.requests as f64 / d.events.max(1) as f64,
                d.peak_in_flight,
                d.cpu_us_per_event
            );
        }
    }
}
