//! What loading a tracker costs a page on a phone-like profile, in headless
//! Chromium: a bare page, the same page with Tally's browser tracker (the built
//! `pkg/`: `createBrowserTracker`, then one `trackPageView`) and the same page
//! with Segment's snippet loading analytics-next (`dist/umd/standalone.js` from
//! the npm package, same origin, then one `analytics.page()`).
//!
//! The profile, set through the Chrome DevTools Protocol before every load:
//! 150 ms round trip, 1.6 Mbit/s down, 750 kbit/s up
//! (`Network.emulateNetworkConditions`), the CPU slowed 4×
//! (`Emulation.setCPUThrottlingRate`), the HTTP cache off
//! (`Network.setCacheDisabled`) and the origin's storage cleared
//! (`Storage.clearDataForOrigin`), so every load is a first visit. The server
//! sends gzip (tower-http's compression layer) and the wasm as
//! `application/wasm`, so it compiles while it streams.
//!
//! Per load: **tracker ready** is `performance.now()` when
//! `createBrowserTracker` resolves or analytics' `ready` callback runs;
//! **first event** is when the first request of that load reached the
//! collector stand-in (its clock, epoch ms) minus the page's
//! `performance.timeOrigin`; **total blocking time** is the sum over the page's
//! long tasks (a `longtask` PerformanceObserver registered first thing in the
//! head) of their duration beyond 50 ms; **script** is CDP
//! `Performance.getMetrics`' `ScriptDuration`; **bytes** are the transfer sizes
//! of the navigation and every resource the page fetched (Resource Timing).
//! Figures are read once the first event arrived and the tracker is ready, plus
//! `SETTLE` for work either SDK schedules right after. "Added" figures are the
//! page's minus the bare page's of the same round; the three pages alternate.
//!
//! Nothing leaves loopback: Segment's CDN settings, lazy bundles and API host
//! point at this server, and a page whose resource timing lists another origin
//! fails the bench.
//!
//! Run: `TALLY_BENCH_SEGMENT_UMD=<…/package/dist/umd> cargo bench -p tally-e2e --bench page_load --profile dev`
//! (`cargo xtask bench` sets the variable; without it only the bare page and
//! Tally are measured). Needs `pkg/` built (`cargo xtask pkg`), chromium and
//! chromedriver.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tally_e2e::Browser;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

/// Fresh loads of each page.
const LOADS: usize = 7;
/// Longest wait for a page's first event and readiness.
const LIMIT: Duration = Duration::from_secs(30);
/// Time left to the page after its first event and readiness, before its figures are read.
const SETTLE: Duration = Duration::from_millis(1000);
/// The network profile: round trip (ms) and throughput (bytes per second).
const LATENCY_MS: u64 = 150;
const DOWN_BYTES_PER_S: u64 = 1_600_000 / 8;
const UP_BYTES_PER_S: u64 = 750_000 / 8;
/// How much slower than this machine the page's CPU runs.
const CPU_SLOWDOWN: u64 = 4;

const SEGMENT_ENV: &str = "TALLY_BENCH_SEGMENT_UMD";

/// First thing in every page's head: long tasks and room for every resource entry.
const HEAD: &str = r#"<meta charset="utf-8"><title>Shop</title>
<script>
performance.setResourceTimingBufferSize(10000);
window.benchLongTasks = [];
window.benchReady = null;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.benchLongTasks.push(e.duration);
}).observe({ type: 'longtask', buffered: true });
</script>"#;

/// The same content on every page.
const BODY: &str = r#"<h1>Organic cotton tee</h1>
<p>Soft, heavyweight jersey, cut for a relaxed fit. Ships in two working days.</p>
<p><button id="add">Add to cart</button></p>"#;

