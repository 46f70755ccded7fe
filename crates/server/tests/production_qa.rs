//! Production QA counters in `GET /metrics` of the real `tally serve`, against
//! the sandbox's GA4 and Meta: orders confirmed by the backend, purchases
//! browsers reported, what each destination received (exact minor units),
//! deduplicated, withheld by consent, dead, and the match keys sent — each
//! order counted once however often it comes, and still once after a restart.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::{TallyServe, TempDir, free_port, wait_until};
use tally_sandbox::{Mode, Sandbox};

const SECRET: &str = "s2s-secret";
const SITE_KEY: &str = "site-1";
const ORIGIN: &str = "https://shop.example";
const FBP: &str = "fb.1.1558571054389.1098115397";

/// `name{labels}` → value, from Prometheus text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_owned(), v.parse().ok()?))))
        .collect()
}

struct Shop {
    http: reqwest::Client,
    base: String,
}

impl Shop {
    async fn metrics(&self) -> BTreeMap<String, f64> {
        parse(&self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap())
    }

    async fn post(&self, server: bool, context: Value, order: &str, value: &str, currency: &str) -> Value {
        let mut body = json!({
            "context": context,
            "events": [{"name":"purchase","transactionId":order,"value":value.parse::<f64>().unwrap(),"currency":currency}],
        });
        let mut req = self.http.post(format!("{}/collect", self.base));
        if server {
            body["userAgent"] = json!("Mozilla/5.0 (backend says)");
            req = req.bearer_auth(SECRET);
        } else {
            body["siteKey"] = json!(SITE_KEY);
            req = req.header("origin", ORIGIN).header("user-agent", "Mozilla/5.0 (browser)");
        }
        let r = req.json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn context(consent: Value, extra: Value) -> Value {
    let mut c =
        json!({"v":1,"createdAt":1,"clientId":"123.456","pageUrl":"https://shop.example/thanks","consent":consent});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn granted() -> Value {
    json!({"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_reconciled_per_destination_in_the_metrics() {
    let sandbox = Sandbox::new();
    let sb = sandbox.serve("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new("prodqa");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
store = "sqlite:{db}"
retry_base_ms = 20
retry_max_delay_ms = 100
[collector]
site_keys = ["{SITE_KEY}"]
allowed_origins = ["{ORIGIN}"]
server_secrets = ["{SECRET}"]
rate_per_ip = 0
metrics = true
[ga4]
measurement_id = "G-PRODQA1"
api_secret = "secret"
base_url = "{url}/ga4"
[meta]
pixel_id = "1234567890"
access_token = "{token}"
base_url = "{url}/meta"
"#,
            db = dir.join("tally.db").display(),
            url = sb.base_url,
            token = tally_sandbox::meta::ACCESS_TOKEN,
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let shop = Shop { http: reqwest::Client::new(), base: base.clone() };
    let tally = TallyServe::start(&config, &base).await;

    // ORD-1: the backend confirms it (with an e-mail, the visitor's IP and _fbp) …
    let full = context(granted(), json!({"clickIds":{"fbp":FBP},"userData":{"email":"Jane.Doe@Example.com"}}));
    let r = shop.post(true, full.clone(), "ORD-1", "19.99", "EUR").await;
    assert_eq!(r["results"][0]["destinations"]["meta"]["outcome"], "sent", "{r}");
    // … the thank-you page reports it too, and the backend sends it again.
    let browser = context(granted(), json!({"clickIds":{"fbp":FBP}}));
    shop.post(false, browser.clone(), "ORD-1", "19.99", "EUR").await;
    shop.post(true, full.clone(), "ORD-1", "19.99", "EUR").await;
    // ORD-2: only the browser reports it.
    shop.post(false, browser.clone(), "ORD-2", "5.00", "EUR").await;
    // ORD-3: analytics consent only; sent twice, withheld from Meta once.
    let analytics = json!({"analytics_storage":"granted","ad_storage":"denied","ad_user_data":"denied","ad_personalization":"denied"});
    shop.post(true, context(analytics.clone(), json!({})), "ORD-3", "7.50", "EUR").await;
    shop.post(true, context(analytics, json!({})), "ORD-3", "7.50", "EUR").await;
    // ORD-4: Meta is down; the outbox delivers it when Meta is back.
    sandbox.meta.faults.set(Mode::Down);
    let r = shop.post(true, context(granted(), json!({"clickIds":{"fbp":FBP}})), "ORD-4", "100", "JPY").await;
    assert_eq!(r["results"][0]["destinations"]["meta"]["outcome"], "queued", "{r}");
    let m = shop.metrics().await;
    assert_eq!(m.get("tally_orders_delivered_total{destination=\"meta\",currency=\"JPY\"}"), Some(&0.0), "{m:?}");
    // The outbox says how long Meta's oldest entry has waited; GA4 has none.
    let age = m.get("tally_outbox_oldest_age_seconds{destination=\"meta\"}").copied();
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "{m:?}");
    assert_eq!(m.get("tally_outbox_oldest_age_seconds{destination=\"ga4\"}"), None);
    sandbox.meta.faults.set(Mode::Up);
    assert!(
        wait_until(20, || sandbox.meta.purchases().len() == 3).await,
        "Meta got {} purchases",
        sandbox.meta.purchases().len()
    );
    // ORD-5: Meta refuses the credentials: dead there, delivered to GA4.
    sandbox.meta.faults.set(Mode::Unauthorized);
    let r = shop.post(true, context(granted(), json!({"clickIds":{"fbp":FBP}})), "ORD-5", "1", "EUR").await;
    assert_eq!(r["results"][0]["destinations"]["meta"]["outcome"], "failed", "{r}");
    sandbox.meta.faults.set(Mode::Up);

    let m = shop.metrics().await;
    let expect = |m: &BTreeMap<String, f64>, series: &str, want: f64| {
        assert_eq!(m.get(series), Some(&want), "{series} in {m:#?}");
    };
    // The backend's truth: ORD-1, ORD-3 and ORD-5 in euros, ORD-4 in yen, each once.
    expect(&m, "tally_orders_confirmed_total{currency=\"EUR\"}", 3.0);
    expect(&m, "tally_revenue_confirmed_minor_total{currency=\"EUR\"}", 2849.0);
    expect(&m, "tally_orders_confirmed_total{currency=\"JPY\"}", 1.0);
    expect(&m, "tally_revenue_confirmed_minor_total{currency=\"JPY\"}", 100.0);
    expect(&m, "tally_browser_purchases_total{currency=\"EUR\"}", 2.0);
    expect(&m, "tally_browser_revenue_minor_total{currency=\"EUR\"}", 2499.0);
    // GA4 got every order; Meta all but the one consent withheld and the dead one.
    expect(&m, "tally_orders_delivered_total{destination=\"ga4\",currency=\"EUR\"}", 4.0);
    expect(&m, "tally_revenue_delivered_minor_total{destination=\"ga4\",currency=\"EUR\"}", 3349.0);
    expect(&m, "tally_orders_delivered_total{destination=\"ga4\",currency=\"JPY\"}", 1.0);
    expect(&m, "tally_orders_delivered_total{destination=\"meta\",currency=\"EUR\"}", 2.0);
    expect(&m, "tally_revenue_delivered_minor_total{destination=\"meta\",currency=\"EUR\"}", 2499.0);
    expect(&m, "tally_orders_delivered_total{destination=\"meta\",currency=\"JPY\"}", 1.0);
    expect(&m, "tally_revenue_delivered_minor_total{destination=\"meta\",currency=\"JPY\"}", 100.0);
    // ORD-1 came three times and ORD-3 twice: deduplicated once per order and destination.
    expect(&m, "tally_orders_deduplicated_total{destination=\"meta\"}", 1.0);
    expect(&m, "tally_orders_deduplicated_total{destination=\"ga4\"}", 2.0);
    expect(&m, "tally_orders_withheld_total{destination=\"meta\",reason=\"consent_denied\"}", 1.0);
    expect(&m, "tally_orders_dead_total{destination=\"meta\",reason=\"rejected\"}", 1.0);
    // Match keys as sent: _fbp and the user agent on all three Meta purchases,
    // the IP only from the browser (a backend gave none), the e-mail only on ORD-1.
    expect(&m, "tally_match_keys_total{destination=\"meta\",key=\"fbp\"}", 3.0);
    expect(&m, "tally_match_keys_total{destination=\"meta\",key=\"user_agent\"}", 3.0);
    expect(&m, "tally_match_keys_total{destination=\"meta\",key=\"ip\"}", 1.0);
    expect(&m, "tally_match_keys_total{destination=\"meta\",key=\"email\"}", 1.0);
    assert_eq!(m.get("tally_match_keys_total{destination=\"meta\",key=\"fbc\"}"), None);
    assert_eq!(m.get("tally_match_keys_total{destination=\"ga4\",key=\"fbp\"}"), None, "GA4 is not sent _fbp");

    // A restart starts the counters from zero, but the once-only marks are in
    // the store: ORD-1 sent again is not a new order.
    drop(tally);
    let _tally = TallyServe::start(&config, &base).await;
    shop.post(true, full, "ORD-1", "19.99", "EUR").await;
    shop.post(true, context(granted(), json!({})), "ORD-6", "2.50", "EUR").await;
    let m = shop.metrics().await;
    expect(&m, "tally_orders_confirmed_total{currency=\"EUR\"}", 1.0);
    expect(&m, "tally_revenue_confirmed_minor_total{currency=\"EUR\"}", 250.0);
    expect(&m, "tally_orders_deduplicated_total{destination=\"meta\"}", 0.0);
}
