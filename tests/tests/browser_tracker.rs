//! The browser tracker through the npm package's public JavaScript API only
//! (`createBrowserTracker`, the tracker's methods, `hashUserData` and
//! `sha256Hex` from `pkg/index.js`, as `index.d.ts` declares them), in headless
//! Chromium against a collector on loopback: config errors, the wire
//! contract, identity cookies, Consent Mode v2 before and after a decision,
//! click-id capture, the drain lease between tabs, the queue across real
//! reloads, retry and 4xx / per-event drops, the `sendBeacon` flush, the
//! gtag/fbq bridge and hashing as the server hashes.
//!
//! Real `fetch` and `sendBeacon` reach the collector, which the test switches
//! between accepting, answering a status and rejecting each event ([`Mode`]),
//! and which keeps every request. The page wraps `fetch` only to note the
//! request's options (credentials and keepalive are not visible on the wire)
//! and to fail with a network error while `__t.down` is set, and `sendBeacon`
//! only to refuse while `__t.beaconOk` is false. `gtag` and `fbq` are page
//! functions, recorded in the page. Each test has its own server and browser
//! profile ([`on_page`]); "the next page" is a real navigation in the same
//! profile.

use std::future::poll_fn;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use tally_e2e::{Browser, eventually, open_page};

/// The event id of [`ORDER`]'s purchase (derived from its transaction id).
const ORDER_ID: &str = "54de189e-77b5-88e0-9311-ea73ac8286ab";

/// The page every test drives: recorders first, then the package, imported
/// dynamically so that its module runs after them. Defines `cart()` and
/// `order()` (fresh inputs), `cookie(name)` and `sleep(ms)`.
const PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Tally</title></head>
<body><p id="out">loading</p><script type="module">
const t = (window.__t = { fetches: [], gtag: [], fbq: [], down: false, beaconOk: true });
const toCollector = (url) => new URL(String(url), location.href).pathname.startsWith('/c/');
const realFetch = window.fetch;
window.fetch = function (input, init) {
  const r = new Request(input instanceof Request ? input.clone() : input, init);
  if (toCollector(r.url)) {
    t.fetches.push({ path: new URL(r.url).pathname, method: r.method, credentials: r.credentials,
      keepalive: r.keepalive, contentType: r.headers.get('Content-Type') });
    if (t.down) return Promise.reject(new TypeError('Failed to fetch'));
  }
  return realFetch.call(window, input, init);
};
const realBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, data) => (toCollector(url) && !t.beaconOk ? false : realBeacon(url, data));
window.cookie = (name) => {
  for (const c of document.cookie.split(';')) {
    const s = c.trim(), i = s.indexOf('=');
    if (i >= 0 && s.slice(0, i) === name) return s.slice(i + 1);
  }
  return null;
};
window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
window.cart = () => ({ value: 20, currency: 'EUR', items: [{ itemId: 'SKU_1', itemName: 'Tee', price: 10, quantity: 2 }] });
window.order = () => ({ transactionId: 'T_12345', value: '30.03', currency: 'USD',
  items: [{ itemId: 'SKU_1', price: 10.01, quantity: 3 }] });
const out = document.getElementById('out');
try {
  const { createBrowserTracker, hashUserData, sha256Hex, normalizeAndHash } = await import('/pkg/index.js');
  Object.assign(window, { createBrowserTracker, hashUserData, sha256Hex, normalizeAndHash });
  out.textContent = 'ready';
} catch (e) {
  out.textContent = 'import failed: ' + (e && e.stack || e);
}
document.body.dataset.ready = '1';
</script></body></html>"#;

/// How the collector answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Every event accepted (as `tally-server`'s collector answers).
    Accept,
    /// This status for the whole batch, body `{}`.
    Status(u16),
    /// 200, each event `invalid` (field `value`, reason `too big`).
    Invalid,
}

/// A request the collector received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    method: String,
    content_type: String,
    /// Not `application/json`: a `sendBeacon` body (text/plain).
    beacon: bool,
    raw: String,
    body: Value,
}

#[derive(Clone)]
struct Collector {
    mode: Arc<Mutex<Mode>>,
    received: Arc<Mutex<Vec<Received>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Collector {
    fn new() -> Collector {
        Collector { mode: Arc::new(Mutex::new(Mode::Accept)), received: Arc::default() }
    }

    async fn answer(self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let raw = String::from_utf8_lossy(&body).into_owned();
        let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let events: Vec<Value> = body["events"].as_array().cloned().unwrap_or_default();
        lock(&self.received).push(Received {
            path: uri.path().to_owned(),
            method: method.to_string(),
            beacon: !content_type.starts_with("application/json"),
            content_type,
            raw,
            body,
        });
        let mode = *lock(&self.mode);
        let result = |status: &str| {
            let results: Vec<Value> =
                events.iter().map(|e| json!({ "eventId": e["eventId"], "status": status })).collect();
            results
        };
        match mode {
            Mode::Accept => axum::Json(json!({ "results": result("accepted") })).into_response(),
            Mode::Status(code) => (StatusCode::from_u16(code).expect("status"), "{}").into_response(),
            Mode::Invalid => {
                let mut results = result("invalid");
                for r in &mut results {
                    r["field"] = json!("value");
                    r["reason"] = json!("too big");
                }
                axum::Json(json!({ "results": results })).into_response()
            }
        }
    }
}

/// A test's page in its own headless Chromium, served with the package
/// (`pkg/` as it is on disk, under `/pkg/`) and the collector (`/c/<name>`).
struct Page {
    browser: Browser,
    base: String,
    collector: Collector,
}

impl Page {
    /// Opens the page, with `query` (`""` or `"?gclid=…"`) and `extra` routes
    /// served beside it (a real collector); also returns the text of `#out`
    /// (`ready` once the package was imported).
    async fn open_with(query: &str, extra: Router) -> (Page, String) {
        let pkg = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pkg");
        assert!(pkg.join("index.js").exists(), "build the package first: cargo xtask pkg");
        let collector = Collector::new();
        let c = collector.clone();
        let router = Router::new()
            .route("/", axum::routing::get(|| async { Html(PAGE) }))
            .route(
                "/c/{name}",
                axum::routing::any(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| c.clone().answer(m, u, h, b)),
            )
            .nest_service("/pkg", tower_http::services::ServeDir::new(pkg))
            .merge(extra);
        let (browser, out) = open_page(router, &format!("/{query}")).await;
        let url = browser.client.current_url().await.expect("current url");
        (Page { browser, base: url.origin().ascii_serialization(), collector }, out)
    }

    /// The next page load in the same browser profile (a real navigation:
    /// the previous page gets its `pagehide`).
    async fn goto(&self, query: &str) {
        self.browser.open(&format!("{}/{query}", self.base)).await;
        let out = self.browser.eval("return document.getElementById('out').textContent").await;
        assert_eq!(out, "ready", "the page imports /pkg/index.js");
    }

    /// Runs `body` as an async function in the page; its return value as
    /// JSON (`undefined` is null), or the message of what it threw.
    async fn try_run(&self, body: &str) -> Result<Value, String> {
        let script = format!(
            "const done = arguments[arguments.length - 1];
            (async () => {{\n{body}\n}})().then(
              (v) => done(JSON.stringify({{ ok: v === undefined ? null : v }})),
              (e) => done(JSON.stringify({{ error: String((e && e.message) || e) }})));"
        );
        let out = self.browser.client.execute_async(&script, vec![]).await.expect("execute_async");
        let out: Value = serde_json::from_str(out.as_str().unwrap_or("null")).unwrap_or(Value::Null);
        match out.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(out.get("ok").cloned().unwrap_or(Value::Null)),
        }
    }

    async fn run(&self, body: &str) -> Value {
        self.try_run(body).await.unwrap_or_else(|e| panic!("script threw {e:?}:\n{body}"))
    }

