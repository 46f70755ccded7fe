//! A Pinterest Conversions API stand-in
//! (<https://developers.pinterest.com/docs/api/v5/events-create>):
//! `POST /v5/ad_accounts/{ad_account_id}/events` under `/pinterest`.
//!
//! Checks, as the API documents them: `Authorization: Bearer <conversion
//! token>` (else 401, code 2), the ad account in the path (else 403, code
//! 29), a JSON body `{"data": [...]}` of 1 to 1,000 events and no other key
//! (else 400). Each event must have an `event_name` Pinterest knows,
//! `action_source` (`web`, `app_android`, `app_ios`, `offline`), integer
//! `event_time` in seconds within 7 days, a non-empty string `event_id`,
//! `user_data` with `em`, `hashed_maids`, or both `client_ip_address` and
//! `client_user_agent`, whose hashed fields (`em`, `ph`, `external_id`, …) are
//! arrays of 64-hex digests; `custom_data.value` and `item_price` are decimal
//! strings, `num_items` and `quantity` integers; unknown keys are refused.
//! An event that breaks a rule, or one armed with
//! [`PinterestSandbox::reject_event`], is `failed` with an `error_message`
//! and the answer is HTTP 422 ("not all events were successfully processed")
//! whose `details` carry the per-event statuses of a 200 answer (the shape of
//! `details` is this stand-in's reading; the API declares it an object).
//! `?test=true` requests are checked and answered alike but record nothing.
//! Accepted events are flagged as duplicates on a repeated `event_name` +
//! `event_id`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::util::{is_sha256_hex, now_ms};

/// The conversion access token the sandbox accepts by default.
pub const ACCESS_TOKEN: &str = "pina-sandbox-conversion-token";
/// The ad account the sandbox accepts by default.
pub const AD_ACCOUNT_ID: &str = "549755885175";

/// The event names the API takes.
const EVENT_NAMES: &[&str] = &[
    "add_payment_info",
    "add_to_cart",
    "add_to_wishlist",
    "app_install",
    "app_open",
    "checkout",
    "contact",
    "custom",
    "customize_product",
    "find_location",
    "initiate_checkout",
    "lead",
    "page_visit",
    "schedule",
    "search",
    "signup",
    "start_trial",
    "submit_application",
    "subscribe",
    "view_category",
    "view_content",
    "watch_video",
];
const EVENT_KEYS: &[&str] = &[
    "event_name",
    "action_source",
    "event_time",
    "event_id",
    "event_source_url",
    "opt_out",
    "partner_name",
    "user_data",
    "custom_data",
    "app_id",
    "app_name",
    "app_version",
    "device_brand",
    "device_carrier",
    "device_model",
    "device_type",
    "os_version",
    "wifi",
    "language",
];
const HASHED: &[&str] =
    &["em", "hashed_maids", "ph", "ge", "db", "ln", "fn", "ct", "st", "zp", "country", "external_id"];
const USER_STRINGS: &[&str] = &["client_ip_address", "client_user_agent", "click_id", "partner_id"];
const CUSTOM_KEYS: &[&str] = &[
    "currency",
    "value",
    "content_ids",
    "content_name",
    "content_category",
    "content_brand",
    "contents",
    "num_items",
    "order_id",
    "search_string",
    "opt_out_type",
    "np",
];

/// One event Pinterest processed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PinterestRecord {
    /// `event_name`.
    pub event_name: String,
    /// `event_id`.
    pub event_id: String,
    /// `event_time`, Unix seconds.
    pub event_time: i64,
    /// `user_data` as sent.
    pub user_data: Map<String, Value>,
    /// `custom_data` as sent.
    pub custom_data: Option<Map<String, Value>>,
    /// `opt_out`.
    pub opt_out: Option<bool>,
    /// True when Pinterest would discard it as a duplicate.
    pub duplicate: bool,
}

