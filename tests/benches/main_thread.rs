//! Main-thread cost of tracking one add_to_cart in headless Chromium: Tally's
//! browser tracker (the built `pkg/`) beside Segment's analytics-next
//! (`dist/umd/standalone.js` from the npm package, loaded the way its snippet
//! loads it), each in the same kind of page served from loopback.
//!
//! Each page times `CALLS` calls after `WARMUP` calls, one call per task (as
//! click handlers would call it), with `performance.now()` around each
//! synchronous call: the time the call blocks the page. Segment's `track`
//! returns a promise and does most of its work afterwards, so the page also
//! reports, per call, how much longer the same loop took than an empty loop
//! with the same yields (the call plus the asynchronous work it scheduled that
//! ran before the next call). Pages are cross-origin isolated (COOP + COEP),
//! which gives `performance.now()` its finest resolution (5 µs in Chromium).
//!
//! Nothing leaves loopback: Segment's CDN settings, lazy bundles and API host
//! point at this server (a page whose resource timing lists another origin
//! fails the bench), and both SDKs' events are counted at its sinks, which
//! must receive every event before the next page is opened.
//!
//! Run: `TALLY_BENCH_SEGMENT_UMD=<…/package/dist/umd> cargo bench -p tally-e2e --bench main_thread`
//! (`cargo xtask bench` sets the variable; without it only Tally is measured).
//! Needs `pkg/` built (`cargo xtask pkg`), chromium and chromedriver.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tally_e2e::Browser;
use tower_http::services::ServeDir;

/// Timed calls per page.
const CALLS: usize = 1000;
/// Untimed calls first (JIT, wasm tiering, storage).
const WARMUP: usize = 100;
/// Fresh pages per SDK; the summary is the median of the pages' figures.
const PAGES: usize = 5;
/// Longest wait for a page's result or for its events at the sink.
const LIMIT: Duration = Duration::from_secs(60);

const SEGMENT_ENV: &str = "TALLY_BENCH_SEGMENT_UMD";

/// The timing harness shared by both pages; the page defines `window.benchTrack(i)`.
const HARNESS: &str = r#"
<script>
// Room for every request's entry: the check below proves nothing left loopback.
performance.setResourceTimingBufferSize(100000);
window.benchResult = null;
window.benchStart = (n, warmup) => {
  run(n, warmup).then((r) => { window.benchResult = r; }, (e) => { window.benchResult = { error: String(e && e.stack || e) }; });
};
const ch = new MessageChannel();
let wake = null;
ch.port1.onmessage = () => { const w = wake; wake = null; w(); };
// A new task, like the next click: pending microtasks and ready tasks run first.
const nextTask = () => new Promise((r) => { wake = r; ch.port2.postMessage(0); });
async function run(n, warmup) {
  for (let i = 0; i < warmup; i++) { window.benchTrack(i); await nextTask(); }
  // The same loop without the call: its time per iteration is subtracted below.
  let t0 = performance.now();
  for (let i = 0; i < n; i++) { performance.now(); await nextTask(); }
  const empty = (performance.now() - t0) / n;
  const d = new Float64Array(n);
  t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    window.benchTrack(warmup + i);
    d[i] = performance.now() - a;
    await nextTask();
  }
  const loop = (performance.now() - t0) / n;
  let resolution = Infinity;
  for (let i = 0, last = performance.now(); i < 100000 && resolution === Infinity; i++) {
    const t = performance.now();
    if (t > last) resolution = t - last;
    last = t;
  }
  const mean = d.reduce((a, b) => a + b, 0) / n;
  d.sort();
  return {
    median_us: d[Math.floor(n / 2)] * 1000, p95_us: d[Math.floor(n * 0.95)] * 1000, mean_us: mean * 1000,
    with_async_us: (loop - empty) * 1000, isolated: self.crossOriginIsolated, resolution_us: resolution * 1000,
    other_origins: performance.getEntriesByType('resource').map((e) => e.name)
      .filter((u) => !u.startsWith(location.origin + '/')).slice(0, 5),
  };
}
</script>"#;

fn tally_page() -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>tally</title></head><body>
{HARNESS}
<script type="module">
import {{ createBrowserTracker }} from '/pkg/index.js';
const tracker = await createBrowserTracker({{ endpoint: '/collect', siteKey: 'bench', consentMode: 'off' }});
window.benchTrack = (i) => tracker.trackAddToCart({{
  currency: 'EUR', value: 19.99, items: [{{ itemId: 'SKU_1', itemName: 'Tee', price: 19.99, quantity: 1 }}],
}});
document.body.dataset.ready = '1';
</script></body></html>"#
    )
}

