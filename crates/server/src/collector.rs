//! The first-party collector: `POST /collect` receives the browser's batches.
//!
//! Mount it into any axum app with [`router`], or run it standalone with
//! `tally serve --config tally.toml`. Each request carries a site key, the
//! browser's [`ContextEnvelope`] and up to [`CollectorConfig::max_events`]
//! events, as `application/json` or as `text/plain` (what `sendBeacon` sends):
//!
//! ```json
//! {"siteKey":"…","sentAt":1757409591000,"context":{"v":1,…},"events":[{"name":"purchase",…}]}
//! ```
//!
//! The reply says what happened to every event — never a blanket 200 that hides drops:
//!
//! ```json
//! {"results":[{"eventId":"…","status":"accepted"},
//!             {"eventId":"…","status":"invalid","field":"currency","reason":"currency is invalid: …"}]}
//! ```
//!
//! Statuses: `accepted` (delivered, or durably queued for retry), `duplicate`
//! (already delivered everywhere it may go), `invalid` (with the field; also
//! an `occurredAt` no configured destination accepts, see
//! [`window::check_event_time`]), `consent_denied` (no destination may
//! receive it). When the outbox is full
//! the answer is 503, so the browser keeps the batch and retries; events already
//! delivered then come back as `duplicate`.
//!
//! The HTTP API is described by an OpenAPI 3.1 document, [`OPENAPI_JSON`]
//! (`crates/server/openapi.json`), which [`serve_router`] serves at `GET /openapi.json`.
//!
//! Limits are checked before parsing: body size (413), events per request
//! (413), per-IP request rate (429 with `Retry-After`), and a body that has not
//! all arrived within [`CollectorConfig::body_read_timeout`] (408, and the
//! connection is closed). `/metrics` asks for
//! [`CollectorConfig::metrics_token`] when one is set. Browsers authenticate
//! with a site key from an allowed origin (CORS answers that exact origin, with
//! credentials); server-to-server callers with `Authorization: Bearer <secret>`
//! (the scheme in any letter case, RFC 9110 §11.1). A 401 names the credential
//! that was wrong: the bearer secret, the site key, or neither sent.
//!
//! ## Server-to-server calls
//!
//! A bearer-authenticated call (a backend, `tally-web/server`) is always
//! delivered inline, and each event's result also carries the outcome at every
//! configured destination, by destination name ([`OutcomeReport`]):
//!
//! ```json
//! {"results":[{"eventId":"…","status":"accepted","destinations":{
//!   "ga4":{"outcome":"sent","attempts":1},
//!   "meta":{"outcome":"queued","error":{"code":"transport","message":"…"}},
//!   "google_ads":{"outcome":"skipped","reason":"consent_denied","detail":"…"}}}]}
//! ```
//!
//! Outcomes are [`Outcome::CODES`], error codes [`DeliveryError::CODES`], skip
//! reasons [`SkipReason::CODES`]. Raw `userData` in the context travels over
//! this authenticated request and is normalised and hashed here, per
//! destination; a backend's own address is not the visitor's, so the request's
//! IP and `User-Agent` are not used: the body may give the visitor's as
//! `ipAddress` and `userAgent` (ignored from browsers). No visitor cookie is set.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, options, post};
use serde::Serialize;
use serde_json::Value;

use tally_core::destinations::window;
use tally_core::{ClickIds, ClientId, ContextEnvelope, DestinationKind, Event, EventId, VisitorId, cookie};

use crate::error::DeliveryError;
use crate::input::Visitor;
use crate::outcome::{Outcome, OutcomeReport, SkipReason};
use crate::production_qa::Origin;
use crate::tracker::ServerTracker;

