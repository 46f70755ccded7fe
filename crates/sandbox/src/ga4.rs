//! A GA4 Measurement Protocol stand-in (<https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events>).
//!
//! Like the real `/mp/collect` it answers 204 to everything well-formed
//! enough to read, and silently drops what breaks the rules — here the drop
//! and its reason are recorded so a test or the inspector can see it. Like
//! the real `/debug/mp/collect` it answers 200 with `validationMessages`.
//! Purchases are deduplicated by `transaction_id` as GA4 does.
//!
//! The checks are written from the spec, independently of `tally-core`, so a
//! bug in Tally's payload builder shows up here.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::fault::FaultSwitch;

/// One event GA4 accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ga4Record {
    /// `client_id` of the request.
    pub client_id: String,
    /// `user_id`, if any.
    pub user_id: Option<String>,
    /// Event name.
    pub name: String,
    /// Event params as sent.
    pub params: Map<String, Value>,
    /// Whether `user_data` came with the request.
    pub had_user_data: bool,
    /// The request's `consent` object.
    pub consent: Option<Value>,
    /// True when GA4 would count it as a duplicate purchase (same `transaction_id` seen before).
    pub duplicate: bool,
}

impl Ga4Record {
    /// `params.transaction_id`.
    pub fn transaction_id(&self) -> Option<&str> {
        self.params.get("transaction_id").and_then(Value::as_str)
    }

    /// `params.value` × 1,000,000, rounded (exact comparison of money).
    pub fn value_micros(&self) -> Option<i64> {
        self.params.get("value").and_then(Value::as_f64).map(|v| (v * 1e6).round() as i64)
    }

    /// `params.currency`.
    pub fn currency(&self) -> Option<&str> {
        self.params.get("currency").and_then(Value::as_str)
    }
}

/// A request GA4 would drop, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ga4Drop {
    /// The validation code GA4's debug endpoint would give.
    pub code: &'static str,
    /// Field path.
    pub field_path: String,
    /// Description.
    pub description: String,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Ga4Record>,
    dropped: Vec<Ga4Drop>,
    seen_transactions: HashSet<String>,
    requests: u32,
}

/// The GA4 sandbox.
#[derive(Clone, Default)]
pub struct Ga4Sandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// A delay before each answer.
    pub latency: crate::Latency,
}

#[derive(Deserialize)]
struct MpQuery {
    measurement_id: Option<String>,
    api_secret: Option<String>,
    firebase_app_id: Option<String>,
}

const RESERVED_EVENTS: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
];

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !["_", "firebase_", "ga_", "google_", "gtag."].iter().any(|p| s.starts_with(p))
}

fn drop(code: &'static str, field_path: impl Into<String>, description: impl Into<String>) -> Ga4Drop {
    Ga4Drop { code, field_path: field_path.into(), description: description.into() }
}

