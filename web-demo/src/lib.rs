//! # tally-demo
//!
//! A demo shop that uses both halves of Tally: the storefront imports the npm
//! package from `pkg/`; the backend records orders (in SQLite) with the browser's
//! [`ContextEnvelope`](tally_core::ContextEnvelope) and, when the simulated
//! payment provider calls its webhook, reports the purchase through
//! `ServerTracker::from_context` — or, with `--server-tracker js`
//! ([`server_tracker::ServerTrackerPath`]), through `tally-web/server` in a Node
//! route handler ([`node`]) that reports to the demo's collector. Destinations (GA4, Google Ads, Meta CAPI, Rokt
//! and a warehouse webhook) are local sandboxes ([`tally_sandbox`]) mounted under
//! `/sandbox/…` on the same port, so nothing leaves the machine.

pub mod admin;
pub mod catalog;
pub mod inspect;
pub mod node;
pub mod orders;
pub mod pages;
pub mod payment;
pub mod server_tracker;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use server_tracker::ServerTrackerPath;
use tally_core::ConsentState;
use tally_sandbox::Sandbox;
use tally_server::RetryPolicy;
use tally_server::collector::{self, CollectorConfig};
use tally_server::store::sqlite::SqliteStore;
use tally_server::{Ga4Config, GoogleAdsConfig, MetaConfig, RoktConfig, ServerTracker, WebhookConfig};

/// The demo's settings; the defaults need no account and no network.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where to listen.
    pub addr: String,
    /// Delay before the simulated payment provider calls the webhook.
    pub webhook_delay_ms: u64,
    /// How many times the provider delivers each webhook (real ones sometimes repeat).
    pub webhook_deliveries: u32,
    /// The built npm package.
    pub pkg_dir: PathBuf,
    /// Where the SQLite files live (orders and the tracker's durable outbox).
    /// `None`: a fresh temporary directory, removed when the demo stops (tests).
    pub data_dir: Option<PathBuf>,
    /// Retry policy of the tracker (tests use a fast one).
    pub retry: RetryPolicy,
    /// What confirms paid orders and refunds: the Rust crate or the JS server tracker.
    pub server_tracker: ServerTrackerPath,
    /// The Node.js program the JS server tracker runs in.
    pub node: PathBuf,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            addr: "127.0.0.1:8080".into(),
            webhook_delay_ms: 1500,
            webhook_deliveries: 1,
            pkg_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pkg"),
            data_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")),
            retry: RetryPolicy {
                max_attempts: 12,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
            },
            server_tracker: ServerTrackerPath::Rust,
            node: PathBuf::from("node"),
        }
    }
}

/// The site key the storefront uses.
pub const SITE_KEY: &str = "demo-site-key";
/// The secret the simulated payment provider signs webhooks with.
pub const WEBHOOK_SECRET: &str = "demo-webhook-secret";
/// The collector's server secret: what the JS server tracker sends as
/// `Authorization: Bearer …` (a backend's secret, never a browser's).
pub const SERVER_SECRET: &str = "demo-server-secret";
/// The GA4 measurement id of the demo (sandboxed).
pub const GA4_MEASUREMENT_ID: &str = "G-DEMO0001";
/// The Google Ads customer id of the demo (sandboxed).
pub const ADS_CUSTOMER_ID: &str = "123-456-7890";
/// The conversion action the purchase label maps to.
pub const ADS_PURCHASE_ACTION: &str = "555666777";
/// The Meta pixel of the demo (sandboxed).
pub const META_PIXEL_ID: &str = "1234567890";
/// The secret of the warehouse webhook sink.
pub const WAREHOUSE_SECRET: &str = "whsec_demo_warehouse_0123456789";

/// Page switches (ad blocker, webhook timing), changed from the admin page.
#[derive(Debug, Default)]
pub struct Switches {
    /// `/collect` answers browsers 403, as when an ad blocker blocks the endpoint
    /// (a backend's bearer-authenticated calls, the JS server tracker's, go through).
    pub collect_blocked: AtomicBool,
    /// `/collect` answers 503, as when the endpoint is down (the browser keeps and retries).
    pub collect_down: AtomicBool,
    /// Delay before the provider calls the webhook.
    pub webhook_delay_ms: AtomicU64,
    /// How many times each webhook is delivered.
    pub webhook_deliveries: AtomicU32,
    /// Shifts the order's purchase time back by this much at the webhook
    /// (simulates a late webhook without waiting).
    pub webhook_late_ms: AtomicU64,
}

