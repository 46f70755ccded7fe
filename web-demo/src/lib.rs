//! # tally-demo
//!
//! A demo shop that uses both halves of Tally: the storefront imports the npm
//! package from `pkg/`; the backend records orders with the browser's
//! [`ContextEnvelope`](tally_core::ContextEnvelope) and, when the simulated
//! payment provider calls its webhook, reports the purchase through
//! `ServerTracker::from_context`. Destinations are local sandboxes
//! ([`tally_sandbox`]) mounted under `/sandbox/…`, so nothing leaves the machine.

pub mod catalog;
pub mod orders;
pub mod pages;
pub mod payment;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tally_core::ConsentState;
use tally_sandbox::Sandbox;
use tally_server::collector::{self, CollectorConfig};
use tally_server::{Ga4Config, ServerTracker};

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
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            addr: "127.0.0.1:8080".into(),
            webhook_delay_ms: 1500,
            webhook_deliveries: 1,
            pkg_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pkg"),
        }
    }
}

/// The site key the storefront uses.
pub const SITE_KEY: &str = "demo-site-key";
/// The secret the simulated payment provider signs webhooks with.
pub const WEBHOOK_SECRET: &str = "demo-webhook-secret";
/// The GA4 measurement id of the demo (sandboxed).
pub const GA4_MEASUREMENT_ID: &str = "G-DEMO0001";

/// Shared state of the running shop.
#[derive(Clone)]
pub struct Shop {
    /// Orders.
    pub orders: orders::Orders,
    /// The sandbox destinations.
    pub sandbox: Sandbox,
    /// The server tracker.
    pub tracker: ServerTracker,
    /// Settings.
    pub config: Arc<DemoConfig>,
    /// `http://host:port`.
    pub base_url: String,
    /// An HTTP client for the simulated payment provider.
    pub http: reqwest::Client,
}

/// A running demo shop.
pub struct RunningDemo {
    /// `http://host:port`.
    pub base_url: String,
    /// The shop's state (orders, sandboxes).
    pub shop: Shop,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Errors starting the demo.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// Binds, wires the tracker to the sandboxes on the same port, and serves.
pub async fn start(config: DemoConfig) -> Result<RunningDemo, StartError> {
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let sandbox = Sandbox::new();
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new(GA4_MEASUREMENT_ID, "demo-api-secret").base_url(format!("{base_url}/sandbox/ga4")))
        .default_consent(ConsentState::default())
        .build()?;
    let shop = Shop {
        orders: orders::Orders::default(),
        sandbox: sandbox.clone(),
        tracker: tracker.clone(),
        config: Arc::new(config.clone()),
        base_url: base_url.clone(),
        http: reqwest::Client::new(),
    };
    let origins: HashSet<String> =
        [base_url.clone(), format!("http://localhost:{}", addr.port())].into_iter().collect();
    let collector_cfg = CollectorConfig {
        site_keys: [SITE_KEY.to_owned()].into_iter().collect(),
        allowed_origins: origins,
        // Every demo visitor is 127.0.0.1: keep the per-IP limit generous.
        rate_per_ip: 500,
        burst_per_ip: 2000,
        metrics: true,
        ..CollectorConfig::default()
    };
    let app = Router::new()
        .merge(pages::routes())
        .route("/api/catalog", get(catalog::list))
        .route("/api/orders", post(orders::create).get(orders::list))
        .route("/api/orders/{id}", get(orders::get))
        .route("/webhooks/payment", post(payment::webhook))
        .with_state(shop.clone())
        .merge(collector::router(tracker, collector_cfg))
        .nest("/sandbox", sandbox.router())
        .nest_service("/pkg", tower_http::services::ServeDir::new(&config.pkg_dir));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    Ok(RunningDemo { base_url, shop, task })
}
