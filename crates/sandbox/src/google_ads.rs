//! A Google Ads API stand-in (<https://developers.google.com/google-ads/api/docs/conversions/upload-clicks>): `:uploadClickConversions`,
//! `:uploadConversionAdjustments`, and the OAuth 2.0 token endpoint.
//!
//! Routes, under the mount point (`/google-ads`):
//!
//! * `POST /token` — Google's token endpoint ([`crate::google_oauth`]): the
//!   refresh-token grant (checks the client id and secret and the refresh
//!   token) and the service-account JWT-bearer grant; issues `ya29.…` bearer
//!   tokens with `expires_in` and `scope` (by default the refresh token grants
//!   `https://www.googleapis.com/auth/adwords`). It can be told to shorten
//!   lifetimes, to expire every issued token ([`GoogleAdsSandbox::expire_tokens`])
//!   or to revoke the refresh token (`invalid_grant`); it counts requests.
//! * `POST /{version}/customers/{10 digits}:uploadClickConversions` and
//!   `…:uploadConversionAdjustments` — check the version, the customer id, the
//!   bearer token (issued here, not expired, with the `adwords` scope), `login-customer-id` (10 digits),
//!   the JSON body (unknown fields are an error, `partialFailure` must be true,
//!   at most 2,000 rows, `jobId` in `[0, 2^31)`), then each row: the action's
//!   resource name, exactly one of gclid / gbraid / wbraid or user identifiers,
//!   never a braid with identifiers, at most 5 identifiers each holding exactly
//!   one 64-hex `hashedEmail` / `hashedPhoneNumber`, `conversionDateTime` as
//!   `yyyy-mm-dd hh:mm:ss±hh:mm` within 90 days, ISO currency, an `orderId`
//!   without PII; adjustments: `RETRACTION` without and `RESTATEMENT` with a
//!   `restatementValue`, the conversion found by order id, at most 54 days old
//!   (no 24-hour wait since 2024-09-09).
//! * `GET /records` — what was accepted, deduplicated and dropped, as JSON.
//!
//! Like the real API it answers 200 with a `partialFailureError` for bad rows
//! (the good rows are stored), and deduplicates by order id per conversion
//! action (`ORDER_ID_ALREADY_IN_USE`) or, without one, by click and time
//! (`CLICK_CONVERSION_ALREADY_EXISTS`). Request-level problems are RPC errors
//! (`{"error":{code,message,status,details}}`). Error codes the spec does not
//! name (e.g. for two click ids on one row) are this sandbox's own, in the
//! same `category:CODE` form.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::google_oauth::{ADWORDS_SCOPE, BearerProblem, GoogleOAuth};
use crate::util::{is_sha256_hex, now_ms, parse_ads_date_time, trace_id};

/// The OAuth client id the sandbox accepts by default.
pub const CLIENT_ID: &str = "sandbox-client.apps.googleusercontent.com";
/// The OAuth client secret the sandbox accepts by default.
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
/// The refresh token the sandbox accepts by default.
pub const REFRESH_TOKEN: &str = "1//sandbox-refresh-token";
/// API versions the sandbox serves (older ones are sunset).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["v24", "v25", "v26"];
/// Most rows per request.
pub const MAX_ROWS: usize = 2000;

const DAY_MS: i64 = 86_400_000;

/// One click conversion the sandbox stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdsConversion {
    /// The customer id of the URL.
    pub customer_id: String,
    /// `customers/{cid}/conversionActions/{id}`.
    pub conversion_action: String,
    /// The action id.
    pub action_id: String,
    /// `orderId`, if sent.
    pub order_id: Option<String>,
    /// `gclid`, if sent.
    pub gclid: Option<String>,
    /// `gbraid`, if sent.
    pub gbraid: Option<String>,
    /// `wbraid`, if sent.
    pub wbraid: Option<String>,
    /// `conversionDateTime` as sent.
    pub conversion_date_time: String,
    /// The same, Unix ms.
    pub conversion_time_ms: i64,
    /// `conversionValue`.
    pub value: Option<f64>,
    /// `currencyCode`.
    pub currency: Option<String>,
    /// Hashed emails of `userIdentifiers`.
    pub hashed_emails: Vec<String>,
    /// Hashed phone numbers of `userIdentifiers`.
    pub hashed_phones: Vec<String>,
    /// `consent.adUserData`.
    pub ad_user_data: Option<String>,
    /// The `login-customer-id` header of the request.
    pub login_customer_id: Option<String>,
    /// Whether a `developer-token` header came with the request.
    pub developer_token_sent: bool,
    /// Retracted by an adjustment.
    pub retracted: bool,
    /// The value after the latest restatement.
    pub restated_value: Option<f64>,
}

/// One conversion adjustment the sandbox applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdsAdjustment {
    /// The customer id of the URL.
    pub customer_id: String,
    /// `conversionAction`.
    pub conversion_action: String,
    /// `orderId`.
    pub order_id: String,
    /// `RETRACTION`, `RESTATEMENT` or `ENHANCEMENT`.
    pub adjustment_type: String,
    /// `adjustmentDateTime` as sent.
    pub adjustment_date_time: String,
    /// `restatementValue.adjustedValue`.
    pub adjusted_value: Option<f64>,
    /// `restatementValue.currencyCode`.
    pub currency: Option<String>,
}

/// A request or row refused (or deduplicated), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdsDrop {
    /// `category:CODE`, e.g. `conversionUploadError:ORDER_ID_ALREADY_IN_USE`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
    /// The row in its request, for row errors.
    pub row: Option<usize>,
    /// The row's `orderId`, if any.
    pub order_id: Option<String>,
}

