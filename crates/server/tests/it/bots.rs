//! Bots on the confirmation page, through the collector to the destination
//! stand-ins (loopback only): a crawler's purchase from a browser reaches no
//! ad or analytics destination and is counted; the same order confirmed by
//! the shop's backend is delivered, flagged; per-destination `bots` settings.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::google_ads_on;
use serde_json::{Value, json};
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::bots::BotPolicy;
use tally_server::collector::{CollectorConfig, serve_router};
use tally_server::{Ga4Config, MetaConfig, ServerTracker, WebhookConfig};

const ORIGIN: &str = "https://shop.example";
const SECRET: &str = "s2s-secret";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const HEADLESS: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";
const PERSON: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;
const WAREHOUSE_SECRET: &str = "whsec_warehouse_0123456789";

struct Harness {
    sandbox: Sandbox,
    _run: RunningSandbox,
    url: String,
    http: reqwest::Client,
}

/// GA4, Google Ads (Data Manager), Meta and a webhook behind `tally serve`'s
/// router; `configure` may set bot policies.
async fn harness(
    deliver_inline: bool,
    configure: impl FnOnce(tally_server::ServerTrackerBuilder) -> tally_server::ServerTrackerBuilder,
) -> Harness {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    sandbox.webhook.set_secret("warehouse", WAREHOUSE_SECRET);
    let builder = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "s").base_url(run.url("/ga4")))
        .google_ads(google_ads_on(&run).conversion_action("purchase", "555666777").label("purchase", "purchase"))
        .meta(MetaConfig::new("1234567890", tally_sandbox::meta::ACCESS_TOKEN).base_url(run.url("/meta")))
        .webhook("warehouse", WebhookConfig::new(run.url("/webhook/warehouse"), WAREHOUSE_SECRET))
        .retry(tally_server::RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
        });
    let tracker = configure(builder).build().unwrap();
    let config = CollectorConfig {
        site_keys: ["site-1".to_owned()].into(),
        allowed_origins: [ORIGIN.to_owned()].into(),
        server_secrets: [SECRET.to_owned()].into(),
        rate_per_ip: 0,
        metrics: true,
        deliver_inline,
        ..CollectorConfig::default()
    };
    let app = serve_router(tracker, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Harness {
        sandbox,
        _run: run,
        url: format!("http://{addr}"),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
    }
}

fn context() -> Value {
    serde_json::from_str(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"123.456","pageUrl":"https://shop.example/thanks","clickIds":{{"gclid":"Cj0KCQjw-bot_gclid","fbc":"fb.1.1700000000000.IwAR-bot"}},"consent":{GRANTED}}}"#
    ))
    .unwrap()
}

fn purchase(txn: &str) -> Value {
    json!({"name":"purchase","transactionId":txn,"value":"30.00","currency":"EUR","items":[{"itemId":"SKU","price":"30.00","quantity":1}]})
}

