//! Harness for the end-to-end tests: a real headless Chromium driven through
//! chromedriver (both from Debian's packages), against the demo shop served on
//! loopback. Nothing leaves the machine: Chromium runs with background
//! networking off.
//!
//! The QA scenarios (`Scenario 1` … `Scenario 8` in `tests/`) each run twice
//! ([`on_both_server_trackers!`]): with the Rust crate confirming the orders,
//! and with the JS server tracker (`tally-web/server` in Node).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub use tally_demo::server_tracker::ServerTrackerPath;

/// Runs a QA scenario, `async fn scenario(path: ServerTrackerPath)`, once with
/// each server tracker confirming the orders: `scenario::rust_crate` and
/// `scenario::js_server_tracker`.
#[macro_export]
macro_rules! on_both_server_trackers {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn rust_crate() {
                super::$scenario($crate::ServerTrackerPath::Rust).await
            }

            #[tokio::test]
            async fn js_server_tracker() {
                super::$scenario($crate::ServerTrackerPath::Js).await
            }
        }
    };
}

/// A headless Chromium session; the driver process is killed on drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9515)
}

/// The user agent the test browser sends: desktop Chrome's, as a shopper's.
pub const PERSON_USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium profile.
    pub async fn launch() -> Browser {
        let port = free_port();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e} (cargo xtask test installs chromium-driver)"));
        let profile = std::env::temp_dir().join(format!("tally-e2e-{port}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&profile);
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    // A person's user agent: headless Chromium says `HeadlessChrome`, which the
                    // collector keeps away from ad destinations (crates/server/src/bots.rs).
                    format!("--user-agent={PERSON_USER_AGENT}"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls().expect("tls").capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot connect to chromedriver: {e}"),
            }
        };
        Browser { client, driver, _profile: TempDir(profile) }
    }

    /// Opens `url` and waits until the page's script set `body[data-ready]`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
        self.wait_ready().await;
    }

    /// Waits for `body[data-ready="1"]`.
    pub async fn wait_ready(&self) {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("body[data-ready='1']"))
            .await
            .expect("page did not become ready");
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// On the admin page, asks for a partial refund of `amount` (as typed) of `order`.
    pub async fn refund_partially(&self, order: &str, amount: &str) {
        let input = self
            .client
            .find(Locator::Css(&format!(".refund-amount[data-order='{order}']")))
            .await
            .unwrap_or_else(|e| panic!("no refund amount input for {order}: {e}"));
        input.send_keys(amount).await.expect("type the amount");
        self.click(&format!(".refund-partial[data-order='{order}']")).await;
    }

    /// Runs `script` in the page (a function body; `return` gives the value).
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("execute")
    }

    /// An attribute of the element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// Sends the Chrome DevTools Protocol command `cmd` with `params` to the
    /// current page through chromedriver (`POST /session/{id}/goog/cdp/execute`)
    /// and returns its result, e.g. `Network.emulateNetworkConditions`.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, String> {
        let command = CdpCommand { cmd: cmd.to_owned(), params };
        self.client.issue_cmd(command).await.map_err(|e| format!("CDP {cmd}: {e}"))
    }

    /// Closes the session.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A Chrome DevTools Protocol command as chromedriver relays it: its own
/// WebDriver endpoint, `{"cmd": …, "params": …}` in the body.
#[derive(Debug)]
struct CdpCommand {
    cmd: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for CdpCommand {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()))
    }
}

impl Drop for Browser {
    /// Also reached when a test panics before `close`: killing chromedriver
    /// leaves its Chromium running, so the processes on this session's
    /// profile go too.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("user-data-dir={}", self._profile.0.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts the demo shop on a free loopback port, with a temporary data directory.
pub async fn start_demo(webhook_delay_ms: u64) -> tally_demo::RunningDemo {
    start_demo_with(|c| c.webhook_delay_ms = webhook_delay_ms).await
}

/// Starts the demo shop with `path` confirming orders and refunds, the provider
/// calling the webhook after `webhook_delay_ms`.
pub async fn start_demo_on(path: ServerTrackerPath, webhook_delay_ms: u64) -> tally_demo::RunningDemo {
    let demo = start_demo_with(|c| {
        c.webhook_delay_ms = webhook_delay_ms;
        c.server_tracker = path;
    })
    .await;
    assert_eq!(demo.shop.js_tracker.is_some(), path == ServerTrackerPath::Js, "the {path:?} path is live");
    assert_eq!(demo.node_pid().is_some(), path == ServerTrackerPath::Js, "Node runs only for the JS path");
    demo
}

/// Starts the demo shop on a free loopback port after `f` adjusted the config.
pub async fn start_demo_with(f: impl FnOnce(&mut tally_demo::DemoConfig)) -> tally_demo::RunningDemo {
    let mut config = tally_demo::DemoConfig {
        addr: "127.0.0.1:0".into(),
        webhook_delay_ms: 300,
        data_dir: None,
        retry: tally_server::RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(300),
            timeout: Duration::from_secs(3),
        },
        ..tally_demo::DemoConfig::default()
    };
    f(&mut config);
    tally_demo::start(config).await.expect("demo starts")
}

/// A click id the storefront is entered with (Google Ads needs one).
pub const GCLID: &str = "Cj0KCQjw-demo_e2e_gclid";