    /// The message `expr` throws (or rejects with); panics if it succeeds.
    async fn error(&self, expr: &str) -> String {
        match self.try_run(&format!("await ({expr}); return 'accepted';")).await {
            Err(msg) => msg,
            Ok(_) => panic!("accepted: {expr}"),
        }
    }

    fn set_mode(&self, mode: Mode) {
        *lock(&self.collector.mode) = mode;
    }

    /// Every request the collector received at `endpoint`.
    fn requests(&self, endpoint: &str) -> Vec<Received> {
        lock(&self.collector.received).iter().filter(|r| r.path == endpoint).cloned().collect()
    }

    /// The `fetch` requests (JSON) received at `endpoint`.
    fn fetches(&self, endpoint: &str) -> Vec<Received> {
        self.requests(endpoint).into_iter().filter(|r| !r.beacon).collect()
    }

    async fn close(self) {
        self.browser.close().await;
    }
}

/// Opens the page (with `query`), runs `test` on it, and closes the browser
/// afterwards, also when an assertion failed (Chromium would outlive the test).
async fn on_page(query: &str, test: impl AsyncFnOnce(&Page)) {
    on_page_with(query, Router::new(), test).await;
}

/// [`on_page`], with `extra` routes served beside the page.
async fn on_page_with(query: &str, extra: Router, test: impl AsyncFnOnce(&Page)) {
    let (page, out) = Page::open_with(query, extra).await;
    let outcome = {
        let mut run = pin!(async {
            assert_eq!(out, "ready", "the page imports /pkg/index.js");
            test(&page).await
        });
        poll_fn(|cx| match panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(panic) => Poll::Ready(Err(panic)),
        })
        .await
    };
    page.close().await;
    if let Err(panic) = outcome {
        panic::resume_unwind(panic);
    }
}

/// The event ids of a batch body.
fn event_ids(body: &Value) -> Vec<String> {
    body["events"].as_array().into_iter().flatten().filter_map(|e| e["eventId"].as_str().map(str::to_owned)).collect()
}

/// The calls of a recorder (`__t.gtag`, `__t.fbq`) whose argument `i` is `v`.
fn calls_with<'a>(calls: &'a Value, i: usize, v: &str) -> Vec<&'a Value> {
    calls.as_array().into_iter().flatten().filter(|c| c[i] == v).collect()
}

#[tokio::test]
async fn bad_config_says_what_to_fix() {
    on_page("", async |page| {
        for (config, want) in [
            ("{}", "endpoint is required"),
            ("{ endpoint: 'collect' }", "endpoint must be your first-party collect URL"),
            ("{ endpoint: '/c', consentMode: 'on' }", "consentMode must be 'v2'"),
            ("{ endpoint: '/c', consentmode: 'v2' }", "unknown option 'consentmode'"),
            ("{ endpoint: '/c', conversionLabels: { purchase: 'abc' } }", "needs adsConversionId"),
            ("{ endpoint: '/c', ga4MeasurementId: 'UA-1' }", "ga4MeasurementId"),
            ("{ endpoint: '/c', cookieExpiryDays: 0 }", "cookieExpiryDays"),
            ("{ endpoint: '/c', clickIdStorage: 'local' }", "clickIdStorage"),
            ("{ endpoint: '/c', cookieDomain: 'other.example' }", "cookieDomain"),
            ("null", "config must be an object"),
        ] {
            let msg = page.error(&format!("createBrowserTracker({config})")).await;
            assert!(msg.contains(want), "{config}: {msg}");
        }
    })
    .await;
}

#[tokio::test]
async fn purchase_is_sent_to_the_endpoint_with_the_wire_contract() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/wire', siteKey: 'shop_1', consentMode: 'off' });
                t.setVisitor('v-42');
                const id = t.trackPurchase(order());
                return { id, left: await t.flush(), clientId: t.getClientId(), fetches: __t.fetches };",
            )
            .await;
        assert_eq!(out["id"], ORDER_ID, "derived from the transaction id, as the server derives it");
        assert_eq!(out["left"], 0);
        let calls = page.fetches("/c/wire");
        assert_eq!(calls.len(), 1, "{calls:?}");
        let call = &calls[0];
        assert_eq!(call.method, "POST");
        assert_eq!(call.content_type, "application/json");
        // Credentials and keepalive, as the page's fetch was asked for them.
        let init = &out["fetches"][0];
        assert_eq!(init["path"], "/c/wire");
        assert_eq!(init["method"], "POST");
        assert_eq!(init["credentials"], "include");
        assert_eq!(init["keepalive"], true);
        assert_eq!(init["contentType"], "application/json");
        let body = &call.body;
        assert_eq!(body["siteKey"], "shop_1");
        assert!(body["sentAt"].as_f64().unwrap_or(0.0) > 1.7e12, "{body}");
        let ctx = &body["context"];
        assert_eq!(ctx["v"].as_f64(), Some(1.0));
        assert_eq!(ctx["clientId"], out["clientId"]);
        assert!(ctx["clientId"].is_string(), "{ctx}");
        assert_eq!(ctx["visitorId"], "v-42");
        let ev = &body["events"][0];
        assert_eq!(ev["eventId"], ORDER_ID);
        assert_eq!(ev["name"], "purchase");
        assert_eq!(ev["transactionId"], "T_12345");
        assert_eq!(ev["value"].as_f64(), Some(30.03));
    })
    .await;
}

#[tokio::test]
async fn purchase_and_refund_need_a_transaction_id() {
    on_page("", async |page| {
        page.run("window.t = await createBrowserTracker({ endpoint: '/c/txn', consentMode: 'off' });").await;
        for input in ["{ value: 1, currency: 'USD', items: [] }", "{ transactionId: '', value: 1, currency: 'USD' }"] {
            let msg = page.error(&format!("t.trackPurchase({input})")).await;
            assert!(msg.contains("trackPurchase: transactionId is required"), "{input}: {msg}");
        }
        let msg = page.error("t.trackRefund({ value: 1, currency: 'USD' })").await;
        assert!(msg.contains("transactionId is required"), "{msg}");
        let msg = page.error("t.trackAddToCart({ value: 1, currency: 'usdx' })").await;
        assert!(msg.contains("currency"), "{msg}");
        let msg = page.error("t.trackEvent({ name: 'session_start' })").await;
        assert!(msg.contains("reserved"), "{msg}");
    })
    .await;
}

#[tokio::test]
async fn identity_cookies() {
    on_page("", async |page| {
        // No _ga: a GA4-format id is minted into Tally's own cookie, never into _ga.
        let first = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/id', consentMode: 'off' });
                const r = { cid: t.getClientId(), tallyCid: cookie('_tally_cid'), ga: cookie('_ga'), again: t.getClientId() };
                t.setVisitor('visitor 7');
                r.vid = cookie('_tally_vid');
                return r;",
            )
            .await;
        let cid = first["cid"].as_str().unwrap_or_default().to_owned();
        let (a, b) = cid.split_once('.').unwrap_or_default();
        assert!(a.parse::<u32>().is_ok() && b.parse::<u64>().is_ok(), "{cid}");
        assert_eq!(first["tallyCid"], format!("GA1.1.{cid}"));
        assert_eq!(first["ga"], Value::Null);
        assert_eq!(first["again"], cid.as_str(), "stable");
        assert_eq!(first["vid"], "visitor%207");
        page.goto("").await;
        let next = page
            .run(
                "window.next = await createBrowserTracker({ endpoint: '/c/id', consentMode: 'off', ga4MeasurementId: 'G-ABC123' });
                const r = { cid: next.getClientId(), visitor: next.getVisitorId() };
                // gtag.js's own cookies win once they exist.
                document.cookie = '_ga=GA1.1.1958185836.1757409569; Path=/';
                document.cookie = '_ga_ABC123=GS2.1.s1757409568$o3$g0$t1757409591$j37$l0$h0; Path=/';
                r.gaCid = next.getClientId();
                r.session = next.getSessionId();
                r.ctx = next.exportContext();
                return r;",
            )
            .await;
        assert_eq!(next["cid"], cid.as_str());
        assert_eq!(next["visitor"], "visitor 7");
        assert_eq!(next["gaCid"], "1958185836.1757409569");
        assert_eq!(next["session"], "1757409568");
        let ctx = &next["ctx"];
        assert_eq!(ctx["clientId"], "1958185836.1757409569");
        assert_eq!(ctx["sessionId"], "1757409568");
        assert_eq!(ctx["sessionNumber"].as_f64(), Some(3.0));
        // A visitor id must be a string.
        page.error("next.setVisitor(5)").await;
    })
    .await;
}