/// Validates a request body as GA4 does; returns the problems.
pub fn validate(body: &[u8], now_micros: i64) -> Vec<Ga4Drop> {
    let mut out = Vec::new();
    if body.len() >= 130_000 {
        out.push(drop("VALUE_OUT_OF_BOUNDS", "", "JSON POST body must be smaller than 130kB"));
        return out;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        out.push(drop("VALUE_INVALID", "", "Unable to parse JSON"));
        return out;
    };
    let Some(o) = v.as_object() else {
        out.push(drop("VALUE_INVALID", "", "Body must be an object"));
        return out;
    };
    match o.get("client_id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => out.push(drop("VALUE_REQUIRED", "client_id", "client_id is required for web streams")),
    }
    if let Some(uid) = o.get("user_id")
        && uid.as_str().is_none_or(|s| s.chars().count() > 256)
    {
        out.push(drop("VALUE_INVALID", "user_id", "user_id must be a string of at most 256 characters"));
    }
    if o.contains_key("user_data") && !o.contains_key("user_id") {
        out.push(drop("VALUE_REQUIRED", "user_id", "user_id must be present whenever user_data is provided"));
    }
    if let Some(c) = o.get("consent") {
        for k in ["ad_user_data", "ad_personalization"] {
            if let Some(x) = c.get(k)
                && !matches!(x.as_str(), Some("GRANTED" | "DENIED"))
            {
                out.push(drop("VALUE_INVALID", format!("consent.{k}"), "expected GRANTED or DENIED"));
            }
        }
    }
    let Some(events) = o.get("events").and_then(Value::as_array) else {
        out.push(drop("VALUE_REQUIRED", "events", "events is required"));
        return out;
    };
    if events.is_empty() {
        out.push(drop("VALUE_REQUIRED", "events", "at least one event"));
    }
    if events.len() > 25 {
        out.push(drop("EXCEEDED_MAX_ENTITIES", "events", "A request can have at most 25 events"));
    }
    for (i, e) in events.iter().enumerate() {
        let at = |f: &str| format!("events[{i}]{f}");
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        if !valid_name(name) {
            out.push(drop("NAME_INVALID", at(".name"), format!("Event at index: [{i}] has invalid name [{name}]")));
        } else if RESERVED_EVENTS.contains(&name) {
            out.push(drop("NAME_RESERVED", at(".name"), format!("Event name [{name}] is reserved")));
        }
        if let Some(ts) = e.get("timestamp_micros") {
            match ts.as_i64() {
                Some(t) if (1_000_000_000_000_000..10_000_000_000_000_000).contains(&t) => {
                    if t < now_micros - 72 * 3_600 * 1_000_000 {
                        out.push(drop("VALUE_OUT_OF_BOUNDS", at(".timestamp_micros"), "older than 72 hours"));
                    }
                }
                _ => out.push(drop(
                    "VALUE_INVALID",
                    at(".timestamp_micros"),
                    "timestamp_micros must be 16-digit microseconds",
                )),
            }
        }
        let params = match e.get("params") {
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => {
                out.push(drop("VALUE_INVALID", at(".params"), "params must be an object"));
                continue;
            }
        };
        if params.keys().filter(|k| k.as_str() != "items").count() > 25 {
            out.push(drop("EXCEEDED_MAX_ENTITIES", at(".params"), "at most 25 parameters"));
        }
        for (k, v) in &params {
            if !valid_name(k) {
                out.push(drop("NAME_INVALID", at(&format!(".params.{k}")), "invalid parameter name"));
            }
            let max = match k.as_str() {
                "page_location" => 1000,
                "page_referrer" => 420,
                "page_title" => 300,
                _ => 100,
            };
            if v.as_str().is_some_and(|s| s.chars().count() > max) {
                out.push(drop("VALUE_OUT_OF_BOUNDS", at(&format!(".params.{k}")), "value too long"));
            }
        }
        if params.contains_key("value") && !params.get("currency").is_some_and(Value::is_string) {
            out.push(drop("VALUE_REQUIRED", at(".params.currency"), "currency is required when value is set"));
        }
        if let Some(c) = params.get("currency").and_then(Value::as_str)
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            out.push(drop("VALUE_INVALID", at(".params.currency"), "currency must be ISO 4217"));
        }
        if matches!(name, "purchase" | "refund") && !params.get("transaction_id").is_some_and(Value::is_string) {
            out.push(drop("VALUE_REQUIRED", at(".params.transaction_id"), "transaction_id is required"));
        }
        if let Some(items) = params.get("items") {
            match items.as_array() {
                Some(a) if a.len() <= 200 => {
                    for (j, it) in a.iter().enumerate() {
                        if it.get("item_id").is_none() && it.get("item_name").is_none() {
                            out.push(drop(
                                "VALUE_REQUIRED",
                                at(&format!(".params.items[{j}]")),
                                "item_id or item_name is required",
                            ));
                        }
                    }
                }
                _ => out.push(drop("VALUE_INVALID", at(".params.items"), "items must be an array of at most 200")),
            }
        }
    }
    out
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Ga4Sandbox {
    /// The routes: `POST /mp/collect`, `POST /debug/mp/collect`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/mp/collect", post(collect))
            .route("/debug/mp/collect", post(debug_collect))
            .route("/records", get(records))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many purchases [`purchases`](Self::purchases) would list, without
    /// copying them (for polling a long run).
    pub fn purchase_count(&self) -> usize {
        self.lock().accepted.iter().filter(|r| r.name == "purchase" && !r.duplicate).count()
    }

    /// Every accepted event, in arrival order.
    pub fn events(&self) -> Vec<Ga4Record> {
        self.lock().accepted.clone()
    }

    /// Accepted purchases GA4 would count (duplicates by `transaction_id` excluded).
    pub fn purchases(&self) -> Vec<Ga4Record> {
        self.events().into_iter().filter(|r| r.name == "purchase" && !r.duplicate).collect()
    }

    /// What was dropped, and why.
    pub fn dropped(&self) -> Vec<Ga4Drop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    fn record(&self, body: &[u8]) {
        let problems = validate(body, now_micros());
        let mut inner = self.lock();
        if !problems.is_empty() {
            inner.dropped.extend(problems);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let client_id = v["client_id"].as_str().unwrap_or_default().to_owned();
        let user_id = v.get("user_id").and_then(Value::as_str).map(str::to_owned);
        let had_user_data = v.get("user_data").is_some();
        let consent = v.get("consent").cloned();
        for e in v["events"].as_array().into_iter().flatten() {
            let params = e.get("params").and_then(Value::as_object).cloned().unwrap_or_default();
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let mut duplicate = false;
            if name == "purchase"
                && let Some(t) = params.get("transaction_id").and_then(Value::as_str)
            {
                duplicate = !inner.seen_transactions.insert(t.to_owned());
            }
            inner.accepted.push(Ga4Record {
                client_id: client_id.clone(),
                user_id: user_id.clone(),
                name,
                params,
                had_user_data,
                consent: consent.clone(),
                duplicate,
            });
        }
    }
}

fn check_query(q: &MpQuery) -> Option<Ga4Drop> {
    let id_ok = q.measurement_id.as_deref().is_some_and(|m| {
        m.strip_prefix("G-").is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
    }) || q.firebase_app_id.is_some();
    if !id_ok {
        return Some(drop("VALUE_REQUIRED", "measurement_id", "measurement_id (G-…) is required"));
    }
    if q.api_secret.as_deref().is_none_or(str::is_empty) {
        return Some(drop("VALUE_REQUIRED", "api_secret", "api_secret is required"));
    }
    None
}

async fn collect(State(s): State<Ga4Sandbox>, Query(q): Query<MpQuery>, headers: HeaderMap, body: Bytes) -> Response {
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    s.lock().requests += 1;
    if let Some(r) = s.faults.response() {
        return r;
    }
    if let Some(problem) = check_query(&q) {
        s.lock().dropped.push(problem);
        return StatusCode::NO_CONTENT.into_response();
    }
    let json_ct =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        s.lock().dropped.push(drop("VALUE_INVALID", "", "Content-Type must be application/json"));
        return StatusCode::NO_CONTENT.into_response();
    }
    s.record(&body);
    StatusCode::NO_CONTENT.into_response()
}