/// The page's tracker, in its head; the load's key is the query's `load`.
fn tracker(kind: &str) -> &'static str {
    match kind {
        "tally" => {
            r#"<script type="module">
import { createBrowserTracker } from '/pkg/index.js';
const key = new URLSearchParams(location.search).get('load');
const tracker = await createBrowserTracker({ endpoint: '/e/' + key + '/collect', siteKey: 'bench', consentMode: 'off' });
window.benchReady = performance.now();
tracker.trackPageView();
</script>"#
        }
        // Segment's snippet (5.2.0) as its docs give it, loading the bundle from this origin.
        "segment" => {
            r#"<script>
!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet included twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track","ready","alias","debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){return function(){if(window[i].initialized)return window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){var c=document.querySelector("link[rel='canonical']");n.push({__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,r:document.referrer})}n.unshift(e);analytics.push(n);return analytics}};for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];analytics[key]=analytics.factory(key)}analytics.load=function(key,n){var t=document.createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);t.src=location.origin+"/analytics-next/bundles/standalone.js";var r=document.getElementsByTagName("script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n};
var key=new URLSearchParams(location.search).get('load');
analytics._writeKey=key;analytics._cdn=location.origin;analytics.SNIPPET_VERSION="5.2.0";
analytics.load(key,{integrations:{'Segment.io':{apiHost:location.host+'/e/'+key,protocol:'http'}}});
analytics.ready(function(){window.benchReady=performance.now();});
analytics.page();
}}();
</script>"#
        }
        _ => "",
    }
}

fn page(kind: &str) -> String {
    format!("<!doctype html><html><head>{HEAD}\n{}</head><body>\n{BODY}\n</body></html>", tracker(kind))
}

/// No page is ever served from a cache.
async fn no_store(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN)
}

/// When the first request of each load's key reached the collector stand-in, epoch ms.
type Arrivals = Arc<Mutex<HashMap<String, f64>>>;

struct Server {
    base: String,
    arrivals: Arrivals,
}

impl Server {
    fn first_event(&self, key: &str) -> Option<f64> {
        self.arrivals.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied()
    }
}

async fn serve(pkg: PathBuf, segment: Option<PathBuf>) -> Result<Server, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    let host = addr.to_string();
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let mut app = Router::new()
        .route("/bare.html", get(|| async { Html(page("bare")) }))
        .route("/tally.html", get(|| async { Html(page("tally")) }))
        .route("/segment.html", get(|| async { Html(page("segment")) }))
        .route(
            "/e/{key}/{kind}",
            post(move |Path((key, kind)): Path<(String, String)>| {
                seen.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_insert_with(epoch_ms);
                // Tally's collector answer (every id it does not mention is accepted), or Segment's API's.
                async move {
                    match kind.as_str() {
                        "collect" => axum::Json(json!({ "results": [] })),
                        _ => axum::Json(json!({ "success": true })),
                    }
                }
            }),
        )
        .route(
            "/v1/projects/{key}/settings",
            get(move |Path(key): Path<String>| {
                let settings = tally_e2e::segment_settings(&key, &format!("{host}/e/{key}"));
                async move { axum::Json(settings) }
            }),
        )
        .nest_service("/pkg", ServeDir::new(pkg));
    if let Some(dir) = segment {
        app = app.nest_service("/analytics-next/bundles", ServeDir::new(dir));
    }
    let app = app.layer(axum::middleware::from_fn(no_store)).layer(CompressionLayer::new());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Server { base: format!("http://{addr}"), arrivals })
}

/// One load's figures, ms and bytes.
#[derive(Clone, Copy, Debug)]
struct Load {
    ready: f64,
    first_event: f64,
    tbt: f64,
    script: f64,
    bytes: f64,
}

/// The phone-like profile and a first visit, for the next navigation of this tab.
async fn fresh_profile(browser: &Browser, base: &str) -> Result<(), String> {
    browser.cdp("Network.enable", json!({})).await?;
    browser
        .cdp(
            "Network.emulateNetworkConditions",
            json!({
                "offline": false, "latency": LATENCY_MS,
                "downloadThroughput": DOWN_BYTES_PER_S, "uploadThroughput": UP_BYTES_PER_S,
            }),
        )
        .await?;
    browser.cdp("Network.setCacheDisabled", json!({ "cacheDisabled": true })).await?;
    browser.cdp("Network.clearBrowserCache", json!({})).await?;
    browser.cdp("Storage.clearDataForOrigin", json!({ "origin": base, "storageTypes": "all" })).await?;
    browser.cdp("Emulation.setCPUThrottlingRate", json!({ "rate": CPU_SLOWDOWN })).await?;
    // Disabling resets the counters; the next page's ScriptDuration starts from zero.
    browser.cdp("Performance.disable", json!({})).await?;
    browser.cdp("Performance.enable", json!({})).await?;
    Ok(())
}

