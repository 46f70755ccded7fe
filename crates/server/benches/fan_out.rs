//! Server fan-out on loopback: purchases per second delivered by
//! `ServerTracker` to GA4 + Google Ads + Meta CAPI + a signed webhook (the
//! local sandboxes, which check every request as the real APIs do), CPU time
//! per purchase and peak memory — beside `@segment/analytics-node` sending the
//! same number of purchase-shaped `track` events to a loopback sink that
//! answers 200.
//!
//! Each SDK runs in its own child process, so its CPU time and peak RSS are
//! its own; the sinks run in this (parent) process. Tally's child is this
//! binary again (`TALLY_FANOUT_CHILD` set); Segment's is `node` with the
//! package from the directory `TALLY_BENCH_NODE_MODULES` names (`cargo xtask
//! bench` installs it there from the npm registry). Without that variable only
//! Tally is measured.
//!
//! Run: `cargo bench -p tally-server --bench fan_out` (bounded: a fixed number
//! of purchases per run, a time limit per child, loopback only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use tally_core::{Amount, ContextEnvelope, Currency, Item};
use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use tally_sandbox::meta::ACCESS_TOKEN;
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::{Ga4Config, GoogleAdsConfig, MetaConfig, PurchaseInput, ServerTracker, Visitor, WebhookConfig};

/// Purchases (Tally) or track events (Segment) per run.
const PURCHASES: usize = 4000;
/// Purchases in flight at once in Tally's child (a busy payment-webhook handler).
const CONCURRENCY: usize = 32;
/// Runs per SDK; the table reports each run and the medians.
const RUNS: usize = 5;
/// A child that has not finished by then is killed and the bench fails.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

const WEBHOOK_SECRET: &str = "whsec_bench_0123456789";
const GCLID: &str = "Cj0KCQjw-bench_gclid";
const CHILD_ENV: &str = "TALLY_FANOUT_CHILD";
const NODE_MODULES_ENV: &str = "TALLY_BENCH_NODE_MODULES";

/// What one child process reports (one JSON line on stdout, prefixed `RESULT `).
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// Purchases (events) whose every destination confirmed delivery.
    delivered: f64,
    /// Wall seconds from the first call until the last delivery was confirmed.
    wall_s: f64,
    /// User + system CPU microseconds of the child during that time.
    cpu_us: f64,
    /// Resident set size before the workload, KiB.
    rss_start_kib: f64,
    /// Peak resident set size of the child's whole life (`VmHWM`), KiB.
    rss_peak_kib: f64,
}

impl Run {
    fn from_json(v: &Value) -> Result<Run, String> {
        let f = |k: &str| v.get(k).and_then(Value::as_f64).ok_or_else(|| format!("child result lacks {k}: {v}"));
        Ok(Run {
            delivered: f("delivered")?,
            wall_s: f("wall_s")?,
            cpu_us: f("cpu_us")?,
            rss_start_kib: f("rss_start_kib")?,
            rss_peak_kib: f("rss_peak_kib")?,
        })
    }

    fn per_sec(&self) -> f64 {
        self.delivered / self.wall_s.max(1e-9)
    }

    fn cpu_per_item(&self) -> f64 {
        self.cpu_us / self.delivered.max(1.0)
    }
}

// ------------------------------------------------------------------ Tally's child

