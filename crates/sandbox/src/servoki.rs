//! A Servoki-style server-events stand-in (<https://servoki.com/docs/server-events/>):
//! `POST /api/events/server` under `/servoki`.
//!
//! Checks `Authorization: Bearer <api key>` (401 otherwise), a JSON body with
//! the required `site` (the configured one) and `event_type`, and the optional
//! fields' types: `vid` string, `value` number, `currency` ISO 4217, `event_id`
//! string, `occurred_at` RFC 3339, `props` object, `consent` boolean (400 with
//! `{"error": …}` otherwise). Answers 202 `{"ok":true}`. Like Servoki, repeated
//! `event_id`s count once (recorded as duplicates).

use std::collections::HashSet;
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
use crate::fault::FaultSwitch;
use crate::util::parse_rfc3339;

/// The API key the sandbox accepts by default.
pub const API_KEY: &str = "servoki_sandboxkey0000";
/// The site the sandbox accepts by default.
pub const SITE: &str = "shop.example";

/// One event the sandbox recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServokiRecord {
    /// `site`.
    pub site: String,
    /// `event_type`.
    pub event_type: String,
    /// `event_id`.
    pub event_id: Option<String>,
    /// `vid`.
    pub vid: Option<String>,
    /// `value`.
    pub value: Option<f64>,
    /// `currency`.
    pub currency: Option<String>,
    /// `occurred_at`.
    pub occurred_at: Option<String>,
    /// `props`.
    pub props: Map<String, Value>,
    /// `consent`.
    pub consent: Option<bool>,
    /// True when the `event_id` was seen before (counted once).
    pub duplicate: bool,
}

/// A refused request, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServokiDrop {
    /// HTTP status answered.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

struct Inner {
    api_key: String,
    site: String,
    accepted: Vec<ServokiRecord>,
    dropped: Vec<ServokiDrop>,
    seen: HashSet<String>,
    requests: u32,
    /// Event ids refused with 400, as the endpoint's own checks refuse an event.
    refused: HashSet<String>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            api_key: API_KEY.into(),
            site: SITE.into(),
            accepted: Vec::new(),
            dropped: Vec::new(),
            seen: HashSet::new(),
            requests: 0,
            refused: HashSet::new(),
        }
    }
}

/// The Servoki-style sandbox.
#[derive(Clone, Default)]
pub struct ServokiSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// Slow mode.
    pub latency: Latency,
}

impl ServokiSandbox {
    /// The routes: `POST /api/events/server`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/events/server", post(server_event))
            .route("/records", get(records))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every recorded event, in arrival order (duplicates flagged).
    pub fn events(&self) -> Vec<ServokiRecord> {
        self.lock().accepted.clone()
    }

    /// Recorded `purchase` events, duplicates excluded.
    pub fn purchases(&self) -> Vec<ServokiRecord> {
        self.events().into_iter().filter(|r| r.event_type == "purchase" && !r.duplicate).collect()
    }

    /// Refused requests, and why.
    pub fn dropped(&self) -> Vec<ServokiDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Events with this `event_id` are refused (400, not recorded), standing
    /// in for the endpoint's own checks a client cannot foresee.
    pub fn reject_event(&self, event_id: &str) {
        self.lock().refused.insert(event_id.to_owned());
    }

    /// Accepts this site and API key instead of the defaults.
    pub fn set_credentials(&self, site: &str, api_key: &str) {
        let mut i = self.lock();
        i.site = site.into();
        i.api_key = api_key.into();
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

fn check(v: &Value, site: &str) -> Result<ServokiRecord, String> {
    let o = v.as_object().ok_or("the body must be a JSON object")?;
    let s = o.get("site").and_then(Value::as_str).ok_or("site is required")?;
    if s != site {
        return Err(format!("unknown site {s:?}"));
    }
    let event_type =
        o.get("event_type").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or("event_type is required")?;
    let opt_str = |k: &str| -> Result<Option<String>, String> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.clone())),
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let value = match o.get("value") {
        None => None,
        Some(v) => Some(v.as_f64().ok_or("value must be a number")?),
    };
    let currency = opt_str("currency")?;
    if currency.as_deref().is_some_and(|c| !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))) {
        return Err("currency must be ISO 4217 (EUR)".into());
    }
    let occurred_at = opt_str("occurred_at")?;
    if occurred_at.as_deref().is_some_and(|t| parse_rfc3339(t).is_none()) {
        return Err("occurred_at must be RFC 3339".into());
    }
    let props = match o.get("props") {
        None => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err("props must be an object".into()),
    };
    let consent = match o.get("consent") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err("consent must be a boolean".into()),
    };
    Ok(ServokiRecord {
        site: s.to_owned(),
        event_type: event_type.to_owned(),
        event_id: opt_str("event_id")?,
        vid: opt_str("vid")?,
        value,
        currency,
        occurred_at,
        props,
        consent,
        duplicate: false,
    })
}

async fn server_event(State(s): State<ServokiSandbox>, headers: HeaderMap, body: Bytes) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    if let Some(r) = s.faults.response() {
        return r;
    }
    let refuse = |s: &ServokiSandbox, status: StatusCode, message: String| {
        s.lock().dropped.push(ServokiDrop { status: status.as_u16(), message: message.clone() });
        (status, axum::Json(json!({"error": message}))).into_response()
    };
    let (key, site) = {
        let i = s.lock();
        (i.api_key.clone(), i.site.clone())
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(key.as_str()) {
        return refuse(&s, StatusCode::UNAUTHORIZED, "invalid or missing API key".into());
    }
    if !headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json")) {
        return refuse(&s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json".into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&s, StatusCode::BAD_REQUEST, "invalid JSON".into());
    };
    let mut record = match check(&v, &site) {
        Ok(r) => r,
        Err(m) => return refuse(&s, StatusCode::BAD_REQUEST, m),
    };
    if record.event_id.as_ref().is_some_and(|id| s.lock().refused.contains(id)) {
        return refuse(&s, StatusCode::BAD_REQUEST, "sandbox: this event was refused".into());
    }
    let mut i = s.lock();
    if let Some(id) = &record.event_id {
        record.duplicate = !i.seen.insert(id.clone());
    }
    i.accepted.push(record);
    (StatusCode::ACCEPTED, axum::Json(json!({"ok": true}))).into_response()
}

async fn records(State(s): State<ServokiSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_checks() {
        let ok = json!({"site":SITE,"event_type":"purchase","value":49.9,"currency":"EUR","event_id":"order_8841",
                        "occurred_at":"2026-06-12T10:00:00Z","props":{"plan":"pro"},"consent":true});
        assert!(check(&ok, SITE).is_ok());
        for (k, bad) in [
            ("site", json!("other.example")),
            ("event_type", json!("")),
            ("value", json!("49.9")),
            ("currency", json!("eur")),
            ("occurred_at", json!("yesterday")),
            ("props", json!([])),
            ("consent", json!("yes")),
        ] {
            let mut v = ok.clone();
            v[k] = bad;
            assert!(check(&v, SITE).is_err(), "{k}");
        }
    }
}
