//! A Rokt Event API v2 stand-in (<https://docs.rokt.com/developers/integration-guides/rokt-ads/event-api/>): `POST /v2/events`
//! under `/rokt`.
//!
//! Checks: `Authorization: Basic base64("rpub-…:rsec-…")` matching the
//! configured key pair (401 `UnauthorizedError` otherwise), a known
//! `Rokt-Version`, a JSON body with `accountId` (≤ 64 characters, the
//! configured account) and 1 to 100 `events`. Each event: `clientEventId`
//! (1–36 characters), `eventType` (1–128), `eventTime` RFC 3339 no more than
//! 18 months old nor 5 minutes in the future, `metaData` / `objectData` as
//! `{name, value}` string pairs (no `rokt.` prefix, values ≤ 65,536
//! characters), and for attribution at least one of `email`, `emailsha256`
//! (64-hex) or `passbackconversiontrackingid`.
//!
//! Like Rokt, bad events do not fail the call: the answer is 200
//! `{"data":{"unprocessedRecords":[{"error":{code,message},"record":{…}}]}}`
//! listing them, and the others are recorded. Structural problems are 400
//! (`RequestJsonUnmarshalError`, `RequestValidationError`). Events repeating
//! a `clientEventId` already accepted are recorded as duplicates.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::util::{base64_decode, is_sha256_hex, now_ms, parse_rfc3339};

/// The public key the sandbox accepts by default.
pub const PUBLIC_KEY: &str = "rpub-sandbox-public";
/// The secret key the sandbox accepts by default.
pub const SECRET: &str = "rsec-sandbox-secret";
/// The account id the sandbox accepts by default.
pub const ACCOUNT_ID: &str = "12345";
/// `Rokt-Version` values the sandbox knows.
pub const VERSIONS: [&str; 1] = ["2020-05-21"];
/// Most events per call.
pub const MAX_EVENTS: usize = 100;

/// One event Rokt processed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoktRecord {
    /// `accountId`.
    pub account_id: String,
    /// `clientEventId`.
    pub client_event_id: String,
    /// `eventType`.
    pub event_type: String,
    /// `eventTime` as sent.
    pub event_time: String,
    /// `objectData` as `(name, value)`.
    pub object_data: Vec<(String, String)>,
    /// `metaData` as `(name, value)`.
    pub meta_data: Vec<(String, String)>,
    /// True when the `clientEventId` was seen before.
    pub duplicate: bool,
}

impl RoktRecord {
    /// The value of `objectData` entry `name`.
    pub fn object(&self, name: &str) -> Option<&str> {
        self.object_data.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// An event or request Rokt did not process, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoktDrop {
    /// `ValidationError`, `RequestValidationError`, `UnauthorizedError`, …
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// The event's `clientEventId`, for unprocessed records.
    pub client_event_id: Option<String>,
}

struct Inner {
    public_key: String,
    secret: String,
    account_id: String,
    accepted: Vec<RoktRecord>,
    dropped: Vec<RoktDrop>,
    seen: HashSet<String>,
    rejected_ids: HashSet<String>,
    requests: u32,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            public_key: PUBLIC_KEY.into(),
            secret: SECRET.into(),
            account_id: ACCOUNT_ID.into(),
            accepted: Vec::new(),
            dropped: Vec::new(),
            seen: HashSet::new(),
            rejected_ids: HashSet::new(),
            requests: 0,
        }
    }
}

/// The Rokt sandbox.
#[derive(Clone, Default)]
pub struct RoktSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// Slow mode.
    pub latency: Latency,
}

impl RoktSandbox {
    /// The routes: `POST /v2/events`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new().route("/v2/events", post(events)).route("/records", get(records)).with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every processed event, in arrival order (duplicates flagged).
    pub fn events(&self) -> Vec<RoktRecord> {
        self.lock().accepted.clone()
    }

    /// Processed `conversion` events with `conversiontype` `purchase`, duplicates excluded.
    pub fn purchases(&self) -> Vec<RoktRecord> {
        self.events()
            .into_iter()
            .filter(|r| !r.duplicate && r.event_type == "conversion" && r.object("conversiontype") == Some("purchase"))
            .collect()
    }