struct Inner {
    /// The Data Manager stand-in of the same Google Ads account: conversions
    /// ingested there can be adjusted here, as in Google Ads.
    data_manager: Option<crate::DataManagerSandbox>,
    requests: u32,
    conversions: Vec<AdsConversion>,
    adjustments: Vec<AdsAdjustment>,
    dropped: Vec<AdsDrop>,
    deduplicated: Vec<AdsDrop>,
    /// (action id, order id) → index into `conversions`.
    orders: HashMap<(String, String), usize>,
    /// (click id, action id, conversion time) of conversions without an order id.
    clicks: HashSet<(String, String, String)>,
    /// (action id, order id) → latest restatement time (ms).
    restatements: HashMap<(String, String), i64>,
    known_actions: Option<HashSet<String>>,
    unparseable_gclids: HashSet<String>,
    required_login_customer_id: Option<String>,
    click_through_days: i64,
    job_seq: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            data_manager: None,
            requests: 0,
            conversions: Vec::new(),
            adjustments: Vec::new(),
            dropped: Vec::new(),
            deduplicated: Vec::new(),
            orders: HashMap::new(),
            clicks: HashSet::new(),
            restatements: HashMap::new(),
            known_actions: None,
            unparseable_gclids: HashSet::new(),
            required_login_customer_id: None,
            click_through_days: 90,
            job_seq: 0,
        }
    }
}

/// The Google Ads sandbox.
#[derive(Clone)]
pub struct GoogleAdsSandbox {
    inner: Arc<Mutex<Inner>>,
    /// The OAuth token endpoint (`POST /token`); its refresh token grants
    /// [`ADWORDS_SCOPE`] unless told otherwise.
    pub oauth: GoogleOAuth,
    /// Fault injection for the API (not the token endpoint).
    pub faults: FaultSwitch,
    /// Fault injection for the token endpoint.
    pub token_faults: FaultSwitch,
    /// Slow mode for the API.
    pub latency: Latency,
    /// Slow mode for the token endpoint.
    pub token_latency: Latency,
}

impl Default for GoogleAdsSandbox {
    fn default() -> Self {
        GoogleAdsSandbox::with_oauth(GoogleOAuth::new(&[ADWORDS_SCOPE]))
    }
}

impl GoogleAdsSandbox {
    /// A stand-in whose tokens come from `oauth` (shared with the Data
    /// Manager stand-in in [`Sandbox`](crate::Sandbox): Google has one token endpoint).
    pub fn with_oauth(oauth: GoogleOAuth) -> GoogleAdsSandbox {
        GoogleAdsSandbox {
            inner: Arc::default(),
            faults: FaultSwitch::default(),
            token_faults: oauth.faults.clone(),
            latency: Latency::default(),
            token_latency: oauth.latency.clone(),
            oauth,
        }
    }
}

impl GoogleAdsSandbox {
    /// Shares the Google Ads account with `dm`: conversions ingested through
    /// the Data Manager stand-in can be adjusted (retracted) here.
    pub fn link_data_manager(&self, dm: &crate::DataManagerSandbox) {
        self.lock().data_manager = Some(dm.clone());
    }

    /// The routes: `POST /token`, `POST /{version}/customers/{cid}:{method}`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/records", get(records))
            .route("/{version}/customers/{target}", post(upload))
            .with_state(self.clone())
            .merge(self.oauth.router())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored click conversion, in arrival order (retracted ones included).
    pub fn conversions(&self) -> Vec<AdsConversion> {
        self.lock().conversions.clone()
    }

    /// Conversions that still count (not retracted).
    pub fn purchases(&self) -> Vec<AdsConversion> {
        self.conversions().into_iter().filter(|c| !c.retracted).collect()
    }

    /// Every applied adjustment, in arrival order.
    pub fn adjustments(&self) -> Vec<AdsAdjustment> {
        self.lock().adjustments.clone()
    }

    /// Requests and rows refused, and why.
    pub fn dropped(&self) -> Vec<AdsDrop> {
        self.lock().dropped.clone()
    }

    /// Rows refused as duplicates (`ORDER_ID_ALREADY_IN_USE`, …).
    pub fn deduplicated(&self) -> Vec<AdsDrop> {
        self.lock().deduplicated.clone()
    }

    /// API requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// Token requests received (faulted ones included).
    pub fn token_requests(&self) -> u32 {
        self.oauth.token_requests()
    }

    /// Uses other OAuth client credentials and refresh token.
    pub fn set_credentials(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        self.oauth.set_credentials(client_id, client_secret, refresh_token);
    }

    /// Issues tokens living `d` from now on (default 3599 s).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.oauth.set_token_lifetime(d);
    }

    /// Makes every access token issued so far invalid (the API answers 401).
    pub fn expire_tokens(&self) {
        self.oauth.expire_tokens();
    }

    /// Revokes the refresh token: the token endpoint answers `invalid_grant`.
    pub fn revoke_refresh_token(&self) {
        self.oauth.revoke_refresh_token();
    }

    /// The scopes the refresh token grants (default [`ADWORDS_SCOPE`]); a token
    /// without [`ADWORDS_SCOPE`] is refused by the API with 403.
    pub fn set_refresh_token_scopes(&self, scopes: &[&str]) {
        self.oauth.set_refresh_token_scopes(scopes);
    }

    /// Only these conversion action ids exist (default: any).
    pub fn add_conversion_action(&self, id: &str) {
        self.lock().known_actions.get_or_insert_with(HashSet::new).insert(id.to_owned());
    }

    /// This gclid cannot be decoded (`UNPARSEABLE_GCLID`).
    pub fn reject_gclid(&self, gclid: &str) {
        self.lock().unparseable_gclids.insert(gclid.to_owned());
    }

    /// The conversion actions' click-through window (1 to 90 days, default 90):
    /// older conversions are refused with `EXPIRED_EVENT`.
    pub fn set_click_through_days(&self, days: u32) {
        self.lock().click_through_days = i64::from(days.clamp(1, 90));
    }

    /// Requests must carry this `login-customer-id` (the manager account).
    pub fn require_login_customer_id(&self, id: &str) {
        self.lock().required_login_customer_id = Some(id.to_owned());
    }

    /// Forgets everything recorded (credentials and settings stay).
    pub fn clear(&self) {
        let mut i = self.lock();
        i.conversions.clear();
        i.adjustments.clear();
        i.dropped.clear();
        i.deduplicated.clear();
        i.orders.clear();
        i.clicks.clear();
        i.restatements.clear();
        i.requests = 0;
        drop(i);
        self.oauth.clear();
    }
}