/// A request or event Pinterest refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinterestDrop {
    /// The HTTP status of the answer.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

#[derive(Default)]
struct Inner {
    accepted: Vec<PinterestRecord>,
    dropped: Vec<PinterestDrop>,
    seen: HashSet<(String, String)>,
    rejected_ids: HashSet<String>,
    requests: u32,
    test_requests: u32,
}

/// The Pinterest sandbox.
#[derive(Clone, Default)]
pub struct PinterestSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// Slow mode.
    pub latency: Latency,
}

impl PinterestSandbox {
    /// The routes: `POST /v5/ad_accounts/{ad_account_id}/events`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v5/ad_accounts/{ad_account_id}/events", post(events))
            .route("/records", get(records))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every processed event (duplicates flagged; test requests record none).
    pub fn events(&self) -> Vec<PinterestRecord> {
        self.lock().accepted.clone()
    }

    /// Processed `checkout` events, duplicates excluded.
    pub fn checkouts(&self) -> Vec<PinterestRecord> {
        self.events().into_iter().filter(|r| r.event_name == "checkout" && !r.duplicate).collect()
    }

    /// Refused requests and events, and why.
    pub fn dropped(&self) -> Vec<PinterestDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// `?test=true` requests that passed the checks.
    pub fn test_requests(&self) -> u32 {
        self.lock().test_requests
    }

    /// Events with this `event_id` fail (the answer is a 422 listing them).
    pub fn reject_event(&self, event_id: &str) {
        self.lock().rejected_ids.insert(event_id.to_owned());
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        let mut i = self.lock();
        i.accepted.clear();
        i.dropped.clear();
        i.seen.clear();
        i.requests = 0;
        i.test_requests = 0;
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

fn check_hashes(i: usize, user: &Map<String, Value>) -> Result<(), String> {
    for (k, v) in user {
        if HASHED.contains(&k.as_str()) {
            let ok = v.as_array().is_some_and(|a| a.iter().all(|h| h.as_str().is_some_and(is_sha256_hex)));
            if !ok {
                return Err(format!("data[{i}].user_data.{k} must be an array of SHA-256 hashes (64 lower-case hex)"));
            }
        } else if USER_STRINGS.contains(&k.as_str()) {
            if !v.is_string() {
                return Err(format!("data[{i}].user_data.{k} must be a string"));
            }
        } else {
            return Err(format!("data[{i}].user_data.{k} is not a user_data field"));
        }
    }
    let has = |k: &str| user.get(k).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()));
    if !(has("em") || has("hashed_maids") || (has("client_ip_address") && has("client_user_agent"))) {
        return Err(format!(
            "data[{i}].user_data needs em, hashed_maids, or both client_ip_address and client_user_agent"
        ));
    }
    Ok(())
}

fn is_decimal(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty() && s.parse::<f64>().is_ok_and(f64::is_finite))
}

fn check_custom(i: usize, c: &Map<String, Value>) -> Result<(), String> {
    if let Some(k) = c.keys().find(|k| !CUSTOM_KEYS.contains(&k.as_str())) {
        return Err(format!("data[{i}].custom_data.{k} is not a custom_data field"));
    }
    if let Some(v) = c.get("value")
        && !is_decimal(v)
    {
        return Err(format!("data[{i}].custom_data.value must be a decimal string"));
    }
    if let Some(v) = c.get("currency")
        && !v.as_str().is_some_and(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(format!("data[{i}].custom_data.currency must be an ISO 4217 code"));
    }
    if let Some(v) = c.get("content_ids")
        && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(format!("data[{i}].custom_data.content_ids must be an array of strings"));
    }
    if let Some(v) = c.get("num_items")
        && !v.is_i64()
    {
        return Err(format!("data[{i}].custom_data.num_items must be an integer"));
    }
    for (j, item) in c.get("contents").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if item.get("item_price").is_some_and(|p| !is_decimal(p)) {
            return Err(format!("data[{i}].custom_data.contents[{j}].item_price must be a decimal string"));
        }
        if item.get("quantity").is_some_and(|q| !q.is_i64()) {
            return Err(format!("data[{i}].custom_data.contents[{j}].quantity must be an integer"));
        }
    }
    Ok(())
}

