//! A TikTok Events API 2.0 stand-in (<https://business-api.tiktok.com/portal/docs?id=1771100865818625>):
//! `POST /open_api/v1.3/event/track/` under `/tiktok`.
//!
//! Like TikTok it answers HTTP 200 with a `code` for most outcomes: `0`
//! success, `40001` bad access token, `40002` invalid parameters (nothing
//! processed), `20001` partial success (some events rejected — see
//! [`TikTokSandbox::reject_event`]). Checks: the `Access-Token` header,
//! `event_source` `web`, `event_source_id` (the configured pixel code), `data`
//! of 1 to 1,000 events with `event`, integer `event_time` in seconds within 7
//! days, `event_id`, `user` whose `email` / `phone` / `external_id` are 64-hex
//! digests, `ttclid` a string, `page.url` an http(s) URL, and
//! `limited_data_use` a boolean. Events are deduplicated by `event` +
//! `event_id` within 48 hours.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::util::{is_sha256_hex, now_ms, trace_id};

/// The access token the sandbox accepts by default.
pub const ACCESS_TOKEN: &str = "sandbox-tiktok-token";
/// The pixel code the sandbox accepts by default.
pub const PIXEL_CODE: &str = "C4SANDBOXPIXEL";

/// One event TikTok accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TikTokRecord {
    /// `event`.
    pub event: String,
    /// `event_id`.
    pub event_id: Option<String>,
    /// `event_time`, Unix seconds.
    pub event_time: i64,
    /// `user` as sent.
    pub user: Map<String, Value>,
    /// `properties` as sent.
    pub properties: Option<Map<String, Value>>,
    /// `limited_data_use`.
    pub limited_data_use: Option<bool>,
    /// The request's `test_event_code`.
    pub test_event_code: Option<String>,
    /// True when TikTok would discard it as a duplicate.
    pub duplicate: bool,
}

/// A request or event TikTok rejected, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TikTokDrop {
    /// TikTok's `code`.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

struct Inner {
    access_token: String,
    pixel_code: String,
    accepted: Vec<TikTokRecord>,
    dropped: Vec<TikTokDrop>,
    seen: HashMap<(String, String), i64>,
    rejected_ids: HashSet<String>,
    requests: u32,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            access_token: ACCESS_TOKEN.into(),
            pixel_code: PIXEL_CODE.into(),
            accepted: Vec::new(),
            dropped: Vec::new(),
            seen: HashMap::new(),
            rejected_ids: HashSet::new(),
            requests: 0,
        }
    }
}

/// The TikTok sandbox.
#[derive(Clone, Default)]
pub struct TikTokSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// Slow mode.
    pub latency: Latency,
}

impl TikTokSandbox {
    /// The routes: `POST /open_api/v1.3/event/track/`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/open_api/v1.3/event/track/", post(track))
            .route("/records", get(records))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every accepted event (duplicates flagged).
    pub fn events(&self) -> Vec<TikTokRecord> {
        self.lock().accepted.clone()
    }

    /// Accepted `CompletePayment` events, duplicates excluded.
    pub fn purchases(&self) -> Vec<TikTokRecord> {
        self.events().into_iter().filter(|r| r.event == "CompletePayment" && !r.duplicate).collect()
    }

    /// Rejected requests and events, and why.
    pub fn dropped(&self) -> Vec<TikTokDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Events with this `event_id` are rejected (the answer is a partial success, code 20001).
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
    }
}

fn answer(code: i64, message: &str, data: Value) -> Response {
    axum::Json(json!({"code": code, "message": message, "request_id": trace_id(code as u64), "data": data}))
        .into_response()
}

fn check_event(i: usize, e: &Value, now_s: i64) -> Result<(), String> {
    let o = e.as_object().ok_or_else(|| format!("data[{i}] must be an object"))?;
    if o.get("event").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(format!("data[{i}].event is required"));
    }
    let t = o
        .get("event_time")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("data[{i}].event_time must be integer seconds"))?;
    if now_s - t > 7 * 86_400 || t - now_s > 15 * 60 {
        return Err(format!("data[{i}].event_time is outside the accepted window"));
    }
    if let Some(id) = o.get("event_id")
        && !id.is_string()
    {
        return Err(format!("data[{i}].event_id must be a string"));
    }
    let user = o.get("user").and_then(Value::as_object).ok_or_else(|| format!("data[{i}].user is required"))?;
    for k in ["email", "phone", "external_id"] {
        if let Some(v) = user.get(k)
            && !v.as_str().is_some_and(is_sha256_hex)
        {
            return Err(format!("data[{i}].user.{k} must be SHA-256 hashed (64 lower-case hex digits)"));
        }
    }
    for k in ["ttclid", "ip", "user_agent", "ttp"] {
        if let Some(v) = user.get(k)
            && !v.is_string()
        {
            return Err(format!("data[{i}].user.{k} must be a string"));
        }
    }
    if let Some(p) = o.get("page") {
        let ok =
            p.get("url").and_then(Value::as_str).is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
        if !ok {
            return Err(format!("data[{i}].page.url must be an http(s) URL"));
        }
    }
    if let Some(l) = o.get("limited_data_use")
        && !l.is_boolean()
    {
        return Err(format!("data[{i}].limited_data_use must be a boolean"));
    }
    Ok(())
}

