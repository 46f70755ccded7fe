//! A webhook / warehouse receiver (Tally's own webhook contract): `POST /{sink}` under
//! `/webhook`, one sink per name.
//!
//! It does what a careful receiver does: checks `Content-Type: application/json`,
//! `X-Tally-Timestamp` (Unix seconds, within 5 minutes of now) and
//! `X-Tally-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`
//! with the sink's secret (401 otherwise), `Idempotency-Key` equal to the body's
//! `event_id` (400 otherwise), and the record's required fields
//! (`schema_version` `"1"`, `event_id`, `event_name`, `occurred_at` RFC 3339;
//! 422 otherwise). A key already stored is answered 200 and recorded as a
//! duplicate, not stored twice.
//!
//! A batched body, `{"schema_version":"1","records":[…]}`, is checked as a
//! whole: every record as above (one bad record refuses the request, 422),
//! and `Idempotency-Key` equal to `batch-<hex SHA-256 of the event ids, each
//! followed by "\n">` (400 otherwise). Each record is stored once by its
//! `event_id`, whatever batch carries it. The HMAC and the SHA-256 are
//! computed here, not by `tally-core`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Latency;
use crate::fault::FaultSwitch;
use crate::util::{ct_eq, hex, hmac_sha256, now_ms, parse_rfc3339, sha256};

/// The secret every sink verifies with unless [`WebhookSandbox::set_secret`] says otherwise.
pub const DEFAULT_SECRET: &str = "whsec_sandbox_secret";
/// How far a timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// One delivery a sink stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookRecord {
    /// The sink's name (the path segment).
    pub sink: String,
    /// `event_id` (= `Idempotency-Key`).
    pub event_id: String,
    /// `event_name`.
    pub event_name: String,
    /// The whole body.
    pub body: Value,
    /// True when the key was already stored (answered 200, not stored twice).
    pub duplicate: bool,
}

/// A refused delivery, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookDrop {
    /// The sink.
    pub sink: String,
    /// HTTP status answered.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

#[derive(Default)]
struct Inner {
    secrets: HashMap<String, String>,
    accepted: Vec<WebhookRecord>,
    dropped: Vec<WebhookDrop>,
    keys: HashSet<(String, String)>,
    requests: u32,
    largest_batch: usize,
    /// Event ids every sink refuses (422), as a receiver refuses a record it cannot take.
    refused: HashSet<String>,
}

/// The webhook sandbox.
#[derive(Clone, Default)]
pub struct WebhookSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection (every sink).
    pub faults: FaultSwitch,
    /// Slow mode (every sink).
    pub latency: Latency,
}

impl WebhookSandbox {
    /// The routes: `POST /{sink}`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new().route("/records", get(records)).route("/{sink}", post(receive)).with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sink `sink` verifies signatures with `secret`.
    pub fn set_secret(&self, sink: &str, secret: &str) {
        self.lock().secrets.insert(sink.to_owned(), secret.to_owned());
    }

    /// Every sink refuses a request carrying a record with this `event_id`
    /// (422, nothing of it stored), as a receiver refuses a record its own
    /// checks reject.
    pub fn reject_event(&self, event_id: &str) {
        self.lock().refused.insert(event_id.to_owned());
    }

    /// Every stored delivery, in arrival order (duplicates flagged).
    pub fn records(&self) -> Vec<WebhookRecord> {
        self.lock().accepted.clone()
    }

    /// Stored deliveries of `sink`, duplicates excluded.
    pub fn events(&self, sink: &str) -> Vec<WebhookRecord> {
        self.records().into_iter().filter(|r| r.sink == sink && !r.duplicate).collect()
    }

    /// Refused deliveries, and why.
    pub fn dropped(&self) -> Vec<WebhookDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// The most records one accepted request carried (1 for unbatched sinks).
    pub fn largest_batch(&self) -> usize {
        self.lock().largest_batch
    }