fn segment_page() -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>segment</title></head><body>
{HARNESS}
<script>
// What Segment's snippet sets up, with the CDN and the API on this server.
window.analytics = [];
analytics._writeKey = 'bench-write-key';
analytics._cdn = location.origin;
analytics._loadOptions = {{ integrations: {{ 'Segment.io': {{ apiHost: location.host + '/v1', protocol: 'http' }} }} }};
</script>
<script src="/analytics-next/bundles/standalone.js"></script>
<script>
(function wait() {{
  if (!(window.analytics && window.analytics.initialized)) return setTimeout(wait, 10);
  window.benchTrack = (i) => window.analytics.track('Product Added', {{
    product_id: 'SKU_1', name: 'Tee', price: 19.99, quantity: 1, currency: 'EUR', value: 19.99,
  }});
  document.body.dataset.ready = '1';
}})();
</script></body></html>"#
    )
}

/// Makes every page cross-origin isolated (finest `performance.now()`).
async fn isolate(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-embedder-policy", HeaderValue::from_static("require-corp"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn count_events(body: &[u8], key: &str) -> u64 {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get(key).and_then(Value::as_array) {
            Some(a) => a.len() as u64,
            None if key == "batch" => 1, // Segment's one-event endpoints (/v1/t …)
            None => 0,
        },
        Err(_) => 0,
    }
}

struct Server {
    base: String,
    tally_events: Arc<AtomicU64>,
    segment_events: Arc<AtomicU64>,
}

async fn serve(pkg: PathBuf, segment: Option<PathBuf>) -> Result<Server, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    let host = addr.to_string();
    let tally_events = Arc::new(AtomicU64::new(0));
    let segment_events = Arc::new(AtomicU64::new(0));
    let (t, s) = (tally_events.clone(), segment_events.clone());
    let mut app = Router::new()
        .route("/tally.html", get(|| async { Html(tally_page()) }))
        .route("/segment.html", get(|| async { Html(segment_page()) }))
        .route(
            "/collect",
            post(move |body: Bytes| {
                t.fetch_add(count_events(&body, "events"), Ordering::Relaxed);
                // Every id the reply does not mention counts as accepted.
                async { axum::Json(json!({ "results": [] })) }
            }),
        )
        .route(
            "/v1/projects/{key}/settings",
            get(move || {
                let settings = tally_e2e::segment_settings("bench-write-key", &format!("{host}/v1"));
                async move { axum::Json(settings) }
            }),
        )
        .route(
            "/v1/{kind}",
            post(move |body: Bytes| {
                s.fetch_add(count_events(&body, "batch"), Ordering::Relaxed);
                async { axum::Json(json!({ "success": true })) }
            }),
        )
        .nest_service("/pkg", ServeDir::new(pkg));
    if let Some(dir) = segment {
        app = app.nest_service("/analytics-next/bundles", ServeDir::new(dir));
    }
    let app = app.layer(axum::middleware::from_fn(isolate));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Server { base: format!("http://{addr}"), tally_events, segment_events })
}

/// One page's figures, microseconds.
#[derive(Clone, Copy, Debug)]
struct Page {
    median: f64,
    p95: f64,
    mean: f64,
    with_async: f64,
    resolution: f64,
    isolated: bool,
}

/// Tally's page and, when measured, Segment's page opened after it.
type Row = (Page, Option<Page>);