impl Harness {
    /// What a browser with `user_agent` posts from the thank-you page.
    async fn post_as_browser(&self, user_agent: &str, events: Value) -> Value {
        let body = json!({"siteKey":"site-1","sentAt":1,"context":context(),"events":events});
        let r = self
            .http
            .post(format!("{}/collect", self.url))
            .header("origin", ORIGIN)
            .header("user-agent", user_agent)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// What the shop's backend posts, with the user agent the checkout recorded.
    async fn post_as_backend(&self, user_agent: &str, events: Value) -> Value {
        let body = json!({"context":context(),"userAgent":user_agent,"ipAddress":"203.0.113.77","events":events});
        let r = self
            .http
            .post(format!("{}/collect", self.url))
            .bearer_auth(SECRET)
            .header("user-agent", "shop-backend/1.0")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap()
    }

    async fn status(&self) -> Value {
        let r = self.http.get(format!("{}/status.json", self.url)).bearer_auth(SECRET).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Purchases each stand-in accepted: (GA4, Google Ads, Meta, webhook).
    fn purchases(&self) -> (usize, usize, usize, usize) {
        let s = &self.sandbox;
        let webhook = s.webhook.events("warehouse").iter().filter(|r| r.event_name == "purchase").count();
        (s.ga4.purchases().len(), s.data_manager.purchases().len(), s.meta.purchases().len(), webhook)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawlers_purchase_reaches_no_ad_destination_and_the_backends_confirmation_is_delivered_flagged() {
    let h = harness(true, |b| b).await;

    // Googlebot renders the thank-you page and its tag reports the purchase.
    let v = h.post_as_browser(GOOGLEBOT, json!([purchase("BOT-1")])).await;
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");
    assert_eq!(h.purchases(), (0, 0, 0, 1), "only the webhook (bots = \"send\" by default) took it");
    let m = h.metrics().await;
    for d in ["ga4", "google_ads", "meta"] {
        let line = format!("tally_bot_filtered_total{{destination=\"{d}\",reason=\"crawler\"}} 1\n");
        assert!(m.contains(&line), "{line} in\n{m}");
        assert!(m.contains(&format!("tally_events_dropped_total{{destination=\"{d}\",reason=\"bot\"}} 1\n")), "{m}");
    }
    assert!(m.contains("tally_bot_flagged_total{destination=\"webhook:warehouse\",reason=\"crawler\"} 1\n"), "{m}");

    // The payment webhook confirms the same order; the checkout's user agent was
    // the crawler's, but the order is real: delivered everywhere, flagged.
    let v = h.post_as_backend(GOOGLEBOT, json!([purchase("BOT-1")])).await;
    let destinations = &v["results"][0]["destinations"];
    for d in ["ga4", "google_ads", "meta"] {
        assert_eq!(destinations[d]["outcome"], "sent", "{d}: {v}");
    }
    assert_eq!(destinations["webhook:warehouse"]["reason"], "duplicate", "{v}");
    assert_eq!(h.purchases(), (1, 1, 1, 1));
    let m = h.metrics().await;
    for d in ["ga4", "google_ads", "meta"] {
        let line = format!("tally_bot_flagged_total{{destination=\"{d}\",reason=\"crawler\"}} 1\n");
        assert!(m.contains(&line), "{line} in\n{m}");
    }

    // A backend's page view of a crawler (no order behind it) is withheld, with the reason.
    let v = h
        .post_as_backend(GOOGLEBOT, json!([{"name":"page_view","params":{"page_location":"https://shop.example/"}}]))
        .await;
    let meta = &v["results"][0]["destinations"]["meta"];
    assert_eq!(meta["outcome"], "skipped", "{v}");
    assert_eq!(meta["reason"], "bot", "{v}");
    assert!(meta["detail"].as_str().unwrap().contains("crawler"), "{v}");

    // A person's purchase is untouched.
    h.post_as_browser(PERSON, json!([purchase("BOT-2")])).await;
    assert_eq!(h.purchases(), (2, 2, 2, 2));

    // The status page lists them per destination.
    let status = h.status().await;
    let meta = &status["bots"]["meta"];
    assert_eq!(meta["filtered"]["crawler"], 2, "{status}");
    assert_eq!(meta["flagged"]["crawler"], 1, "{status}");
    let page = h.http.get(format!("{}/status", h.url)).bearer_auth(SECRET).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"bots\"") && page.contains("crawler 2"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_decides_and_the_outbox_mode_screens_too() {
    // Meta takes bots here, the webhook does not; browsers are answered before delivery.
    let h = harness(false, |b| b.bots("meta", BotPolicy::Send).bots("webhook:warehouse", BotPolicy::Drop)).await;
    let v = h.post_as_browser(HEADLESS, json!([purchase("BOT-3")])).await;
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");
    let started = Instant::now();
    while h.purchases().2 == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // anything else would have arrived by now
    assert_eq!(h.purchases(), (0, 0, 1, 0), "only Meta (bots = \"send\") took the headless browser's purchase");
    let m = h.metrics().await;
    for d in ["ga4", "google_ads", "webhook:warehouse"] {
        let line = format!("tally_bot_filtered_total{{destination=\"{d}\",reason=\"headless\"}} 1\n");
        assert!(m.contains(&line), "{line} in\n{m}");
    }
    assert!(m.contains("tally_bot_flagged_total{destination=\"meta\",reason=\"headless\"} 1\n"), "{m}");
}

#[test]
fn a_bot_policy_for_a_destination_that_is_not_configured_is_refused() {
    let e = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "s"))
        .bots("meta", BotPolicy::Send)
        .build()
        .expect_err("refused");
    assert!(e.to_string().contains("bots") && e.to_string().contains("\"meta\""), "{e}");
}

#[test]
fn bots_is_a_setting_of_each_destination_section() {
    let text = r#"
[collector]
site_keys = ["site-1"]

[ga4]
measurement_id = "G-TEST123"
api_secret = "s"
bots = "send"

[webhooks.warehouse]
url = "https://warehouse.example/tally"
secret = "whsec"
bots = "drop"
"#;
    let config: tally_server::config_file::TallyConfig = toml::from_str(text).unwrap();
    assert_eq!(config.destination("ga4").and_then(|g| g.bots), Some(BotPolicy::Send));
    assert!(config.tracker_builder().and_then(|b| b.build()).is_ok());
    let wrong = text.replace("bots = \"send\"", "bots = \"keep\"");
    let e = toml::from_str::<tally_server::config_file::TallyConfig>(&wrong).err().unwrap().to_string();
    assert!(e.contains("drop") && e.contains("send"), "{e}");
}