/// Why Pinterest would not process event `i`, if it would not.
fn check_event(i: usize, e: &Value, now_s: i64) -> Result<(), String> {
    let o = e.as_object().ok_or_else(|| format!("data[{i}] must be an object"))?;
    if let Some(k) = o.keys().find(|k| !EVENT_KEYS.contains(&k.as_str())) {
        return Err(format!("data[{i}].{k} is not an event field"));
    }
    let name = o.get("event_name").and_then(Value::as_str).unwrap_or_default();
    if !EVENT_NAMES.contains(&name) {
        return Err(format!("data[{i}].event_name {name:?} is not a Pinterest event name"));
    }
    let source = o.get("action_source").and_then(Value::as_str).unwrap_or_default();
    if !["web", "app_android", "app_ios", "offline"].contains(&source) {
        return Err(format!("data[{i}].action_source must be web, app_android, app_ios or offline"));
    }
    let t = o
        .get("event_time")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("data[{i}].event_time must be integer seconds"))?;
    if now_s - t > 7 * 86_400 || t - now_s > 15 * 60 {
        return Err(format!("data[{i}].event_time is outside the accepted window"));
    }
    if o.get("event_id").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(format!("data[{i}].event_id is required"));
    }
    if let Some(u) = o.get("event_source_url")
        && !u.as_str().is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err(format!("data[{i}].event_source_url must be an http(s) URL"));
    }
    if o.get("opt_out").is_some_and(|v| !v.is_boolean()) {
        return Err(format!("data[{i}].opt_out must be a boolean"));
    }
    let user =
        o.get("user_data").and_then(Value::as_object).ok_or_else(|| format!("data[{i}].user_data is required"))?;
    check_hashes(i, user)?;
    if let Some(c) = o.get("custom_data") {
        check_custom(i, c.as_object().ok_or_else(|| format!("data[{i}].custom_data must be an object"))?)?;
    }
    Ok(())
}

/// The query: `test=true` marks a test request.
#[derive(Deserialize, Default)]
struct EventsQuery {
    test: Option<String>,
}

