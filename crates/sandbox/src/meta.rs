//! A Meta Conversions API stand-in (<https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api>):
//! `POST /{version}/{pixel_id}/events?access_token=…` under `/meta`.
//!
//! Checks, like Graph: a supported version (`v23.0`…`v26.0`), a numeric pixel
//! id, the access token (query or form field), a JSON body with `data` of 1 to
//! 1,000 events, each with `event_name`, integer `event_time` in seconds no
//! more than 7 days old (62 for `physical_store`) nor in the future, a valid
//! `action_source`, `event_source_url` and `client_user_agent` for `website`
//! events, `user_data` with at least one customer-information parameter,
//! hashed fields (`em`, `ph`, `fn`, `ln`, `db`, `ge`, `ct`, `st`, `zp`,
//! `country`) as 64-hex SHA-256 digests only, `fbc` / `fbp` in their cookie
//! formats, `client_ip_address` a valid IP, and for `Purchase` a numeric
//! `value` with an ISO `currency`.
//!
//! Like Meta, one invalid event rejects the whole request: HTTP 400, Graph
//! error code 100 with a 2804xxx subcode, and nothing is processed. A good
//! request answers `{events_received, messages, fbtrace_id}`. Events are
//! deduplicated by `event_name` + `event_id` within 48 hours (recorded as
//! duplicates, still counted in `events_received`, as Meta does).

use std::collections::HashMap;
use std::net::IpAddr;
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
use crate::util::{form_decode, is_sha256_hex, now_ms, trace_id};

/// The access token the sandbox accepts by default.
pub const ACCESS_TOKEN: &str = "EAAsandboxMetaToken";
/// Graph API versions the sandbox serves.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["v23.0", "v24.0", "v25.0", "v26.0"];
/// Most events per request.
pub const MAX_EVENTS: usize = 1000;

const DEDUP_WINDOW_MS: i64 = 48 * 3_600_000;
const HASHED: [&str; 10] = ["em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country"];
const CUSTOMER_INFO: [&str; 21] = [
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "ge",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "anon_id",
    "madid",
    "page_scoped_user_id",
];
const ACTION_SOURCES: [&str; 9] = [
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// One event Meta accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetaRecord {
    /// The pixel of the URL.
    pub pixel_id: String,
    /// `event_name`.
    pub event_name: String,
    /// `event_id`, if sent.
    pub event_id: Option<String>,
    /// `event_time`, Unix seconds.
    pub event_time: i64,
    /// `action_source`.
    pub action_source: String,
    /// `event_source_url`.
    pub event_source_url: Option<String>,
    /// `user_data` as sent.
    pub user_data: Map<String, Value>,
    /// `custom_data` as sent.
    pub custom_data: Option<Map<String, Value>>,
    /// `opt_out`.
    pub opt_out: Option<bool>,
    /// The request's `test_event_code`.
    pub test_event_code: Option<String>,
    /// True when Meta would discard it as a duplicate (same name and id within 48 h).
    pub duplicate: bool,
}

impl MetaRecord {
    /// `custom_data.value`.
    pub fn value(&self) -> Option<f64> {
        self.custom_data.as_ref()?.get("value").and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
    }

    /// `custom_data.currency`.
    pub fn currency(&self) -> Option<&str> {
        self.custom_data.as_ref()?.get("currency").and_then(Value::as_str)
    }
}

/// A request Meta rejected, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetaDrop {
    /// Graph error code (100, 190, …).
    pub code: i64,
    /// CAPI subcode (2804xxx), if any.
    pub subcode: Option<i64>,
    /// `error_user_title` / message.
    pub title: String,
    /// `error_user_msg`: what was wrong.
    pub message: String,
    /// Events the request carried (all dropped).
    pub events: usize,
}