const READ_PAGE: &str = r#"
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
return {
  origin: performance.timeOrigin,
  ready: window.benchReady,
  tbt: window.benchLongTasks.reduce((a, d) => a + Math.max(0, d - 50), 0),
  bytes: (nav ? nav.transferSize : 0) + res.reduce((a, e) => a + e.transferSize, 0),
  other_origins: res.map((e) => e.name).filter((u) => !u.startsWith(location.origin + '/')).slice(0, 5),
};"#;

async fn load(browser: &Browser, server: &Server, kind: &str, round: usize) -> Result<Load, String> {
    let key = format!("{kind}-{round}");
    let url = format!("{}/{kind}.html?load={key}", server.base);
    browser.client.goto("about:blank").await.map_err(|e| format!("about:blank: {e}"))?;
    fresh_profile(browser, &server.base).await?;
    browser.client.goto(&url).await.map_err(|e| format!("{url}: {e}"))?;
    let deadline = Instant::now() + LIMIT;
    if kind != "bare" {
        loop {
            let ready = browser.eval("return window.benchReady;").await;
            if !ready.is_null() && server.first_event(&key).is_some() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{url}: within {} s, ready: {ready}, first event: {:?}",
                    LIMIT.as_secs(),
                    server.first_event(&key)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(SETTLE).await;
    let r = browser.eval(READ_PAGE).await;
    if let Some(urls) = r.get("other_origins").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        return Err(format!("{url}: the page requested other origins than this server: {urls:?}"));
    }
    let metrics = browser.cdp("Performance.getMetrics", json!({})).await?;
    let script_s = metrics
        .get("metrics")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().find(|m| m.get("name").and_then(Value::as_str) == Some("ScriptDuration")))
        .and_then(|m| m.get("value").and_then(Value::as_f64))
        .ok_or_else(|| format!("{url}: no ScriptDuration in {metrics}"))?;
    let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    Ok(Load {
        ready: f("ready"),
        first_event: server.first_event(&key).map(|t| t - f("origin")).unwrap_or(f64::NAN),
        tbt: f("tbt"),
        script: script_s * 1000.0,
        bytes: f("bytes"),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One round: the bare page, Tally's and, when measured, Segment's.
struct Round {
    bare: Load,
    tally: Load,
    segment: Option<Load>,
}

fn ms(v: f64) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.0}") }
}

fn ratio(v: f64) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.2}×") }
}