/// Shared state of the running shop.
#[derive(Clone)]
pub struct Shop {
    /// Orders.
    pub orders: orders::Orders,
    /// The sandbox destinations.
    pub sandbox: Sandbox,
    /// The server tracker (behind the collector, and the Rust path's).
    pub tracker: ServerTracker,
    /// The JS server tracker's route, when `--server-tracker js` is live.
    pub js_tracker: Option<node::JsServerTracker>,
    /// Settings.
    pub config: Arc<DemoConfig>,
    /// Switches.
    pub switches: Arc<Switches>,
    /// `http://host:port`.
    pub base_url: String,
    /// An HTTP client for the simulated payment provider.
    pub http: reqwest::Client,
    /// When this process started (Unix ms). The sandboxes keep their records in
    /// memory, so the inspector reconciles the orders placed since then.
    pub started_at_ms: i64,
}

/// A running demo shop.
pub struct RunningDemo {
    /// `http://host:port`.
    pub base_url: String,
    /// The shop's state (orders, sandboxes).
    pub shop: Shop,
    task: tokio::task::JoinHandle<()>,
    temp_dir: Option<PathBuf>,
    node: Option<node::NodeProcess>,
}

impl RunningDemo {
    /// The JS server tracker's Node process id, when that path is live.
    pub fn node_pid(&self) -> Option<u32> {
        self.node.as_ref().and_then(node::NodeProcess::pid)
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        self.task.abort();
        // Kills the JS server tracker's Node process (it also exits when its stdin closes).
        self.node = None;
        self.shop.tracker.shutdown();
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Errors starting the demo.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

fn temp_data_dir() -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tally-demo-{}-{}-{n}", std::process::id(), tally_server::now_ms()))
}

/// Configures the sandboxes like the demo's (fake) accounts.
fn configure_sandbox(sandbox: &Sandbox) {
    sandbox.google_ads.add_conversion_action(ADS_PURCHASE_ACTION);
    sandbox.meta.set_pixel_id(META_PIXEL_ID);
    sandbox.webhook.set_secret("warehouse", WAREHOUSE_SECRET);
}

/// The tracker, wired to every sandbox destination under `{base_url}/sandbox`.
fn build_tracker(base_url: &str, store: Arc<SqliteStore>, retry: RetryPolicy) -> Result<ServerTracker, StartError> {
    use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
    let sb = format!("{base_url}/sandbox");
    // Google Ads through the Data Manager API; full refunds (which it cannot
    // retract) through the Google Ads API, as a shop with that access would.
    // Request statuses are polled after 2 s instead of Google's 30 minutes.
    let ads = GoogleAdsConfig::new(ADS_CUSTOMER_ID, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .data_manager_url(format!("{sb}/data-manager"))
        .base_url(format!("{sb}/google-ads"))
        .token_url(format!("{sb}/data-manager/token"))
        .retractions(tally_server::Retractions::GoogleAdsApi)
        .diagnostics(Some(Duration::from_secs(2)))
        .conversion_action("demo-purchase", ADS_PURCHASE_ACTION)
        .label("purchase", "demo-purchase");
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new(GA4_MEASUREMENT_ID, "demo-api-secret").base_url(format!("{sb}/ga4")))
        .google_ads(ads)
        .meta(MetaConfig::new(META_PIXEL_ID, tally_sandbox::meta::ACCESS_TOKEN).base_url(format!("{sb}/meta")))
        .rokt(
            RoktConfig::new(
                tally_sandbox::rokt::ACCOUNT_ID,
                tally_sandbox::rokt::PUBLIC_KEY,
                tally_sandbox::rokt::SECRET,
            )
            .url(format!("{sb}/rokt/v2/events")),
        )
        .webhook("warehouse", WebhookConfig::new(format!("{sb}/webhook/warehouse"), WAREHOUSE_SECRET))
        .durable(store)
        .retry(retry)
        .poll_interval(Duration::from_millis(250))
        .default_consent(ConsentState::default())
        .build()?;
    Ok(tracker)
}

async fn collect_switch(State(switches): State<Arc<Switches>>, req: Request, next: Next) -> Response {
    let from_browser = !req.headers().contains_key(axum::http::header::AUTHORIZATION);
    if switches.collect_blocked.load(Ordering::Relaxed) && from_browser && req.uri().path().starts_with("/collect") {
        return (StatusCode::FORBIDDEN, "blocked (ad blocker simulation)").into_response();
    }
    if switches.collect_down.load(Ordering::Relaxed) && req.uri().path().starts_with("/collect") {
        return (StatusCode::SERVICE_UNAVAILABLE, "collector down (outage simulation)").into_response();
    }
    next.run(req).await
}

/// Binds, wires the tracker to the sandboxes on the same port, and serves.
pub async fn start(config: DemoConfig) -> Result<RunningDemo, StartError> {
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let (data_dir, temp_dir) = match &config.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = temp_data_dir();
            (d.clone(), Some(d))
        }
    };
    std::fs::create_dir_all(&data_dir)?;
    let sandbox = Sandbox::new();
    configure_sandbox(&sandbox);
    let store = Arc::new(SqliteStore::open(data_dir.join("outbox.db"), 10_000)?);
    let tracker = build_tracker(&base_url, store, config.retry)?;
    let orders = orders::Orders::open(&data_dir.join("orders.db"))?;
    let (js_tracker, node) = match config.server_tracker {
        ServerTrackerPath::Rust => (None, None),
        ServerTrackerPath::Js => {
            let server_js = config.pkg_dir.join("server.js");
            let collect_url = format!("{base_url}/collect");
            let (js, process) =
                node::start(&config.node, &node::route_script(), &server_js, &collect_url, SERVER_SECRET).await?;
            (Some(js), Some(process))
        }
    };
    let switches = Arc::new(Switches {
        collect_blocked: AtomicBool::new(false),
        collect_down: AtomicBool::new(false),
        webhook_delay_ms: AtomicU64::new(config.webhook_delay_ms),
        webhook_deliveries: AtomicU32::new(config.webhook_deliveries.max(1)),
        webhook_late_ms: AtomicU64::new(0),
    });
    let shop = Shop {
        orders,
        sandbox: sandbox.clone(),
        tracker: tracker.clone(),
        js_tracker,
        config: Arc::new(config.clone()),
        switches: switches.clone(),
        base_url: base_url.clone(),
        http: reqwest::Client::new(),
        started_at_ms: tally_server::now_ms(),
    };
    let origins: HashSet<String> =
        [base_url.clone(), format!("http://localhost:{}", addr.port())].into_iter().collect();
    let collector_cfg = CollectorConfig {
        site_keys: [SITE_KEY.to_owned()].into_iter().collect(),
        server_secrets: [SERVER_SECRET.to_owned()].into_iter().collect(),
        allowed_origins: origins,
        // Every demo visitor is 127.0.0.1: keep the per-IP limit generous.
        rate_per_ip: 500,
        burst_per_ip: 2000,
        metrics: true,
        ..CollectorConfig::default()
    };
    let app = Router::new()
        .merge(pages::routes())
        .merge(admin::routes())
        .route("/api/catalog", get(catalog::list))
        .route("/api/orders", post(orders::create).get(orders::list))
        .route("/api/orders/{id}", get(orders::get))
        .route("/webhooks/payment", post(payment::webhook))
        .with_state(shop.clone())
        .merge(collector::serve_router(tracker, collector_cfg))
        .nest("/sandbox", sandbox.router())
        .nest_service("/pkg", tower_http::services::ServeDir::new(&config.pkg_dir))
        .layer(middleware::from_fn_with_state(switches, collect_switch));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    Ok(RunningDemo { base_url, shop, task, temp_dir, node })
}
