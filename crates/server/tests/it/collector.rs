//! The collector under normal and hostile requests (loopback only).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tally_sandbox::Sandbox;
use tally_server::collector::{CollectorConfig, router};
use tally_server::{Ga4Config, ServerTracker};

const ORIGIN: &str = "https://shop.example";

struct Harness {
    sandbox: Sandbox,
    _ga4: tally_sandbox::RunningSandbox,
    url: String,
    http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

async fn harness(rate_per_ip: u32) -> Harness {
    harness_with(rate_per_ip, true).await
}

async fn harness_with(rate_per_ip: u32, deliver_inline: bool) -> Harness {
    let sandbox = Sandbox::new();
    let ga4 = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "s").base_url(format!("{}/ga4", ga4.base_url)))
        .build()
        .unwrap();
    let config = CollectorConfig {
        rate_per_ip,
        burst_per_ip: rate_per_ip,
        max_body_bytes: 32 * 1024,
        metrics: true,
        deliver_inline,
        ..browser_and_server_config()
    };
    let (url, task) = listen(tracker, config).await;
    Harness {
        sandbox,
        _ga4: ga4,
        url,
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        _task: task,
    }
}

/// Site key `site-1` from [`ORIGIN`], and the server secret `s2s-secret`.
fn browser_and_server_config() -> CollectorConfig {
    CollectorConfig {
        site_keys: ["site-1".to_owned()].into(),
        allowed_origins: [ORIGIN.to_owned()].into(),
        server_secrets: ["s2s-secret".to_owned()].into(),
        ..CollectorConfig::default()
    }
}

/// The collector for `tracker` on a free loopback port: its base URL and task.
async fn listen(tracker: ServerTracker, config: CollectorConfig) -> (String, tokio::task::JoinHandle<()>) {
    let app = router(tracker, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    (format!("http://{addr}"), task)
}

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

fn batch(events: Value, consent: &str) -> Value {
    json!({
        "siteKey": "site-1",
        "sentAt": 1,
        "context": serde_json::from_str::<Value>(&format!(r#"{{"v":1,"createdAt":1,"clientId":"123.456","visitorId":"v-1","consent":{consent}}}"#)).unwrap(),
        "events": events,
    })
}

fn purchase(txn: &str) -> Value {
    json!({"name":"purchase","transactionId":txn,"value":12.5,"currency":"EUR","items":[{"itemId":"SKU","price":12.5,"quantity":1}]})
}

impl Harness {
    async fn post(&self, body: String, content_type: &str, origin: Option<&str>) -> reqwest::Response {
        let mut r = self.http.post(format!("{}/collect", self.url)).header("content-type", content_type).body(body);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().await.unwrap()
    }
}

#[tokio::test]
async fn accepts_json_and_beacon_text_and_reports_per_event() {
    let h = harness(1000).await;
    let body = batch(json!([purchase("T-1"), {"name":"add_to_cart","currency":"EURO"}]), GRANTED).to_string();
    let r = h.post(body.clone(), "application/json", Some(ORIGIN)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("_tally_vid=v-1;") && cookie.contains("HttpOnly"), "{cookie}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["status"], "accepted");
    assert_eq!(v["results"][1]["status"], "invalid");
    assert_eq!(v["results"][1]["field"], "currency");
    // sendBeacon sends text/plain; the same batch again is a duplicate.
    let r = h.post(body, "text/plain;charset=UTF-8", Some(ORIGIN)).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["status"], "duplicate");
    assert_eq!(h.sandbox.ga4.purchases().len(), 1);
    // IPs are truncated before forwarding; the metrics endpoint counts deliveries.
    let m = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tally_events_delivered_total{destination=\"ga4\"} 1"), "{m}");
}

#[tokio::test]
async fn consent_is_rechecked_on_the_server() {
    let h = harness(1000).await;
    let denied =
        r#"{"analytics_storage":"denied","ad_storage":"denied","ad_user_data":"denied","ad_personalization":"denied"}"#;
    let r = h.post(batch(json!([purchase("T-2")]), denied).to_string(), "application/json", Some(ORIGIN)).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["status"], "consent_denied");
    assert_eq!(h.sandbox.ga4.requests(), 0);
    // Forged consent values are refused, naming the field.
    let forged = r#"{"analytics_storage":"yes please"}"#;
    let r = h.post(batch(json!([purchase("T-3")]), forged).to_string(), "application/json", Some(ORIGIN)).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "consent.analytics_storage");
}

#[tokio::test]
async fn authentication() {
    let h = harness(1000).await;
    let body = batch(json!([purchase("T-4")]), GRANTED).to_string();
    assert_eq!(h.post(body.clone(), "application/json", Some("https://evil.example")).await.status(), 403);
    let mut wrong_key: Value = serde_json::from_str(&body).unwrap();
    wrong_key["siteKey"] = json!("nope");
    assert_eq!(h.post(wrong_key.to_string(), "application/json", Some(ORIGIN)).await.status(), 401);
    // A browser request must come from an allowed origin.
    assert_eq!(h.post(body.clone(), "application/json", None).await.status(), 403);
    // Server-to-server: a bearer secret, no site key, no origin.
    let mut s2s: Value = serde_json::from_str(&body).unwrap();
    s2s.as_object_mut().unwrap().remove("siteKey");
    let r = h
        .http
        .post(format!("{}/collect", h.url))
        .header("authorization", "Bearer s2s-secret")
        .json(&s2s)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pre = h
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/collect", h.url))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], ORIGIN);
}