struct Inner {
    access_token: String,
    pixel_id: Option<String>,
    accepted: Vec<MetaRecord>,
    dropped: Vec<MetaDrop>,
    /// (event_name, event_id) → first receipt, ms.
    seen: HashMap<(String, String), i64>,
    requests: u32,
    misreport_next: u32,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            access_token: ACCESS_TOKEN.into(),
            pixel_id: None,
            accepted: Vec::new(),
            dropped: Vec::new(),
            seen: HashMap::new(),
            requests: 0,
            misreport_next: 0,
        }
    }
}

/// The Meta CAPI sandbox.
#[derive(Clone, Default)]
pub struct MetaSandbox {
    inner: Arc<Mutex<Inner>>,
    /// Fault injection.
    pub faults: FaultSwitch,
    /// Slow mode.
    pub latency: Latency,
}

/// A Graph API error answer.
struct GraphError {
    http: StatusCode,
    code: i64,
    subcode: Option<i64>,
    kind: &'static str,
    message: String,
    title: Option<String>,
    user_msg: Option<String>,
    transient: bool,
}

impl GraphError {
    fn invalid(subcode: i64, title: &str, user_msg: impl Into<String>) -> GraphError {
        GraphError {
            http: StatusCode::BAD_REQUEST,
            code: 100,
            subcode: Some(subcode),
            kind: "OAuthException",
            message: "Invalid parameter".into(),
            title: Some(title.to_owned()),
            user_msg: Some(user_msg.into()),
            transient: false,
        }
    }

    fn plain(http: StatusCode, code: i64, message: impl Into<String>, transient: bool) -> GraphError {
        GraphError {
            http,
            code,
            subcode: None,
            kind: "OAuthException",
            message: message.into(),
            title: None,
            user_msg: None,
            transient,
        }
    }