/// Lands on the shop from an ad click, decides consent (`accept`, `analytics`
/// or `reject` button), buys `sku` and waits for the thank-you page. Returns the order id.
pub async fn buy(browser: &Browser, base: &str, consent: &str, sku: &str) -> String {
    browser.open(&format!("{base}/?gclid={GCLID}&fbclid=IwAR_demo_e2e")).await;
    if !consent.is_empty() {
        browser.click(&format!("#consent-{consent}")).await;
    }
    browser.open(&format!("{base}/product/{sku}")).await;
    browser.click("#add").await;
    browser.open(&format!("{base}/checkout")).await;
    browser.click("#pay").await;
    // The payment page navigates to the thank-you page while the driver looks
    // for it: a look the navigation aborts is made again on the new page.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match browser.client.wait().at_most(left).for_element(Locator::Css("#order-id")).await {
            Ok(_) => break,
            Err(e) if format!("{e:?}").contains("aborted by navigation") && !left.is_zero() => continue,
            Err(e) => panic!("thank-you page: {e:?}"),
        }
    }
    browser.wait_ready().await;
    let id = browser.eval("return document.getElementById('order-id').textContent").await;
    id.as_str().expect("order id on the page").to_owned()
}

/// Waits until the order's webhook was processed, and checks it was confirmed
/// through the shop's live server tracker.
pub async fn wait_paid(shop: &tally_demo::Shop, order_id: &str) {
    assert!(
        eventually(15, || shop.orders.get(order_id).is_some_and(|o| o.server_event_id.is_some())).await,
        "the payment webhook did not report the purchase: {:?}",
        shop.orders.get(order_id)
    );
    let via = shop.orders.get(order_id).and_then(|o| o.confirmed_via);
    assert_eq!(via.as_deref(), Some(shop.config.server_tracker.as_str()), "confirmed through the live server tracker");
}

/// Destinations every purchase must reach (with ads consent and a click id).
pub const ALL_DESTINATIONS: [&str; 5] = ["ga4", "google_ads", "meta", "rokt", "webhook:warehouse"];

/// Waits until, at each of `destinations`, the purchase count equals the
/// backend's orders and the revenue is equal to the cent (the reconciliation),
/// then asserts it. Returns the report.
pub async fn assert_reconciled(
    shop: &tally_demo::Shop,
    destinations: &[&str],
    orders: u64,
) -> tally_core::reconcile::ReconcileReport {
    let ok = |r: &tally_core::reconcile::ReconcileReport| {
        destinations.iter().all(|d| r.row(d, "EUR").is_some_and(|row| row.matches() && row.orders == orders))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut report = tally_demo::inspect::report(shop);
    while !ok(&report) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        report = tally_demo::inspect::report(shop);
    }
    for d in destinations {
        let row = report.row(d, "EUR").unwrap_or_else(|| panic!("no reconciliation row for {d}: {report:#?}"));
        assert_eq!(row.orders, orders, "{d}: backend orders");
        assert_eq!(row.purchases, row.orders, "{d}: purchase count = orders; {row:#?}\n{}", dump(shop));
        assert_eq!(
            row.destination_revenue,
            row.backend_revenue,
            "{d}: revenue equal to the cent; {row:#?}\n{}",
            dump(shop)
        );
        assert_eq!(row.revenue_mismatch_bp.unwrap_or(0), 0, "{d}: {row:#?}");
        assert!(row.double_counted.is_empty(), "{d}: counted twice: {row:#?}");
    }
    report
}

/// What the sandboxes saw, for failure messages.
pub fn dump(shop: &tally_demo::Shop) -> String {
    format!(
        "orders: {:#?}\nga4 dropped: {:?}\nads dropped: {:?}\nmeta dropped: {:?}\nrokt dropped: {:?}\nwebhook dropped: {:?}",
        shop.orders.all(),
        shop.sandbox.ga4.dropped(),
        shop.sandbox.data_manager.rejections(),
        shop.sandbox.meta.dropped(),
        shop.sandbox.rokt.dropped(),
        shop.sandbox.webhook.dropped()
    )
}

/// Polls `cond` every 100 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

/// A `/collect` endpoint that accepts every event of a batch (answering as
/// `tally-server`'s collector does, one result per event) and keeps each
/// request body in `received`, for tests of the browser package alone.
pub fn accepting_collector(received: std::sync::Arc<std::sync::Mutex<Vec<Value>>>) -> axum::routing::MethodRouter {
    axum::routing::post(move |body: axum::body::Bytes| {
        let sink = received.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let results: Vec<Value> = v["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| json!({"eventId": e["eventId"], "status": "accepted"}))
                .collect();
            sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(v);
            axum::Json(json!({ "results": results }))
        }
    })
}

/// Serves `router` on a loopback port, opens `path` (with its query) in
/// headless Chromium once the page sets `body[data-ready]`, and returns the
/// browser and the text of `#out`.
pub async fn open_page(router: axum::Router, path: &str) -> (Browser, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let browser = Browser::launch().await;
    browser.open(&format!("{base}{path}")).await;
    let out = browser.eval("return document.getElementById('out').textContent").await;
    let out = out.as_str().unwrap_or_default().to_owned();
    (browser, out)
}

/// Segment's source settings as its CDN serves them (for the benches that
/// load analytics-next beside Tally), with write key `api_key` and its
/// tracking API at `api_host` (an `http` URL on this machine).
pub fn segment_settings(api_key: &str, api_host: &str) -> Value {
    json!({
        "integrations": { "Segment.io": { "apiKey": api_key, "apiHost": api_host, "protocol": "http" } },
        "plan": { "track": { "__default": { "enabled": true } } },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": { "sampleRate": 0 },
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    })
}