/// One Google Ads error.
struct AdsError {
    category: &'static str,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

fn err(category: &'static str, code: &'static str, message: impl Into<String>) -> AdsError {
    AdsError { category, code, message: message.into(), field: None }
}

impl AdsError {
    fn at(mut self, field: &'static str) -> AdsError {
        self.field = Some(field);
        self
    }

    fn full_code(&self) -> String {
        format!("{}:{}", self.category, self.code)
    }
}

fn failure_detail(version: &str, errors: &[(Option<(&str, usize)>, AdsError)], request_id: &str) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(loc, e)| {
            let mut o = json!({"errorCode": {e.category: e.code}, "message": e.message});
            if let Some((list, i)) = loc {
                let mut path = vec![json!({"fieldName": list, "index": i})];
                if let Some(f) = e.field {
                    path.push(json!({"fieldName": f}));
                }
                o["location"] = json!({"fieldPathElements": path});
            }
            o
        })
        .collect();
    json!({
        "@type": format!("type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure"),
        "errors": errors,
        "requestId": request_id,
    })
}

/// A request-level (RPC) error answer.
fn rpc_error(version: &str, http: StatusCode, status: &str, e: AdsError) -> Response {
    let request_id = trace_id(u64::from(http.as_u16()));
    let message = e.message.clone();
    let body = json!({"error": {
        "code": http.as_u16(),
        "message": message,
        "status": status,
        "details": [failure_detail(version, &[(None, e)], &request_id)],
    }});
    (http, [("request-id", request_id)], axum::Json(body)).into_response()
}

fn fault_response(s: &GoogleAdsSandbox, version: &str) -> Option<Response> {
    match s.faults.take() {
        Mode::Up => None,
        Mode::Down => Some(rpc_error(
            version,
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            err("internalError", "TRANSIENT_ERROR", "sandbox: the service is currently unavailable"),
        )),
        Mode::RateLimited => {
            let mut r = rpc_error(
                version,
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                err("quotaError", "RESOURCE_EXHAUSTED", "sandbox: too many requests"),
            );
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
            Some(r)
        }
        Mode::Unauthorized => Some(rpc_error(
            version,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            err("authenticationError", "NOT_ADS_USER", "sandbox: the credentials were refused"),
        )),
    }
}

const CLICK_FIELDS: &[&str] = &[
    "gclid",
    "gbraid",
    "wbraid",
    "conversionAction",
    "conversionDateTime",
    "conversionValue",
    "currencyCode",
    "orderId",
    "externalAttributionData",
    "customVariables",
    "cartData",
    "userIdentifiers",
    "conversionEnvironment",
    "consent",
    "customerType",
    "userIpAddress",
    "sessionAttributesEncoded",
    "sessionAttributesKeyValuePairs",
];
const ADJUSTMENT_FIELDS: &[&str] = &[
    "gclidDateTimePair",
    "orderId",
    "conversionAction",
    "adjustmentDateTime",
    "adjustmentType",
    "restatementValue",
    "userIdentifiers",
    "userAgent",
];
const REQUEST_FIELDS: &[&str] = &["conversions", "conversionAdjustments", "partialFailure", "validateOnly", "jobId"];

/// Proto JSON accepts the lowerCamelCase name and the original snake_case one.
fn known(name: &str, fields: &[&str]) -> bool {
    let camel: String = {
        let mut out = String::with_capacity(name.len());
        let mut up = false;
        for c in name.chars() {
            if c == '_' {
                up = true;
            } else if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        }
        out
    };
    fields.contains(&camel.as_str())
}

fn prop<'a>(o: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    o.get(camel).or_else(|| {
        let snake: String = camel
            .chars()
            .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
            .collect();
        o.get(&snake)
    })
}

fn action_id(resource: &str) -> Option<String> {
    let rest = resource.strip_prefix("customers/")?;
    let (cid, id) = rest.split_once("/conversionActions/")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(cid) && digits(id)).then(|| id.to_owned())
}