    fn response(&self) -> Response {
        let mut e = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "is_transient": self.transient,
            "fbtrace_id": format!("A{}", trace_id(self.code as u64)),
        });
        if let Some(s) = self.subcode {
            e["error_subcode"] = json!(s);
        }
        if let Some(t) = &self.title {
            e["error_user_title"] = json!(t);
        }
        if let Some(m) = &self.user_msg {
            e["error_user_msg"] = json!(m);
        }
        (self.http, axum::Json(json!({ "error": e }))).into_response()
    }

    fn drop(&self, events: usize) -> MetaDrop {
        MetaDrop {
            code: self.code,
            subcode: self.subcode,
            title: self.title.clone().unwrap_or_else(|| self.message.clone()),
            message: self.user_msg.clone().unwrap_or_else(|| self.message.clone()),
            events,
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

impl MetaSandbox {
    /// The routes: `POST /{version}/{pixel_id}/events`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/records", get(records))
            .route("/{version}/{pixel}/events", post(events))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many purchases [`purchases`](Self::purchases) would list, without
    /// copying them (for polling a long run).
    pub fn purchase_count(&self) -> usize {
        self.lock().accepted.iter().filter(|r| r.event_name == "Purchase" && !r.duplicate).count()
    }

    /// Every accepted event, in arrival order (duplicates included, flagged).
    pub fn events(&self) -> Vec<MetaRecord> {
        self.lock().accepted.clone()
    }

    /// Accepted `Purchase` events Meta would count (duplicates excluded).
    pub fn purchases(&self) -> Vec<MetaRecord> {
        self.events().into_iter().filter(|r| r.event_name == "Purchase" && !r.duplicate).collect()
    }

    /// Events Meta would discard as duplicates.
    pub fn deduplicated(&self) -> Vec<MetaRecord> {
        self.events().into_iter().filter(|r| r.duplicate).collect()
    }

    /// Rejected requests, and why.
    pub fn dropped(&self) -> Vec<MetaDrop> {
        self.lock().dropped.clone()
    }

    /// Requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Accepts this access token instead of [`ACCESS_TOKEN`].
    pub fn set_access_token(&self, token: &str) {
        self.lock().access_token = token.to_owned();
    }

    /// Only this pixel exists (default: any numeric id).
    pub fn set_pixel_id(&self, id: &str) {
        self.lock().pixel_id = Some(id.to_owned());
    }

    /// The next `n` successful answers report one event fewer than received
    /// (an `events_received` mismatch).
    pub fn misreport_next(&self, n: u32) {
        self.lock().misreport_next = n;
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

fn fault_response(s: &MetaSandbox) -> Option<Response> {
    match s.faults.take() {
        Mode::Up => None,
        Mode::Down => Some(
            GraphError::plain(StatusCode::SERVICE_UNAVAILABLE, 2, "Service temporarily unavailable", true).response(),
        ),
        Mode::RateLimited => {
            let mut r =
                GraphError::plain(StatusCode::TOO_MANY_REQUESTS, 4, "(#4) Application request limit reached", true)
                    .response();
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            Some(r)
        }
        Mode::Unauthorized => Some(
            GraphError::plain(
                StatusCode::UNAUTHORIZED,
                190,
                "Error validating access token: Session has expired",
                false,
            )
            .response(),
        ),
    }
}

fn hashed_values(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// `fb.<subdomain index>.<creation ms>.<value>[.<appendix>]`; for `fbp` the value is a number.
fn meta_cookie_ok(v: &str, numeric_value: bool) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 4 || parts.len() == 5)
        && parts[0] == "fb"
        && digits(parts[1])
        && digits(parts[2])
        && !parts[3].is_empty()
        && (!numeric_value || digits(parts[3]))
        && parts.get(4).is_none_or(|a| !a.is_empty())
        && !v.bytes().any(|b| b.is_ascii_whitespace())
}

fn check_event(i: usize, e: &Value, now_s: i64) -> Result<(), GraphError> {
    let at = |f: &str| format!("data[{i}].{f}");
    let Some(o) = e.as_object() else {
        return Err(GraphError::invalid(2804001, "Invalid event", format!("data[{i}] must be an object")));
    };
    match o.get("event_name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => {}
        _ => {
            return Err(GraphError::invalid(
                2804002,
                "Missing event name",
                format!("{} is required", at("event_name")),
            ));
        }
    }
    let source = match o.get("action_source").and_then(Value::as_str) {
        Some(s) if ACTION_SOURCES.contains(&s) => s,
        Some(s) => {
            return Err(GraphError::invalid(
                2804022,
                "Invalid action source",
                format!("{} {s:?} is not a valid action source", at("action_source")),
            ));
        }
        None => {
            return Err(GraphError::invalid(
                2804022,
                "Missing action source",
                format!("{} is required", at("action_source")),
            ));
        }
    };
    let Some(t) = o.get("event_time").and_then(Value::as_i64) else {
        return Err(GraphError::invalid(
            2804007,
            "Invalid event time",
            format!("{} must be an integer (Unix seconds)", at("event_time")),
        ));
    };
    let max_age_days = if source == "physical_store" { 62 } else { 7 };
    if now_s - t > max_age_days * 86_400 {
        return Err(GraphError::invalid(
            2804004,
            "Event Timestamp Too Old",
            format!("The timestamp for {} is more than {max_age_days} days in the past", at("event_time")),
        ));
    }
    if t - now_s > 15 * 60 {
        return Err(GraphError::invalid(
            2804008,
            "Event Timestamp In Future",
            format!("The timestamp for {} is in the future (are these milliseconds?)", at("event_time")),
        ));
    }
    let url = o.get("event_source_url").and_then(Value::as_str);
    if let Some(u) = url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err(GraphError::invalid(
            2804005,
            "Invalid event source URL",
            format!("{} must be an http(s) URL", at("event_source_url")),
        ));
    }
    let Some(ud) = o.get("user_data").and_then(Value::as_object) else {
        return Err(GraphError::invalid(2804050, "Customer information parameters", "This event has no user_data."));
    };
    if source == "website" {
        if url.is_none() {
            return Err(GraphError::invalid(
                2804005,
                "Missing event source URL",
                format!("{} is required for website events", at("event_source_url")),
            ));
        }
        if ud.get("client_user_agent").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(GraphError::invalid(
                2804019,
                "Missing client user agent",
                format!("{} is required for website events", at("user_data.client_user_agent")),
            ));
        }
    }
    if !ud.keys().any(|k| CUSTOMER_INFO.contains(&k.as_str())) {
        return Err(GraphError::invalid(
            2804050,
            "Customer information parameters",
            "This event has insufficient customer information.",
        ));
    }
    for k in HASHED {
        if let Some(v) = ud.get(k) {
            let ok = hashed_values(v).is_some_and(|vals| !vals.is_empty() && vals.iter().all(|h| is_sha256_hex(h)));
            if !ok {
                return Err(GraphError::invalid(
                    2804039,
                    "Unhashed customer information",
                    format!("{} must be SHA-256 hashed: 64 lower-case hex digits", at(&format!("user_data.{k}"))),
                ));
            }
        }
    }
    if let Some(x) = ud.get("external_id")
        && hashed_values(x).is_none()
    {
        return Err(GraphError::invalid(
            2804039,
            "Invalid external id",
            format!("{} must be a string or list of strings", at("user_data.external_id")),
        ));
    }
    for (k, numeric) in [("fbc", false), ("fbp", true)] {
        if let Some(v) = ud.get(k)
            && !v.as_str().is_some_and(|s| meta_cookie_ok(s, numeric))
        {
            return Err(GraphError::invalid(
                2804024,
                "Invalid click or browser id",
                format!(
                    "{} must look like fb.1.<ms>.<{}>",
                    at(&format!("user_data.{k}")),
                    if numeric { "number" } else { "fbclid" }
                ),
            ));
        }
    }
    if let Some(ip) = ud.get("client_ip_address")
        && ip.as_str().is_none_or(|s| s.parse::<IpAddr>().is_err())
    {
        return Err(GraphError::invalid(
            2804023,
            "Invalid IP address",
            format!("{} must be a valid IPv4 or IPv6 address", at("user_data.client_ip_address")),
        ));
    }
    if let Some(cd) = o.get("custom_data") {
        let Some(cd) = cd.as_object() else {
            return Err(GraphError::invalid(
                2804001,
                "Invalid custom data",
                format!("{} must be an object", at("custom_data")),
            ));
        };
        let value = cd.get("value").map(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        if matches!(value, Some(None)) {
            return Err(GraphError::invalid(
                2804013,
                "Invalid value",
                format!("{} must be a number", at("custom_data.value")),
            ));
        }
        if let Some(c) = cd.get("currency")
            && !c.as_str().is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(GraphError::invalid(
                2804012,
                "Invalid currency",
                format!("{} must be an ISO 4217 code", at("custom_data.currency")),
            ));
        }
    }
    if o.get("event_name").and_then(Value::as_str) == Some("Purchase") {
        let cd = o.get("custom_data").and_then(Value::as_object);
        if !cd.is_some_and(|c| c.contains_key("value") && c.contains_key("currency")) {
            return Err(GraphError::invalid(
                2804013,
                "Missing value or currency",
                format!("Purchase events need custom_data.value and custom_data.currency (data[{i}])"),
            ));
        }
    }
    if let Some(v) = o.get("opt_out")
        && !v.is_boolean()
    {
        return Err(GraphError::invalid(2804001, "Invalid opt_out", format!("{} must be a boolean", at("opt_out"))));
    }
    if let Some(v) = o.get("event_id")
        && !v.is_string()
    {
        return Err(GraphError::invalid(2804001, "Invalid event id", format!("{} must be a string", at("event_id"))));
    }
    Ok(())
}

async fn events(
    State(s): State<MetaSandbox>,
    Path((version, pixel)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    if let Some(r) = fault_response(&s) {
        return r;
    }
    let reject = |s: &MetaSandbox, e: GraphError, events: usize| {
        s.lock().dropped.push(e.drop(events));
        e.response()
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return reject(
            &s,
            GraphError::plain(
                StatusCode::BAD_REQUEST,
                2635,
                format!("(#2635) Version {version} is deprecated or unknown"),
                false,
            ),
            0,
        );
    }
    let expected_pixel = s.lock().pixel_id.clone();
    if pixel.is_empty() || !pixel.bytes().all(|b| b.is_ascii_digit()) || expected_pixel.is_some_and(|p| p != pixel) {
        return reject(
            &s,
            GraphError::invalid(33, "Unsupported post request", format!("Object with ID '{pixel}' does not exist")),
            0,
        );
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // JSON body, or a form with `data` as a JSON string (both are accepted by Graph).
    let (parsed, form_token) = if ct.starts_with("application/json") {
        (serde_json::from_slice::<Value>(&body).ok(), None)
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        let form = form_decode(&String::from_utf8_lossy(&body));
        let f = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let data = f("data").and_then(|d| serde_json::from_str::<Value>(&d).ok());
        let v = data.map(|d| {
            let mut o = json!({"data": d});
            if let Some(t) = f("test_event_code") {
                o["test_event_code"] = json!(t);
            }
            o
        });
        (v, f("access_token"))
    } else {
        (None, None)
    };
    let token = q.access_token.or(form_token);
    let expected = s.lock().access_token.clone();
    match token.as_deref() {
        None | Some("") => {
            return reject(
                &s,
                GraphError::plain(
                    StatusCode::BAD_REQUEST,
                    104,
                    "An access token is required to request this resource.",
                    false,
                ),
                0,
            );
        }
        Some(t) if t != expected => {
            return reject(
                &s,
                GraphError::plain(
                    StatusCode::BAD_REQUEST,
                    190,
                    "Invalid OAuth access token - Cannot parse access token",
                    false,
                ),
                0,
            );
        }
        Some(_) => {}
    }
    let Some(Value::Object(o)) = parsed else {
        return reject(&s, GraphError::invalid(2804001, "Invalid body", "The body must be JSON with a data array"), 0);
    };
    let Some(data) = o.get("data").and_then(Value::as_array) else {
        return reject(
            &s,
            GraphError::plain(StatusCode::BAD_REQUEST, 100, "(#100) The parameter data is required", false),
            0,
        );
    };
    if data.is_empty() || data.len() > MAX_EVENTS {
        return reject(
            &s,
            GraphError::plain(
                StatusCode::BAD_REQUEST,
                100,
                format!("(#100) data must hold 1 to {MAX_EVENTS} events"),
                false,
            ),
            data.len(),
        );
    }
    let test_event_code = match o.get("test_event_code") {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => {
            return reject(
                &s,
                GraphError::plain(StatusCode::BAD_REQUEST, 100, "(#100) test_event_code must be a string", false),
                data.len(),
            );
        }
    };
    let now = now_ms();
    for (i, e) in data.iter().enumerate() {
        if let Err(err) = check_event(i, e, now.div_euclid(1000)) {
            // One bad event rejects the whole request, as Meta does.
            return reject(&s, err, data.len());
        }
    }
    let mut inner = s.lock();
    inner.seen.retain(|_, first| now - *first <= DEDUP_WINDOW_MS);
    for e in data {
        let name = e["event_name"].as_str().unwrap_or_default().to_owned();
        let event_id = e.get("event_id").and_then(Value::as_str).map(str::to_owned);
        let duplicate = match &event_id {
            Some(id) => {
                let key = (name.clone(), id.clone());
                match inner.seen.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => true,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(now);
                        false
                    }
                }
            }
            None => false,
        };
        inner.accepted.push(MetaRecord {
            pixel_id: pixel.clone(),
            event_name: name,
            event_id,
            event_time: e["event_time"].as_i64().unwrap_or_default(),
            action_source: e["action_source"].as_str().unwrap_or_default().to_owned(),
            event_source_url: e.get("event_source_url").and_then(Value::as_str).map(str::to_owned),
            user_data: e.get("user_data").and_then(Value::as_object).cloned().unwrap_or_default(),
            custom_data: e.get("custom_data").and_then(Value::as_object).cloned(),
            opt_out: e.get("opt_out").and_then(Value::as_bool),
            test_event_code: test_event_code.clone(),
            duplicate,
        });
    }
    let mut received = data.len();
    if inner.misreport_next > 0 {
        inner.misreport_next -= 1;
        received -= 1;
    }
    drop(inner);
    axum::Json(json!({
        "events_received": received,
        "messages": [],
        "fbtrace_id": format!("A{}", trace_id(received as u64)),
    }))
    .into_response()
}

async fn records(State(s): State<MetaSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({"accepted": i.accepted, "dropped": i.dropped})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(now_s: i64) -> Value {
        json!({"event_name":"Purchase","event_time":now_s,"event_id":"e1","action_source":"website",
               "event_source_url":"https://shop.example/done",
               "user_data":{"client_user_agent":"Mozilla/5.0","em":["309a0a5c3e211326ae75ca18196d301a9bdbd1a882a4d2569511033da23f0abd"],
                            "fbc":"fb.1.1554763741205.AbCdEf","fbp":"fb.1.1596403881668.1116446470","client_ip_address":"192.19.9.9"},
               "custom_data":{"value":100.2,"currency":"USD"}})
    }

    #[test]
    fn checks_like_meta() {
        let now = now_ms() / 1000;
        assert!(check_event(0, &event(now), now).is_ok());
        let mut e = event(now);
        e["event_time"] = json!(now - 8 * 86_400);
        assert_eq!(check_event(0, &e, now).err().unwrap().subcode, Some(2804004));
        let mut e = event(now);
        e["event_time"] = json!(now * 1000);
        assert!(check_event(0, &e, now).is_err(), "milliseconds are refused");
        let mut e = event(now);
        e["user_data"]["em"] = json!(["jane@example.com"]);
        assert!(check_event(0, &e, now).is_err(), "raw email is refused");
        let mut e = event(now);
        e["user_data"]["fbc"] = json!("fbclid-only");
        assert!(check_event(0, &e, now).is_err());
        let mut e = event(now);
        e.as_object_mut().unwrap().remove("event_source_url");
        assert!(check_event(0, &e, now).is_err());
        let mut e = event(now);
        e["custom_data"] = json!({});
        assert!(check_event(0, &e, now).is_err(), "purchase without value");
    }

    #[tokio::test]
    async fn one_bad_event_rejects_the_batch_and_dedup_works() {
        let s = MetaSandbox::default();
        let server = crate::Sandbox { meta: s.clone(), ..Default::default() }.serve("127.0.0.1:0").await.unwrap();
        let http = reqwest::Client::new();
        let url = server.url(&format!("/meta/v25.0/123/events?access_token={ACCESS_TOKEN}"));
        let now = now_ms() / 1000;
        let mut bad = event(now);
        bad["event_id"] = json!("e2");
        bad["user_data"]["ph"] = json!("+16505551212");
        let r = http.post(&url).json(&json!({"data":[event(now), bad]})).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], 100);
        assert!(s.events().is_empty());
        for _ in 0..2 {
            let r: Value =
                http.post(&url).json(&json!({"data":[event(now)]})).send().await.unwrap().json().await.unwrap();
            assert_eq!(r["events_received"], 1);
        }
        assert_eq!(s.purchases().len(), 1);
        assert_eq!(s.deduplicated().len(), 1);
        let wrong = server.url("/meta/v25.0/123/events?access_token=nope");
        let body: Value =
            http.post(&wrong).json(&json!({"data":[event(now)]})).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["error"]["code"], 190);
    }
}