    /// Forgets everything recorded (secrets stay).
    pub fn clear(&self) {
        let mut i = self.lock();
        i.accepted.clear();
        i.dropped.clear();
        i.keys.clear();
        i.requests = 0;
        i.largest_batch = 0;
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Verifies the signature headers against `secret` and the raw body.
fn verify(secret: &str, ts: Option<&str>, sig: Option<&str>, body: &[u8], now_s: i64) -> Result<(), &'static str> {
    let ts = ts.ok_or("X-Tally-Timestamp is missing")?;
    let t: i64 = ts.parse().map_err(|_| "X-Tally-Timestamp must be Unix seconds")?;
    if (now_s - t).abs() > TOLERANCE_SECS {
        return Err("X-Tally-Timestamp is outside the 5-minute tolerance");
    }
    let sig = sig.and_then(|s| s.strip_prefix("sha256=")).ok_or("X-Tally-Signature must be sha256=<hex>")?;
    let mut signed = Vec::with_capacity(ts.len() + 1 + body.len());
    signed.extend_from_slice(ts.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let expected = hex(&hmac_sha256(secret.as_bytes(), &signed));
    if ct_eq(expected.as_bytes(), sig.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err("X-Tally-Signature does not match the body and the secret")
    }
}

async fn receive(
    State(s): State<WebhookSandbox>,
    Path(sink): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    if let Some(r) = s.faults.response() {
        return r;
    }
    let refuse = |s: &WebhookSandbox, status: StatusCode, message: &str| {
        s.lock().dropped.push(WebhookDrop { sink: sink.clone(), status: status.as_u16(), message: message.to_owned() });
        (status, axum::Json(json!({"error": message}))).into_response()
    };
    if !header(&headers, "content-type").is_some_and(|v| v.starts_with("application/json")) {
        return refuse(&s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json");
    }
    let secret = s.lock().secrets.get(&sink).cloned().unwrap_or_else(|| DEFAULT_SECRET.to_owned());
    let now_s = now_ms().div_euclid(1000);
    if let Err(m) =
        verify(&secret, header(&headers, "x-tally-timestamp"), header(&headers, "x-tally-signature"), &body, now_s)
    {
        return refuse(&s, StatusCode::UNAUTHORIZED, m);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&s, StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let batched = v.get("records").and_then(Value::as_array);
    let records: Vec<&Value> = match batched {
        Some(list) => list.iter().collect(),
        None => vec![&v],
    };
    if batched.is_some() && (v.get("schema_version").and_then(Value::as_str) != Some("1") || records.is_empty()) {
        return refuse(
            &s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a batch needs schema_version \"1\" and at least one record",
        );
    }
    let mut checked = Vec::with_capacity(records.len());
    for record in &records {
        match check_record(record) {
            Ok(ids) if s.lock().refused.contains(&ids.0) => {
                return refuse(&s, StatusCode::UNPROCESSABLE_ENTITY, "sandbox: the receiver refused this record");
            }
            Ok(ids) => checked.push(ids),
            Err(m) => return refuse(&s, StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
    let expected_key = if batched.is_some() {
        let mut ids = String::new();
        for (id, _) in &checked {
            ids.push_str(id);
            ids.push('\n');
        }
        format!("batch-{}", hex(&sha256(ids.as_bytes())))
    } else {
        checked.first().map(|(id, _)| id.clone()).unwrap_or_default()
    };
    match header(&headers, "idempotency-key") {
        Some(k) if !k.is_empty() && k == expected_key => {}
        Some(_) if batched.is_some() => {
            return refuse(
                &s,
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be batch-<sha256 of the records' event ids>",
            );
        }
        Some(_) => return refuse(&s, StatusCode::BAD_REQUEST, "Idempotency-Key must equal the body's event_id"),
        None => return refuse(&s, StatusCode::BAD_REQUEST, "Idempotency-Key is required"),
    }
    let mut i = s.lock();
    i.largest_batch = i.largest_batch.max(records.len());
    let mut duplicates = 0;
    for ((event_id, event_name), record) in checked.into_iter().zip(records) {
        let duplicate = !i.keys.insert((sink.clone(), event_id.clone()));
        duplicates += usize::from(duplicate);
        i.accepted.push(WebhookRecord { sink: sink.clone(), event_id, event_name, body: record.clone(), duplicate });
    }
    let answer = if batched.is_some() {
        json!({"received": true, "duplicates": duplicates})
    } else {
        json!({"received": true, "duplicate": duplicates > 0})
    };
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// A record's `(event_id, event_name)` if its required fields are there.
fn check_record(v: &Value) -> Result<(String, String), &'static str> {
    if v.get("schema_version").and_then(Value::as_str) != Some("1") {
        return Err("schema_version must be \"1\"");
    }
    let Some(event_id) = v.get("event_id").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err("event_id is required");
    };
    let Some(event_name) = v.get("event_name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err("event_name is required");
    };
    if v.get("occurred_at").and_then(Value::as_str).is_none_or(|t| parse_rfc3339(t).is_none()) {
        return Err("occurred_at must be RFC 3339");
    }
    Ok((event_id.to_owned(), event_name.to_owned()))
}

async fn records(State(s): State<WebhookSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_vector() {
        // The vector of tally-core's webhook::sign documentation, checked with this crate's own HMAC.
        let body = br#"{"a":1}"#;
        let sig = "sha256=106a7f9ce5cf78d5912af1bdbe5e453544eabd1119279f77b1f8d438e2b1d1cd";
        assert_eq!(verify("whsec_test", Some("1777667565"), Some(sig), body, 1_777_667_565), Ok(()));
        assert!(verify("other", Some("1777667565"), Some(sig), body, 1_777_667_565).is_err());
        assert!(verify("whsec_test", Some("1777667565"), Some(sig), body, 1_777_667_565 + 301).is_err());
        assert!(verify("whsec_test", Some("1777667565"), Some(sig), br#"{"a":2}"#, 1_777_667_565).is_err());
        assert!(verify("whsec_test", None, Some(sig), body, 1_777_667_565).is_err());
    }
}