    /// Unprocessed records and refused requests, and why.
    pub fn dropped(&self) -> Vec<RoktDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Uses another account and key pair.
    pub fn set_credentials(&self, account_id: &str, public_key: &str, secret: &str) {
        let mut i = self.lock();
        i.account_id = account_id.into();
        i.public_key = public_key.into();
        i.secret = secret.into();
    }

    /// Events with this `clientEventId` come back in `unprocessedRecords`.
    pub fn reject_event(&self, client_event_id: &str) {
        self.lock().rejected_ids.insert(client_event_id.to_owned());
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

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

fn name_values(v: Option<&Value>, field: &str) -> Result<Vec<(String, String)>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Some(a) = v.as_array() else {
        return Err(format!("{field} must be a list of {{name, value}}"));
    };
    let mut out = Vec::with_capacity(a.len());
    for nv in a {
        let (Some(name), Some(value)) =
            (nv.get("name").and_then(Value::as_str), nv.get("value").and_then(Value::as_str))
        else {
            return Err(format!("{field} entries need string name and value"));
        };
        if name.is_empty() || name.to_ascii_lowercase().starts_with("rokt.") {
            return Err(format!("{field} name {name:?} is empty or uses the reserved rokt. prefix"));
        }
        if value.chars().count() > 65_536 {
            return Err(format!("{field} value of {name:?} is longer than 65536 characters"));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// A checked event: id, type, time, objectData, metaData.
type Checked = (String, String, String, Vec<(String, String)>, Vec<(String, String)>);

fn check_event(e: &Value, now: i64) -> Result<Checked, String> {
    let id = e.get("clientEventId").and_then(Value::as_str).ok_or("clientEventId is required")?;
    if id.is_empty() || id.chars().count() > 36 {
        return Err("clientEventId must be 1 to 36 characters".into());
    }
    let kind = e.get("eventType").and_then(Value::as_str).ok_or("eventType is required")?;
    if kind.is_empty() || kind.chars().count() > 128 {
        return Err("eventType must be 1 to 128 characters".into());
    }
    let time = e.get("eventTime").and_then(Value::as_str).ok_or("eventTime is required")?;
    let at = parse_rfc3339(time).ok_or("eventTime must be RFC 3339, e.g. 2020-05-22T10:21:29.339Z")?;
    if now - at > 548 * 86_400_000 {
        return Err("eventTime is more than 18 months old".into());
    }
    if at - now > 5 * 60_000 {
        return Err("eventTime is more than 5 minutes in the future".into());
    }
    let meta = name_values(e.get("metaData"), "metaData")?;
    let object = name_values(e.get("objectData"), "objectData")?;
    let find = |n: &str| object.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if let Some(h) = find("emailsha256")
        && !is_sha256_hex(h)
    {
        return Err("emailsha256 must be a SHA-256 digest (64 lower-case hex digits)".into());
    }
    if find("email").is_none() && find("emailsha256").is_none() && find("passbackconversiontrackingid").is_none() {
        return Err("one of email, emailsha256 or passbackconversiontrackingid is required for attribution".into());
    }
    Ok((id.to_owned(), kind.to_owned(), time.to_owned(), object, meta))
}

async fn events(State(s): State<RoktSandbox>, headers: HeaderMap, body: Bytes) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    match s.faults.take() {
        Mode::Up => {}
        Mode::Down => return error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "sandbox: destination down"),
        Mode::RateLimited => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "sandbox: rate limited");
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return r;
        }
        Mode::Unauthorized => {
            return error(StatusCode::UNAUTHORIZED, "UnauthorizedError", "sandbox: credentials refused");
        }
    }
    let refuse = |s: &RoktSandbox, status: StatusCode, code: &str, message: &str| {
        s.lock().dropped.push(RoktDrop { code: code.into(), message: message.into(), client_event_id: None });
        error(status, code, message)
    };
    let (public, secret, account) = {
        let i = s.lock();
        (i.public_key.clone(), i.secret.clone(), i.account_id.clone())
    };
    let creds = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|b| String::from_utf8(b).ok());
    let authorised = creds
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .is_some_and(|(p, k)| p.starts_with("rpub-") && k.starts_with("rsec-") && p == public && k == secret);
    if !authorised {
        return refuse(
            &s,
            StatusCode::UNAUTHORIZED,
            "UnauthorizedError",
            "Basic authorization with the rpub-/rsec- key pair is required",
        );
    }
    match headers.get("rokt-version").and_then(|v| v.to_str().ok()) {
        Some(v) if VERSIONS.contains(&v) => {}
        Some(v) => {
            return refuse(
                &s,
                StatusCode::BAD_REQUEST,
                "RequestValidationError",
                &format!("Invalid Rokt-Version {v:?}"),
            );
        }
        None => {
            return refuse(
                &s,
                StatusCode::BAD_REQUEST,
                "RequestValidationError",
                "Rokt-Version is required (pin 2020-05-21)",
            );
        }
    }
    if !headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json")) {
        return refuse(&s, StatusCode::BAD_REQUEST, "RequestBodyReadError", "Content-Type must be application/json");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&s, StatusCode::BAD_REQUEST, "RequestJsonUnmarshalError", "The body is not valid JSON");
    };
    match v.get("accountId").and_then(Value::as_str) {
        Some(a) if !a.is_empty() && a.chars().count() <= 64 && a == account => {}
        Some(a) if a == account => {}
        Some(_) => {
            return refuse(&s, StatusCode::FORBIDDEN, "Forbidden", "The key pair has no access to this accountId");
        }
        None => return refuse(&s, StatusCode::BAD_REQUEST, "RequestValidationError", "accountId is required"),
    }
    let events = match v.get("events").and_then(Value::as_array) {
        Some(e) if !e.is_empty() && e.len() <= MAX_EVENTS => e.clone(),
        _ => return refuse(&s, StatusCode::BAD_REQUEST, "RequestValidationError", "events must hold 1 to 100 events"),
    };
    let now = now_ms();
    let mut unprocessed = Vec::new();
    let mut inner = s.lock();
    for e in &events {
        let id = e.get("clientEventId").and_then(Value::as_str).map(str::to_owned);
        let checked = check_event(e, now)
            .and_then(|ok| if inner.rejected_ids.contains(&ok.0) { Err("Invalid content".into()) } else { Ok(ok) });
        match checked {
            Ok((client_event_id, event_type, event_time, object_data, meta_data)) => {
                let duplicate = !inner.seen.insert(client_event_id.clone());
                inner.accepted.push(RoktRecord {
                    account_id: account.clone(),
                    client_event_id,
                    event_type,
                    event_time,
                    object_data,
                    meta_data,
                    duplicate,
                });
            }
            Err(message) => {
                inner.dropped.push(RoktDrop {
                    code: "ValidationError".into(),
                    message: message.clone(),
                    client_event_id: id,
                });
                unprocessed.push(json!({"error": {"code": "ValidationError", "message": message}, "record": e}));
            }
        }
    }
    drop(inner);
    axum::Json(json!({"data": {"unprocessedRecords": unprocessed}})).into_response()
}