#[tokio::test]
async fn hostile_requests_get_a_quick_4xx_and_the_server_keeps_serving() {
    let h = harness(1000).await;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![b'a'; 40 * 1024], 413),
        (b"{not json".to_vec(), 400),
        ("[".repeat(10_000).into_bytes(), 400),
        (vec![0xff, 0xfe, b'{', b'}'], 400),
        (br#"{"siteKey":"site-1","events":"lots"}"#.to_vec(), 400),
        (
            batch(
                json!((0..150).map(|i| json!({"name":"page_view","eventId":format!("e{i}")})).collect::<Vec<_>>()),
                GRANTED,
            )
            .to_string()
            .into_bytes(),
            413,
        ),
        (br#"{"siteKey":"site-1","context":{"v":99,"createdAt":1},"events":[]}"#.to_vec(), 400),
        (br#"{"siteKey":"site-1","context":"x","events":[]}"#.to_vec(), 400),
    ];
    for (body, want) in cases {
        let started = std::time::Instant::now();
        let r = h
            .http
            .post(format!("{}/collect", h.url))
            .header("origin", ORIGIN)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // Wrong types and huge item arrays inside events are per-event `invalid`, not a crash.
    let events = json!([
        {"name": 5},
        {"name":"purchase","transactionId":"T-5","value":"12,50","currency":"EUR"},
        {"name":"add_to_cart","items": (0..300).map(|i| json!({"itemId": i.to_string()})).collect::<Vec<_>>()},
        {"name":"add_to_cart","params":{"deep":{"a":{"b":1}}}},
    ]);
    let r = h.post(batch(events, GRANTED).to_string(), "application/json", Some(ORIGIN)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let fields: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["field"].as_str().unwrap_or("")).collect();
    assert_eq!(fields, ["name", "value", "items", "params"]);
    // Still serving.
    let r = h.post(batch(json!([purchase("T-6")]), GRANTED).to_string(), "application/json", Some(ORIGIN)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn rate_limit_per_ip() {
    let h = harness(3).await;
    let body = batch(json!([]), GRANTED).to_string();
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = h.post(body.clone(), "application/json", Some(ORIGIN)).await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert!(codes.contains(&429));
}

#[tokio::test]
async fn in_outbox_mode_the_answer_comes_before_delivery_and_the_worker_delivers_once() {
    let h = harness_with(1000, false).await;
    // GA4 is down: an inline collector would wait for the failed attempt; this one
    // answers as soon as the events are in the outbox.
    h.sandbox.ga4.faults.set(tally_sandbox::Mode::Down);
    let body = batch(json!([purchase("Q-1"), {"name":"add_to_cart","currency":"EURO"}]), GRANTED).to_string();
    let r = h.post(body.clone(), "application/json", Some(ORIGIN)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["status"], "accepted");
    assert_eq!(v["results"][1]["status"], "invalid", "validation still answers at once");
    assert!(h.sandbox.ga4.purchases().is_empty());
    h.sandbox.ga4.faults.set(tally_sandbox::Mode::Up);
    let started = std::time::Instant::now();
    while h.sandbox.ga4.purchases().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.sandbox.ga4.purchases().len(), 1, "delivered by the worker");
    // The browser sends the batch again (its answer was lost). An inline collector
    // would answer "duplicate" after its attempt; this one answers before any
    // attempt, and the worker drops the duplicate.
    let v: Value = h.post(body, "text/plain", Some(ORIGIN)).await.json().await.unwrap();
    assert_eq!(v["results"][0]["status"], "accepted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.sandbox.ga4.purchases().len(), 1, "counted once");
    assert_eq!(h.sandbox.ga4.events().len(), 1, "the re-sent batch never reached GA4");
    // Consent is still enforced before anything is written.
    let denied =
        r#"{"ad_storage":"denied","analytics_storage":"denied","ad_user_data":"denied","ad_personalization":"denied"}"#;
    let v: Value = h
        .post(batch(json!([purchase("Q-2")]), denied).to_string(), "application/json", Some(ORIGIN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["results"][0]["status"], "consent_denied");
}

/// A collector delivering to GA4 and Meta (in outbox mode for browsers), and a
/// bearer-authenticated POST of `body`.
async fn server_harness() -> (Sandbox, tally_sandbox::RunningSandbox, String, reqwest::Client) {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "s").base_url(run.url("/ga4")))
        .meta(tally_server::MetaConfig::new("1234567890", tally_sandbox::meta::ACCESS_TOKEN).base_url(run.url("/meta")))
        // Analytics only, for calls whose context says nothing about consent.
        .default_consent(tally_core::ConsentState {
            analytics_storage: tally_core::ConsentSignal::Granted,
            ..Default::default()
        })
        .retry(tally_server::RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
        })
        .build()
        .unwrap();
    // Browsers would get an answer before delivery; server calls never do.
    let config = CollectorConfig { rate_per_ip: 0, deliver_inline: false, ..browser_and_server_config() };
    let (url, _task) = listen(tracker, config).await;
    (sandbox, run, format!("{url}/collect"), reqwest::Client::new())
}

fn server_body(txn: &str, consent: &str) -> Value {
    let context: Value = serde_json::from_str(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"123.456","pageUrl":"https://shop.example/checkout","consent":{consent},"userData":{{"email":"Jane.Doe@Example.com"}}}}"#
    ))
    .unwrap();
    json!({"context": context, "ipAddress": "203.0.113.77", "userAgent": "Mozilla/5.0 (buyer)", "events": [purchase(txn), {"name":"purchase"}]})
}