async fn bench() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let pkg = root.join("pkg");
    if !pkg.join("tally_web_bg.wasm").exists() {
        return Err("pkg/ is not built: run `cargo xtask pkg` first".into());
    }
    let segment = std::env::var_os(SEGMENT_ENV).map(PathBuf::from);
    if let Some(dir) = &segment
        && !dir.join("standalone.js").exists()
    {
        return Err(format!("{SEGMENT_ENV}={}: no standalone.js there", dir.display()));
    }
    let server = serve(pkg, segment.clone()).await?;
    let browser = Browser::launch().await;
    let mut rounds = Vec::new();
    for round in 0..LOADS {
        let bare = load(&browser, &server, "bare", round).await?;
        let tally = load(&browser, &server, "tally", round).await?;
        let segment = match segment {
            Some(_) => Some(load(&browser, &server, "segment", round).await?),
            None => None,
        };
        rounds.push(Round { bare, tally, segment });
    }
    browser.close().await;

    println!(
        "page load in headless Chromium: {LATENCY_MS} ms RTT, {} kbit/s down, {} kbit/s up, CPU ×{CPU_SLOWDOWN}, \
         gzip, cache off and storage cleared; {LOADS} rounds of bare, Tally, Segment; ms unless said",
        DOWN_BYTES_PER_S * 8 / 1000,
        UP_BYTES_PER_S * 8 / 1000
    );
    println!(
        "| round | bare TBT | bare script | bare bytes | Tally ready | first event | TBT | script | bytes | \
         Segment ready | first event | TBT | script | bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        let s = |f: fn(&Load) -> f64| r.segment.as_ref().map(f).map(ms).unwrap_or_else(|| "—".into());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            ms(r.bare.tbt),
            ms(r.bare.script),
            ms(r.bare.bytes),
            ms(r.tally.ready),
            ms(r.tally.first_event),
            ms(r.tally.tbt),
            ms(r.tally.script),
            ms(r.tally.bytes),
            s(|l| l.ready),
            s(|l| l.first_event),
            s(|l| l.tbt),
            s(|l| l.script),
            s(|l| l.bytes),
        );
    }
    let med = |f: &dyn Fn(&Round) -> Option<f64>| median(rounds.iter().filter_map(f).collect());
    let tally = [
        med(&|r| Some(r.tally.ready)),
        med(&|r| Some(r.tally.first_event)),
        med(&|r| Some(r.tally.tbt - r.bare.tbt)),
        med(&|r| Some(r.tally.script - r.bare.script)),
        med(&|r| Some(r.tally.bytes - r.bare.bytes)),
    ];
    let seg = [
        med(&|r| r.segment.map(|s| s.ready)),
        med(&|r| r.segment.map(|s| s.first_event)),
        med(&|r| r.segment.map(|s| s.tbt - r.bare.tbt)),
        med(&|r| r.segment.map(|s| s.script - r.bare.script)),
        med(&|r| r.segment.map(|s| s.bytes - r.bare.bytes)),
    ];
    let ratios: Vec<f64> = tally.iter().zip(&seg).map(|(t, s)| t / s).collect();
    println!();
    println!(
        "| medians | tracker ready ms | first event at the collector ms | total blocking time added ms | \
         main-thread script added ms | bytes added |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| Tally | {} | {} | {} | {} | {} |",
        ms(tally[0]),
        ms(tally[1]),
        ms(tally[2]),
        ms(tally[3]),
        ms(tally[4])
    );
    println!("| Segment | {} | {} | {} | {} | {} |", ms(seg[0]), ms(seg[1]), ms(seg[2]), ms(seg[3]), ms(seg[4]));
    println!(
        "| Tally ÷ Segment | {} | {} | {} | {} | {} |",
        ratio(ratios[0]),
        ratio(ratios[1]),
        ratio(ratios[2]),
        ratio(ratios[3]),
        ratio(ratios[4])
    );
    println!("| goal | ≤ 1.0× | ≤ 0.8× | 0 ms | ≤ 0.1× | ≤ 64 KiB gzip before the first `track` |");
    println!(
        "bare page medians: total blocking time {} ms, script {} ms, {} bytes",
        ms(med(&|r| Some(r.bare.tbt))),
        ms(med(&|r| Some(r.bare.script))),
        ms(med(&|r| Some(r.bare.bytes)))
    );
    if segment.is_none() {
        println!("note: {SEGMENT_ENV} not set, so Segment analytics-next was not measured");
    }
    // For `cargo xtask bench` (it drops this line from BENCHMARKS.md).
    println!(
        "SUMMARY tally_ready_ms={:.1} tally_first_event_ms={:.1} tally_tbt_added_ms={:.1} tally_script_added_ms={:.1} \
         tally_bytes_added={:.0} segment_ready_ms={:.1} segment_first_event_ms={:.1} segment_tbt_added_ms={:.1} \
         segment_script_added_ms={:.1} segment_bytes_added={:.0} ratio_ready={:.3} ratio_first_event={:.3} \
         ratio_script={:.3} ratio_bytes={:.3}",
        tally[0],
        tally[1],
        tally[2],
        tally[3],
        tally[4],
        seg[0],
        seg[1],
        seg[2],
        seg[3],
        seg[4],
        ratios[0],
        ratios[1],
        ratios[3],
        ratios[4],
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("page_load: {e}");
        std::process::exit(1);
    }
}