/// `utime + stime` of this process in microseconds, from `/proc/self/stat`
/// (clock ticks of `USER_HZ` = 100 on Linux).
fn cpu_us() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("reading /proc/self/stat: {e}"))?;
    // The command name (field 2) may contain spaces; fields after its ')' are plain.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12th and 13th after the name.
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).ok_or("unexpected /proc/self/stat");
    Ok((tick(11)? + tick(12)?) * 10_000.0)
}

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`).
fn status_kib(key: &str) -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("reading /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/self/status"))
}

fn tracker(base: &str) -> Result<ServerTracker, String> {
    let ads = GoogleAdsConfig::new("123-456-7890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .data_manager_url(format!("{base}/data-manager"))
        .token_url(format!("{base}/data-manager/token"))
        .diagnostics(None)
        .login_customer_id("987-654-3210")
        .conversion_action("AbC-purchase", "555666777")
        .label("purchase", "AbC-purchase");
    ServerTracker::builder()
        .ga4(Ga4Config::new("G-BENCH1", "s").base_url(format!("{base}/ga4")))
        .google_ads(ads)
        .meta(MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(format!("{base}/meta")))
        .webhook("warehouse", WebhookConfig::new(format!("{base}/webhook/warehouse"), WEBHOOK_SECRET))
        .build()
        .map_err(|e| format!("tracker configuration: {e}"))
}

fn envelope() -> Result<ContextEnvelope, String> {
    ContextEnvelope::parse_json(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","sessionId":"1757409568","userId":"user_42",
            "clickIds":{{"gclid":"{GCLID}","fbc":"fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890","fbp":"fb.1.1596403881668.1116446470"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}},
            "userData":{{"email":"Jane.Doe@gmail.com","phone":"+1 (650) 555-1212"}},
            "pageUrl":"https://shop.example/checkout/done"}}"#
    ))
    .map_err(|e| format!("bench envelope: {e}"))
}

/// The child: `PURCHASES` purchases, `CONCURRENCY` at a time, each delivered
/// inline to the four destinations; prints its figures as one JSON line.
async fn tally_child(base: String, run: String) -> Result<(), String> {
    let tracker = tracker(&base)?;
    let envelope = Arc::new(envelope()?);
    let price = Amount::parse("30.03").map_err(|e| e.to_string())?;
    let currency = Currency::parse("USD").map_err(|e| e.to_string())?;
    let rss_start = status_kib("VmRSS")?;
    let next = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_us()?;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (tracker, envelope, next, delivered, run) =
            (tracker.clone(), envelope.clone(), next.clone(), delivered.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut failure = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= PURCHASES {
                    return failure;
                }
                // What a payment webhook handler knows besides the stored envelope.
                let request = Visitor {
                    user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
                    ip_address: Some("203.0.113.7".into()),
                    ..Visitor::default()
                };
                let input = PurchaseInput::new(format!("ORD-{run}-{i}"), price, currency)
                    .item(Item::new("SKU-204", "Merino runner").with_price(price, 1))
                    .visitor(request);
                match tracker.from_context(&envelope).track_purchase(input).await {
                    Ok(r) if r.destinations.iter().all(|(_, o)| o.is_sent()) => {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failure = Some(format!("{r:?}")),
                    Err(e) => failure = Some(e.to_string()),
                }
            }
        }));
    }
    let mut failure = None;
    for t in tasks {
        if let Some(f) = t.await.map_err(|e| format!("purchase task: {e}"))? {
            failure = Some(f);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_us()? - cpu0;
    if let Some(f) = failure {
        eprintln!("fan_out: a purchase was not delivered everywhere, e.g. {f}");
    }
    let result = json!({
        "delivered": delivered.load(Ordering::Relaxed),
        "wall_s": wall,
        "cpu_us": cpu,
        "rss_start_kib": rss_start,
        "rss_peak_kib": status_kib("VmHWM")?,
    });
    println!("RESULT {result}");
    tracker.shutdown();
    Ok(())
}

// ------------------------------------------------------------------ Segment's child

/// Segment's side, run by `node` with the package resolved from argv[4].
/// `track` is called for every event at once (it queues and batches, 15 events
/// per request by default); `closeAndFlush` resolves when every batch is answered.
const SEGMENT_SCRIPT: &str = r#"
const path = require('path');
const fs = require('fs');
const [url, n, modules] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const { Analytics } = require(path.join(modules, '@segment/analytics-node'));
// As Tally's child reads them: resourceUsage().maxRSS would include the forking parent's RSS.
const statusKib = (key) => Number(fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(key + ':\\s+(\\d+)'))[1]);
const rssStart = statusKib('VmRSS');
let failed = 0;
const analytics = new Analytics({ writeKey: 'bench-write-key', host: url, path: '/v1/batch', maxRetries: 3 });
analytics.on('error', () => { failed++; });
(async () => {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    analytics.track({
      userId: 'user_42',
      anonymousId: '1958185836.1757409569',
      event: 'Order Completed',
      properties: {
        order_id: `ORD-${process.pid}-${i}`, value: 30.03, revenue: 30.03, currency: 'USD',
        products: [{ product_id: 'SKU-204', name: 'Merino runner', price: 30.03, quantity: 1 }],
      },
      context: { traits: { email: 'jane.doe@gmail.com', phone: '+16505551212' }, page: { url: 'https://shop.example/checkout/done' } },
    });
  }
  await analytics.closeAndFlush({ timeout: 100000 });
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log('RESULT ' + JSON.stringify({
    delivered: n - failed, wall_s: wall, cpu_us: cpu.user + cpu.system,
    rss_start_kib: rssStart, rss_peak_kib: statusKib('VmHWM'),
  }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

// ------------------------------------------------------------------ parent

async fn child(mut cmd: tokio::process::Command, what: &str) -> Result<Run, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("{what}: could not start: {e}"))?;
    let out = tokio::time::timeout(CHILD_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| format!("{what}: no result within {} s", CHILD_LIMIT.as_secs()))?
        .map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{what} failed ({}): {stdout}", out.status));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("{what} printed no result: {stdout}"))?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("{what}: {e}: {line}"))?;
    Run::from_json(&v)
}

/// A sink that counts requests and the events of each `/v1/batch` body, and answers 200.
async fn segment_sink(count: Arc<AtomicU64>, requests: Arc<AtomicU64>) -> Result<String, String> {
    let app = Router::new().route(
        "/v1/batch",
        post(move |body: Bytes| {
            let count = count.clone();
            requests.fetch_add(1, Ordering::Relaxed);
            async move {
                let n = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("batch").and_then(Value::as_array).map(Vec::len))
                    .unwrap_or(0);
                count.fetch_add(n as u64, Ordering::Relaxed);
                axum::Json(json!({ "success": true }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("segment sink: {e}"))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| format!("segment sink: {e}"))?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn counts(sandbox: &Sandbox) -> [usize; 4] {
    [
        sandbox.ga4.purchases().len(),
        sandbox.data_manager.conversion_count(),
        sandbox.meta.purchases().len(),
        sandbox.webhook.events("warehouse").len(),
    ]
}

/// Tally's run and, when measured, Segment's run after it.
type Row = (Run, Option<Run>);

async fn parent() -> Result<(), String> {
    let sandbox = Sandbox::new();
    sandbox.webhook.set_secret("warehouse", WEBHOOK_SECRET);
    let sinks: RunningSandbox = sandbox.serve("127.0.0.1:0").await.map_err(|e| format!("sandbox: {e}"))?;
    let segment_count = Arc::new(AtomicU64::new(0));
    let segment_requests = Arc::new(AtomicU64::new(0));
    let segment_url = segment_sink(segment_count.clone(), segment_requests.clone()).await?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let node = std::env::var_os(NODE_MODULES_ENV).map(PathBuf::from);
    let script = std::env::temp_dir().join(format!("tally-fanout-segment-{}.js", std::process::id()));
    if node.is_some() {
        std::fs::write(&script, SEGMENT_SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    }

    let mut rows = Vec::new();
    let mut requests = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let before = counts(&sandbox);
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env(CHILD_ENV, &sinks.base_url).env("TALLY_FANOUT_RUN", run.to_string());
        let tally = child(cmd, "Tally fan-out child").await?;
        let after = counts(&sandbox);
        let received: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        if received.iter().any(|&r| r != PURCHASES) || tally.delivered as usize != PURCHASES {
            return Err(format!(
                "run {run}: Tally reported {} of {PURCHASES} delivered; GA4, Ads, Meta, webhook sandboxes \
                 accepted {received:?} (dropped: GA4 {:?}, Ads {:?}, Meta {:?}, webhook {:?})",
                tally.delivered,
                sandbox.ga4.dropped().first(),
                sandbox.data_manager.rejections().first().map(|r| r.reasons().join(",")),
                sandbox.meta.dropped().first(),
                sandbox.webhook.dropped().first()
            ));
        }
        requests.0.push(sandbox.traffic.all().len() as f64);
        sandbox.traffic.clear();
        let segment = match &node {
            Some(modules) => {
                let before = segment_count.load(Ordering::Relaxed);
                let requests_before = segment_requests.load(Ordering::Relaxed);
                let mut cmd = tokio::process::Command::new("node");
                cmd.arg(&script).arg(&segment_url).arg(PURCHASES.to_string()).arg(modules);
                let s = child(cmd, "Segment analytics-node child").await?;
                let got = segment_count.load(Ordering::Relaxed) - before;
                if got as usize != PURCHASES {
                    return Err(format!("run {run}: the Segment sink received {got} of {PURCHASES} events"));
                }
                requests.1.push((segment_requests.load(Ordering::Relaxed) - requests_before) as f64);
                Some(s)
            }
            None => None,
        };
        rows.push((tally, segment));
    }
    let _ = std::fs::remove_file(&script);

    println!(
        "server fan-out, {PURCHASES} purchases per run, {RUNS} runs, loopback; each SDK in its own process, sinks in the bench process"
    );
    println!(
        "| run | Tally purchases/s | CPU µs/purchase | RSS start MiB | peak RSS MiB | Segment events/s | CPU µs/event | RSS start MiB | peak RSS MiB | Tally ÷ Segment rate | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mib = |kib: f64| kib / 1024.0;
    let cell = |s: Option<Run>, f: fn(&Run) -> f64, digits: usize| match s {
        Some(s) => format!("{:.*}", digits, f(&s)),
        None => "—".to_owned(),
    };
    for (i, (t, s)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            t.per_sec(),
            t.cpu_per_item(),
            mib(t.rss_start_kib),
            mib(t.rss_peak_kib),
            cell(*s, Run::per_sec, 0),
            cell(*s, Run::cpu_per_item, 0),
            cell(*s, |s| s.rss_start_kib / 1024.0, 1),
            cell(*s, |s| s.rss_peak_kib / 1024.0, 1),
            s.map(|s| format!("{:.2}", t.per_sec() / s.per_sec())).unwrap_or_else(|| "—".into()),
            s.map(|s| format!("{:.2}", t.cpu_per_item() / s.cpu_per_item())).unwrap_or_else(|| "—".into()),
        );
    }
    let med = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(f).collect());
    println!(
        "| **median** | **{:.0}** | **{:.0}** | **{:.1}** | **{:.1}** | **{:.0}** | **{:.0}** | **{:.1}** | **{:.1}** | **{:.2}** | **{:.2}** |",
        med(&|r| Some(r.0.per_sec())),
        med(&|r| Some(r.0.cpu_per_item())),
        med(&|r| Some(mib(r.0.rss_start_kib))),
        med(&|r| Some(mib(r.0.rss_peak_kib))),
        med(&|r| r.1.map(|s| s.per_sec())),
        med(&|r| r.1.map(|s| s.cpu_per_item())),
        med(&|r| r.1.map(|s| mib(s.rss_start_kib))),
        med(&|r| r.1.map(|s| mib(s.rss_peak_kib))),
        med(&|r| r.1.map(|s| r.0.per_sec() / s.per_sec())),
        med(&|r| r.1.map(|s| r.0.cpu_per_item() / s.cpu_per_item())),
    );
    let [ga4, ads, meta, webhook] = counts(&sandbox);
    println!(
        "sandboxes accepted {ga4} GA4, {ads} Google Ads, {meta} Meta and {webhook} webhook purchases; \
         Segment sink {} events; HTTP requests per run (median): Tally {:.0} (one per purchase each to GA4 \
         and the webhook, Meta's and Google Ads' (Data Manager) shared by the purchases their lanes batch, and \
         an OAuth token for Google Ads), Segment {:.0}; Tally's in-memory idempotency store and outbox, so its peak RSS \
         includes the idempotency keys ({PURCHASES} purchases × 4 destinations)",
        segment_count.load(Ordering::Relaxed),
        median(requests.0),
        median(requests.1),
    );
    if node.is_none() {
        println!("note: {NODE_MODULES_ENV} not set, so @segment/analytics-node was not measured");
    }
    // For `cargo xtask bench` (it drops this line from BENCHMARKS.md).
    println!(
        "SUMMARY tally_per_s={:.0} tally_cpu_us={:.0} tally_peak_mib={:.1} segment_per_s={:.0} segment_cpu_us={:.0} \
         segment_peak_mib={:.1} ratio_rate={:.3} ratio_cpu={:.3} ratio_peak={:.3}",
        med(&|r| Some(r.0.per_sec())),
        med(&|r| Some(r.0.cpu_per_item())),
        med(&|r| Some(mib(r.0.rss_peak_kib))),
        med(&|r| r.1.map(|s| s.per_sec())),
        med(&|r| r.1.map(|s| s.cpu_per_item())),
        med(&|r| r.1.map(|s| mib(s.rss_peak_kib))),
        med(&|r| r.1.map(|s| r.0.per_sec() / s.per_sec())),
        med(&|r| r.1.map(|s| r.0.cpu_per_item() / s.cpu_per_item())),
        med(&|r| r.1.map(|s| r.0.rss_peak_kib / s.rss_peak_kib)),
    );
    Ok(())
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fan_out: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = match std::env::var(CHILD_ENV) {
        Ok(base) => runtime.block_on(tally_child(base, std::env::var("TALLY_FANOUT_RUN").unwrap_or_default())),
        Err(_) => runtime.block_on(parent()),
    };
    if let Err(e) = result {
        eprintln!("fan_out: {e}");
        std::process::exit(1);
    }
}