async fn debug_collect(State(s): State<Ga4Sandbox>, Query(q): Query<MpQuery>, body: Bytes) -> Response {
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    s.lock().requests += 1;
    if let Some(r) = s.faults.response() {
        return r;
    }
    let mut problems = validate(&body, now_micros());
    if let Some(p) = check_query(&q) {
        problems.push(p);
    }
    let messages: Vec<Value> = problems
        .iter()
        .map(|p| json!({"fieldPath": p.field_path, "description": p.description, "validationCode": p.code}))
        .collect();
    axum::Json(json!({ "validationMessages": messages })).into_response()
}

async fn records(State(s): State<Ga4Sandbox>) -> Response {
    let inner = s.lock();
    axum::Json(json!({ "accepted": inner.accepted, "dropped": inner.dropped })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        now_micros()
    }

    #[test]
    fn canonical_request_is_valid() {
        let body = json!({"client_id":"1.2","events":[{"name":"purchase","timestamp_micros": now(),
            "params":{"transaction_id":"T","currency":"USD","value":1.5,"items":[{"item_id":"A"}]}}]});
        assert!(validate(body.to_string().as_bytes(), now()).is_empty());
    }

    #[test]
    fn catches_what_ga4_drops() {
        let cases = [
            (json!({"events":[{"name":"x"}]}), "VALUE_REQUIRED"),
            (json!({"client_id":"1","events":[{"name":"_bad"}]}), "NAME_INVALID"),
            (json!({"client_id":"1","events":[{"name":"session_start"}]}), "NAME_RESERVED"),
            (
                json!({"client_id":"1","events":[{"name":"purchase","params":{"value":1,"currency":"USD"}}]}),
                "VALUE_REQUIRED",
            ),
            (json!({"client_id":"1","events":[{"name":"add_to_cart","params":{"value":1}}]}), "VALUE_REQUIRED"),
            (json!({"client_id":"1","events":[{"name":"x","timestamp_micros":1757409591000i64}]}), "VALUE_INVALID"),
            (json!({"client_id":"1","user_data":{},"events":[{"name":"x"}]}), "VALUE_REQUIRED"),
            (
                json!({"client_id":"1","events":(0..26).map(|_| json!({"name":"x"})).collect::<Vec<_>>()}),
                "EXCEEDED_MAX_ENTITIES",
            ),
        ];
        for (body, code) in cases {
            let p = validate(body.to_string().as_bytes(), now());
            assert!(p.iter().any(|d| d.code == code), "{body}: {p:?}");
        }
    }

    #[tokio::test]
    async fn records_and_dedups_purchases() {
        let s = Ga4Sandbox::default();
        let server = crate::Sandbox { ga4: s.clone(), ..Default::default() }.serve("127.0.0.1:0").await.unwrap();
        let url = format!("{}/ga4/mp/collect?measurement_id=G-T1&api_secret=x", server.base_url);
        let body = json!({"client_id":"1.2","events":[{"name":"purchase","params":{"transaction_id":"T","currency":"USD","value":1}}]});
        let http = reqwest::Client::new();
        for _ in 0..2 {
            let r = http.post(&url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 204);
        }
        assert_eq!(s.events().len(), 2);
        assert_eq!(s.purchases().len(), 1);
        // A malformed request still answers 204, as GA4 does, but is recorded as dropped.
        let r = http.post(&url).json(&json!({"events":[]})).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert!(!s.dropped().is_empty());
        s.faults.fail_next(1);
        assert_eq!(http.post(&url).json(&body).send().await.unwrap().status(), 503);
        assert_eq!(http.post(&url).json(&body).send().await.unwrap().status(), 204);
    }
}