#[tokio::test]
async fn server_calls_get_the_outcome_at_every_destination() {
    let (sandbox, _run, url, http) = server_harness().await;
    let post = |body: Value| http.post(&url).bearer_auth("s2s-secret").json(&body).send();
    let r = post(server_body("S-1", GRANTED)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no visitor cookie for a backend");
    let v: Value = r.json().await.unwrap();
    let first = &v["results"][0];
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["destinations"]["ga4"], json!({"outcome":"sent","attempts":1}), "{v}");
    assert_eq!(first["destinations"]["meta"], json!({"outcome":"sent","attempts":1}), "{v}");
    // An invalid event is answered as before, with no destinations.
    assert_eq!(v["results"][1]["status"], "invalid");
    assert!(v["results"][1].get("destinations").is_none());
    assert_eq!(sandbox.ga4.purchases().len(), 1);
    // The visitor's IP (truncated) and user agent came from the body, not from the backend's request;
    // the raw email was hashed by the collector.
    let meta = sandbox.traffic.under("/meta");
    assert!(meta[0].body.contains("203.0.113.0") && meta[0].body.contains("Mozilla/5.0 (buyer)"), "{}", meta[0].body);
    assert!(!meta[0].body.to_lowercase().contains("jane.doe"), "raw email left the collector");
    assert!(meta[0].body.contains("\"em\""), "the hashed email went to Meta: {}", meta[0].body);

    // The same purchase again: a duplicate everywhere.
    let v: Value = post(server_body("S-1", GRANTED)).await.unwrap().json().await.unwrap();
    for d in ["ga4", "meta"] {
        assert_eq!(
            v["results"][0]["destinations"][d],
            json!({"outcome":"skipped","reason":"duplicate","detail":"duplicate"})
        );
    }
    assert_eq!(v["results"][0]["status"], "duplicate");

    // ad_user_data denied: Meta is skipped with the consent reason, GA4 still gets it.
    let no_user_data = r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"denied","ad_personalization":"denied"}"#;
    let v: Value = post(server_body("S-2", no_user_data)).await.unwrap().json().await.unwrap();
    let meta = &v["results"][0]["destinations"]["meta"];
    assert_eq!(meta["outcome"], "skipped");
    assert_eq!(meta["reason"], "consent_denied");
    assert_eq!(v["results"][0]["destinations"]["ga4"]["outcome"], "sent");

    // Meta is down: queued with the typed error, then delivered once by the worker.
    sandbox.meta.faults.set(tally_sandbox::Mode::Down);
    let v: Value = post(server_body("S-3", GRANTED)).await.unwrap().json().await.unwrap();
    let meta = &v["results"][0]["destinations"]["meta"];
    assert_eq!(meta["outcome"], "queued", "{v}");
    assert_eq!(meta["error"]["code"], "rejected", "{v}");
    assert_eq!(meta["error"]["httpStatus"], 503, "{v}");
    assert_eq!(v["results"][0]["status"], "accepted");
    sandbox.meta.faults.set(tally_sandbox::Mode::Up);
    let delivered = |n: usize| sandbox.meta.purchases().iter().filter(|p| p.currency() == Some("EUR")).count() >= n;
    let started = std::time::Instant::now();
    while !delivered(2) && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sandbox.meta.purchases().len(), 2, "S-1 and S-3, once each");

    // A context without consent: the tracker's default consent decides (analytics only here).
    let mut unsaid = server_body("S-6", GRANTED);
    unsaid["context"].as_object_mut().unwrap().remove("consent");
    let v: Value = post(unsaid).await.unwrap().json().await.unwrap();
    assert_eq!(v["results"][0]["destinations"]["ga4"]["outcome"], "sent", "{v}");
    assert_eq!(v["results"][0]["destinations"]["meta"]["reason"], "consent_denied", "{v}");

    // A wrong secret is a 401 that says what is missing.
    let r = http.post(&url).bearer_auth("wrong").json(&server_body("S-4", GRANTED)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("bearer"), "{v}");
    // A malformed ipAddress is refused, naming the field.
    let mut bad = server_body("S-5", GRANTED);
    bad["ipAddress"] = json!("not an ip");
    let r = post(bad).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "ipAddress");
}