/// A client id the tracker mints (no `_ga` cookie yet) has a random part of a
/// full 32 bits, like GA4's own, whichever call mints it first: two visitors
/// arriving in the same second must not share one.
#[tokio::test]
async fn minted_client_ids_are_random_across_visitors() {
    on_page("", async |page| {
        let out = page
            .run(
                "const ids = [];
                for (let i = 0; i < 20; i++) {
                  for (const c of document.cookie.split(';')) {
                    const n = c.split('=')[0].trim();
                    if (n) document.cookie = n + '=; Max-Age=0; Path=/';
                  }
                  localStorage.clear();
                  const t = await createBrowserTracker({ endpoint: '/c/cid', consentMode: 'off' });
                  // Half mint through a batch's envelope, half through getClientId.
                  if (i % 2) { t.trackAddToCart(cart()); await t.flush(); }
                  ids.push(t.getClientId());
                  t.destroy();
                }
                return ids;",
            )
            .await;
        let random: Vec<u64> = out
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str()?.split('.').next()?.parse().ok())
            .collect();
        assert_eq!(random.len(), 20, "{out}");
        let mut distinct = random.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 20, "20 visitors, 20 random parts: {out}");
        // For 32 random bits, each of these has a chance of 1 in 2^24 or less; 8 random bits fail them.
        assert!(random.iter().filter(|r| **r < 1 << 24).count() <= 2, "{out}");
        assert!(random.iter().filter(|r| **r % (1 << 24) == 0).count() <= 1, "{out}");
        // Sent in the envelope as minted.
        let sent: Vec<Value> = page.fetches("/c/cid").iter().map(|c| c.body["context"]["clientId"].clone()).collect();
        assert_eq!(sent.len(), 10, "{sent:?}");
        assert!(sent.iter().all(|c| out.as_array().is_some_and(|ids| ids.contains(c))), "{sent:?} {out}");
    })
    .await;
}

/// Input that nests deeper than the module reads is still that input: a
/// purchase with a deeply nested extra field is the purchase (the field is
/// ignored like any unknown one), a deeply nested param is refused by name.
#[tokio::test]
async fn deeply_nested_input_is_read_as_given_not_as_an_empty_call() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/deep', consentMode: 'off' });
                let deep = 1;
                for (let i = 0; i < 50; i++) deep = { a: [deep] };
                const id = t.trackPurchase({ ...order(), items: [{ itemId: 'SKU_1', price: 10.01, quantity: 3, extra: deep }] });
                let error = 'accepted';
                try { t.trackEvent({ name: 'custom', params: { nested: deep } }); } catch (e) { error = e.message; }
                return { id, error, left: await t.flush() };",
            )
            .await;
        assert_eq!(out["id"], ORDER_ID, "the purchase's own id: {out}");
        assert_eq!(out["error"], "[tally] trackEvent: params is invalid: values must be strings, numbers or booleans");
        assert_eq!(out["left"], 0, "{out}");
        let events: Vec<Value> = page
            .fetches("/c/deep")
            .iter()
            .flat_map(|c| c.body["events"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["name"], "purchase");
        assert_eq!(events[0]["transactionId"], "T_12345");
    })
    .await;
}

/// What JSON cannot carry (NaN, ±Infinity, a function) is refused by name, not
/// sent as if the page had left it out: `value: NaN` is a mistake to fix, and
/// a purchase without its value would count as one worth nothing. The config's
/// `onDrop` is still taken as the function it is.
#[tokio::test]
async fn values_json_cannot_carry_are_refused_by_name() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/nan', consentMode: 'off', onDrop: () => {} });
                const tryIt = (f) => { try { f(); return 'accepted'; } catch (e) { return e.message; } };
                const item = { itemId: 'SKU_1', price: 10, quantity: 1 };
                return {
                    value: tryIt(() => t.trackAddToCart({ value: NaN, currency: 'EUR', items: [item] })),
                    price: tryIt(() => t.trackAddToCart({ value: 10, currency: 'EUR', items: [{ ...item, price: Infinity }] })),
                    param: tryIt(() => t.trackEvent({ name: 'custom', params: { at: -Infinity } })),
                    fn: tryIt(() => t.trackEvent({ name: 'custom', params: { cb: () => 1 } })),
                    config: await createBrowserTracker({ endpoint: '/c/nan', maxQueueBytes: NaN }).then(() => 'accepted', (e) => e.message),
                    left: await t.flush(),
                };",
            )
            .await;
        assert_eq!(out["value"], "[tally] trackAddToCart: value is invalid: expected a number such as 12.5", "{out}");
        assert_eq!(out["price"], "[tally] trackAddToCart: items[].price is invalid: expected a number such as 12.5");
        let params = "[tally] trackEvent: params is invalid: values must be strings, numbers or booleans";
        assert_eq!(out["param"], params);
        assert_eq!(out["fn"], params);
        assert_eq!(out["config"], "[tally] createBrowserTracker: maxQueueBytes must be a number of bytes");
        assert_eq!(out["left"], 0);
        assert!(page.fetches("/c/nan").is_empty(), "nothing was sent");
    })
    .await;
}

/// A client id minted without `_ga` is kept in `_tally_cid` as soon as the
/// tracker uses it (a batch), so the next page has the same visitor.
#[tokio::test]
async fn a_minted_client_id_is_kept_for_the_next_page() {
    on_page("", async |page| {
        let first = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/keep', consentMode: 'off' });
                t.trackAddToCart(cart());
                return { left: await t.flush(), cookie: cookie('_tally_cid') };",
            )
            .await;
        assert_eq!(first["left"], 0, "{first}");
        let sent = page.fetches("/c/keep")[0].body["context"]["clientId"].clone();
        assert_eq!(first["cookie"].as_str().map(|c| c.trim_start_matches("GA1.1.")), sent.as_str(), "{first}");
        page.goto("").await;
        let next = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/keep', consentMode: 'off' });
                return t.getClientId();",
            )
            .await;
        assert_eq!(next, sent, "the next page is the same visitor");
    })
    .await;
}