async fn records(State(s): State<RoktSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_checks() {
        let now = 1_777_667_565_000;
        let ok = json!({"clientEventId":"ff3bd69c-ca74-4337-af91-4d5d0bd00e38","eventType":"conversion",
            "eventTime":"2026-05-01T20:32:45.000Z","objectData":[{"name":"passbackconversiontrackingid","value":"r1"}]});
        assert!(check_event(&ok, now).is_ok());
        let mut e = ok.clone();
        e["clientEventId"] = json!("x".repeat(37));
        assert!(check_event(&e, now).is_err());
        let mut e = ok.clone();
        e["eventTime"] = json!("2026-05-01 20:32:45");
        assert!(check_event(&e, now).is_err());
        let mut e = ok.clone();
        e["objectData"] = json!([{"name":"amount","value":"1"}]);
        assert!(check_event(&e, now).unwrap_err().contains("attribution"));
        let mut e = ok.clone();
        e["objectData"] = json!([{"name":"rokt.x","value":"1"},{"name":"email","value":"a@b.c"}]);
        assert!(check_event(&e, now).is_err());
        let mut e = ok;
        e["eventTime"] = json!("2026-05-01T20:42:45.000Z");
        assert!(check_event(&e, now).is_err(), "10 minutes in the future");
    }
}
