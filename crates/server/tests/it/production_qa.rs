//! Production QA counters in `GET /metrics` of the real `tally serve`, against
//! the sandbox's GA4 and Meta: orders confirmed by the backend, purchases
//! browsers reported, what each destination received (exact minor units),
//! deduplicated, withheld by consent, dead, and the match keys sent — each
//! order counted once however often it comes, and still once after a restart.

use std::collections::BTreeMap;

use crate::support::{TallyServe, TempDir, free_port, wait_until};
use serde_json::{Value, json};
use tally_sandbox::{Mode, Sandbox};

const SECRET: &str = "s2s-secret";
/// `[collector] metrics_token`: what Prometheus sends to read `/metrics`.
const METRICS_TOKEN: &str = "metrics-token";
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
        let r = self.http.get(format!("{}/metrics", self.base)).bearer_auth(METRICS_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        parse(&r.text().await.unwrap())
    }

    /// The status report's last-24-hours window.
    async fn status_day(&self) -> Value {
        let r = self.http.get(format!("{}/status.json", self.base)).bearer_auth(SECRET).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let report: Value = r.json().await.unwrap();
        assert_eq!(report["hourly"].as_array().map(Vec::len), Some(24), "{report:#}");
        assert_eq!(report["windows"][1]["label"], "Last 24 h");
        report["windows"][1].clone()
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
metrics_token = "{METRICS_TOKEN}"
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
    // ORD-1 both sides reported under the same id; ORD-2 the browser alone.
    expect(&m, "tally_orders_matched_total", 1.0);
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

    // The status page says the same from the order journal, over the last 24 h.
    let day = shop.status_day().await;
    let (ga4, meta) = (&day["destinations"]["ga4"], &day["destinations"]["meta"]);
    assert_eq!((ga4["expected"].as_u64(), ga4["covered"].as_u64()), (Some(4), Some(4)), "{day:#}");
    assert_eq!((ga4["delivered"].as_u64(), ga4["deduplicated"].as_u64()), (Some(5), Some(2)), "{day:#}");
    // Meta: ORD-3 withheld by consent is not expected; ORD-5 died.
    assert_eq!((meta["expected"].as_u64(), meta["covered"].as_u64()), (Some(3), Some(2)), "{day:#}");
    assert_eq!(meta["withheld"]["consent_denied"], 1, "{day:#}");
    assert_eq!(meta["dead"]["rejected"], 1, "{day:#}");
    assert_eq!(meta["match_keys"]["fbp"], 3, "{day:#}");
    assert_eq!(day["browser_only"], 1, "ORD-2: {day:#}");
    let row = |dest: &str, cur: &str| {
        day["report"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["destination"] == dest && r["currency"] == cur)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("meta", "EUR")["missing"], json!(["ORD-5"]), "{day:#}");
    assert_eq!(row("meta", "EUR")["withheld_by_consent"], json!(["ORD-3"]), "{day:#}");
    assert_eq!(row("ga4", "EUR")["unknown"], json!(["ORD-2"]), "{day:#}");
    assert_eq!(row("meta", "JPY")["revenue_mismatch_bp"], 0, "{day:#}");
    // People open it in a browser with the secret as a Basic password; nobody else.
    let page = shop.http.get(format!("{base}/status")).basic_auth("shop", Some(SECRET)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<tr data-destination=\"meta\"><td>meta</td><td class=\"bad\">66.7 %</td><td>3</td><td>2</td>"),
        "{html}"
    );
    for (path, auth) in [("/status", None), ("/status.json", Some("wrong")), ("/status", Some("wrong"))] {
        let mut req = shop.http.get(format!("{base}{path}"));
        if let Some(a) = auth {
            req = req.basic_auth("shop", Some(a));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with {auth:?}");
        assert!(r.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap().starts_with("Basic ")));
    }

    // `tally reconcile --since 24h` prints the same reconciliation from the
    // journal in the SQLite file, while the collector runs, and exits 3:
    // Meta misses ORD-5, and ORD-2 reached both with no backend order.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["reconcile", "--since", "24h", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("| meta | EUR | 2 | 2 | 100.00 % | 20.99 EUR | 24.99 EUR |"), "{text}");
    assert!(text.contains("| ORD-5 | ORD-2 |"), "{text}");
    assert!(text.contains("| ga4 | JPY | 1 | 1 | 100.00 % | 100 JPY | 100 JPY | 0.00 % | 0 | - | - |"), "{text}");

    // The backend refunds 9.99 of ORD-1: GA4 takes refunds, Meta does not.
    let refund = json!({
        "context": context(granted(), json!({})),
        "userAgent": "Mozilla/5.0 (backend says)",
        "events": [{"name":"refund","transactionId":"ORD-1","value":9.99,"currency":"EUR"}],
    });
    let r = shop.http.post(format!("{base}/collect")).bearer_auth(SECRET).json(&refund).send().await.unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["results"][0]["destinations"]["ga4"]["outcome"], "sent", "{r}");

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
    // The journal is in the store: the day survived the restart, ORD-6 added, ORD-1 still once.
    let day = shop.status_day().await;
    assert_eq!(
        (day["destinations"]["ga4"]["expected"].as_u64(), day["destinations"]["ga4"]["covered"].as_u64()),
        (Some(5), Some(5)),
        "{day:#}"
    );
    assert_eq!(
        day["destinations"]["meta"]["deduplicated"], 1,
        "ORD-1 again after the restart is the same one: {day:#}"
    );
    // Revenue is net of the refund on both sides at GA4; Meta still counts ORD-1 in full.
    let row = |dest: &str| {
        day["report"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["destination"] == dest && r["currency"] == "EUR")
            .cloned()
            .unwrap()
    };
    assert_eq!(row("ga4")["backend_revenue"].as_f64(), Some(21.0), "{day:#}");
    assert_eq!(row("ga4")["destination_revenue"].as_f64(), Some(26.0), "ORD-2 (5.00) no backend confirmed: {day:#}");
    assert_eq!(row("meta")["backend_revenue"].as_f64(), Some(13.5), "ORD-1 net 10.00, ORD-5 1.00, ORD-6 2.50: {day:#}");
    assert_eq!(row("meta")["destination_revenue"].as_f64(), Some(27.49), "{day:#}");
}