/// When `localStorage` refuses writes (quota, blocked), the tracker keeps
/// its queue in memory and still sends everything; and a `gtag`, `fbq` or
/// `onDrop` that throws cannot stop it; `clickIdStorage: 'memory'` writes
/// no cookie.
#[tokio::test]
async fn storage_failures_and_throwing_page_functions_lose_nothing() {
    on_page("?gclid=MEM", async |page| {
        let out = page
            .run(
                "Storage.prototype.setItem = function () { throw new DOMException('full', 'QuotaExceededError'); };
                window.gtag = () => { throw new Error('gtag broke'); };
                window.fbq = () => { throw new Error('fbq broke'); };
                const t = await createBrowserTracker({ endpoint: '/c/full', clickIdStorage: 'memory',
                  ga4MeasurementId: 'G-ABC123', metaPixelId: '123456789012345', onDrop: () => { throw new Error('onDrop broke'); } });
                const ids = [t.trackAddToCart(cart()), t.trackPurchase(order())];
                t.updateConsent({ analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' });
                const queued = t.getQueueSize();
                const left = await t.flush();
                const again = t.trackPurchase(order());
                return { ids, queued, left, again, size: t.getQueueSize(), cookies: document.cookie, clicks: t.getClickIdentifiers() };",
            )
            .await;
        assert_eq!(out["queued"], 2, "{out}");
        assert_eq!(out["left"], 0, "{out}");
        let sent: Vec<String> = page.fetches("/c/full").iter().flat_map(|c| event_ids(&c.body)).collect();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(out["ids"].as_array().is_some_and(|ids| ids.iter().all(|i| sent.contains(&i.as_str().unwrap_or("?").to_owned()))));
        assert_eq!(out["again"], out["ids"][1], "{out}");
        assert_eq!(out["size"], 0, "the repeat purchase is remembered in memory: {out}");
        assert_eq!(out["clicks"]["gclid"], "MEM", "{out}");
        assert!(!out["cookies"].as_str().unwrap_or_default().contains("_tally_gclid"), "memory storage: {out}");
    })
    .await;
}

#[tokio::test]
async fn consent_v2_holds_everything_until_a_decision() {
    on_page("", async |page| {
        let before = page
            .run(
                "window.t = await createBrowserTracker({ endpoint: '/c/v2', metaPixelId: '123456789' });
                window.gtag = function () { __t.gtag.push(Array.from(arguments)); };
                const r = { adStorage: t.getConsent().ad_storage };
                r.id = t.trackAddToCart(cart());
                t.setVisitor('v1');
                t.getClientId();
                r.left = await t.flush();
                r.cookies = document.cookie;
                r.storage = localStorage.length;
                r.gtag = __t.gtag.length;
                return r;",
            )
            .await;
        assert_eq!(before["adStorage"], "unknown");
        assert_eq!(before["left"], 1, "buffered, not sent");
        assert!(page.requests("/c/v2").is_empty());
        assert_eq!(before["cookies"], "", "no cookie before a decision");
        assert_eq!(before["storage"], 0, "no storage before a decision");
        assert_eq!(before["gtag"], 0, "gtag not called before a decision");
        // Analytics granted, ads denied: the buffered event goes, without ad data.
        let after = page
            .run(
                "t.updateConsent({ analytics_storage: 'granted', ad_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied' });
                return { left: await t.flush(), cid: cookie('_tally_cid'), vid: cookie('_tally_vid'), gtag: __t.gtag,
                  stored: localStorage.getItem('_tally_consent') };",
            )
            .await;
        assert_eq!(after["left"], 0);
        let calls = page.fetches("/c/v2");
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].body["events"][0]["eventId"], before["id"]);
        let ctx = &calls[0].body["context"];
        assert_eq!(ctx["consent"]["analytics_storage"], "granted");
        assert!(ctx["clientId"].is_string(), "{ctx}");
        assert!(after["cid"].is_string() && after["vid"].is_string(), "analytics storage granted: {after}");
        let gtag = &after["gtag"];
        assert_eq!(gtag[0][0], "consent", "decision forwarded to gtag");
        assert!(!calls_with(gtag, 1, "add_to_cart").is_empty(), "GA4 allowed");
        assert!(calls_with(gtag, 1, "conversion").is_empty());
        assert_eq!(after["stored"], "dgdd");
        // The next page remembers the decision and sends right away.
        page.goto("").await;
        let next = page
            .run(
                "window.gtag = function () { __t.gtag.push(Array.from(arguments)); };
                const next = await createBrowserTracker({ endpoint: '/c/v2' });
                const analytics = next.getConsent().analytics_storage;
                next.trackAddToCart(cart());
                return { analytics, left: await next.flush() };",
            )
            .await;
        assert_eq!(next["analytics"], "granted");
        assert_eq!(next["left"], 0);
        assert_eq!(page.fetches("/c/v2").len(), 2);
    })
    .await;
}