fn currency_ok(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

struct RequestHeaders {
    login_customer_id: Option<String>,
    developer_token_sent: bool,
}

async fn upload(
    State(s): State<GoogleAdsSandbox>,
    Path((version, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.lock().requests += 1;
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    if let Some(r) = fault_response(&s, &version) {
        return r;
    }
    let reject = |s: &GoogleAdsSandbox, http: StatusCode, status: &str, e: AdsError| {
        s.lock().dropped.push(AdsDrop { code: e.full_code(), message: e.message.clone(), row: None, order_id: None });
        rpc_error(&version, http, status, e)
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return reject(
            &s,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            err("requestError", "UNSUPPORTED_VERSION", format!("Version {version} is not served (sunset or unknown)")),
        );
    }
    let Some((customer_id, method)) = target.split_once(':') else {
        return reject(
            &s,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            err("requestError", "UNKNOWN_METHOD", "expected customers/{id}:method"),
        );
    };
    if customer_id.len() != 10 || !customer_id.bytes().all(|b| b.is_ascii_digit()) {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err(
                "requestError",
                "INVALID_CUSTOMER_ID",
                format!("customer id {customer_id:?} must be 10 digits without dashes"),
            ),
        );
    }
    let adjustments = match method {
        "uploadClickConversions" => false,
        "uploadConversionAdjustments" => true,
        other => {
            return reject(
                &s,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                err("requestError", "UNKNOWN_METHOD", format!("no method {other}")),
            );
        }
    };
    // Authentication.
    let auth = s.oauth.check_bearer(&headers, ADWORDS_SCOPE).map_err(|p| match p {
        BearerProblem::Missing => (
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            err(
                "authenticationError",
                "AUTHENTICATION_ERROR",
                "Request is missing required authentication credential.",
            ),
        ),
        BearerProblem::Expired => (
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            err("authenticationError", "OAUTH_TOKEN_EXPIRED", "The OAuth access token has expired."),
        ),
        BearerProblem::Unknown => (
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            err("authenticationError", "OAUTH_TOKEN_INVALID", "The OAuth access token is invalid."),
        ),
        BearerProblem::InsufficientScope { .. } => (
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            err(
                "authorizationError",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                format!("Request had insufficient authentication scopes: the Google Ads API needs {ADWORDS_SCOPE}."),
            ),
        ),
    });
    if let Err((http, status, e)) = auth {
        return reject(&s, http, status, e);
    }
    let login = headers.get("login-customer-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(l) = &login
        && (l.len() != 10 || !l.bytes().all(|b| b.is_ascii_digit()))
    {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err(
                "authenticationError",
                "LOGIN_CUSTOMER_ID_PARSE_ERROR",
                format!("login-customer-id {l:?} must be 10 digits without dashes"),
            ),
        );
    }
    let required = s.lock().required_login_customer_id.clone();
    if let Some(req) = required
        && login.as_deref() != Some(req.as_str())
    {
        return reject(
            &s,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            err(
                "authorizationError",
                "USER_PERMISSION_DENIED",
                "The customer is reachable only through its manager: set login-customer-id",
            ),
        );
    }
    let rh = RequestHeaders { login_customer_id: login, developer_token_sent: headers.contains_key("developer-token") };
    let json_ct =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err("requestError", "INVALID_INPUT", "Content-Type must be application/json"),
        );
    }
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&body) else {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err("requestError", "INVALID_INPUT", "Invalid JSON payload received."),
        );
    };
    if let Some(k) = o.keys().find(|k| !known(k, REQUEST_FIELDS)) {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err("requestError", "UNKNOWN_FIELD", format!("Invalid JSON payload received. Unknown name \"{k}\"")),
        );
    }
    let list_name = if adjustments { "conversionAdjustments" } else { "conversions" };
    let category = if adjustments { "conversionAdjustmentUploadError" } else { "conversionUploadError" };
    if prop(&o, "partialFailure") != Some(&Value::Bool(true)) {
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err(category, "PARTIAL_FAILURE_MODE_REQUIRED", "partialFailure must be true"),
        );
    }
    let job_id = match prop(&o, "jobId") {
        None => None,
        Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
            Some(j) if (0..1i64 << 31).contains(&j) => Some(j),
            _ => {
                return reject(
                    &s,
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    err(category, "INVALID_JOB_ID", "jobId must be in [0, 2^31)"),
                );
            }
        },
    };
    let validate_only = match prop(&o, "validateOnly") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return reject(
                &s,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                err("requestError", "INVALID_INPUT", "validateOnly must be a boolean"),
            );
        }
    };
    let rows = match prop(&o, list_name) {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => {
            return reject(
                &s,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                err("requestError", "REQUIRED_FIELD_MISSING", format!("{list_name} is required")),
            );
        }
    };
    if rows.len() > MAX_ROWS {
        let code = if adjustments { "TOO_MANY_ADJUSTMENTS_IN_REQUEST" } else { "TOO_MANY_CONVERSIONS_IN_REQUEST" };
        return reject(
            &s,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            err(category, code, "Upload fewer than 2001 rows."),
        );
    }
    for row in &rows {
        let fields = if adjustments { ADJUSTMENT_FIELDS } else { CLICK_FIELDS };
        if let Some(k) = row.as_object().and_then(|r| r.keys().find(|k| !known(k, fields))) {
            return reject(
                &s,
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                err(
                    "requestError",
                    "UNKNOWN_FIELD",
                    format!("Invalid JSON payload received. Unknown name \"{k}\" at '{list_name}[0]'"),
                ),
            );
        }
    }
    let now = now_ms();
    let mut inner = s.lock();
    let mut results = Vec::with_capacity(rows.len());
    let mut errors: Vec<(Option<(&str, usize)>, AdsError)> = Vec::new();
    let mut seen_in_request: HashSet<(String, String)> = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(r) = row.as_object() else {
            errors.push((Some((list_name, i)), err("requestError", "INVALID_INPUT", "each row must be an object")));
            results.push(json!({}));
            continue;
        };
        let order_id = prop(r, "orderId").and_then(Value::as_str).map(str::to_owned);
        let outcome = if adjustments {
            adjustment_row(&mut inner, r, customer_id, now, &mut seen_in_request, validate_only)
        } else {
            click_row(&mut inner, r, customer_id, now, &rh, &mut seen_in_request, validate_only)
        };
        match outcome {
            Ok(result) => results.push(result),
            Err(e) => {
                let drop = AdsDrop { code: e.full_code(), message: e.message.clone(), row: Some(i), order_id };
                if is_duplicate_code(e.code) {
                    inner.deduplicated.push(drop);
                } else {
                    inner.dropped.push(drop);
                }
                errors.push((Some((list_name, i)), e));
                results.push(json!({}));
            }
        }
    }
    let job = match job_id {
        Some(j) => j.to_string(),
        None => {
            inner.job_seq += 1;
            ((1u64 << 31) + inner.job_seq).to_string()
        }
    };
    drop(inner);
    let request_id = trace_id(rows.len() as u64);
    let mut answer = Map::new();
    if !validate_only {
        answer.insert("results".into(), Value::Array(results));
    }
    if let Some((Some((list, i)), first)) = errors.first() {
        let message =
            format!("{}, at {list}[{i}]{}", first.message, first.field.map(|f| format!(".{f}")).unwrap_or_default());
        answer.insert(
            "partialFailureError".into(),
            json!({"code": 3, "message": message, "details": [failure_detail(&version, &errors, &request_id)]}),
        );
    }
    answer.insert("jobId".into(), Value::String(job));
    (StatusCode::OK, [("request-id", request_id)], axum::Json(Value::Object(answer))).into_response()
}