/// Collector settings.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Site keys browsers may use (`siteKey` in the body). Required unless a bearer secret is used.
    pub site_keys: HashSet<String>,
    /// Origins allowed to call from a browser (exact match, e.g. `https://shop.example`).
    pub allowed_origins: HashSet<String>,
    /// Secrets server-to-server callers send as `Authorization: Bearer …`.
    pub server_secrets: HashSet<String>,
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Largest single event, in bytes of JSON (that event is `invalid` above).
    pub max_event_bytes: usize,
    /// Most events per request (413 above).
    pub max_events: usize,
    /// Requests per second allowed per client IP (sustained), 0 for no limit.
    pub rate_per_ip: u32,
    /// Burst allowed per client IP.
    pub burst_per_ip: u32,
    /// Read the client IP from `X-Forwarded-For` (only behind a proxy you run).
    pub trust_forwarded_for: bool,
    /// Zero the host part of IPs before forwarding them (IPv4 /24, IPv6 /48).
    pub truncate_ip: bool,
    /// Set Tally's visitor id as an HttpOnly first-party cookie with this lifetime
    /// (Safari caps script-set cookies at 7 days; server-set ones are not capped).
    pub visitor_cookie_days: Option<u32>,
    /// Also serve Prometheus metrics at `GET /metrics`.
    pub metrics: bool,
    /// The token `GET /metrics` asks for as `Authorization: Bearer <token>`
    /// (its own credential: it reads counts and revenue, it cannot post events
    /// or open the status page). `None`: `/metrics` answers anyone.
    pub metrics_token: Option<String>,
    /// A `/collect` body must all arrive within this from when the collector
    /// starts reading it; slower bodies are answered `408` and the connection
    /// is closed (a client dribbling bytes cannot hold it). Default 15 s.
    pub body_read_timeout: Duration,
    /// `true` (the default): a request returns after one delivery attempt per
    /// destination, so the browser hears about duplicates. `false`: it returns
    /// as soon as the events are in the outbox and the background worker
    /// delivers them, in batches; far more requests per second and a faster
    /// answer to the browser, with the same durability (a duplicate is then
    /// dropped by the worker instead of being reported).
    pub deliver_inline: bool,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            site_keys: HashSet::new(),
            allowed_origins: HashSet::new(),
            server_secrets: HashSet::new(),
            max_body_bytes: 64 * 1024,
            max_event_bytes: 16 * 1024,
            max_events: 100,
            rate_per_ip: 20,
            burst_per_ip: 60,
            trust_forwarded_for: false,
            truncate_ip: true,
            visitor_cookie_days: Some(365),
            metrics: false,
            metrics_token: None,
            body_read_timeout: Duration::from_secs(15),
            deliver_inline: true,
        }
    }
}

/// The name of the HttpOnly visitor cookie the collector sets.
pub const VISITOR_COOKIE: &str = "_tally_vid";

struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// Token bucket per IP. Returns the wait before a token is available, if none is.
    fn check(&self, ip: IpAddr, rate: u32, burst: u32) -> Option<Duration> {
        if rate == 0 {
            return None;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bounded memory: forget idle clients.
            map.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let (tokens, last) = map.entry(ip).or_insert((f64::from(burst), now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * f64::from(rate)).min(f64::from(burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - *tokens) / f64::from(rate)))
        }
    }
}

struct AppState {
    tracker: ServerTracker,
    config: CollectorConfig,
    limiter: RateLimiter,
}

/// The OpenAPI 3.1 document of the collector's HTTP API (`crates/server/openapi.json`),
/// served by [`serve_router`] at `GET /openapi.json`. A test checks it against
/// [`ROUTES`], [`SERVE_ROUTES`] and the outcome codes, so they cannot drift.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The routes of [`router`], as (method, path); `GET /metrics` only with
/// [`CollectorConfig::metrics`]. The router is built from this list.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/collect"), ("OPTIONS", "/collect"), ("GET", "/metrics")];

/// The routes [`serve_router`] (what `tally serve` runs) adds to [`ROUTES`].
pub const SERVE_ROUTES: &[(&str, &str)] =
    &[("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/status"), ("GET", "/status.json")];

/// The collector's routes: `POST /collect`, its CORS preflight, and `GET /metrics` when enabled.
pub fn router(tracker: ServerTracker, config: CollectorConfig) -> Router {
    routes(tracker, config, &[ROUTES])
}

/// What `tally serve` runs: [`router`] plus `GET /healthz` and `GET /openapi.json`
/// (the [`OPENAPI_JSON`] document).
pub fn serve_router(tracker: ServerTracker, config: CollectorConfig) -> Router {
    routes(tracker, config, &[ROUTES, SERVE_ROUTES])
}