/// One simulated minute's scrape: every series of `/metrics`.
type Scrape = BTreeMap<String, f64>;

/// The label sets of the alerts expected to fire.
type Firing<'a> = Vec<Vec<(&'a str, &'a str)>>;

/// At a simulated minute, an alert and what of it fires.
type Check<'a> = (u32, &'a str, Firing<'a>);

/// The scrapes as a `promtool test rules` file: one sample per simulated
/// minute. A counter not yet shown was 0; a gauge not shown has no sample.
fn promtool_test(rules: &std::path::Path, scrapes: &[Scrape], checks: &[Check<'_>]) -> String {
    let names: std::collections::BTreeSet<&String> = scrapes.iter().flat_map(|s| s.keys()).collect();
    let mut y = format!(
        "rule_files:\n  - '{}'\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for name in names {
        let counter = name.split('{').next().is_some_and(|n| n.ends_with("_total"));
        let values: Vec<String> = scrapes
            .iter()
            .map(|s| match s.get(name) {
                Some(v) => format!("{v}"),
                None if counter => "0".into(),
                None => "_".into(),
            })
            .collect();
        y.push_str(&format!("      - series: '{name}'\n        values: '{}'\n", values.join(" ")));
    }
    y.push_str("    alert_rule_test:\n");
    for (minute, alert, firing) in checks {
        y.push_str(&format!("      - eval_time: {minute}m\n        alertname: {alert}\n        exp_alerts:"));
        if firing.is_empty() {
            y.push_str(" []\n");
        }
        for labels in firing {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: '{v}'")).collect();
            y.push_str(&format!("\n          - exp_labels: {{{}}}", l.join(", ")));
        }
        if !firing.is_empty() {
            y.push('\n');
        }
    }
    y
}

/// The shipped rules without their annotations (whose text holds the values
/// at evaluation, which `tally-alerts.test.yml` checks): what fires is the same.
fn rules_without_annotations() -> String {
    let text = include_str!("../../../../deploy/prometheus/tally-alerts.yml");
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with("annotations:") {
            skipping = true;
            continue;
        }
        if skipping && (line.trim().is_empty() || indent > 8) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A day of a shop, compressed to one simulated minute per scrape: two orders
/// a minute, every one confirmed by the backend; one in five with analytics
/// consent only, the tracker blocked for one in ten, a thank-you reload for
/// one in seven, a refund; Meta down for 30 minutes (minutes 90–119); from
/// minute 180 the browser's order ids drift (`#ORD-…`, the form a theme
/// update can bring). The status page shows what these predict, to the order,
/// and the shipped alert rules, evaluated by `promtool` on the metrics as
/// scraped each minute, fire for the outage and the drift and not otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_traffic_shows_what_its_faults_predict_and_fires_only_those_alerts() {
    const MINUTES: u32 = 270;
    let sandbox = Sandbox::new();
    let sb = sandbox.serve("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new("prodqa-day");
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
retry_max_delay_ms = 200
retry_max_attempts = 100000
[collector]
site_keys = ["{SITE_KEY}"]
allowed_origins = ["{ORIGIN}"]
server_secrets = ["{SECRET}"]
rate_per_ip = 0
metrics = true
metrics_token = "{METRICS_TOKEN}"
[ga4]
measurement_id = "G-PRODQA2"
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
    let _tally = TallyServe::start(&config, &base).await;
    let analytics = json!({"analytics_storage":"granted","ad_storage":"denied","ad_user_data":"denied","ad_personalization":"denied"});

    let mut scrapes: Vec<Scrape> = Vec::new();
    let (mut browser_reported, mut browser_only, mut browser_only_at_meta, mut consent_denied) =
        (0u64, 0u64, 0u64, 0u64);
    let mut drift_reloads = 0u64;
    let mut n = 0u32;
    for minute in 0..MINUTES {
        if minute == 90 {
            sandbox.meta.faults.set(Mode::Down);
        }
        if minute == 120 {
            sandbox.meta.faults.set(Mode::Up);
            // The outbox catches up before the next minute is scraped.
            let mut drained = false;
            for _ in 0..300 {
                let m = shop.metrics().await;
                if m.get("tally_outbox_queued{destination=\"meta\"}").copied().unwrap_or(0.0) == 0.0 {
                    drained = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(drained, "Meta's backlog drained after the outage");
        }
        for _ in 0..2 {
            n += 1;
            let order = format!("ORD-{n}");
            let ads = n % 5 != 0;
            consent_denied += u64::from(!ads);
            let consent = if ads { granted() } else { analytics.clone() };
            let ctx = context(consent, json!({"clientId": format!("{n}.1757409569")}));
            if n % 10 != 3 {
                // The thank-you page (the tracker is not blocked), once or, reloaded, twice.
                let browser_id = if minute >= 180 { format!("#{order}") } else { order.clone() };
                for _ in 0..if n % 7 == 0 { 2 } else { 1 } {
                    shop.post(false, ctx.clone(), &browser_id, "25.00", "EUR").await;
                }
                if minute >= 180 {
                    browser_only += 1;
                    drift_reloads += u64::from(n % 7 == 0);
                    browser_only_at_meta += u64::from(ads);
                } else {
                    browser_reported += 1;
                }
            }
            shop.post(true, ctx, &order, "25.00", "EUR").await;
            if n == 100 {
                let refund = json!({
                    "context": context(granted(), json!({})),
                    "userAgent": "Mozilla/5.0 (backend says)",
                    "events": [{"name":"refund","transactionId":order,"currency":"EUR"}],
                });
                let r =
                    shop.http.post(format!("{base}/collect")).bearer_auth(SECRET).json(&refund).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
        scrapes.push(shop.metrics().await);
    }
    let orders = u64::from(n);

    // The status page, to the order.
    let day = shop.status_day().await;
    let (ga4, meta) = (&day["destinations"]["ga4"], &day["destinations"]["meta"]);
    assert_eq!((ga4["expected"].as_u64(), ga4["covered"].as_u64()), (Some(orders), Some(orders)), "{ga4:#}");
    assert_eq!(
        (meta["expected"].as_u64(), meta["covered"].as_u64()),
        (Some(orders - consent_denied), Some(orders - consent_denied)),
        "the outage's orders reached Meta late, none lost: {meta:#}"
    );
    // Withheld: the orders without ads consent, and the drifted browser copies of them.
    let drifted_denied = browser_only - browser_only_at_meta;
    assert_eq!(meta["withheld"]["consent_denied"].as_u64(), Some(consent_denied + drifted_denied), "{meta:#}");
    // Deduplicated: every order both sides reported, once, and the drift's reloads of a browser copy.
    assert_eq!(ga4["deduplicated"].as_u64(), Some(browser_reported + drift_reloads), "{ga4:#}");
    assert_eq!(ga4["delivered"].as_u64(), Some(orders + browser_only), "the drifted ids count twice: {ga4:#}");
    assert_eq!(day["browser_only"].as_u64(), Some(browser_only), "{day:#}");
    let row = |dest: &str| {
        day["report"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["destination"] == dest && r["currency"] == "EUR")
            .cloned()
            .unwrap()
    };
    assert_eq!(row("ga4")["unknown"].as_array().map(Vec::len), Some(browser_only as usize), "{day:#}");
    assert_eq!(row("meta")["unknown"].as_array().map(Vec::len), Some(browser_only_at_meta as usize));
    assert_eq!(row("ga4")["missing"], json!([]));
    assert_eq!(row("meta")["missing"], json!([]));
    // ORD-100 refunded in full: off the backend's revenue, and off GA4's, which got the refund.
    assert_eq!(row("ga4")["backend_revenue"].as_f64(), Some(25.0 * (orders - 1) as f64), "{day:#}");
    assert_eq!(row("ga4")["destination_revenue"].as_f64(), Some(25.0 * (orders - 1 + browser_only) as f64));

    // The metrics say the same.
    let last = scrapes.last().unwrap();
    let metric = |series: &str| last.get(series).copied().unwrap_or_else(|| panic!("{series} in {last:#?}"));
    assert_eq!(metric("tally_orders_matched_total"), browser_reported as f64, "none of the drift's");
    assert_eq!(metric("tally_orders_confirmed_total{currency=\"EUR\"}"), orders as f64);
    assert_eq!(metric("tally_browser_purchases_total{currency=\"EUR\"}"), (browser_reported + browser_only) as f64);
    assert_eq!(
        metric("tally_orders_delivered_total{destination=\"ga4\",currency=\"EUR\"}"),
        (orders + browser_only) as f64
    );
    assert_eq!(
        metric("tally_orders_deduplicated_total{destination=\"ga4\"}"),
        (browser_reported + drift_reloads) as f64
    );
    assert_eq!(
        metric("tally_orders_withheld_total{destination=\"meta\",reason=\"consent_denied\"}"),
        (consent_denied + drifted_denied) as f64
    );
    let queued = last.get("tally_outbox_queued{destination=\"meta\"}").copied().unwrap_or(0.0);
    assert_eq!(queued, 0.0, "the outage's backlog is gone (an empty destination is left out)");

    // The alerts, on the metrics as they were scraped minute by minute.
    let rules = dir.join("tally-alerts.yml");
    std::fs::write(&rules, rules_without_annotations()).unwrap();
    let all = [
        "TallyOrderCoverageLow",
        "TallyRevenueMismatch",
        "TallyDeadLetters",
        "TallyOutboxStuck",
        "TallyOutboxOld",
        "TallyDeduplicationCollapsed",
    ];
    let meta_page = vec![("severity", "page"), ("destination", "meta")];
    let meta_revenue = vec![("severity", "ticket"), ("destination", "meta"), ("currency", "EUR")];
    let ga4_revenue = vec![("severity", "ticket"), ("destination", "ga4"), ("currency", "EUR")];
    let firing = |minute: u32, alert: &str| -> Firing<'_> {
        match (minute, alert) {
            // 25 minutes into the outage: Meta short of orders and revenue, its outbox stuck.
            (115, "TallyOrderCoverageLow") | (115, "TallyOutboxStuck") => vec![meta_page.clone()],
            (115, "TallyRevenueMismatch") => vec![meta_revenue.clone()],
            // 85 minutes into the drift: every order counted twice, nothing deduplicated for an hour.
            (265, "TallyRevenueMismatch") => vec![ga4_revenue.clone(), meta_revenue.clone()],
            (265, "TallyDeduplicationCollapsed") => vec![vec![("severity", "page")]],
            _ => Vec::new(),
        }
    };
    // Before the outage, 50 minutes after it, and in the drift.
    let checks: Vec<Check<'_>> = [80, 115, 170, 265]
        .iter()
        .flat_map(|&m| all.iter().map(move |&a| (m, a)))
        .map(|(m, a)| (m, a, firing(m, a)))
        .collect();
    let test = dir.join("day.test.yml");
    std::fs::write(&test, promtool_test(&rules, &scrapes, &checks)).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .expect("promtool (Debian's prometheus package; cargo xtask test installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