fn is_duplicate_code(code: &str) -> bool {
    matches!(
        code,
        "ORDER_ID_ALREADY_IN_USE"
            | "DUPLICATE_ORDER_ID"
            | "CLICK_CONVERSION_ALREADY_EXISTS"
            | "CONVERSION_ALREADY_RETRACTED"
            | "RESTATEMENT_ALREADY_EXISTS"
            | "DUPLICATE_ADJUSTMENT_IN_REQUEST"
    )
}

fn opt_str<'a>(r: &'a Map<String, Value>, name: &str, field: &'static str) -> Result<Option<&'a str>, AdsError> {
    match prop(r, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.as_str())),
        Some(_) => Err(err("fieldError", "INVALID_VALUE", format!("{name} must be a non-empty string")).at(field)),
    }
}

fn check_action(inner: &Inner, r: &Map<String, Value>) -> Result<(String, String), AdsError> {
    let resource = opt_str(r, "conversionAction", "conversion_action")?
        .ok_or_else(|| err("fieldError", "REQUIRED", "conversionAction is required").at("conversion_action"))?;
    let id = action_id(resource).ok_or_else(|| {
        err(
            "fieldError",
            "INVALID_VALUE",
            format!("conversionAction {resource:?} must be customers/{{customer_id}}/conversionActions/{{id}}"),
        )
        .at("conversion_action")
    })?;
    if inner.known_actions.as_ref().is_some_and(|k| !k.contains(&id)) {
        return Err(err(
            "conversionUploadError",
            "NO_CONVERSION_ACTION_FOUND",
            "The conversion action specified in the upload request cannot be found.",
        )
        .at("conversion_action"));
    }
    Ok((resource.to_owned(), id))
}

fn check_date_time(v: Option<&str>, name: &str, field: &'static str) -> Result<(String, i64), AdsError> {
    let s = v.ok_or_else(|| err("fieldError", "REQUIRED", format!("{name} is required")).at(field))?;
    let ms = parse_ads_date_time(s).ok_or_else(|| {
        err(
            "dateError",
            "INVALID_FIELD_VALUES_IN_DATE_TIME",
            format!("{name} {s:?} must be yyyy-mm-dd hh:mm:ss+|-hh:mm"),
        )
        .at(field)
    })?;
    Ok((s.to_owned(), ms))
}

fn check_order_id(order: Option<&str>, category: &'static str) -> Result<(), AdsError> {
    if let Some(o) = order {
        if o.len() > 255 {
            return Err(err("stringLengthError", "TOO_LONG", "orderId is too long").at("order_id"));
        }
        if o.contains('@') {
            return Err(err(
                category,
                "ORDER_ID_CONTAINS_PII",
                "The order id contains personally identifiable information.",
            )
            .at("order_id"));
        }
    }
    Ok(())
}

/// Checks the user identifiers; returns (hashed emails, hashed phones).
fn check_identifiers(r: &Map<String, Value>) -> Result<(Vec<String>, Vec<String>), AdsError> {
    let (mut emails, mut phones) = (Vec::new(), Vec::new());
    let Some(v) = prop(r, "userIdentifiers") else {
        return Ok((emails, phones));
    };
    let Some(list) = v.as_array() else {
        return Err(err("fieldError", "INVALID_VALUE", "userIdentifiers must be a list").at("user_identifiers"));
    };
    if list.len() > 5 {
        return Err(
            err("collectionSizeError", "TOO_MANY", "At most 5 user identifiers per conversion.").at("user_identifiers")
        );
    }
    for id in list {
        let Some(o) = id.as_object() else {
            return Err(err(
                "conversionUploadError",
                "INVALID_USER_IDENTIFIER",
                "each user identifier must be an object",
            )
            .at("user_identifiers"));
        };
        if let Some(src) = prop(o, "userIdentifierSource")
            && !matches!(src.as_str(), Some("FIRST_PARTY" | "THIRD_PARTY" | "UNSPECIFIED" | "UNKNOWN"))
        {
            return Err(err("fieldError", "INVALID_VALUE", "userIdentifierSource must be FIRST_PARTY or THIRD_PARTY")
                .at("user_identifiers"));
        }
        let kinds: Vec<&String> = o.keys().filter(|k| !known(k, &["userIdentifierSource"])).collect();
        if kinds.len() != 1 {
            return Err(err(
                "conversionUploadError",
                "INVALID_USER_IDENTIFIER",
                "each user identifier must set exactly one identifier",
            )
            .at("user_identifiers"));
        }
        let kind = kinds[0].as_str();
        let value = o.get(kind).and_then(Value::as_str);
        if known(kind, &["hashedEmail"]) || known(kind, &["hashedPhoneNumber"]) {
            let Some(h) = value.filter(|h| is_sha256_hex(h)) else {
                return Err(err(
                    "conversionUploadError",
                    "INVALID_USER_IDENTIFIER",
                    format!("{kind} must be a SHA-256 digest: 64 lower-case hex digits"),
                )
                .at("user_identifiers"));
            };
            if known(kind, &["hashedEmail"]) {
                emails.push(h.to_owned());
            } else {
                phones.push(h.to_owned());
            }
        } else {
            return Err(err(
                "conversionUploadError",
                "UNSUPPORTED_USER_IDENTIFIER",
                format!("Only hashed_email and hashed_phone_number are supported for conversion uploads, not {kind}"),
            )
            .at("user_identifiers"));
        }
    }
    Ok((emails, phones))
}