fn routes(tracker: ServerTracker, config: CollectorConfig, lists: &[&[(&str, &str)]]) -> Router {
    let limit = config.max_body_bytes;
    let metrics = config.metrics;
    let state = Arc::new(AppState { tracker, config, limiter: RateLimiter { buckets: Mutex::new(HashMap::new()) } });
    let mut r = Router::new();
    for &(method, path) in lists.iter().copied().flatten() {
        let handler: MethodRouter<Arc<AppState>> = match (method, path) {
            ("POST", "/collect") => post(collect),
            ("OPTIONS", "/collect") => options(preflight),
            ("GET", "/metrics") if metrics => get(metrics_text),
            ("GET", "/healthz") => get(|| async { "ok" }),
            ("GET", "/openapi.json") => get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
            ("GET", "/status") => get(status_page),
            ("GET", "/status.json") => get(status_json),
            _ => continue,
        };
        r = r.route(path, handler);
    }
    r.layer(DefaultBodyLimit::max(limit)).with_state(state)
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
    /// Server-to-server calls only: the outcome at each configured destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destinations: Option<BTreeMap<String, OutcomeReport>>,
}

impl EventResult {
    /// Every `status` an event can get.
    pub const STATUSES: &'static [&'static str] = &["accepted", "duplicate", "invalid", "consent_denied"];
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