async fn events(
    State(s): State<PinterestSandbox>,
    Path(ad_account_id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    match s.faults.take() {
        Mode::Up => {}
        Mode::Down => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                4197,
                "The endpoint has been ramped down and is currently not accepting any traffic.",
            );
        }
        Mode::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"code": 8, "message": "This request exceeded a rate limit."})),
            )
                .into_response();
        }
        Mode::Unauthorized => return error(StatusCode::UNAUTHORIZED, 2, "Authentication failed."),
    }
    let refuse = |status: StatusCode, code: i64, message: String| {
        s.lock().dropped.push(PinterestDrop { status: status.as_u16(), message: message.clone() });
        error(status, code, &message)
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(ACCESS_TOKEN) {
        return refuse(StatusCode::UNAUTHORIZED, 2, "Authentication failed.".into());
    }
    if ad_account_id != AD_ACCOUNT_ID {
        return refuse(StatusCode::FORBIDDEN, 29, "You are not permitted to access that resource.".into());
    }
    let test = match q.test.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return refuse(StatusCode::BAD_REQUEST, 1, format!("test must be true or false, not {other:?}")),
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, 4196, "The request was invalid: not JSON.".into());
    };
    if let Some(k) = v.as_object().and_then(|o| o.keys().find(|k| *k != "data")) {
        return refuse(StatusCode::BAD_REQUEST, 4196, format!("The request was invalid: unknown key {k:?}."));
    }
    let data = match v.get("data").and_then(Value::as_array) {
        Some(d) if !d.is_empty() && d.len() <= 1000 => d.clone(),
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                4196,
                "The request was invalid: data must hold 1 to 1000 events.".into(),
            );
        }
    };
    let now_s = now_ms().div_euclid(1000);
    let mut inner = s.lock();
    let mut statuses = Vec::with_capacity(data.len());
    let mut records = Vec::new();
    for (i, e) in data.iter().enumerate() {
        let event_id = e.get("event_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let problem = match check_event(i, e, now_s) {
            Err(m) => Some(m),
            Ok(()) if inner.rejected_ids.contains(&event_id) => Some(format!("sandbox: event {event_id:?} rejected")),
            Ok(()) => None,
        };
        if let Some(m) = problem {
            inner.dropped.push(PinterestDrop { status: 422, message: m.clone() });
            statuses.push(json!({"status": "failed", "error_message": m, "warning_message": null}));
            continue;
        }
        statuses.push(json!({"status": "processed", "error_message": null, "warning_message": null}));
        records.push(PinterestRecord {
            event_name: e["event_name"].as_str().unwrap_or_default().to_owned(),
            event_id,
            event_time: e["event_time"].as_i64().unwrap_or_default(),
            user_data: e.get("user_data").and_then(Value::as_object).cloned().unwrap_or_default(),
            custom_data: e.get("custom_data").and_then(Value::as_object).cloned(),
            opt_out: e.get("opt_out").and_then(Value::as_bool),
            duplicate: false,
        });
    }
    let processed = records.len();
    if test {
        inner.test_requests += 1;
    } else {
        for mut r in records {
            r.duplicate = !inner.seen.insert((r.event_name.clone(), r.event_id.clone()));
            inner.accepted.push(r);
        }
    }
    drop(inner);
    let summary = json!({"num_events_received": data.len(), "num_events_processed": processed, "events": statuses});
    if processed == data.len() {
        axum::Json(summary).into_response()
    } else {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(
                json!({"code": 4179, "message": "Not all events were successfully processed.", "details": summary}),
            ),
        )
            .into_response()
    }
}

async fn records(State(s): State<PinterestSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EM: &str = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";

    fn ok(now: i64) -> Value {
        json!({"event_name":"checkout","action_source":"web","event_time":now,"event_id":"e1",
               "event_source_url":"https://shop.example/done","opt_out":false,
               "user_data":{"em":[EM],"click_id":"dj0yJnU9"},
               "custom_data":{"currency":"USD","value":"129.99","content_ids":["SKU_1"],"num_items":2,
                              "contents":[{"id":"SKU_1","item_price":"10.01","quantity":2}]}})
    }

    #[test]
    fn event_checks() {
        let now = 1_700_000_000;
        assert_eq!(check_event(0, &ok(now), now), Ok(()));
        let broken: [(&str, Value); 9] = [
            ("/user_data/em", json!(["jane@example.com"])),
            ("/user_data/em", json!(EM)),
            ("/event_time", json!(now * 1000)),
            ("/event_name", json!("Purchase")),
            ("/action_source", json!("website")),
            ("/custom_data/value", json!(129.99)),
            ("/custom_data/contents/0/item_price", json!(10.01)),
            ("/event_id", json!("")),
            ("/user_data", json!({"client_ip_address": "203.0.113.7"})),
        ];
        for (at, value) in broken {
            let mut e = ok(now);
            *e.pointer_mut(at).unwrap() = value;
            assert!(check_event(0, &e, now).is_err(), "{at} {e}");
        }
        let mut e = ok(now);
        e["pixel_id"] = json!("x");
        assert!(check_event(0, &e, now).is_err());
        // IP address and user agent together are enough to match.
        let mut e = ok(now);
        e["user_data"] = json!({"client_ip_address": "203.0.113.7", "client_user_agent": "Mozilla/5.0"});
        assert_eq!(check_event(0, &e, now), Ok(()));
    }
}
