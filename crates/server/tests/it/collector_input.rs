//! What the collector accepts at its edge (loopback only): credentials with
//! any letter case of the scheme, and refusals that name the wrong credential;
//! event times that no configured destination accepts; consent values only
//! in the form the OpenAPI document gives.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tally_sandbox::Sandbox;
use tally_server::collector::{CollectorConfig, serve_router};
use tally_server::{Ga4Config, ServerTracker};

const ORIGIN: &str = "https://shop.example";
const SECRET: &str = "s2s-secret";

struct Collector {
    sandbox: Sandbox,
    _stand_ins: tally_sandbox::RunningSandbox,
    url: String,
    http: reqwest::Client,
}

/// `tally serve`'s routes for a tracker delivering to the GA4 stand-in (and
/// to a webhook stand-in with `webhook`): site key `site-1` from [`ORIGIN`],
/// server secret [`SECRET`] unless `secrets` says otherwise.
async fn collector(deliver_inline: bool, webhook: bool, secrets: &[&str]) -> Collector {
    let sandbox = Sandbox::new();
    let stand_ins = sandbox.serve("127.0.0.1:0").await.unwrap();
    let mut builder = ServerTracker::builder().ga4(Ga4Config::new("G-TEST123", "s").base_url(stand_ins.url("/ga4")));
    if webhook {
        builder = builder.webhook(
            "warehouse",
            tally_server::WebhookConfig::new(
                stand_ins.url("/webhook/warehouse"),
                tally_sandbox::webhook::DEFAULT_SECRET,
            ),
        );
    }
    let config = CollectorConfig {
        site_keys: ["site-1".to_owned()].into(),
        allowed_origins: [ORIGIN.to_owned()].into(),
        server_secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        rate_per_ip: 0,
        deliver_inline,
        ..CollectorConfig::default()
    };
    let app = serve_router(builder.build().unwrap(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Collector {
        sandbox,
        _stand_ins: stand_ins,
        url: format!("http://{addr}"),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
    }
}

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

fn body(events: Value, consent: Value) -> Value {
    json!({
        "siteKey": "site-1",
        "context": {"v":1,"createdAt":1,"clientId":"123.456","consent":consent},
        "events": events,
    })
}

fn purchase(txn: &str) -> Value {
    json!({"name":"purchase","transactionId":txn,"value":12.5,"currency":"EUR","items":[{"itemId":"SKU","price":12.5,"quantity":1}]})
}

fn now_ms() -> i64 {
    tally_server::now_ms()
}

impl Collector {
    /// POSTs `body` to `/collect` with the `Authorization` header `auth` (or
    /// from the browser origin without one); the status and the JSON answer.
    async fn collect(&self, body: &Value, auth: Option<&str>) -> (u16, Value) {
        let mut r = self.http.post(format!("{}/collect", self.url)).json(body);
        r = match auth {
            Some(a) => r.header("authorization", a),
            None => r.header("origin", ORIGIN),
        };
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str, auth: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.url)).header("authorization", auth).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn basic(user_and_password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(user_and_password)
}

#[tokio::test]
async fn auth_scheme_names_are_case_insensitive() {
    let c = collector(true, false, &[SECRET]).await;
    let mut s2s = body(json!([purchase("A-1")]), serde_json::from_str(GRANTED).unwrap());
    s2s.as_object_mut().unwrap().remove("siteKey");
    // RFC 9110 §11.1: the scheme is case-insensitive; one or more spaces follow it.
    for (i, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"].into_iter().enumerate() {
        let mut b = s2s.clone();
        b["events"] = json!([purchase(&format!("A-{i}"))]);
        let (status, v) = c.collect(&b, Some(&format!("{scheme} {SECRET}"))).await;
        assert_eq!(status, 200, "{scheme}: {v}");
        assert_eq!(v["results"][0]["destinations"]["ga4"]["outcome"], "sent", "{scheme}: {v}");
    }
    let (status, _) = c.collect(&s2s, Some(&format!("bearer   {SECRET}"))).await;
    assert_eq!(status, 200);
    assert_eq!(c.sandbox.ga4.purchases().len(), 4);
    // The status page: bearer or Basic, any case.
    for auth in [format!("bearer {SECRET}"), format!("BASIC {}", basic(&format!("shop:{SECRET}")))] {
        for path in ["/status", "/status.json"] {
            let (status, text) = c.get(path, &auth).await;
            assert_eq!(status, 200, "{path} with {auth}: {text}");
        }
    }
}

#[tokio::test]
async fn a_refusal_names_the_credential_that_was_wrong() {
    let c = collector(true, false, &[SECRET]).await;
    let granted: Value = serde_json::from_str(GRANTED).unwrap();
    let with_key = body(json!([purchase("W-1")]), granted.clone());
    let mut without_key = with_key.clone();
    without_key.as_object_mut().unwrap().remove("siteKey");

    // A bearer secret that matches no server secret: about the secret, not a site key never sent.
    let (status, v) = c.collect(&without_key, Some("Bearer wrong")).await;
    assert_eq!(status, 401);
    let reason = v["error"].as_str().unwrap();
    assert!(reason.contains("bearer secret matches none"), "{reason}");
    assert!(!reason.contains("siteKey"), "{reason}");
    // A wrong bearer secret is refused even beside a valid site key.
    let (status, v) = c.collect(&with_key, Some("bearer wrong")).await;
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bearer secret matches none"), "{v}");
    // An unknown site key, from a browser.
    let mut wrong_key = with_key.clone();
    wrong_key["siteKey"] = json!("nope");
    let (status, v) = c.collect(&wrong_key, None).await;
    assert_eq!(status, 401);
    let reason = v["error"].as_str().unwrap();
    assert!(reason.starts_with("unknown siteKey") && !reason.contains("bearer"), "{reason}");
    // Neither.
    let (status, v) = c.collect(&without_key, None).await;
    assert_eq!(status, 401);
    assert!(v["error"].as_str().unwrap().starts_with("no credentials"), "{v}");
    assert!(c.sandbox.ga4.purchases().is_empty());

    // The status page says which secret was wrong.
    let (status, text) = c.get("/status.json", "Bearer wrong").await;
    assert_eq!(status, 401);
    assert!(text.contains("bearer secret matches none"), "{text}");
    let (status, text) = c.get("/status.json", &format!("Basic {}", basic("shop:wrong"))).await;
    assert_eq!(status, 401);
    assert!(text.contains("Basic password matches none"), "{text}");

    // A collector without server secrets says so to a backend that sends one.
    let c = collector(true, false, &[]).await;
    let (status, v) = c.collect(&without_key, Some(&format!("Bearer {SECRET}"))).await;
    assert_eq!(status, 401);
    assert!(v["error"].as_str().unwrap().contains("server_secrets is empty"), "{v}");
}

#[tokio::test]
async fn event_times_no_destination_accepts_are_invalid_with_the_reason() {
    for deliver_inline in [true, false] {
        let c = collector(deliver_inline, false, &[SECRET]).await;
        let now = now_ms();
        let at = |txn: &str, ms: i64| {
            let mut p = purchase(txn);
            p["occurredAt"] = json!(ms);
            p
        };
        let events = json!([
            at("T-9999", 253_402_300_799_000), // 9999-12-31T23:59:59Z
            at("T-future", now + 20 * 60_000), // beyond the 15-minute clock-skew allowance
            at("T-old", now - 4 * 86_400_000), // GA4, the only destination, takes 72 hours
            at("T-skew", now + 60_000),        // a clock a minute fast: fine
            at("T-recent", now - 3_600_000),
        ]);
        let (status, v) = c.collect(&body(events.clone(), serde_json::from_str(GRANTED).unwrap()), None).await;
        assert_eq!(status, 200, "{v}");
        let r = v["results"].as_array().unwrap();
        assert_eq!(r.len(), 5, "{v}");
        for (i, want) in
            ["ahead of the collector's clock", "ahead of the collector's clock", "ga4's time window of 72 hours"]
                .into_iter()
                .enumerate()
        {
            assert_eq!(r[i]["status"], "invalid", "{deliver_inline}: {v}");
            assert_eq!(r[i]["field"], "occurredAt", "{v}");
            assert!(r[i]["reason"].as_str().unwrap().contains(want), "{}", r[i]);
            assert!(!r[i]["eventId"].as_str().unwrap().is_empty(), "{}", r[i]);
        }
        assert_eq!(r[3]["status"], "accepted", "{v}");
        assert_eq!(r[4]["status"], "accepted", "{v}");
        let started = std::time::Instant::now();
        while c.sandbox.ga4.purchases().len() < 2 && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(c.sandbox.ga4.purchases().len(), 2, "only the two in the window reached GA4");
    }

    // A webhook takes events of any age: an old one is accepted (and withheld
    // from GA4 with its reason), a future one still refused.
    let c = collector(true, true, &[SECRET]).await;
    let now = now_ms();
    let mut old = purchase("W-old");
    old["occurredAt"] = json!(now - 30 * 86_400_000);
    let mut future = purchase("W-9999");
    future["occurredAt"] = json!(253_402_300_799_000_i64);
    let mut b = body(json!([old, future]), serde_json::from_str(GRANTED).unwrap());
    b.as_object_mut().unwrap().remove("siteKey");
    let (status, v) = c.collect(&b, Some(&format!("Bearer {SECRET}"))).await;
    assert_eq!(status, 200, "{v}");
    let old = &v["results"][0];
    assert_eq!(old["status"], "accepted", "{v}");
    assert_eq!(old["destinations"]["ga4"]["reason"], "outside_window", "{v}");
    assert_eq!(old["destinations"]["webhook:warehouse"]["outcome"], "sent", "{v}");
    assert_eq!(v["results"][1]["status"], "invalid", "{v}");
    assert_eq!(v["results"][1]["field"], "occurredAt", "{v}");
}

#[tokio::test]
async fn consent_values_are_the_strings_the_document_lists() {
    let c = collector(true, false, &[SECRET]).await;
    for (key, value) in [
        ("ad_storage", json!(true)),
        ("analytics_storage", json!(false)),
        ("ad_user_data", json!("GRANTED")),
        ("ad_personalization", json!(1)),
    ] {
        let mut consent: Value = serde_json::from_str(GRANTED).unwrap();
        consent[key] = value.clone();
        let (status, v) = c.collect(&body(json!([purchase("C-1")]), consent), None).await;
        assert_eq!(status, 400, "{key}: {value}: {v}");
        assert_eq!(v["field"], format!("consent.{key}"), "{v}");
        assert!(v["error"].as_str().unwrap().contains(r#""granted", "denied" or "unknown""#), "{v}");
    }
    assert!(c.sandbox.ga4.purchases().is_empty());
    // The three strings, and null or absent for unknown.
    let consent =
        json!({"ad_storage":"denied","analytics_storage":"granted","ad_user_data":"unknown","ad_personalization":null});
    let (status, v) = c.collect(&body(json!([purchase("C-2")]), consent), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");
}