fn click_row(
    inner: &mut Inner,
    r: &Map<String, Value>,
    customer_id: &str,
    now: i64,
    rh: &RequestHeaders,
    seen: &mut HashSet<(String, String)>,
    validate_only: bool,
) -> Result<Value, AdsError> {
    const C: &str = "conversionUploadError";
    let (resource, action) = check_action(inner, r)?;
    let gclid = opt_str(r, "gclid", "gclid")?;
    let gbraid = opt_str(r, "gbraid", "gbraid")?;
    let wbraid = opt_str(r, "wbraid", "wbraid")?;
    if gbraid.is_some() && wbraid.is_some() {
        return Err(err(C, "GBRAID_WBRAID_BOTH_SET", "gbraid and wbraid cannot both be set").at("gbraid"));
    }
    if gclid.is_some() && (gbraid.is_some() || wbraid.is_some()) {
        return Err(err(C, "MORE_THAN_ONE_CLICK_ID", "Set exactly one of gclid, gbraid, wbraid").at("gclid"));
    }
    if let Some(g) = gclid
        && (inner.unparseable_gclids.contains(g)
            || !g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(err(C, "UNPARSEABLE_GCLID", "The imported gclid could not be decoded.").at("gclid"));
    }
    for (name, v) in [("gbraid", gbraid), ("wbraid", wbraid)] {
        if v.is_some_and(|b| !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')) {
            let code = if name == "gbraid" { "UNPARSEABLE_GBRAID" } else { "UNPARSEABLE_WBRAID" };
            return Err(err(C, code, format!("The imported {name} could not be decoded.")).at("gclid"));
        }
    }
    let (emails, phones) = check_identifiers(r)?;
    let has_identifiers = !emails.is_empty() || !phones.is_empty();
    if (gbraid.is_some() || wbraid.is_some()) && has_identifiers {
        return Err(err(C, "UNSUPPORTED_USER_IDENTIFIER", "User identifiers cannot be used with gbraid or wbraid")
            .at("user_identifiers"));
    }
    let click = gclid.or(gbraid).or(wbraid);
    if click.is_none() && !has_identifiers {
        return Err(
            err("fieldError", "REQUIRED", "One of gclid, gbraid, wbraid or user_identifiers is required").at("gclid")
        );
    }
    let (date_time, at) = check_date_time(
        opt_str(r, "conversionDateTime", "conversion_date_time")?,
        "conversionDateTime",
        "conversion_date_time",
    )?;
    if now - at > inner.click_through_days * DAY_MS {
        return Err(err(C, "EXPIRED_EVENT", "The click is older than the conversion action's click-through window.")
            .at("conversion_date_time"));
    }
    if at - now > 15 * 60_000 {
        return Err(err("dateError", "LATER_THAN_MAXIMUM_DATE", "conversionDateTime is in the future")
            .at("conversion_date_time"));
    }
    let value = match prop(r, "conversionValue") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Some(x),
            _ => {
                return Err(err("fieldError", "INVALID_VALUE", "conversionValue must be a non-negative number")
                    .at("conversion_value"));
            }
        },
    };
    let currency = opt_str(r, "currencyCode", "currency_code")?;
    if currency.is_some_and(|c| !currency_ok(c)) {
        return Err(err("currencyCodeError", "UNSUPPORTED", "currencyCode must be an ISO 4217 code such as USD")
            .at("currency_code"));
    }
    let order_id = opt_str(r, "orderId", "order_id")?;
    check_order_id(order_id, C)?;
    let ad_user_data = match prop(r, "consent") {
        None => None,
        Some(Value::Object(c)) => {
            if prop(c, "adPersonalization").is_some() {
                return Err(err(
                    "fieldError",
                    "FIELD_NOT_ALLOWED",
                    "consent.adPersonalization can only be set for OfflineUserDataJobService and UserDataService",
                )
                .at("consent"));
            }
            match prop(c, "adUserData") {
                None => None,
                Some(Value::String(x)) if matches!(x.as_str(), "GRANTED" | "DENIED" | "UNSPECIFIED" | "UNKNOWN") => {
                    Some(x.clone())
                }
                Some(_) => {
                    return Err(err("fieldError", "INVALID_VALUE", "consent.adUserData must be GRANTED or DENIED")
                        .at("consent"));
                }
            }
        }
        Some(_) => return Err(err("fieldError", "INVALID_VALUE", "consent must be an object").at("consent")),
    };
    // Deduplication: one conversion per order id per action; without one, per click and time.
    match order_id {
        Some(o) => {
            if !seen.insert((action.clone(), o.to_owned())) {
                return Err(
                    err(C, "DUPLICATE_ORDER_ID", "The same order id appears twice in the request.").at("order_id")
                );
            }
            if inner.orders.contains_key(&(action.clone(), o.to_owned())) {
                return Err(err(
                    C,
                    "ORDER_ID_ALREADY_IN_USE",
                    "This order id was already used for a conversion of this action.",
                )
                .at("order_id"));
            }
        }
        None => {
            if let Some(c) = click
                && inner.clicks.contains(&(c.to_owned(), action.clone(), date_time.clone()))
            {
                return Err(err(
                    C,
                    "CLICK_CONVERSION_ALREADY_EXISTS",
                    "A conversion for this click and time already exists.",
                )
                .at("gclid"));
            }
        }
    }
    let result = json!({
        "gclid": gclid, "gbraid": gbraid, "wbraid": wbraid,
        "conversionAction": resource, "conversionDateTime": date_time,
    });
    if validate_only {
        return Ok(result);
    }
    if let Some(o) = order_id {
        inner.orders.insert((action.clone(), o.to_owned()), inner.conversions.len());
    } else if let Some(c) = click {
        inner.clicks.insert((c.to_owned(), action.clone(), date_time.clone()));
    }
    inner.conversions.push(AdsConversion {
        customer_id: customer_id.to_owned(),
        conversion_action: resource,
        action_id: action,
        order_id: order_id.map(str::to_owned),
        gclid: gclid.map(str::to_owned),
        gbraid: gbraid.map(str::to_owned),
        wbraid: wbraid.map(str::to_owned),
        conversion_date_time: date_time,
        conversion_time_ms: at,
        value,
        currency: currency.map(str::to_owned),
        hashed_emails: emails,
        hashed_phones: phones,
        ad_user_data,
        login_customer_id: rh.login_customer_id.clone(),
        developer_token_sent: rh.developer_token_sent,
        retracted: false,
        restated_value: None,
    });
    Ok(result)
}