async fn metrics_text(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token
        && !metrics_token_ok(token, &headers)
    {
        let mut h = HeaderMap::new();
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tally metrics\""));
        let reason = "send the metrics token: Authorization: Bearer <[collector] metrics_token>";
        return error(StatusCode::UNAUTHORIZED, reason, &h);
    }
    // The outbox gauges read the store: off the runtime, so a slow store
    // delays this answer only.
    let tracker = state.tracker.clone();
    match tokio::task::spawn_blocking(move || tracker.metrics_text()).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable").into_response(),
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>` (the scheme in any
/// case, RFC 9110 §11.1). The SHA-256 digests are compared, so the time a
/// comparison takes says nothing about how much of a guess was right.
fn metrics_token_ok(token: &str, headers: &HeaderMap) -> bool {
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    credentials(headers, "Bearer").is_some_and(|sent| digest(sent).as_ref() == digest(token).as_ref())
}

fn client_ip(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    if state.config.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// Why a whole request was refused (before any event was looked at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status to answer.
    pub status: StatusCode,
    /// The reason, for the reply.
    pub reason: String,
    /// The field at fault, when there is one.
    pub field: Option<String>,
}

/// A request body, parsed: the site key, the envelope and, per event, the
/// event or `(claimed id, field, reason)` when it is invalid.
#[derive(Debug)]
pub struct ParsedBatch {
    /// `siteKey` (empty when absent).
    pub site_key: String,
    /// The context envelope (default when absent).
    pub envelope: ContextEnvelope,
    /// Each event, in order.
    pub events: Vec<Result<Event, (String, String, String)>>,
    /// `ipAddress`: the visitor's IP, as a server-to-server caller gives it.
    pub ip_address: Option<IpAddr>,
    /// `userAgent`: the visitor's user agent, as a server-to-server caller gives it.
    pub user_agent: Option<String>,
    /// Whether the context carried a `consent` object (without one, the
    /// tracker's default consent applies).
    pub consent_given: bool,
}

fn reject(status: StatusCode, reason: &str) -> Rejection {
    Rejection { status, reason: reason.to_owned(), field: None }
}

/// Parses a `/collect` body with its limits. Never panics, whatever the bytes
/// (a fuzz-style test feeds it arbitrary input); every refusal says why.
pub fn parse_batch(body: &[u8], max_events: usize, max_event_bytes: usize) -> Result<ParsedBatch, Rejection> {
    let text = std::str::from_utf8(body).map_err(|_| reject(StatusCode::BAD_REQUEST, "body is not UTF-8"))?;
    let doc: Value = serde_json::from_str(text).map_err(|_| {
        reject(StatusCode::BAD_REQUEST, "body is not JSON (nesting deeper than 128 levels is refused too)")
    })?;
    let obj = doc.as_object().ok_or_else(|| reject(StatusCode::BAD_REQUEST, "body must be a JSON object"))?;
    let site_key = obj.get("siteKey").and_then(Value::as_str).unwrap_or_default().to_owned();
    let ip_address = match obj.get("ipAddress") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().and_then(|s| s.trim().parse::<IpAddr>().ok()).ok_or_else(|| Rejection {
            status: StatusCode::BAD_REQUEST,
            reason: "ipAddress must be an IPv4 or IPv6 address".to_owned(),
            field: Some("ipAddress".to_owned()),
        })?),
    };
    let user_agent = match obj.get("userAgent") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.chars().take(512).collect()),
        Some(_) => {
            return Err(Rejection {
                status: StatusCode::BAD_REQUEST,
                reason: "userAgent must be a string".to_owned(),
                field: Some("userAgent".to_owned()),
            });
        }
    };
    let raw_events = obj
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| reject(StatusCode::BAD_REQUEST, "events must be an array"))?;
    if raw_events.len() > max_events {
        return Err(reject(StatusCode::PAYLOAD_TOO_LARGE, "too many events in one request"));
    }
    let envelope = match obj.get("context") {
        None | Some(Value::Null) => ContextEnvelope::default(),
        Some(v) => ContextEnvelope::from_value(v).map_err(|e| Rejection {
            status: StatusCode::BAD_REQUEST,
            reason: format!("invalid context: {e}"),
            field: Some(e.field().to_owned()),
        })?,
    };
    let events = raw_events
        .iter()
        .map(|raw| {
            let claimed_id: String =
                raw.get("eventId").and_then(Value::as_str).unwrap_or_default().chars().take(64).collect();
            // Counted without writing the JSON out (the count includes one separator byte).
            let size = tally_core::destinations::json_size::exact(raw).saturating_sub(1);
            if size > max_event_bytes {
                return Err((claimed_id, "event".to_owned(), format!("event is larger than {max_event_bytes} bytes")));
            }
            let fallback = || {
                let u = uuid::Uuid::now_v7();
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                EventId::parse(u.hyphenated().encode_lower(&mut buf)).unwrap_or_else(|_| EventId::random_v7(0, [0; 10]))
            };
            Event::from_json_value(raw, fallback).map_err(|e| (claimed_id, e.field().to_owned(), e.to_string()))
        })
        .collect();
    let consent_given = obj.get("context").and_then(|c| c.get("consent")).is_some_and(|c| !c.is_null());
    Ok(ParsedBatch { site_key, envelope, events, ip_address, user_agent, consent_given })
}

/// Zeroes the host part of an address: IPv4 to /24, IPv6 to /48.
pub fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// `GET /status`: the [status page](crate::status) for people.
async fn status_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(reason) = admin_ok(&state, &headers) {
        return status_refused(reason);
    }
    let html = state.tracker.status().await.render_html();
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

/// `GET /status.json`: the same data for machines.
async fn status_json(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(reason) = admin_ok(&state, &headers) {
        return status_refused(reason);
    }
    let report = state.tracker.status().await;
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(report)).into_response()
}

fn status_refused(reason: &str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tally status\", charset=\"UTF-8\""));
    error(StatusCode::UNAUTHORIZED, reason, &h)
}

/// The credentials of the `Authorization` header when its scheme is
/// `scheme`. Scheme names are case-insensitive (RFC 9110 §11.1:
/// `bearer`, `BEARER` and `Bearer` are one scheme), followed by one or more spaces.
fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (name, rest) = value.split_once(' ').unwrap_or((value, ""));
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// A server secret as a bearer token, or as the password of Basic
/// authentication (any user name), so a person's browser can open the page.
/// Refused with the reason: no secret configured, a secret that matches
/// none, or none sent.
fn admin_ok(state: &AppState, headers: &HeaderMap) -> Result<(), &'static str> {
    use base64::Engine as _;
    if state.config.server_secrets.is_empty() {
        return Err("the status page needs [collector] server_secrets: none is configured");
    }
    if let Some(token) = credentials(headers, "Bearer") {
        return if state.config.server_secrets.contains(token) {
            Ok(())
        } else {
            Err("the bearer secret matches none of [collector] server_secrets")
        };
    }
    let Some(basic) = credentials(headers, "Basic") else {
        return Err("send a server secret: Authorization: Bearer <secret>, or Basic with the secret as password");
    };
    let password = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|text| text.split_once(':').map(|(_, p)| p.to_owned()));
    match password {
        None => Err("the Basic credentials are not base64 of user:password"),
        Some(p) if state.config.server_secrets.contains(&p) => Ok(()),
        Some(_) => Err("the Basic password matches none of [collector] server_secrets"),
    }
}

/// Whether the request carries a bearer secret that is one of the server secrets.
fn bearer_ok(state: &AppState, headers: &HeaderMap) -> bool {
    credentials(headers, "Bearer").is_some_and(|t| state.config.server_secrets.contains(t))
}

/// Who is calling `/collect`: `Ok(true)` a backend with a server secret,
/// `Ok(false)` a browser with a known site key; otherwise the reason naming
/// the credential that was wrong. A bearer secret, when sent, decides alone:
/// a wrong one is refused even beside a valid site key.
fn collect_caller(state: &AppState, headers: &HeaderMap, site_key: &str) -> Result<bool, &'static str> {
    if credentials(headers, "Bearer").is_some() {
        return if bearer_ok(state, headers) {
            Ok(true)
        } else if state.config.server_secrets.is_empty() {
            Err("a bearer secret was sent, but [collector] server_secrets is empty: configure one")
        } else {
            Err("the bearer secret matches none of [collector] server_secrets")
        };
    }
    if site_key.is_empty() {
        return Err("no credentials: send a siteKey (browsers) or Authorization: Bearer <server secret> (backends)");
    }
    if state.config.site_keys.contains(site_key) {
        Ok(false)
    } else {
        Err("unknown siteKey: not in [collector] site_keys")
    }
}

/// An event whose time no configured destination accepts (ahead of the clock
/// beyond the skew allowance, or older than the longest window) is `invalid`
/// here, with the reason, instead of `accepted` and then sent nowhere.
fn event_time_ok(e: Event, now_ms: i64, kinds: &[DestinationKind]) -> Result<Event, (String, String, String)> {
    match window::check_event_time(e.occurred_at_ms, now_ms, kinds) {
        Ok(()) => Ok(e),
        Err(err @ tally_core::Error::OutsideWindow { .. }) => Err((
            e.id.as_str().to_owned(),
            err.field().to_owned(),
            format!("{err}, the longest of the configured destinations: none accepts an event this old"),
        )),
        Err(err) => Err((e.id.as_str().to_owned(), err.field().to_owned(), err.to_string())),
    }
}

/// Fills what the envelope lacks from the request's first-party cookies (the
/// `_ga` client id, Tally's visitor cookie, click-id cookies).
fn fill_from_cookies(visitor: &mut Visitor, headers: &HeaderMap) {
    let cookies: String =
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join("; ");
    if cookies.is_empty() {
        return;
    }
    if visitor.client_id.is_none() {
        visitor.client_id = tally_core::client_id::client_id_from_cookie_header(&cookies)
            .or_else(|| cookie::get(&cookies, "_tally_cid").and_then(|v| ClientId::from_ga_cookie(v).ok()));
    }
    if visitor.visitor_id.is_none() {
        visitor.visitor_id = cookie::get(&cookies, VISITOR_COOKIE)
            .and_then(cookie::percent_decode)
            .and_then(|v| VisitorId::parse(&v).ok());
    }
    let from_cookies: ClickIds = ClickIds::from_cookie_header(&cookies);
    visitor.click_ids.fill_from(&from_cookies);
}

async fn collect(State(state): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let Ok(cors) = cors_headers(&state, &headers) else {
        return error(StatusCode::FORBIDDEN, "origin not allowed", &HeaderMap::new());
    };
    let ip = client_ip(&state, &headers, peer);
    let declared_len =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > state.config.max_body_bytes) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large", &cors);
    }
    if let Some(ip) = ip
        && let Some(wait) = state.limiter.check(ip, state.config.rate_per_ip, state.config.burst_per_ip)
    {
        let mut h = cors.clone();
        let secs = wait.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            h.insert(header::RETRY_AFTER, v);
        }
        return error(StatusCode::TOO_MANY_REQUESTS, "rate limit for this client exceeded", &h);
    }
    let read =
        tokio::time::timeout(state.config.body_read_timeout, axum::body::to_bytes(body, state.config.max_body_bytes));
    let body: Bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large", &cors);
        }
        Err(_) => {
            // A client dribbling its body does not keep the connection.
            let mut h = cors.clone();
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            let reason = format!(
                "the request body did not arrive within {} ms; send it at once",
                state.config.body_read_timeout.as_millis()
            );
            return error(StatusCode::REQUEST_TIMEOUT, &reason, &h);
        }
    };
    let batch = match parse_batch(&body, state.config.max_events, state.config.max_event_bytes) {
        Ok(b) => b,
        Err(r) => {
            let mut v = serde_json::json!({ "error": r.reason });
            if let Some(f) = &r.field {
                v["field"] = Value::String(f.clone());
            }
            return (r.status, cors, axum::Json(v)).into_response();
        }
    };
    let server = match collect_caller(&state, &headers, &batch.site_key) {
        Ok(server) => server,
        Err(reason) => return error(StatusCode::UNAUTHORIZED, reason, &cors),
    };
    if !server && !state.config.allowed_origins.is_empty() && !headers.contains_key(header::ORIGIN) {
        return error(StatusCode::FORBIDDEN, "browser requests must come from an allowed origin", &cors);
    }
    let envelope = batch.envelope;
    let mut visitor = Visitor::from_envelope(&envelope);
    if !batch.consent_given {
        // No consent said: the tracker's default consent (`default_consent`) decides.
        visitor.consent = None;
    }
    fill_from_cookies(&mut visitor, &headers);
    // A backend's own address and user agent are not the visitor's.
    let (ip, user_agent) = if server {
        (batch.ip_address, batch.user_agent)
    } else {
        (ip, headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect()))
    };
    visitor.user_agent = user_agent;
    visitor.ip_address =
        ip.map(|ip| if state.config.truncate_ip { truncate_ip(ip) } else { ip }).map(|ip| ip.to_string());

    let mut results: Vec<Option<EventResult>> = vec![None; batch.events.len()];
    let mut valid = Vec::new();
    let mut positions = Vec::new();
    let (kinds, now) = (state.tracker.destination_kinds(), crate::clock::now_ms());
    for (i, parsed) in batch.events.into_iter().enumerate() {
        match parsed.and_then(|e| event_time_ok(e, now, &kinds)) {
            Ok(e) => {
                positions.push(i);
                valid.push(e);
            }
            Err((claimed_id, field, reason)) => {
                results[i] = Some(EventResult {
                    event_id: claimed_id,
                    status: "invalid",
                    field: Some(field),
                    reason: Some(reason),
                    destinations: None,
                });
            }
        }
    }
    let mut refused = false;
    // Server-to-server calls are delivered inline: their answer reports every
    // destination (their lanes batch them with other callers' events).
    if !state.config.deliver_inline && !server {
        let status = match state.tracker.engine().admit(&valid, &visitor).await {
            Ok(true) => "accepted",
            Ok(false) => "consent_denied",
            // The outbox is full: nothing durable happened; the browser keeps the events.
            Err(_) => {
                refused = true;
                "accepted"
            }
        };
        for (pos, e) in positions.iter().zip(&valid) {
            results[*pos] = Some(EventResult {
                event_id: e.id.as_str().to_owned(),
                status,
                field: None,
                reason: None,
                destinations: None,
            });
        }
        positions.clear();
        valid.clear();
    }
    // Production QA: a bearer-authenticated call confirms its orders; a browser's are counted apart.
    let origin = if server { Origin::Server } else { Origin::Browser };
    let delivered =
        if valid.is_empty() { Vec::new() } else { state.tracker.deliver_from(origin, valid, &visitor).await };
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
        let destinations =
            server.then(|| r.destinations.iter().map(|(name, o)| (name.clone(), OutcomeReport::from(o))).collect());
        results[pos] = Some(EventResult {
            event_id: r.event_id.as_str().to_owned(),
            status,
            field: None,
            reason: None,
            destinations,
        });
    }
    let results: Vec<EventResult> = results.into_iter().flatten().collect();
    let code = if refused { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut out_headers = cors;
    if let (Some(days), Some(vid), false) = (state.config.visitor_cookie_days, visitor.visitor_id.as_ref(), server) {
        let secure =
            if headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).is_some_and(|o| o.starts_with("https://")) {
                "; Secure"
            } else {
                ""
            };
        let c = format!(
            "{VISITOR_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            cookie::percent_encode(vid.as_str()),
            u64::from(days) * 86_400
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            out_headers.insert(header::SET_COOKIE, v);
        }
    }
    (code, out_headers, axum::Json(serde_json::json!({ "results": results }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_truncation() {
        assert_eq!(truncate_ip("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(truncate_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348".parse().unwrap()).to_string(), "2001:db8:85a3::");
    }

    #[test]
    fn token_bucket() {
        let l = RateLimiter { buckets: Mutex::new(HashMap::new()) };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            assert!(l.check(ip, 1, 5).is_none());
        }
        assert!(l.check(ip, 1, 5).is_some(), "burst exhausted");
        assert!(l.check("127.0.0.2".parse().unwrap(), 1, 5).is_none(), "per IP");
    }
}
