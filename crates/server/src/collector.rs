//! The first-party collector: `POST /collect` receives the browser's batches.
//!
//! Mount it into any axum app with [`router`]. Each request carries a site
//! key, the browser's [`ContextEnvelope`] and up to [`CollectorConfig::max_events`]
//! events; the reply says what happened to every event:
//!
//! ```json
//! {"results":[{"eventId":"…","status":"accepted"},
//!             {"eventId":"…","status":"invalid","field":"currency","reason":"currency is invalid: …"}]}
//! ```
//!
//! Statuses: `accepted` (delivered, or durably queued for retry), `duplicate`
//! (already delivered everywhere it may go), `invalid` (with the field),
//! `consent_denied` (no destination may receive it). When the outbox is full
//! the answer is 503, so the browser keeps the batch and retries; events already
//! delivered then come back as `duplicate`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::Value;

use tally_core::{ContextEnvelope, Event, EventId};

use crate::error::DeliveryError;
use crate::input::Visitor;
use crate::outcome::{Outcome, SkipReason};
use crate::tracker::ServerTracker;

/// Collector settings.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Site keys browsers may use (`siteKey` in the body).
    pub site_keys: HashSet<String>,
    /// Origins allowed to call from a browser (exact match, e.g. `https://shop.example`).
    pub allowed_origins: HashSet<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most events per request.
    pub max_events: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            site_keys: HashSet::new(),
            allowed_origins: HashSet::new(),
            max_body_bytes: 64 * 1024,
            max_events: 100,
        }
    }
}

struct AppState {
    tracker: ServerTracker,
    config: CollectorConfig,
}

/// The collector's routes (`POST /collect` and its CORS preflight).
pub fn router(tracker: ServerTracker, config: CollectorConfig) -> Router {
    let limit = config.max_body_bytes;
    let state = Arc::new(AppState { tracker, config });
    Router::new()
        .route("/collect", post(collect).options(preflight))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The answer for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventResult {
    /// The event id (derived for transactional events).
    pub event_id: String,
    /// `accepted`, `duplicate`, `invalid` or `consent_denied`.
    pub status: &'static str,
    /// For `invalid`: the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A human readable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn error(status: StatusCode, reason: &str, cors: &HeaderMap) -> Response {
    let body = serde_json::json!({ "error": reason });
    (status, cors.clone(), axum::Json(body)).into_response()
}

fn cors_headers(state: &AppState, headers: &HeaderMap) -> Result<HeaderMap, ()> {
    let mut out = HeaderMap::new();
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => Ok(out),
        Some(origin) if state.config.allowed_origins.contains(origin) => {
            if let Ok(v) = HeaderValue::from_str(origin) {
                out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            out.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
            Ok(out)
        }
        Some(_) => Err(()),
    }
}

async fn preflight(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match cors_headers(&state, &headers) {
        Ok(mut h) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            (StatusCode::NO_CONTENT, h).into_response()
        }
        Err(()) => (StatusCode::FORBIDDEN, "origin not allowed").into_response(),
    }
}

async fn collect(State(state): State<Arc<AppState>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let _ = method;
    let Ok(cors) = cors_headers(&state, &headers) else {
        return error(StatusCode::FORBIDDEN, "origin not allowed", &HeaderMap::new());
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not UTF-8", &cors);
    };
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON", &cors);
    };
    let Some(obj) = doc.as_object() else {
        return error(StatusCode::BAD_REQUEST, "body must be a JSON object", &cors);
    };
    let site_key = obj.get("siteKey").and_then(Value::as_str).unwrap_or_default();
    if !state.config.site_keys.is_empty() && !state.config.site_keys.contains(site_key) {
        return error(StatusCode::UNAUTHORIZED, "unknown siteKey", &cors);
    }
    let envelope = match obj.get("context") {
        None | Some(Value::Null) => ContextEnvelope::default(),
        Some(v) => match ContextEnvelope::from_value(v) {
            Ok(e) => e,
            Err(e) => {
                let body = serde_json::json!({ "error": "invalid context", "field": e.field(), "reason": e.to_string() });
                return (StatusCode::BAD_REQUEST, cors, axum::Json(body)).into_response();
            }
        },
    };
    let Some(raw_events) = obj.get("events").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "events must be an array", &cors);
    };
    if raw_events.len() > state.config.max_events {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "too many events in one request", &cors);
    }
    let mut visitor = Visitor::from_envelope(&envelope);
    visitor.user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut results: Vec<Option<EventResult>> = vec![None; raw_events.len()];
    let mut valid = Vec::new();
    let mut positions = Vec::new();
    for (i, raw) in raw_events.iter().enumerate() {
        let fallback = || {
            let u = uuid::Uuid::now_v7();
            EventId::parse(&u.hyphenated().to_string()).unwrap_or_else(|_| EventId::random_v7(0, [0; 10]))
        };
        match Event::from_json_value(raw, fallback) {
            Ok(e) => {
                positions.push(i);
                valid.push(e);
            }
            Err(err) => {
                let id = raw.get("eventId").and_then(Value::as_str).unwrap_or_default().to_owned();
                results[i] = Some(EventResult {
                    event_id: id,
                    status: "invalid",
                    field: Some(err.field().to_owned()),
                    reason: Some(err.to_string()),
                });
            }
        }
    }
    let delivered = state.tracker.deliver(valid, &visitor).await;
    let mut refused = false;
    for (pos, r) in positions.into_iter().zip(delivered) {
        let outcomes: Vec<&Outcome> = r.destinations.values().collect();
        let all = |f: &dyn Fn(&Outcome) -> bool| !outcomes.is_empty() && outcomes.iter().all(|o| f(o));
        let status = if outcomes.iter().any(|o| matches!(o, Outcome::Failed(DeliveryError::Refused(_)))) {
            // The outbox is full: nothing durable happened; the browser keeps the event.
            refused = true;
            "accepted"
        } else if all(&|o| matches!(o.skip_reason(), Some(SkipReason::ConsentDenied(_)))) {
            "consent_denied"
        } else if all(&|o| matches!(o.skip_reason(), Some(SkipReason::Duplicate | SkipReason::ConsentDenied(_)))) {
            "duplicate"
        } else {
            "accepted"
        };
        results[pos] = Some(EventResult {
            event_id: r.event_id.as_str().to_owned(),
            status,
            field: None,
            reason: None,
        });
    }
    let results: Vec<EventResult> = results.into_iter().flatten().collect();
    let code = if refused { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, cors, axum::Json(serde_json::json!({ "results": results }))).into_response()
}