async fn track(State(s): State<TikTokSandbox>, headers: HeaderMap, body: Bytes) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    match s.faults.take() {
        Mode::Up => {}
        Mode::Down => return (StatusCode::SERVICE_UNAVAILABLE, "sandbox: destination down").into_response(),
        Mode::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"code": 40100, "message": "Too many requests"})),
            )
                .into_response();
        }
        Mode::Unauthorized => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"code": 40105, "message": "sandbox: access token revoked"})),
            )
                .into_response();
        }
    }
    let refuse = |s: &TikTokSandbox, code: i64, message: String| {
        s.lock().dropped.push(TikTokDrop { code, message: message.clone() });
        answer(code, &message, json!({}))
    };
    let (token, pixel) = {
        let i = s.lock();
        (i.access_token.clone(), i.pixel_code.clone())
    };
    if headers.get("access-token").and_then(|v| v.to_str().ok()) != Some(token.as_str()) {
        return refuse(&s, 40001, "Access token is incorrect or has been revoked.".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&s, 40002, "Invalid JSON".into());
    };
    if v.get("event_source").and_then(Value::as_str) != Some("web") {
        return refuse(&s, 40002, "event_source must be web".into());
    }
    if v.get("event_source_id").and_then(Value::as_str) != Some(pixel.as_str()) {
        return refuse(&s, 40002, "event_source_id is not a pixel of this account".into());
    }
    let data = match v.get("data").and_then(Value::as_array) {
        Some(d) if !d.is_empty() && d.len() <= 1000 => d.clone(),
        _ => return refuse(&s, 40002, "data must hold 1 to 1000 events".into()),
    };
    let now = now_ms();
    for (i, e) in data.iter().enumerate() {
        if let Err(m) = check_event(i, e, now.div_euclid(1000)) {
            return refuse(&s, 40002, m);
        }
    }
    let test_event_code = v.get("test_event_code").and_then(Value::as_str).map(str::to_owned);
    let mut inner = s.lock();
    inner.seen.retain(|_, first| now - *first <= 48 * 3_600_000);
    let mut failed = Vec::new();
    for e in &data {
        let event = e["event"].as_str().unwrap_or_default().to_owned();
        let event_id = e.get("event_id").and_then(Value::as_str).map(str::to_owned);
        if event_id.as_ref().is_some_and(|id| inner.rejected_ids.contains(id)) {
            inner.dropped.push(TikTokDrop { code: 20001, message: format!("event {event_id:?} rejected") });
            failed.push(json!({"event_id": event_id, "reason": "sandbox: rejected"}));
            continue;
        }
        let duplicate = match &event_id {
            Some(id) => {
                let key = (event.clone(), id.clone());
                let dup = inner.seen.contains_key(&key);
                inner.seen.entry(key).or_insert(now);
                dup
            }
            None => false,
        };
        inner.accepted.push(TikTokRecord {
            event,
            event_id,
            event_time: e["event_time"].as_i64().unwrap_or_default(),
            user: e.get("user").and_then(Value::as_object).cloned().unwrap_or_default(),
            properties: e.get("properties").and_then(Value::as_object).cloned(),
            limited_data_use: e.get("limited_data_use").and_then(Value::as_bool),
            test_event_code: test_event_code.clone(),
            duplicate,
        });
    }
    drop(inner);
    if failed.is_empty() {
        answer(0, "OK", json!({}))
    } else {
        answer(20001, "Partial success", json!({"failed_events": failed}))
    }
}

async fn records(State(s): State<TikTokSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_checks() {
        let now = 1_700_000_000;
        let ok = json!({"event":"CompletePayment","event_time":now,"event_id":"e1",
                        "user":{"ttclid":"E.C.P.x","ip":"203.0.113.7"},"page":{"url":"https://shop.example/done"},"limited_data_use":false});
        assert!(check_event(0, &ok, now).is_ok());
        let mut e = ok.clone();
        e["user"]["email"] = json!("jane@example.com");
        assert!(check_event(0, &e, now).is_err());
        let mut e = ok.clone();
        e["event_time"] = json!(now * 1000);
        assert!(check_event(0, &e, now).is_err());
        let mut e = ok;
        e["page"]["url"] = json!("/done");
        assert!(check_event(0, &e, now).is_err());
    }
}