fn adjustment_row(
    inner: &mut Inner,
    r: &Map<String, Value>,
    customer_id: &str,
    now: i64,
    seen: &mut HashSet<(String, String)>,
    validate_only: bool,
) -> Result<Value, AdsError> {
    const C: &str = "conversionAdjustmentUploadError";
    let (resource, action) = check_action(inner, r)?;
    let kind = opt_str(r, "adjustmentType", "adjustment_type")?
        .ok_or_else(|| err("fieldError", "REQUIRED", "adjustmentType is required").at("adjustment_type"))?;
    if !matches!(kind, "RETRACTION" | "RESTATEMENT" | "ENHANCEMENT") {
        return Err(err(
            "fieldError",
            "INVALID_VALUE",
            format!("adjustmentType {kind:?} must be RETRACTION, RESTATEMENT or ENHANCEMENT"),
        )
        .at("adjustment_type"));
    }
    let order_id = opt_str(r, "orderId", "order_id")?;
    let pair = prop(r, "gclidDateTimePair");
    if order_id.is_some() && pair.is_some() && kind != "ENHANCEMENT" {
        return Err(err(
            C,
            "GCLID_DATE_TIME_PAIR_AND_ORDER_ID_BOTH_SET",
            "Set either orderId or gclidDateTimePair, not both",
        )
        .at("order_id"));
    }
    check_order_id(order_id, C)?;
    let Some(order_id) = order_id else {
        return Err(err(
            C,
            "MISSING_ORDER_ID_FOR_WEBPAGE",
            "This sandbox identifies conversions by orderId; it is required",
        )
        .at("order_id"));
    };
    let (date_time, at) = check_date_time(
        opt_str(r, "adjustmentDateTime", "adjustment_date_time")?,
        "adjustmentDateTime",
        "adjustment_date_time",
    )?;
    if at - now > 15 * 60_000 {
        return Err(err("dateError", "LATER_THAN_MAXIMUM_DATE", "adjustmentDateTime is in the future")
            .at("adjustment_date_time"));
    }
    let restatement = prop(r, "restatementValue");
    let (adjusted_value, currency) = match (kind, restatement) {
        ("RESTATEMENT", None) => {
            return Err(
                err(C, "RESTATEMENT_VALUE_REQUIRED", "A RESTATEMENT needs restatementValue").at("restatement_value")
            );
        }
        ("RESTATEMENT", Some(Value::Object(v))) => {
            let value = match prop(v, "adjustedValue").and_then(Value::as_f64) {
                Some(x) if x >= 0.0 && x.is_finite() => x,
                _ => {
                    return Err(err(
                        "fieldError",
                        "INVALID_VALUE",
                        "restatementValue.adjustedValue must be a non-negative number",
                    )
                    .at("restatement_value"));
                }
            };
            let currency = match prop(v, "currencyCode") {
                None => None,
                Some(Value::String(c)) if currency_ok(c) => Some(c.clone()),
                Some(_) => {
                    return Err(err(
                        "currencyCodeError",
                        "UNSUPPORTED",
                        "restatementValue.currencyCode must be ISO 4217",
                    )
                    .at("restatement_value"));
                }
            };
            (Some(value), currency)
        }
        ("RESTATEMENT", Some(_)) => {
            return Err(
                err("fieldError", "INVALID_VALUE", "restatementValue must be an object").at("restatement_value")
            );
        }
        (_, Some(_)) => {
            return Err(err(
                C,
                "RESTATEMENT_VALUE_NOT_ALLOWED",
                format!("restatementValue must not be set on a {kind}"),
            )
            .at("restatement_value"));
        }
        (_, None) => (None, None),
    };
    let key = (action.clone(), order_id.to_owned());
    if !seen.insert(key.clone()) {
        return Err(
            err(C, "DUPLICATE_ADJUSTMENT_IN_REQUEST", "The request adjusts the same conversion twice.").at("order_id")
        );
    }
    if !inner.orders.contains_key(&key) {
        // Uploaded through the Data Manager API to the same account: Google Ads knows it.
        let linked =
            inner.data_manager.as_ref().and_then(|dm| dm.google_ads_conversion(customer_id, &action, order_id));
        if let Some(c) = linked {
            inner.orders.insert(key.clone(), inner.conversions.len());
            inner.conversions.push(AdsConversion {
                customer_id: customer_id.to_owned(),
                conversion_action: resource.clone(),
                action_id: action.clone(),
                order_id: Some(order_id.to_owned()),
                gclid: c.gclid,
                gbraid: c.gbraid,
                wbraid: c.wbraid,
                conversion_date_time: c.event_timestamp,
                // Google Ads keeps conversion times to the second.
                conversion_time_ms: c.event_time_ms.div_euclid(1000) * 1000,
                value: c.value,
                currency: c.currency,
                hashed_emails: c.hashed_emails,
                hashed_phones: c.hashed_phones,
                ad_user_data: c.ad_user_data,
                login_customer_id: c.login_account,
                developer_token_sent: false,
                retracted: c.retracted,
                restated_value: None,
            });
        }
    }
    let Some(&idx) = inner.orders.get(&key) else {
        return Err(
            err(C, "CONVERSION_NOT_FOUND", "The conversion to adjust was not found (upload it first).").at("order_id")
        );
    };
    let conv = &inner.conversions[idx];
    if at < conv.conversion_time_ms {
        return Err(err(C, "ADJUSTMENT_PRECEDES_CONVERSION", "The adjustment is dated before the conversion.")
            .at("adjustment_date_time"));
    }
    // No 24-hour wait: Google stopped returning TOO_RECENT_CONVERSION for
    // adjustments on 2024-09-09 (https://developers.google.com/google-ads/api/docs/conversions/upload-adjustments).
    if now - conv.conversion_time_ms > 54 * DAY_MS {
        return Err(err(C, "CONVERSION_EXPIRED", "The conversion is more than 54 days old.").at("order_id"));
    }
    if conv.retracted {
        return Err(err(C, "CONVERSION_ALREADY_RETRACTED", "The conversion was already retracted.").at("order_id"));
    }
    if kind == "RESTATEMENT"
        && let Some(&prev) = inner.restatements.get(&key)
    {
        if prev == at {
            return Err(err(C, "RESTATEMENT_ALREADY_EXISTS", "This restatement was already uploaded.").at("order_id"));
        }
        if prev > at {
            return Err(
                err(C, "MORE_RECENT_RESTATEMENT_FOUND", "A more recent restatement exists.").at("adjustment_date_time")
            );
        }
    }
    let result = json!({"orderId": order_id, "conversionAction": resource, "adjustmentDateTime": date_time, "adjustmentType": kind});
    if validate_only {
        return Ok(result);
    }
    match kind {
        "RETRACTION" => inner.conversions[idx].retracted = true,
        "RESTATEMENT" => {
            inner.conversions[idx].restated_value = adjusted_value;
            inner.restatements.insert(key, at);
        }
        _ => {}
    }
    if let Some(dm) = &inner.data_manager {
        let restated = if kind == "RESTATEMENT" { adjusted_value } else { None };
        dm.apply_google_ads_adjustment(customer_id, &action, order_id, kind == "RETRACTION", restated);
    }
    inner.adjustments.push(AdsAdjustment {
        customer_id: customer_id.to_owned(),
        conversion_action: resource,
        order_id: order_id.to_owned(),
        adjustment_type: kind.to_owned(),
        adjustment_date_time: date_time,
        adjusted_value,
        currency,
    });
    Ok(result)
}