/// A decision releases every event that waited for it, not only the last one,
/// and remembers every purchase among them as sent (a reload sends none again).
#[tokio::test]
async fn every_event_waiting_for_the_decision_is_sent_once() {
    on_page("", async |page| {
        let first = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/many' });
                const ids = [t.trackViewItem(cart()), t.trackAddToCart(cart()),
                  t.trackPurchase(order()), t.trackPurchase({ ...order(), transactionId: 'T_2' })];
                const waiting = t.getQueueSize();
                t.updateConsent({ analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' });
                const queued = t.getQueueSize();
                return { ids, waiting, queued, left: await t.flush() };",
            )
            .await;
        assert_eq!(first["waiting"], 4, "{first}");
        assert_eq!(first["queued"], 4, "every waiting event is queued by the decision: {first}");
        assert_eq!(first["left"], 0, "{first}");
        let mut sent: Vec<String> = page.fetches("/c/many").iter().flat_map(|c| event_ids(&c.body)).collect();
        sent.sort();
        let mut want: Vec<String> =
            first["ids"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        want.sort();
        assert_eq!(sent, want, "each of the four reached the collector once");
        let before = page.fetches("/c/many").len();
        // The thank-you page reloads: neither purchase goes again.
        page.goto("").await;
        let again = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/many' });
                t.trackPurchase(order());
                t.trackPurchase({ ...order(), transactionId: 'T_2' });
                return { size: t.getQueueSize(), left: await t.flush() };",
            )
            .await;
        assert_eq!(again["size"], 0, "both purchases are remembered as sent: {again}");
        assert_eq!(page.fetches("/c/many").len(), before);
    })
    .await;
}

/// A tab that answers its banner later adds its events to what another tab
/// stored, instead of writing over it (two trackers share the page's storage
/// as two tabs do).
#[tokio::test]
async fn a_later_decision_in_another_tab_keeps_what_this_tab_stored() {
    on_page("", async |page| {
        let out = page
            .run(
                "__t.down = true;
                const all = { analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' };
                const b = await createBrowserTracker({ endpoint: '/c/tabs' }); // opened first, banner open
                const a = await createBrowserTracker({ endpoint: '/c/tabs' });
                a.updateConsent(all);
                const ids = [a.trackPurchase({ ...order(), transactionId: 'ORD-A' })];
                await a.flush(); // the collector is down: it stays stored
                ids.push(b.trackAddToCart(cart()), b.trackPurchase({ ...order(), transactionId: 'ORD-B' }));
                b.updateConsent(all);
                const stored = (localStorage.getItem('_tally_q') || '').split('\\n').filter(Boolean).map((l) => l.split('\\t')[0]);
                const sent = localStorage.getItem('_tally_sent') || '';
                __t.down = false;
                b.destroy();
                const left = await a.flush();
                return { ids, stored, sent, left };",
            )
            .await;
        let ids: Vec<&str> = out["ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let stored: Vec<&str> = out["stored"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(ids.iter().all(|i| stored.contains(i)), "every tab's events are stored: {out}");
        let sent = out["sent"].as_str().unwrap_or_default();
        assert!(sent.contains(ids[0]) && sent.contains(ids[2]), "both purchases remembered: {out}");
        assert_eq!(out["left"], 0, "{out}");
        let delivered: Vec<String> = page.fetches("/c/tabs").iter().flat_map(|c| event_ids(&c.body)).collect();
        assert!(ids.iter().all(|i| delivered.iter().any(|d| d == i)), "{delivered:?} {out}");
    })
    .await;
}

#[tokio::test]
async fn only_one_tab_drains_the_shared_queue() {
    on_page("", async |page| {
        let left = page
            .run(
                "localStorage.setItem('_tally_lease', 'othertab:' + (Date.now() + 60000));
                window.t = await createBrowserTracker({ endpoint: '/c/lease', consentMode: 'off' });
                t.trackAddToCart(cart());
                return await t.flush();",
            )
            .await;
        assert_eq!(left, 1, "another tab holds the lease");
        assert!(page.requests("/c/lease").is_empty());
        let left = page.run("localStorage.setItem('_tally_lease', 'othertab:1'); return await t.flush();").await;
        assert_eq!(left, 0, "expired lease: this tab drains");
        assert_eq!(page.fetches("/c/lease").len(), 1);
        // With nothing left to send, the lease is handed back at once, not left to expire.
        let lease = page.run("return localStorage.getItem('_tally_lease');").await;
        assert_eq!(lease, Value::Null, "the drained tab still holds the lease");
    })
    .await;
}

#[tokio::test]
async fn consent_denied_discards_and_sends_nothing() {
    on_page("", async |page| {
        let out = page
            .run(
                "window.fbq = function () { __t.fbq.push(Array.from(arguments)); };
                const t = await createBrowserTracker({ endpoint: '/c/deny',
                  onDrop: (d) => (__t.dropped = (__t.dropped || []).concat([d])) });
                const id = t.trackPurchase(order());
                t.updateConsent({ ad_storage: false, analytics_storage: false, ad_user_data: false, ad_personalization: false });
                const left1 = await t.flush();
                t.trackAddToCart(cart());
                const left2 = await t.flush();
                return { id, left1, left2, dropped: t.getDroppedEvents(), onDrop: (__t.dropped || []).length,
                  fbq: __t.fbq, cid: cookie('_tally_cid') };",
            )
            .await;
        assert_eq!(out["left1"], 0);
        assert_eq!(out["left2"], 0);
        assert!(page.requests("/c/deny").is_empty());
        let dropped = out["dropped"].as_array().cloned().unwrap_or_default();
        assert_eq!(dropped.len(), 2, "{out}");
        assert_eq!(dropped[0]["eventId"], out["id"]);
        assert_eq!(dropped[0]["reason"], "consent_denied");
        assert_eq!(out["onDrop"], 2, "onDrop called");
        let fbq = out["fbq"].as_array().cloned().unwrap_or_default();
        assert_eq!(fbq.len(), 1, "{fbq:?}");
        assert_eq!(fbq[0][1], "revoke");
        assert_eq!(out["cid"], Value::Null);
    })
    .await;
}

#[tokio::test]
async fn click_ids_from_url_and_cookies() {
    on_page("?gclid=FROMURL&fbclid=IwAR2F4&ttclid=E.C.P.x&rtid=rokt123&utm_source=x", async |page| {
        let out = page
            .run(
                "document.cookie = '_gcl_aw=GCL.1750842800.FROMCOOKIE; Path=/';
                document.cookie = '_fbp=fb.1.1596403881668.1116446470; Path=/';
                const t = await createBrowserTracker({ endpoint: '/c/click', consentMode: 'off', cookieExpiryDays: 30 });
                return { ids: t.getClickIdentifiers(), gclid: cookie('_tally_gclid'), rtid: cookie('_tally_rtid') };",
            )
            .await;
        let ids = &out["ids"];
        assert_eq!(ids["gclid"], "FROMURL", "URL wins over _gcl_aw");
        let fbc = ids["fbc"].as_str().unwrap_or_default();
        assert!(fbc.starts_with("fb.1."), "{fbc}");
        assert!(fbc.ends_with(".IwAR2F4"), "{fbc}");
        assert_eq!(ids["fbp"], "fb.1.1596403881668.1116446470");
        assert_eq!(ids["ttclid"], "E.C.P.x");
        assert_eq!(ids["rtid"], "rokt123");
        assert_eq!(out["gclid"], "FROMURL");
        assert_eq!(out["rtid"], "rokt123");
        // Next page without click parameters: Google's cookie, then Tally's.
        page.goto("").await;
        let out = page
            .run(
                "const next = await createBrowserTracker({ endpoint: '/c/click', consentMode: 'off' });
                const r = { next: next.getClickIdentifiers() };
                document.cookie = '_gcl_aw=; Max-Age=0; Path=/';
                const third = await createBrowserTracker({ endpoint: '/c/click', consentMode: 'off' });
                r.third = third.getClickIdentifiers();
                const none = await createBrowserTracker({ endpoint: '/c/click', consentMode: 'off', clickIdStorage: 'none' });
                r.none = none.getClickIdentifiers();
                return r;",
            )
            .await;
        assert_eq!(out["next"]["gclid"], "FROMCOOKIE");
        assert_eq!(out["third"]["gclid"], "FROMURL");
        assert_eq!(out["third"]["rtid"], "rokt123");
        assert!(out["none"]["gclid"].is_null(), "{out}");
    })
    .await;
}

#[tokio::test]
async fn every_click_id_is_captured_stored_and_exported() {
    // Every URL click id of the core's table (fbclid becomes fbc, checked above).
    let ids: Vec<(&str, String)> = tally_core::click_ids::CLICK_IDS
        .iter()
        .filter(|k| !k.url_param.is_empty() && k.key != "fbc")
        .map(|k| (k.url_param, format!("V{}", k.key)))
        .collect();
    assert!(ids.iter().any(|(k, _)| *k == "li_fat_id") && ids.iter().any(|(k, _)| *k == "ScCid"));
    let query: Vec<String> = ids.iter().map(|(k, v)| format!("{k}={v}")).collect();
    on_page(&format!("?{}", query.join("&")), async |page| {
        let keys = json!(ids.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        let out = page
            .run(&format!(
                "const t = await createBrowserTracker({{ endpoint: '/c/clicks' }});
                const before = cookie('_tally_msclkid');
                t.updateConsent({{ analytics_storage: 'granted', ad_storage: 'granted' }});
                const cookies = Object.fromEntries({keys}.map((k) => [k, cookie('_tally_' + k)]));
                return {{ before, got: t.getClickIdentifiers(), ctx: t.exportContext().clickIds, cookies }};"
            ))
            .await;
        assert_eq!(out["before"], Value::Null, "nothing stored before ad_storage");
        for (k, v) in &ids {
            assert_eq!(out["got"][k], v.as_str(), "{k}");
            assert_eq!(out["ctx"][k], v.as_str(), "{k} in the envelope");
            assert_eq!(out["cookies"][k], v.as_str(), "{k} cookie");
        }
        page.goto("").await;
        let out = page
            .run(
                "const next = await createBrowserTracker({ endpoint: '/c/clicks' });
                next.updateConsent({ ad_storage: 'denied' });
                return { li: cookie('_tally_li_fat_id'), ctx: next.exportContext().clickIds };",
            )
            .await;
        assert_eq!(out["li"], Value::Null, "denying ad_storage removes them");
        assert!(out["ctx"]["msclkid"].is_null(), "{out}");
    })
    .await;
}

#[tokio::test]
async fn ad_data_waits_for_ad_storage() {
    on_page("?gclid=G1", async |page| {
        let out = page
            .run(
                "window.t = await createBrowserTracker({ endpoint: '/c/ads' });
                t.updateConsent({ analytics_storage: 'granted', ad_storage: 'denied' });
                const r = { gclid: cookie('_tally_gclid') };
                const ctx = t.exportContext({ userData: { email: 'test@example.com' } });
                r.clickIdKeys = Reflect.ownKeys(ctx.clickIds).length;
                r.noHashed = ctx.hashedUserData === undefined;
                t.trackLead();
                await t.flush();
                return r;",
            )
            .await;
        assert_eq!(out["gclid"], Value::Null, "no ad cookie without ad_storage");
        assert_eq!(out["clickIdKeys"], 0);
        assert_eq!(out["noHashed"], true, "no user data without ad_user_data");
        let calls = page.fetches("/c/ads");
        let raw = calls.first().map(|c| c.raw.clone()).unwrap_or_default();
        assert!(!raw.is_empty(), "the lead was sent");
        assert!(!raw.contains("G1") && !raw.contains("hashedUserData"), "{raw}");
        let out = page
            .run(
                "t.updateConsent({ ad_storage: 'granted', ad_user_data: 'granted' });
                const r = { gclid: cookie('_tally_gclid') };
                const ctx = t.exportContext({ userData: { email: 'Test@Example.com ' } });
                r.ctxGclid = ctx.clickIds.gclid;
                r.email = ctx.hashedUserData?.google?.sha256_email_address?.[0];
                t.updateConsent({ ad_storage: 'denied' });
                r.gclidAfter = cookie('_tally_gclid');
                return r;",
            )
            .await;
        assert_eq!(out["gclid"], "G1");
        assert_eq!(out["ctxGclid"], "G1");
        assert_eq!(out["email"], "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b");
        assert_eq!(out["gclidAfter"], Value::Null, "revoking ad_storage removes Tally's ad cookies");
    })
    .await;
}

#[tokio::test]
async fn queue_survives_a_reload_and_a_purchase_is_sent_once() {
    on_page("", async |page| {
        let first = page
            .run(
                "__t.down = true;
                const t = await createBrowserTracker({ endpoint: '/c/persist', consentMode: 'off' });
                const id = t.trackPurchase(order());
                const left = await t.flush();
                // The page is left next, and the browser refuses its beacon.
                __t.beaconOk = false;
                return { id, left, stored: localStorage.getItem('_tally_q') };",
            )
            .await;
        let id = first["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(first["left"], 1, "endpoint down: kept");
        assert!(first["stored"].as_str().is_some_and(|s| s.contains(&id)), "{first}");
        // The thank-you page reloads, with the collector reachable.
        page.goto("").await;
        let second = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/persist', consentMode: 'off' });
                const size = t.getQueueSize();
                const again = t.trackPurchase(order());
                return { size, again, left: await t.flush(), stored: localStorage.getItem('_tally_q') };",
            )
            .await;
        assert_eq!(second["size"], 1);
        assert_eq!(second["again"], id.as_str(), "same id on reload");
        assert_eq!(second["left"], 0);
        let sent: Vec<String> = page.fetches("/c/persist").iter().flat_map(|c| event_ids(&c.body)).collect();
        assert!(sent.contains(&id), "delivered from the next page: {sent:?}");
        let before = page.fetches("/c/persist").len();
        assert_eq!(second["stored"], Value::Null);
        // A third load of the thank-you page: not sent again.
        page.goto("").await;
        let third = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/persist', consentMode: 'off' });
                t.trackPurchase(order());
                const size = t.getQueueSize();
                return { size, left: await t.flush(), ctx: t.exportContext() };",
            )
            .await;
        assert_eq!(third["size"], 0);
        assert_eq!(third["left"], 0);
        assert_eq!(page.fetches("/c/persist").len(), before, "the reload sends no second purchase");
        assert_eq!(third["ctx"]["eventIds"][0], id.as_str());
    })
    .await;
}

/// `debug: true` (or `setDebug`, or `?tally_debug=1`) logs what the tracker
/// does and why, with the `[tally]` prefix; `setDebug(false)` stops it.
#[tokio::test]
async fn debug_logging_says_what_happens_and_why() {
    on_page("", async |page| {
        let out = page
            .run(
                "const logs = [];
                for (const k of ['log', 'warn']) { const f = console[k]; console[k] = (...a) => { logs.push(a.map(String).join(' ')); f.apply(console, a); }; }
                const t = await createBrowserTracker({ endpoint: '/c/debug', debug: true });
                const waiting = t.trackAddToCart(cart());
                t.updateConsent({ analytics_storage: 'granted', ad_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' });
                const order1 = t.trackPurchase(order());
                t.trackPurchase(order());
                await t.flush();
                t.setDebug(false);
                const quiet = logs.length;
                t.trackAddToCart(cart());
                await t.flush();
                window.first = t;
                return { logs, waiting, order1, quiet };",
            )
            .await;
        let logs: Vec<&str> = out["logs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let has = |what: &str| logs.iter().any(|l| l.starts_with("[tally]") && l.contains(what));
        assert!(has("tracker ready"), "{logs:?}");
        let waiting = out["waiting"].as_str().unwrap_or("?");
        assert!(has(&format!("waiting for a consent decision {waiting}")), "{logs:?}");
        assert!(has("consent") && has("tracked"), "{logs:?}");
        let order1 = out["order1"].as_str().unwrap_or("?");
        assert!(has(&format!("already tracked in this browser; not sent again {order1}")), "{logs:?}");
        assert_eq!(out["quiet"], logs.len(), "nothing logged after setDebug(false): {logs:?}");
        // A collector that is down: the retry is logged (the first tracker hands back its drain lease).
        page.set_mode(Mode::Status(503));
        let retry = page
            .run(
                "first.destroy();
                const logs = [];
                const f = console.log; console.log = (...a) => { logs.push(a.map(String).join(' ')); f.apply(console, a); };
                const t = await createBrowserTracker({ endpoint: '/c/debug', consentMode: 'off', debug: true });
                t.trackAddToCart(cart());
                await t.flush();
                return logs;",
            )
            .await;
        assert!(retry.to_string().contains("collector unavailable; retrying in ms"), "{retry}");
    })
    .await;
}

#[tokio::test]
async fn retries_server_errors_and_drops_client_errors() {
    on_page("", async |page| {
        page.run("window.t = await createBrowserTracker({ endpoint: '/c/retry', consentMode: 'off' });").await;
        page.set_mode(Mode::Status(503));
        let out = page.run("const id = t.trackAddToCart(cart()); return { id, left: await t.flush() };").await;
        let id = out["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(out["left"], 1);
        page.set_mode(Mode::Status(429));
        assert_eq!(page.run("return await t.flush();").await, 1);
        assert_eq!(page.run("return t.getDroppedEvents().length;").await, 0);
        page.set_mode(Mode::Accept);
        assert_eq!(page.run("return await t.flush();").await, 0);
        let calls = page.fetches("/c/retry");
        assert!(calls.len() >= 3, "{calls:?}");
        assert!(calls.iter().all(|c| c.body["events"][0]["eventId"] == id.as_str()), "{calls:?}");
        // Automatic retry after backoff, without a flush.
        let size = page
            .run(
                "__t.down = true;
                t.trackViewItem(cart());
                await sleep(200);
                __t.down = false;
                for (let i = 0; i < 40 && t.getQueueSize() !== 0; i++) await sleep(100);
                return t.getQueueSize();",
            )
            .await;
        assert_eq!(size, 0, "retried with backoff");
        // A 4xx drops the batch with a visible reason.
        page.set_mode(Mode::Status(400));
        let out = page
            .run("const bad = t.trackAddToCart(cart()); return { bad, left: await t.flush(), d: t.getDroppedEvents()[0] };")
            .await;
        assert_eq!(out["left"], 0);
        assert_eq!(out["d"]["eventId"], out["bad"]);
        assert_eq!(out["d"]["reason"], "http_400");
        // Per-event verdicts.
        page.set_mode(Mode::Invalid);
        let out = page
            .run("const inv = t.trackAddToCart(cart()); return { inv, left: await t.flush(), d: t.getDroppedEvents()[1] };")
            .await;
        assert_eq!(out["left"], 0);
        let d = &out["d"];
        assert_eq!(d["eventId"], out["inv"]);
        assert_eq!(d["reason"], "invalid");
        assert_eq!(d["field"], "value");
        assert_eq!(d["detail"], "too big");
    })
    .await;
}

/// `tally-server`'s collector refusing a batch because the page's origin is
/// not in its `allowed_origins` (as behind a proxy that changes the host):
/// `flush()` still resolves to 0, but each dropped event carries the
/// collector's reason, in `getDroppedEvents()`, in `onDrop` and in the debug log.
#[tokio::test]
async fn a_refused_batch_says_why() {
    let sandbox = tally_sandbox::Sandbox::new();
    let ga4 = sandbox.serve("127.0.0.1:0").await.expect("sandbox");
    let tracker = tally_server::ServerTracker::builder()
        .ga4(tally_server::Ga4Config::new("G-TEST123", "s").base_url(format!("{}/ga4", ga4.base_url)))
        .build()
        .expect("server tracker");
    let config = tally_server::collector::CollectorConfig {
        site_keys: ["site-1".to_owned()].into(),
        allowed_origins: ["https://shop.example".to_owned()].into(),
        ..tally_server::collector::CollectorConfig::default()
    };
    let collector = Router::new().nest("/real", tally_server::collector::router(tracker, config));
    on_page_with("", collector, async |page| {
        let out = page
            .run(
                "const logs = [];
                const f = console.warn;
                console.warn = (...a) => { logs.push(a.map((x) => typeof x === 'string' ? x : JSON.stringify(x)).join(' ')); f.apply(console, a); };
                const seen = [];
                const t = await createBrowserTracker({ endpoint: '/real/collect', siteKey: 'site-1', consentMode: 'off',
                  debug: true, onDrop: (d) => seen.push(d) });
                const id = t.trackAddToCart(cart());
                const left = await t.flush();
                return { id, left, dropped: t.getDroppedEvents(), seen, logs };",
            )
            .await;
        assert_eq!(out["left"], 0, "{out}");
        let d = &out["dropped"][0];
        assert_eq!(d["eventId"], out["id"], "{out}");
        assert_eq!(d["reason"], "http_403", "{out}");
        assert_eq!(d["detail"], "origin not allowed", "{out}");
        assert_eq!(&out["seen"][0], d, "onDrop gets the same drop");
        let logs = out["logs"].to_string();
        assert!(logs.contains("event dropped") && logs.contains("origin not allowed"), "{logs}");
    })
    .await;
}

#[tokio::test]
async fn page_hide_flushes_with_send_beacon() {
    on_page("", async |page| {
        let out = page
            .run(
                "__t.down = true;
                window.t = await createBrowserTracker({ endpoint: '/c/beacon', siteKey: 'k', consentMode: 'off' });
                const a = t.trackAddToCart(cart());
                const b = t.trackBeginCheckout(cart());
                // Hidden as a browser reports it: both properties, as a tab switch sets them.
                Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
                Object.defineProperty(document, 'hidden', { value: true, configurable: true });
                document.dispatchEvent(new Event('visibilitychange'));
                delete document.visibilityState;
                delete document.hidden;
                window.dispatchEvent(new Event('pagehide'));
                return { a, b };",
            )
            .await;
        let beacons = || page.requests("/c/beacon").into_iter().filter(|r| r.beacon).collect::<Vec<_>>();
        assert!(eventually(10, || !beacons().is_empty()).await, "no beacon reached the collector");
        // Time for a second beacon to arrive, if one was sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let beacons = beacons();
        assert_eq!(beacons.len(), 1, "one beacon; pagehide does not repeat what visibilitychange sent: {beacons:?}");
        let body = &beacons[0].body;
        assert_eq!(body["siteKey"], "k");
        assert_eq!(event_ids(body), [out["a"].as_str().unwrap_or("a"), out["b"].as_str().unwrap_or("b")]);
        assert!(beacons[0].raw.len() <= 64 * 1024);
        // Not confirmed: still queued for the next page (the server deduplicates).
        assert_eq!(page.run("return t.getQueueSize();").await, 2);
    })
    .await;
}

#[tokio::test]
async fn gtag_and_fbq_are_called_as_functions_with_the_event_id() {
    on_page("", async |page| {
        let out = page
            .run(
                "window.gtag = function () { __t.gtag.push(Array.from(arguments)); };
                window.fbq = function () { __t.fbq.push(Array.from(arguments)); };
                const t = await createBrowserTracker({ endpoint: '/c/bridge', consentMode: 'off', ga4MeasurementId: 'G-ABC123',
                  adsConversionId: 'AW-123456789', conversionLabels: { purchase: 'PuRcH_1', lead: 'LeAd_2' }, metaPixelId: '1234567890' });
                const r = { id: t.trackPurchase(order()) };
                r.gtag = __t.gtag.slice();
                r.fbq = __t.fbq.slice();
                r.noDataLayer = window.dataLayer === undefined;
                // Consent forwarding.
                t.updateConsent({ ad_storage: 'granted', ad_user_data: 'granted', functionality_storage: 'granted' });
                r.gtagAfter = __t.gtag.slice();
                r.fbqAfter = __t.fbq.slice();
                // A conversion goes to Ads only.
                r.lead = t.trackConversion({ label: 'lead', value: 5, currency: 'EUR' });
                r.last = __t.gtag[__t.gtag.length - 1];
                await t.flush();
                return r;",
            )
            .await;
        let ga4 = calls_with(&out["gtag"], 1, "purchase");
        let p = &ga4.first().expect("gtag purchase")[2];
        assert_eq!(p["transaction_id"], "T_12345", "the shop's order id");
        assert_eq!(p["send_to"], "G-ABC123");
        assert_eq!(p["value"].as_f64(), Some(30.03));
        assert_eq!(p["items"][0]["item_id"], "SKU_1");
        let conv = calls_with(&out["gtag"], 1, "conversion");
        let conv = &conv.first().expect("ads conversion")[2];
        assert_eq!(conv["send_to"], "AW-123456789/PuRcH_1");
        assert_eq!(conv["transaction_id"], "T_12345");
        let fbq = out["fbq"].as_array().cloned().unwrap_or_default();
        assert_eq!(fbq.len(), 1, "{fbq:?}");
        assert_eq!(fbq[0][0], "trackSingle");
        assert_eq!(fbq[0][1], "1234567890");
        assert_eq!(fbq[0][2], "Purchase");
        assert_eq!(fbq[0][4]["eventID"], out["id"]);
        assert_eq!(out["noDataLayer"], true, "nothing pushed onto dataLayer");
        let consent = calls_with(&out["gtagAfter"], 0, "consent");
        let c = consent.first().expect("gtag consent");
        assert_eq!(c[1], "update");
        assert_eq!(c[2]["functionality_storage"], "granted");
        assert_eq!(out["fbqAfter"][1][1], "grant");
        assert_eq!(out["last"][2]["send_to"], "AW-123456789/LeAd_2");
        assert_eq!(out["last"][2]["transaction_id"], out["lead"]);
    })
    .await;
}

#[tokio::test]
async fn page_views_are_not_doubled() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/pv', consentMode: 'off' });
                return [t.trackPageView(), t.trackPageView(), t.trackPageView({ path: '/other' })];",
            )
            .await;
        assert!(out[0].is_string(), "{out}");
        assert_eq!(out[0], out[1]);
        assert_ne!(out[0], out[2]);
    })
    .await;
}

#[tokio::test]
async fn exported_hash_functions() {
    on_page("", async |page| {
        let out = page
            .run(
                r"const h = await hashUserData({ email: 'Jane.Doe@gmail.com', firstName: 'Ren\u00e9' });
                // Composed and decomposed input hash the same (NFC in the browser).
                const d = await hashUserData({ firstName: 'Rene\u0301' });
                const city = await hashUserData({ address: { city: ' S\u00e3o  Paulo ' } });
                let rejected = false;
                try { await hashUserData({ email: 5 }); } catch (e) { rejected = e.message; }
                return { h, d, city, rejected, sha: await sha256Hex('test@example.com') };",
            )
            .await;
        let h = &out["h"];
        assert_eq!(
            h["google"]["sha256_email_address"][0],
            "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
        );
        assert_eq!(h["meta"]["em"][0], "831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982");
        let first = |v: &Value| v["google"]["address"][0]["sha256_first_name"].clone();
        assert!(first(h).is_string(), "{out}");
        assert_eq!(first(h), first(&out["d"]));
        assert_eq!(out["city"]["google"]["address"][0]["city"], "s\u{e3}o paulo", "Google's city is plain");
        assert_eq!(out["rejected"], "[tally] userData.email is invalid: expected a string");
        assert_eq!(out["sha"], "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b");
    })
    .await;
}

/// `normalizeAndHash` gives the one value `hashUserData` gives each destination
/// for that field: hashed, or plain where Google takes it plain, or nothing
/// where the destination takes no such field; a wrong kind or destination is
/// named.
#[tokio::test]
async fn normalize_and_hash_gives_what_each_destination_gets() {
    on_page("", async |page| {
        let out = page
            .run(
                r"const n = normalizeAndHash;
                const error = async (f) => { try { await f(); return 'accepted'; } catch (e) { return e.message; } };
                return {
                  email: [await n('email', 'Jane.Doe@gmail.com'), await n('email', 'Jane.Doe@gmail.com', 'meta')],
                  phone: [await n('phone', '+1 (650) 555-0100'), await n('phone', '+1 (650) 555-0100', 'meta')],
                  phoneAll: await hashUserData({ phone: '+1 (650) 555-0100' }),
                  first: [await n('firstName', ' Jane '), await sha256Hex('jane')],
                  city: [await n('city', ' São  Paulo '), await n('city', ' São  Paulo ', 'meta')],
                  cityAll: await hashUserData({ address: { city: ' São  Paulo ' } }),
                  none: [await n('street', '1 Main St', 'meta'), await n('dateOfBirth', '1990-01-02'), await n('email', '  ')],
                  street: await n('street', '1 Main St'),
                  kind: await error(() => n('mail', 'x')),
                  destination: await error(() => n('email', 'x', 'tiktok')),
                };",
            )
            .await;
        // The e-mail vectors of `exported_hash_functions`: Google drops a Gmail address's dots, Meta does not.
        assert_eq!(
            out["email"],
            json!([
                "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69",
                "831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982"
            ]),
            "{out}"
        );
        assert_eq!(out["phone"][0], out["phoneAll"]["google"]["sha256_phone_number"][0], "{out}");
        assert_eq!(out["phone"][1], out["phoneAll"]["meta"]["ph"][0], "{out}");
        assert_eq!(out["first"][0], out["first"][1], "first names hash trimmed and lowercased: {out}");
        assert_eq!(out["city"][0], "s\u{e3}o paulo", "Google takes the city plain: {out}");
        assert_eq!(out["city"][1], out["cityAll"]["meta"]["ct"][0], "{out}");
        assert!(out["street"].as_str().is_some_and(|s| s.len() == 64), "{out}");
        assert_eq!(out["none"], json!([null, null, null]), "no such field at the destination, or nothing left: {out}");
        let kind = out["kind"].as_str().unwrap_or_default();
        assert!(kind.starts_with("[tally] normalizeAndHash: kind must be one of email, phone"), "{out}");
        assert_eq!(out["destination"], "[tally] normalizeAndHash: destination must be 'google' or 'meta'", "{out}");
    })
    .await;
}

/// The browser build normalises without Unicode tables (the JS engine
/// lowercases, `tally-core`'s `js-lowercase` feature): it must hash exactly as
/// the server does, for the core's golden vectors and for non-ASCII capitals.
#[tokio::test]
async fn hashing_matches_the_server() {
    let data: Value =
        serde_json::from_str(include_str!("../../crates/core/tests/data/hash_vectors.json")).expect("hash vectors");
    // hashUserData has no calling-code option.
    let cases: Vec<&Value> = data["user_data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c.get("defaultCallingCode") == Some(&Value::Null))
        .collect();
    assert!(cases.len() >= 4);
    let inputs = json!(cases.iter().map(|c| &c["input"]).collect::<Vec<_>>());
    on_page("", async |page| {
        let got = page
            .run(&format!(
                "const out = [];
                for (const input of {inputs}) out.push(await hashUserData(input));
                return out;"
            ))
            .await;
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(got[i], case["expected"], "{}", case["source"]);
        }
        // Computed natively with the server's build (Unicode lowercasing in Rust).
        let got = page
            .run(
                r"return await hashUserData({ email: ' \u00c5SA.Str\u00f6m@Example.COM ', firstName: '\u00c9LODIE',
                  lastName: '\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3', externalId: 'CUST-\u013042',
                  address: { street: 'Stra\u00dfe DER Einheit 1', city: 'M\u00dcNCHEN', region: 'BAYERN', postalCode: 'SW1A 1AA',
                    country: 'DEUTSCHLAND' } });",
            )
            .await;
        let want: Value = serde_json::from_str(
            r#"{"google":{"sha256_email_address":["3165de737935f429da596e87fca2f45aa3bff8bf7c50dcdfde5c016835350650"],"address":[{"sha256_first_name":"36bac2631d17463d569eaf1b869e7bf8d40e4636fd8b2b778ee93f504baf6691","sha256_last_name":"3c70e8e70fb6820b6ae6de04be9249923ba46e8aaa0f6ecfae7a1ee8880f574d","sha256_street":"1b7862304599134ce9186e95d3aa13ad9e8bff38a2ffa59d79c50953c695901d","city":"münchen","region":"bayern","postal_code":"SW1A 1AA","country":"DE"}]},"meta":{"em":["3165de737935f429da596e87fca2f45aa3bff8bf7c50dcdfde5c016835350650"],"fn":["36bac2631d17463d569eaf1b869e7bf8d40e4636fd8b2b778ee93f504baf6691"],"ln":["3c70e8e70fb6820b6ae6de04be9249923ba46e8aaa0f6ecfae7a1ee8880f574d"],"ct":["f75c175f552c8b2bf46ef4b282ee782c81cf8687f66a8fe8278cc56fa727503e"],"st":["52b07f18c831ba4b08ba0b8bc84c6e023a825dfd385d20d8dcbf410d11c546e7"],"zp":["830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614"],"country":["959a45d44e6fcf58361ed004681556fe50129f2109e817dec098c00c9e5d2578"],"external_id":["a0b0953f2ad3347d6d5802f78f043c40d7b7ef0dc1ed44b23ef261b525531236"]}}"#,
        )
        .expect("expected hashes");
        assert_eq!(got, want);
    })
    .await;
}

/// Behaviour only: the main-thread cost of `trackAddToCart` is measured by
/// `cargo bench -p tally-e2e --bench main_thread` (budgets live in
/// benchmarks, not in timed tests).
#[tokio::test]
async fn main_thread_cost_of_track_add_to_cart() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/perf', consentMode: 'off' });
                const ids = [];
                for (let i = 0; i < 300; i++) {
                  ids.push(t.trackAddToCart(cart()));
                  if (i % 20 === 19) await t.flush(); // a real page drains between clicks
                }
                return { ids, left: await t.flush(), size: t.getQueueSize() };",
            )
            .await;
        let ids: Vec<&str> = out["ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(ids.len(), 300, "every call returned an event id");
        let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 300, "the event ids are distinct");
        assert_eq!(out["left"], 0, "the queue drains");
        assert_eq!(out["size"], 0);
    })
    .await;
}

#[tokio::test]
async fn coming_back_online_retries_at_once() {
    on_page("", async |page| {
        let out = page
            .run(
                "const t = await createBrowserTracker({ endpoint: '/c/online', consentMode: 'off' });
                __t.down = true;
                t.trackAddToCart(cart());
                const left = await t.flush();
                __t.down = false;
                window.dispatchEvent(new Event('online'));
                await sleep(100);
                return { left, size: t.getQueueSize() };",
            )
            .await;
        assert_eq!(out["left"], 1);
        assert_eq!(out["size"], 0, "sent without waiting for the backoff");
    })
    .await;
}