async fn measure(browser: &Browser, url: &str, sink: &AtomicU64) -> Result<Page, String> {
    let before = sink.load(Ordering::Relaxed);
    browser.open(url).await;
    browser.eval(&format!("window.benchStart({CALLS}, {WARMUP}); return true;")).await;
    let deadline = Instant::now() + LIMIT;
    let r = loop {
        let r = browser.eval("return window.benchResult;").await;
        if !r.is_null() {
            break r;
        }
        if Instant::now() > deadline {
            return Err(format!("{url}: no result within {} s", LIMIT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Some(e) = r.get("error") {
        return Err(format!("{url}: {e}"));
    }
    if let Some(urls) = r.get("other_origins").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        return Err(format!("{url}: the page requested other origins than this server: {urls:?}"));
    }
    let f = |k: &str| r.get(k).and_then(Value::as_f64).ok_or_else(|| format!("{url}: result lacks {k}: {r}"));
    let page = Page {
        median: f("median_us")?,
        p95: f("p95_us")?,
        mean: f("mean_us")?,
        with_async: f("with_async_us")?,
        resolution: f("resolution_us")?,
        isolated: r.get("isolated").and_then(Value::as_bool).unwrap_or(false),
    };
    // Every event must reach the sink (so the calls did their real work) before the next page.
    let want = (CALLS + WARMUP) as u64;
    while sink.load(Ordering::Relaxed) - before < want {
        if Instant::now() > deadline {
            return Err(format!("{url}: the sink received {} of {want} events", sink.load(Ordering::Relaxed) - before));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(page)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    let mut rows: Vec<Row> = Vec::new();
    for page in 0..PAGES {
        let tally = measure(&browser, &format!("{}/tally.html?page={page}", server.base), &server.tally_events).await?;
        let seg = match segment {
            Some(_) => Some(
                measure(&browser, &format!("{}/segment.html?page={page}", server.base), &server.segment_events).await?,
            ),
            None => None,
        };
        rows.push((tally, seg));
    }
    browser.close().await;

    let first = rows.first().map(|r| r.0).ok_or("no pages measured")?;
    println!(
        "main thread, add_to_cart in headless Chromium, {CALLS} timed calls after {WARMUP} warm-up calls per page, \
         {PAGES} fresh pages per SDK, one call per task; µs; performance.now() resolution {:.1} µs \
         (cross-origin isolated: {})",
        first.resolution, first.isolated
    );
    println!(
        "| page | Tally median | p95 | mean | with async work | Segment median | p95 | mean | with async work | Tally ÷ Segment (median) | (with async work) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let opt = |s: Option<f64>| s.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into());
    for (i, (t, s)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            t.median,
            t.p95,
            t.mean,
            t.with_async,
            opt(s.map(|s| s.median)),
            opt(s.map(|s| s.p95)),
            opt(s.map(|s| s.mean)),
            opt(s.map(|s| s.with_async)),
            s.map(|s| format!("{:.2}", t.median / s.median.max(1e-9))).unwrap_or_else(|| "—".into()),
            s.map(|s| format!("{:.2}", t.with_async / s.with_async.max(1e-9))).unwrap_or_else(|| "—".into()),
        );
    }
    let med = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(f).collect());
    let b = |v: f64| if v.is_nan() { "—".to_owned() } else { format!("**{v:.1}**") };
    let r = |v: f64| if v.is_nan() { "—".to_owned() } else { format!("**{v:.2}**") };
    println!(
        "| **median** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        b(med(&|r| Some(r.0.median))),
        b(med(&|r| Some(r.0.p95))),
        b(med(&|r| Some(r.0.mean))),
        b(med(&|r| Some(r.0.with_async))),
        b(med(&|r| r.1.map(|s| s.median))),
        b(med(&|r| r.1.map(|s| s.p95))),
        b(med(&|r| r.1.map(|s| s.mean))),
        b(med(&|r| r.1.map(|s| s.with_async))),
        r(med(&|r| r.1.map(|s| r.0.median / s.median.max(1e-9)))),
        r(med(&|r| r.1.map(|s| r.0.with_async / s.with_async.max(1e-9)))),
    );
    println!(
        "sinks received {} Tally and {} Segment events (every call of every page)",
        server.tally_events.load(Ordering::Relaxed),
        server.segment_events.load(Ordering::Relaxed)
    );
    if segment.is_none() {
        println!("note: {SEGMENT_ENV} not set, so Segment analytics-next was not measured");
    }
    // For `cargo xtask bench` (it drops this line from BENCHMARKS.md).
    println!(
        "SUMMARY tally_median_us={:.1} tally_p95_us={:.1} tally_async_us={:.1} segment_median_us={:.1} \
         segment_p95_us={:.1} segment_async_us={:.1} ratio_median={:.3} ratio_async={:.3}",
        med(&|r| Some(r.0.median)),
        med(&|r| Some(r.0.p95)),
        med(&|r| Some(r.0.with_async)),
        med(&|r| r.1.map(|s| s.median)),
        med(&|r| r.1.map(|s| s.p95)),
        med(&|r| r.1.map(|s| s.with_async)),
        med(&|r| r.1.map(|s| r.0.median / s.median.max(1e-9))),
        med(&|r| r.1.map(|s| r.0.with_async / s.with_async.max(1e-9))),
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("main_thread: {e}");
        std::process::exit(1);
    }
}