async fn records(State(s): State<GoogleAdsSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({
        "conversions": i.conversions,
        "adjustments": i.adjustments,
        "deduplicated": i.deduplicated,
        "dropped": i.dropped,
        "tokenRequests": s.oauth.token_requests(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_and_fields() {
        assert_eq!(action_id("customers/1234567890/conversionActions/555").as_deref(), Some("555"));
        assert_eq!(action_id("555"), None);
        assert!(known("conversion_date_time", CLICK_FIELDS));
        assert!(known("conversionDateTime", CLICK_FIELDS));
        assert!(!known("conversion_time", CLICK_FIELDS));
    }

    #[tokio::test]
    async fn token_then_upload_then_duplicate() {
        let s = GoogleAdsSandbox::default();
        let server = crate::Sandbox { google_ads: s.clone(), ..Default::default() }.serve("127.0.0.1:0").await.unwrap();
        let http = reqwest::Client::new();
        let tok: Value = http
            .post(server.url("/google-ads/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::google_oauth::sandbox_refresh_token_form())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = tok["access_token"].as_str().unwrap().to_owned();
        let when = {
            // An hour ago, in the sandbox's own format.
            let secs = (now_ms() - 3_600_000) / 1000;
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            // civil from days (Hinnant).
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
        };
        let body = json!({"conversions":[
            {"gclid":"Cj0KCQjwabc","conversionAction":"customers/1234567890/conversionActions/555","conversionDateTime":when,"orderId":"o1"},
            {"gclid":"Cj0KCQjwabc","gbraid":"x","conversionAction":"customers/1234567890/conversionActions/555","conversionDateTime":when}
        ],"partialFailure":true});
        let url = server.url("/google-ads/v26/customers/1234567890:uploadClickConversions");
        let r: Value = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["results"][1], json!({}));
        assert_eq!(
            r["partialFailureError"]["details"][0]["errors"][0]["location"]["fieldPathElements"][0],
            json!({"fieldName":"conversions","index":1})
        );
        assert_eq!(s.conversions().len(), 1);
        let again = json!({"conversions":[body["conversions"][0].clone()],"partialFailure":true});
        let r: Value = http.post(&url).bearer_auth(&token).json(&again).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            r["partialFailureError"]["details"][0]["errors"][0]["errorCode"]["conversionUploadError"],
            "ORDER_ID_ALREADY_IN_USE"
        );
        assert_eq!(s.deduplicated().len(), 1);
        // No token, wrong version, no partialFailure.
        assert_eq!(http.post(&url).json(&body).send().await.unwrap().status(), 401);
        let old = server.url("/google-ads/v17/customers/1234567890:uploadClickConversions");
        assert_eq!(http.post(&old).bearer_auth(&token).json(&body).send().await.unwrap().status(), 404);
        let no_pf = json!({"conversions": body["conversions"]});
        assert_eq!(http.post(&url).bearer_auth(&token).json(&no_pf).send().await.unwrap().status(), 400);
        s.expire_tokens();
        assert_eq!(http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap().status(), 401);
    }
}
