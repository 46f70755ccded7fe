//! A Google Data Manager API stand-in (<https://developers.google.com/data-manager/api/reference/rest>):
//! `events:ingest`, `requestStatus:retrieve`, and the OAuth 2.0 token endpoint.
//!
//! Routes, under the mount point (`/data-manager`):
//!
//! * `POST /token` — Google's token endpoint ([`crate::google_oauth`]): the
//!   refresh-token grant (by default it grants
//!   `https://www.googleapis.com/auth/datamanager`) and the service-account
//!   JWT-bearer grant. Tokens remember their scopes.
//! * `POST /v1/events:ingest` — checks, in this order: the bearer token (issued
//!   here, not expired — else 401 `UNAUTHENTICATED` — and minted with the
//!   `datamanager` scope, else 403 `PERMISSION_DENIED` /
//!   `ACCESS_TOKEN_SCOPE_INSUFFICIENT`); the per-minute quota
//!   ([`DataManagerSandbox::set_requests_per_minute`], 429 `RESOURCE_EXHAUSTED`
//!   naming `IngestionMutateRequestsPerMinutePerProject`, no `Retry-After`);
//!   the JSON body against the `IngestEventsRequest` schema (unknown names,
//!   JSON types, enum spellings — integers only with
//!   `$alt=json;enum-encoding=int`, proto3 JSON's camelCase or snake_case
//!   names); then the rules of the reference and guides: 1–10 destinations
//!   with a known `accountType`, a numeric `accountId` and conversion action
//!   id, unique `reference`s; 1–2,000 events, each with an RFC 3339
//!   `eventTimestamp` not in the future, at least one identifier, known
//!   `destinationReferences`, 1–10 user identifiers each holding exactly one of
//!   email / phone / address, SHA-256 values in the declared `encoding` (which
//!   is required with user data), complete addresses with unhashed region and
//!   postal codes, ISO 4217 currencies, IP addresses. Like the real API it is
//!   fast-fail: any violation answers 400 with a `google.rpc.Status` (ErrorInfo,
//!   RequestInfo, BadRequest with snake_case `field` paths such as
//!   `events[3].user_data.user_identifiers[1]`) and stores nothing. Problems
//!   with optional fields come back as `fieldWarnings` on the 200.
//!   `developer-token` / `login-customer-id` headers, which the guides say not
//!   to send, are recorded ([`DataManagerSandbox::flagged_headers`]), not refused.
//! * `GET /v1/requestStatus:retrieve?requestId=…` — `PROCESSING` until the
//!   processing delay has passed, then `SUCCESS`, `PARTIAL_SUCCESS` or `FAILED`
//!   per destination (in request order), with `errorInfo.errorCounts` for
//!   events whose gclid was marked bad ([`DataManagerSandbox::reject_gclid`]).
//!   `validateOnly` requests and unknown ids: 400 `INVALID_REQUEST_ID`.
//! * `GET /records` — what was stored and rejected, as JSON.
//!
//! Storage follows the conversion-adjustments guide: one conversion per
//! (operating account, conversion action, `transactionId`); re-ingesting the
//! same key restates `conversionValue` / `currency` (counted, never an error)
//! and adds user data only if the stored conversion had none.
//!
//! Where the documentation names no error reason for a rule, the stand-in uses
//! the closest `ErrorReason` (e.g. `INVALID_FORMAT` for a malformed timestamp
//! or IP address) — clients should key on the HTTP status and the fast-fail
//! model, not on those names.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::google_oauth::{BearerProblem, DATAMANAGER_SCOPE, GoogleOAuth};
use crate::util::{base64_decode, form_decode, hex, now_ms, parse_rfc3339, sha256};

/// Most events per request.
pub const MAX_EVENTS: usize = 2000;
/// Most destinations per request.
pub const MAX_DESTINATIONS: usize = 10;
/// Most user identifiers per event.
pub const MAX_USER_IDENTIFIERS: usize = 10;
/// How far in the future an `eventTimestamp` may be (clock skew) before it is
/// `EVENT_TIME_INVALID`.
pub const FUTURE_SKEW: Duration = Duration::from_secs(600);
/// The quota limit named in a 429 over [`DataManagerSandbox::set_requests_per_minute`].
pub const QUOTA_LIMIT_PER_MINUTE: &str = "IngestionMutateRequestsPerMinutePerProject";

const DOMAIN: &str = "datamanager.googleapis.com";

// ---------------------------------------------------------------------------
// The request schema (proto3 JSON of google.ads.datamanager.v1), field names
// as in the REST reference.

#[derive(Clone, Copy)]
enum Kind {
    Msg(&'static [Field]),
    Str,
    Bool,
    Double,
    Int32,
    Int64,
    Enum(&'static [&'static str]),
    /// Not checked field by field (encrypted user ids: not used for Google Ads).
    Opaque,
}

struct Field {
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn one(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, repeated: false }
}

const fn rep(name: &'static str, kind: Kind) -> Field {
    Field { name, kind, repeated: true }
}

/// Enum values in declaration order: the index is the number `enum-encoding=int` sends.
const ACCOUNT_TYPE: &[&str] = &[
    "ACCOUNT_TYPE_UNSPECIFIED",
    "GOOGLE_ADS",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "DATA_PARTNER",
    "GOOGLE_ANALYTICS_PROPERTY",
    "GOOGLE_AD_MANAGER_AUDIENCE_LINK",
    "FLOODLIGHT_CONFIG",
    "GOOGLE_AD_MANAGER",
];
const PRODUCT: &[&str] =
    &["PRODUCT_UNSPECIFIED", "GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER"];
const ENCODING: &[&str] = &["ENCODING_UNSPECIFIED", "HEX", "BASE64"];
const CONSENT_STATUS: &[&str] = &["CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"];
const EVENT_SOURCE: &[&str] = &["EVENT_SOURCE_UNSPECIFIED", "WEB", "APP", "IN_STORE", "PHONE", "OTHER", "MESSAGE"];
const CUSTOMER_TYPE: &[&str] = &["CUSTOMER_TYPE_UNSPECIFIED", "NEW", "RETURNING", "REENGAGED"];
const CUSTOMER_VALUE_BUCKET: &[&str] = &["CUSTOMER_VALUE_BUCKET_UNSPECIFIED", "LOW", "MEDIUM", "HIGH"];

const PRODUCT_ACCOUNT: &[Field] =
    &[one("accountId", Kind::Str), one("accountType", Kind::Enum(ACCOUNT_TYPE)), one("product", Kind::Enum(PRODUCT))];
const DESTINATION: &[Field] = &[
    one("reference", Kind::Str),
    one("loginAccount", Kind::Msg(PRODUCT_ACCOUNT)),
    one("linkedAccount", Kind::Msg(PRODUCT_ACCOUNT)),
    one("operatingAccount", Kind::Msg(PRODUCT_ACCOUNT)),
    one("productDestinationId", Kind::Str),
];
const CONSENT: &[Field] =
    &[one("adUserData", Kind::Enum(CONSENT_STATUS)), one("adPersonalization", Kind::Enum(CONSENT_STATUS))];
const ADDRESS: &[Field] = &[
    one("givenName", Kind::Str),
    one("familyName", Kind::Str),
    one("regionCode", Kind::Str),
    one("postalCode", Kind::Str),
    one("addressLine", Kind::Str),
    one("city", Kind::Str),
    one("administrativeArea", Kind::Str),
];
const USER_IDENTIFIER: &[Field] =
    &[one("emailAddress", Kind::Str), one("phoneNumber", Kind::Str), one("address", Kind::Msg(ADDRESS))];
const USER_DATA: &[Field] = &[rep("userIdentifiers", Kind::Msg(USER_IDENTIFIER))];
const DEVICE_INFO: &[Field] = &[
    one("userAgent", Kind::Str),
    one("ipAddress", Kind::Str),
    one("category", Kind::Str),
    one("languageCode", Kind::Str),
    one("screenHeight", Kind::Int32),
    one("screenWidth", Kind::Int32),
    one("operatingSystem", Kind::Str),
    one("operatingSystemVersion", Kind::Str),
    one("model", Kind::Str),
    one("brand", Kind::Str),
    one("browser", Kind::Str),
    one("browserVersion", Kind::Str),
];
const AD_IDENTIFIERS: &[Field] = &[
    one("sessionAttributes", Kind::Str),
    one("gclid", Kind::Str),
    one("gbraid", Kind::Str),
    one("wbraid", Kind::Str),
    one("landingPageDeviceInfo", Kind::Msg(DEVICE_INFO)),
    one("mobileDeviceId", Kind::Str),
    one("dclid", Kind::Str),
    one("impressionId", Kind::Str),
    one("matchId", Kind::Str),
    rep("encryptedUserIds", Kind::Opaque),
];
const ITEM_PARAMETER: &[Field] = &[one("parameterName", Kind::Str), one("value", Kind::Str)];
const ITEM_CUSTOM_VARIABLE: &[Field] =
    &[one("variable", Kind::Str), one("value", Kind::Str), rep("destinationReferences", Kind::Str)];
const ITEM: &[Field] = &[
    one("merchantProductId", Kind::Str),
    one("quantity", Kind::Int64),
    one("unitPrice", Kind::Double),
    one("itemId", Kind::Str),
    rep("additionalItemParameters", Kind::Msg(ITEM_PARAMETER)),
    one("merchantId", Kind::Str),
    one("merchantFeedLabel", Kind::Str),
    one("merchantFeedLanguageCode", Kind::Str),
    one("conversionValue", Kind::Double),
    rep("customVariables", Kind::Msg(ITEM_CUSTOM_VARIABLE)),
];
const CART_DATA: &[Field] = &[
    one("merchantId", Kind::Str),
    one("merchantFeedLabel", Kind::Str),
    one("merchantFeedLanguageCode", Kind::Str),
    one("transactionDiscount", Kind::Double),
    rep("items", Kind::Msg(ITEM)),
    rep("couponCodes", Kind::Str),
];
const CUSTOM_VARIABLE: &[Field] =
    &[one("variable", Kind::Str), one("value", Kind::Str), rep("destinationReferences", Kind::Str)];
const EXPERIMENTAL_FIELD: &[Field] = &[one("field", Kind::Str), one("value", Kind::Str)];
const USER_PROPERTY: &[Field] = &[one("propertyName", Kind::Str), one("value", Kind::Str)];
const USER_PROPERTIES: &[Field] = &[
    one("customerType", Kind::Enum(CUSTOMER_TYPE)),
    one("customerValueBucket", Kind::Enum(CUSTOMER_VALUE_BUCKET)),
    rep("additionalUserProperties", Kind::Msg(USER_PROPERTY)),
];
const EVENT_PARAMETER: &[Field] = &[one("parameterName", Kind::Str), one("value", Kind::Str)];
const EVENT_LOCATION: &[Field] = &[
    one("storeId", Kind::Str),
    one("city", Kind::Str),
    one("subdivisionCode", Kind::Str),
    one("regionCode", Kind::Str),
    one("subcontinentCode", Kind::Str),
    one("continentCode", Kind::Str),
];
const EVENT: &[Field] = &[
    rep("destinationReferences", Kind::Str),
    one("transactionId", Kind::Str),
    one("eventTimestamp", Kind::Str),
    one("lastUpdatedTimestamp", Kind::Str),
    one("userData", Kind::Msg(USER_DATA)),
    one("consent", Kind::Msg(CONSENT)),
    one("adIdentifiers", Kind::Msg(AD_IDENTIFIERS)),
    one("currency", Kind::Str),
    one("conversionValue", Kind::Double),
    one("conversionCount", Kind::Double),
    one("eventSource", Kind::Enum(EVENT_SOURCE)),
    one("eventDeviceInfo", Kind::Msg(DEVICE_INFO)),
    one("cartData", Kind::Msg(CART_DATA)),
    rep("customVariables", Kind::Msg(CUSTOM_VARIABLE)),
    rep("experimentalFields", Kind::Msg(EXPERIMENTAL_FIELD)),
    one("userProperties", Kind::Msg(USER_PROPERTIES)),
    one("eventName", Kind::Str),
    one("clientId", Kind::Str),
    one("userId", Kind::Str),
    rep("additionalEventParameters", Kind::Msg(EVENT_PARAMETER)),
    one("thirdPartyUserData", Kind::Msg(USER_DATA)),
    one("eventLocation", Kind::Msg(EVENT_LOCATION)),
    one("appInstanceId", Kind::Str),
];
const WRAPPED_KEY: &[Field] = &[
    one("keyType", Kind::Str),
    one("wipProvider", Kind::Str),
    one("roleArn", Kind::Str),
    one("kekUri", Kind::Str),
    one("encryptedDek", Kind::Str),
];
const ENCRYPTION_INFO: &[Field] =
    &[one("gcpWrappedKeyInfo", Kind::Msg(WRAPPED_KEY)), one("awsWrappedKeyInfo", Kind::Msg(WRAPPED_KEY))];
const INGEST_EVENTS_REQUEST: &[Field] = &[
    rep("destinations", Kind::Msg(DESTINATION)),
    rep("events", Kind::Msg(EVENT)),
    one("consent", Kind::Msg(CONSENT)),
    one("validateOnly", Kind::Bool),
    one("encoding", Kind::Enum(ENCODING)),
    one("encryptionInfo", Kind::Msg(ENCRYPTION_INFO)),
];

// ---------------------------------------------------------------------------
// Records.

/// One item of a stored conversion's `cartData`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DmCartItem {
    /// `merchantProductId`.
    pub merchant_product_id: Option<String>,
    /// `quantity`.
    pub quantity: Option<i64>,
    /// `unitPrice`.
    pub unit_price: Option<f64>,
}

/// One conversion the stand-in stored (one per destination an event went to).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DmConversion {
    /// `operatingAccount.accountId` of the destination.
    pub operating_account: String,
    /// `operatingAccount.accountType`.
    pub operating_account_type: String,
    /// `loginAccount.accountId`, if set.
    pub login_account: Option<String>,
    /// `productDestinationId` (the conversion action id).
    pub product_destination_id: String,
    /// `transactionId`, if sent.
    pub transaction_id: Option<String>,
    /// `eventTimestamp` as first sent.
    pub event_timestamp: String,
    /// The same, Unix ms.
    pub event_time_ms: i64,
    /// `conversionValue` (the latest restatement's).
    pub value: Option<f64>,
    /// `currency` (the latest restatement's).
    pub currency: Option<String>,
    /// `adIdentifiers.gclid`.
    pub gclid: Option<String>,
    /// `adIdentifiers.gbraid`.
    pub gbraid: Option<String>,
    /// `adIdentifiers.wbraid`.
    pub wbraid: Option<String>,
    /// `adIdentifiers.sessionAttributes`.
    pub session_attributes: Option<String>,
    /// Hashed e-mail addresses, as lower-case hex (BASE64 ones converted).
    pub hashed_emails: Vec<String>,
    /// Hashed phone numbers, as lower-case hex.
    pub hashed_phones: Vec<String>,
    /// Whether an `address` identifier came with it.
    pub has_address: bool,
    /// `adUserData` consent (the event's, else the request's).
    pub ad_user_data: Option<String>,
    /// `adPersonalization` consent (the event's, else the request's).
    pub ad_personalization: Option<String>,
    /// `eventDeviceInfo.userAgent`.
    pub user_agent: Option<String>,
    /// `eventDeviceInfo.ipAddress`.
    pub ip_address: Option<String>,
    /// `eventSource`.
    pub event_source: Option<String>,
    /// `cartData.items`.
    pub cart_items: Vec<DmCartItem>,
    /// Times the same key was ingested again (value restated).
    pub restatements: u32,
    /// The `conversionValue` of each re-ingest, in order (an order refunded
    /// twice: the value after the first refund, then after the second).
    pub restated_values: Vec<Option<f64>>,
    /// The value first ingested (`value` is the latest restatement's).
    pub first_value: Option<f64>,
    /// Retracted through the Google Ads API (`uploadConversionAdjustments`),
    /// which Data Manager itself cannot do.
    pub retracted: bool,
    /// The request that created it.
    pub request_id: String,
}

/// A `fieldWarnings` entry of a 200.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmFieldWarning {
    /// `WARNING_REASON_…`.
    pub reason: String,
    /// The field path, e.g. `events[1].cart_data.items[0]`.
    pub field: String,
    /// Human-readable.
    pub description: String,
}

/// An accepted `events:ingest` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmIngest {
    /// The `requestId` answered.
    pub request_id: String,
    /// Events in the request.
    pub events: usize,
    /// Destinations in the request.
    pub destinations: usize,
    /// `validateOnly` (nothing stored).
    pub validate_only: bool,
    /// The `fieldWarnings` answered.
    pub warnings: Vec<DmFieldWarning>,
}

/// One `BadRequest.fieldViolations` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmViolation {
    /// The field path (`events[3].user_data.user_identifiers[1]`); recorded even
    /// when [`DataManagerSandbox::omit_violation_fields`] kept it out of the answer.
    pub field: Option<String>,
    /// The `ErrorReason` (`INVALID_HEX_ENCODING`, …), absent for JSON parse errors.
    pub reason: Option<String>,
    /// Human-readable.
    pub description: String,
}

/// A refused `events:ingest` request (nothing of it was stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmRejection {
    /// The HTTP status (400, 401, 403, 429).
    pub http_status: u16,
    /// `INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`.
    pub status: String,
    /// `ErrorInfo.reason`.
    pub reason: String,
    /// `error.message`.
    pub message: String,
    /// The field violations.
    pub violations: Vec<DmViolation>,
}

impl DmRejection {
    /// The `ErrorReason`s of the violations, in order.
    pub fn reasons(&self) -> Vec<&str> {
        self.violations.iter().filter_map(|v| v.reason.as_deref()).collect()
    }

    /// The field paths of the violations, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.violations.iter().filter_map(|v| v.field.as_deref()).collect()
    }
}

/// The processing outcome of one destination of an accepted request.
struct DestinationStatus {
    destination: Value,
    records: usize,
    invalid_gclids: usize,
}

struct StatusEntry {
    ready_at: Instant,
    finished: bool,
    destinations: Vec<DestinationStatus>,
}

type ConversionKey = (String, String, String);

#[derive(Default)]
struct Inner {
    requests: u32,
    status_requests: u32,
    conversions: Vec<DmConversion>,
    /// (operating account, conversion action, transaction id) → index into `conversions`.
    by_key: HashMap<ConversionKey, usize>,
    ingests: Vec<DmIngest>,
    rejections: Vec<DmRejection>,
    flagged_headers: Vec<String>,
    statuses: HashMap<String, StatusEntry>,
    validate_only_ids: HashSet<String>,
    rejected_gclids: HashSet<String>,
    refused_transactions: HashSet<String>,
    required_login_account: Option<String>,
    omit_violation_fields: bool,
    per_minute: u32,
    window: VecDeque<Instant>,
    processing_delay: Duration,
    request_seq: u64,
}

/// The Data Manager API stand-in.
#[derive(Clone)]
pub struct DataManagerSandbox {
    inner: Arc<Mutex<Inner>>,
    /// The OAuth token endpoint (`POST /token`); its refresh token grants
    /// [`DATAMANAGER_SCOPE`] unless told otherwise.
    pub oauth: GoogleOAuth,
    /// Fault injection for `events:ingest`.
    pub faults: FaultSwitch,
    /// Fault injection for `requestStatus:retrieve`.
    pub status_faults: FaultSwitch,
    /// Slow mode for `events:ingest`.
    pub latency: Latency,
}

impl Default for DataManagerSandbox {
    fn default() -> Self {
        DataManagerSandbox::with_oauth(GoogleOAuth::new(&[DATAMANAGER_SCOPE]))
    }
}

impl DataManagerSandbox {
    /// A stand-in whose tokens come from `oauth` (shared with the Google Ads
    /// API stand-in in [`Sandbox`](crate::Sandbox): Google has one token endpoint).
    pub fn with_oauth(oauth: GoogleOAuth) -> DataManagerSandbox {
        DataManagerSandbox {
            inner: Arc::default(),
            oauth,
            faults: FaultSwitch::default(),
            status_faults: FaultSwitch::default(),
            latency: Latency::default(),
        }
    }
}

impl DataManagerSandbox {
    /// The routes: `POST /token`, `POST /v1/events:ingest`,
    /// `GET /v1/requestStatus:retrieve`, `GET /records`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/events:ingest", post(ingest))
            .route("/v1/requestStatus:retrieve", get(retrieve_status))
            .route("/records", get(records))
            .with_state(self.clone())
            .merge(self.oauth.router())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored conversion, in arrival order.
    pub fn conversions(&self) -> Vec<DmConversion> {
        self.lock().conversions.clone()
    }

    /// The first stored conversion with this `transactionId`.
    pub fn conversion(&self, transaction_id: &str) -> Option<DmConversion> {
        self.lock().conversions.iter().find(|c| c.transaction_id.as_deref() == Some(transaction_id)).cloned()
    }

    /// Accepted `events:ingest` requests, in arrival order (`validateOnly` ones included).
    pub fn ingests(&self) -> Vec<DmIngest> {
        self.lock().ingests.clone()
    }

    /// Refused `events:ingest` requests, with their reasons and fields.
    pub fn rejections(&self) -> Vec<DmRejection> {
        self.lock().rejections.clone()
    }

    /// `events:ingest` requests received (faulted ones included).
    pub fn requests(&self) -> u32 {
        self.lock().requests
    }

    /// `requestStatus:retrieve` requests received (faulted ones included).
    pub fn status_requests(&self) -> u32 {
        self.lock().status_requests
    }

    /// Token requests received (faulted ones included).
    pub fn token_requests(&self) -> u32 {
        self.oauth.token_requests()
    }

    /// Headers the guides say not to send (`developer-token`,
    /// `login-customer-id`, `linked-customer-id`), one entry per request that
    /// carried one, by name.
    pub fn flagged_headers(&self) -> Vec<String> {
        self.lock().flagged_headers.clone()
    }

    /// The scopes the refresh token grants (default [`DATAMANAGER_SCOPE`]).
    pub fn set_refresh_token_scopes(&self, scopes: &[&str]) {
        self.oauth.set_refresh_token_scopes(scopes);
    }

    /// Every destination must name this manager as `loginAccount` (the
    /// operating account is reachable only through it): otherwise 403.
    pub fn require_login_account(&self, account_id: &str) {
        self.lock().required_login_account = Some(account_id.to_owned());
    }

    /// Answers violations without their `field` paths (the client must find
    /// the bad event itself, e.g. by bisecting).
    pub fn omit_violation_fields(&self, omit: bool) {
        self.lock().omit_violation_fields = omit;
    }

    /// More than `n` ingest requests in a rolling minute are answered 429
    /// `RESOURCE_EXHAUSTED` (0: no limit, the default).
    pub fn set_requests_per_minute(&self, n: u32) {
        let mut i = self.lock();
        i.per_minute = n;
        i.window.clear();
    }

    /// Requests ingested from now on stay `PROCESSING` for `d` (default 0:
    /// final at once).
    pub fn set_processing_delay(&self, d: Duration) {
        self.lock().processing_delay = d;
    }

    /// Ends processing of every request ingested so far.
    pub fn finish_processing(&self) {
        for s in self.lock().statuses.values_mut() {
            s.finished = true;
        }
    }

    /// Events with this gclid fail processing (`PROCESSING_ERROR_REASON_INVALID_GCLID`
    /// in the request status) and are not stored.
    pub fn reject_gclid(&self, gclid: &str) {
        self.lock().rejected_gclids.insert(gclid.to_owned());
    }

    /// Requests carrying an event with this `transactionId` are rejected
    /// (400 `INVALID_ARGUMENT`, nothing stored), standing in for the
    /// validation layers a client cannot foresee.
    pub fn reject_transaction_id(&self, transaction_id: &str) {
        self.lock().refused_transactions.insert(transaction_id.to_owned());
    }

    /// Conversions that still count (not retracted).
    pub fn purchases(&self) -> Vec<DmConversion> {
        self.lock().conversions.iter().filter(|c| !c.retracted).cloned().collect()
    }

    /// How many conversions are stored (cheaper than `conversions().len()`).
    pub fn conversion_count(&self) -> usize {
        self.lock().conversions.len()
    }

    /// The conversion of (`operating account`, `action`, `transaction id`):
    /// the Google Ads account's view, for the Google Ads API stand-in.
    pub(crate) fn google_ads_conversion(
        &self,
        account: &str,
        action: &str,
        transaction_id: &str,
    ) -> Option<DmConversion> {
        let i = self.lock();
        let key = (account.to_owned(), action.to_owned(), transaction_id.to_owned());
        i.by_key.get(&key).and_then(|&idx| i.conversions.get(idx)).cloned()
    }

    /// A Google Ads API adjustment of a conversion ingested here.
    pub(crate) fn apply_google_ads_adjustment(
        &self,
        account: &str,
        action: &str,
        transaction_id: &str,
        retracted: bool,
        restated_value: Option<f64>,
    ) {
        let mut i = self.lock();
        let key = (account.to_owned(), action.to_owned(), transaction_id.to_owned());
        if let Some(&idx) = i.by_key.get(&key)
            && let Some(c) = i.conversions.get_mut(idx)
        {
            c.retracted |= retracted;
            if restated_value.is_some() {
                c.value = restated_value;
            }
        }
    }

    /// Forgets everything recorded (credentials, tokens and settings stay).
    pub fn clear(&self) {
        let mut i = self.lock();
        i.requests = 0;
        i.status_requests = 0;
        i.conversions.clear();
        i.by_key.clear();
        i.ingests.clear();
        i.rejections.clear();
        i.flagged_headers.clear();
        i.statuses.clear();
        i.validate_only_ids.clear();
        i.window.clear();
        drop(i);
        self.oauth.clear();
    }
}

// ---------------------------------------------------------------------------
// Answers.

fn new_request_id(seq: u64) -> String {
    let h = hex(&sha256(format!("dm.{seq}.{}", now_ms()).as_bytes()));
    format!("t-{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A `google.rpc.Status` answer.
struct RpcError {
    http: StatusCode,
    status: &'static str,
    message: String,
    reason: String,
    domain: &'static str,
    metadata: Map<String, Value>,
    violations: Vec<DmViolation>,
}

impl RpcError {
    fn new(http: StatusCode, status: &'static str, reason: &str, message: impl Into<String>) -> RpcError {
        RpcError {
            http,
            status,
            message: message.into(),
            reason: reason.to_owned(),
            domain: DOMAIN,
            metadata: Map::new(),
            violations: Vec::new(),
        }
    }

    fn invalid(violations: Vec<DmViolation>) -> RpcError {
        let mut e = RpcError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "There was a problem with the request.",
        );
        if let [only] = &violations[..]
            && only.reason.is_none()
        {
            // A JSON parse error: Google puts its text in the message.
            e.message = only.description.clone();
        }
        e.violations = violations;
        e
    }

    fn response(&self, request_id: &str, omit_fields: bool) -> Response {
        let mut metadata = self.metadata.clone();
        metadata.insert("requestId".into(), Value::String(request_id.to_owned()));
        let mut details = vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.reason, "domain": self.domain, "metadata": metadata}),
            json!({"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}),
        ];
        if !self.violations.is_empty() {
            let v: Vec<Value> = self
                .violations
                .iter()
                .map(|v| {
                    let mut o = Map::new();
                    if let Some(f) = v.field.as_ref().filter(|_| !omit_fields) {
                        o.insert("field".into(), Value::String(f.clone()));
                    }
                    o.insert("description".into(), Value::String(v.description.clone()));
                    if let Some(r) = &v.reason {
                        o.insert("reason".into(), Value::String(r.clone()));
                    }
                    Value::Object(o)
                })
                .collect();
            details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": v}));
        }
        let body = json!({"error": {
            "code": self.http.as_u16(),
            "message": self.message,
            "status": self.status,
            "details": details,
        }});
        (self.http, axum::Json(body)).into_response()
    }

    fn rejection(&self) -> DmRejection {
        DmRejection {
            http_status: self.http.as_u16(),
            status: self.status.to_owned(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            violations: self.violations.clone(),
        }
    }
}

fn fault_error(mode: Mode) -> Option<RpcError> {
    match mode {
        Mode::Up => None,
        Mode::Down => Some(RpcError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "INTERNAL_ERROR",
            "sandbox: the service is currently unavailable.",
        )),
        // Google sends no Retry-After: the client backs off by itself.
        Mode::RateLimited => Some(RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "RESOURCE_EXHAUSTED",
            "sandbox: resource has been exhausted.",
        )),
        Mode::Unauthorized => Some(RpcError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "ACCESS_TOKEN_EXPIRED",
            "sandbox: request had invalid authentication credentials.",
        )),
    }
}

fn auth_error(p: BearerProblem) -> RpcError {
    const INVALID: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let (http, status, reason, message) = match p {
        BearerProblem::Missing => (
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "CREDENTIALS_MISSING",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.".to_owned(),
        ),
        BearerProblem::Unknown => {
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "ACCESS_TOKEN_TYPE_UNSUPPORTED", INVALID.to_owned())
        }
        BearerProblem::Expired => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "ACCESS_TOKEN_EXPIRED", INVALID.to_owned()),
        BearerProblem::InsufficientScope { granted } => (
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            format!(
                "Request had insufficient authentication scopes. The Data Manager API needs {DATAMANAGER_SCOPE}; the token has: {}.",
                if granted.is_empty() { "none".to_owned() } else { granted.join(" ") }
            ),
        ),
    };
    let mut e = RpcError::new(http, status, reason, message);
    e.domain = "googleapis.com";
    e.metadata.insert("service".into(), Value::String(DOMAIN.into()));
    e
}

// ---------------------------------------------------------------------------
// Pass 1: the JSON against the schema (what Google's JSON parser refuses).

fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = false;
    for c in name.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn violation(field: &str, reason: &str, description: impl Into<String>) -> DmViolation {
    DmViolation { field: Some(field.to_owned()), reason: Some(reason.to_owned()), description: description.into() }
}

struct Parser {
    int_enums: bool,
    violations: Vec<DmViolation>,
}

impl Parser {
    /// Checks `v` as a message of `schema` at `path`; returns it with camelCase
    /// names and enum names. `Err` is an unknown name (the parse stops there).
    fn message(&mut self, v: &Value, schema: &[Field], path: &str) -> Result<Value, DmViolation> {
        let Value::Object(o) = v else {
            self.type_error(path, "TYPE_MESSAGE", v);
            return Ok(Value::Null);
        };
        let mut out = Map::new();
        for (k, val) in o {
            let name = camel(k);
            let Some(field) = schema.iter().find(|f| f.name == name) else {
                let at = if path.is_empty() { String::new() } else { format!(" at '{path}'") };
                return Err(DmViolation {
                    field: (!path.is_empty()).then(|| path.to_owned()),
                    reason: None,
                    description: format!("Invalid JSON payload received. Unknown name \"{k}\"{at}: Cannot find field."),
                });
            };
            if val.is_null() {
                continue;
            }
            let fpath = join(path, &snake(field.name));
            let parsed = if field.repeated {
                let Value::Array(items) = val else {
                    self.violations.push(DmViolation {
                        field: Some(fpath.clone()),
                        reason: None,
                        description: format!("Invalid value at '{fpath}': a list is expected, got {val}"),
                    });
                    continue;
                };
                let mut list = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    list.push(self.value(item, field.kind, &format!("{fpath}[{i}]"))?);
                }
                Value::Array(list)
            } else {
                self.value(val, field.kind, &fpath)?
            };
            out.insert(name, parsed);
        }
        Ok(Value::Object(out))
    }

    fn type_error(&mut self, path: &str, ty: &str, v: &Value) {
        self.violations.push(DmViolation {
            field: Some(path.to_owned()),
            reason: None,
            description: format!("Invalid value at '{path}' ({ty}), {v}"),
        });
    }

    fn value(&mut self, v: &Value, kind: Kind, path: &str) -> Result<Value, DmViolation> {
        match kind {
            Kind::Msg(schema) => self.message(v, schema, path),
            Kind::Opaque => Ok(v.clone()),
            Kind::Str => {
                if !v.is_string() {
                    self.type_error(path, "TYPE_STRING", v);
                }
                Ok(v.clone())
            }
            Kind::Bool => {
                if !v.is_boolean() {
                    self.type_error(path, "TYPE_BOOL", v);
                }
                Ok(v.clone())
            }
            Kind::Double => {
                // JSON numbers (proto3 JSON would also take numeric strings; Tally must send numbers).
                if !v.is_number() {
                    self.type_error(path, "TYPE_DOUBLE", v);
                }
                Ok(v.clone())
            }
            Kind::Int32 => {
                if v.as_i64().is_none_or(|n| i32::try_from(n).is_err()) {
                    self.type_error(path, "TYPE_INT32", v);
                }
                Ok(v.clone())
            }
            Kind::Int64 => {
                // proto3 JSON: a decimal string (as Google writes it) or a number.
                let n = match v {
                    Value::String(s) => s.parse::<i64>().ok(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                };
                match n {
                    Some(n) => Ok(Value::from(n)),
                    None => {
                        self.type_error(path, "TYPE_INT64", v);
                        Ok(Value::Null)
                    }
                }
            }
            Kind::Enum(values) => {
                let name = match v {
                    Value::String(s) => values.contains(&s.as_str()).then(|| s.clone()),
                    Value::Number(n) if self.int_enums => {
                        n.as_u64().and_then(|i| values.get(usize::try_from(i).ok()?)).map(|s| (*s).to_owned())
                    }
                    _ => None,
                };
                match name {
                    Some(n) => Ok(Value::String(n)),
                    None => {
                        let hint = if v.is_number() && !self.int_enums {
                            " (integer enum values need the query parameter $alt=json;enum-encoding=int)"
                        } else {
                            ""
                        };
                        self.violations.push(violation(
                            path,
                            "INVALID_ENUM_VALUE",
                            format!("Invalid value {v} at '{path}': expected one of {}{hint}", values.join(", ")),
                        ));
                        Ok(Value::Null)
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pass 2: the API's own rules.

fn str_at<'a>(o: &'a Value, name: &str) -> Option<&'a str> {
    o.get(name).and_then(Value::as_str)
}

fn list_at<'a>(o: &'a Value, name: &str) -> &'a [Value] {
    o.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn check_account(acc: &Value, path: &str, out: &mut Vec<DmViolation>) {
    let ty = str_at(acc, "accountType").filter(|t| *t != "ACCOUNT_TYPE_UNSPECIFIED");
    let product = str_at(acc, "product").filter(|t| *t != "PRODUCT_UNSPECIFIED");
    if ty.is_none() && product.is_none() {
        out.push(violation(&join(path, "account_type"), "REQUIRED_FIELD_MISSING", "accountType is required."));
    }
    match str_at(acc, "accountId") {
        None | Some("") => {
            out.push(violation(&join(path, "account_id"), "REQUIRED_FIELD_MISSING", "accountId is required."));
        }
        Some(id) if !digits(id) => {
            out.push(violation(&join(path, "account_id"), "INVALID_NUMBER_FORMAT", "String is not a valid number."));
        }
        Some(_) => {}
    }
}

/// The value's problem as a hashed identifier in `encoding`, or its bytes as hex.
fn check_hash(value: &str, encoding: &str) -> Result<String, (&'static str, &'static str)> {
    let bytes = if encoding == "BASE64" {
        base64_decode(value).ok_or(("INVALID_BASE64_ENCODING", "The BASE64 encoded value is malformed."))?
    } else {
        if !value.len().is_multiple_of(2) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(("INVALID_HEX_ENCODING", "The HEX encoded value is malformed."));
        }
        (0..value.len()).step_by(2).filter_map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok()).collect::<Vec<u8>>()
    };
    if bytes.len() != 32 {
        return Err(("INVALID_SHA256_FORMAT", "The value is not a SHA-256 digest (32 bytes)."));
    }
    Ok(hex(&bytes))
}

fn is_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

fn check_ip(info: &Value, path: &str, out: &mut Vec<DmViolation>) {
    if let Some(ip) = str_at(info, "ipAddress")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        out.push(violation(&join(path, "ip_address"), "INVALID_FORMAT", "ipAddress must be an IPv4 or IPv6 address."));
    }
}

fn check_user_data(ud: &Value, path: &str, encoding: Option<&str>, out: &mut Vec<DmViolation>) {
    let ids = list_at(ud, "userIdentifiers");
    let ids_path = join(path, "user_identifiers");
    if ids.is_empty() {
        out.push(violation(&ids_path, "REQUIRED_FIELD_MISSING", "userData needs at least one userIdentifier."));
        return;
    }
    if ids.len() > MAX_USER_IDENTIFIERS {
        out.push(violation(
            &ids_path,
            "TOO_MANY_USER_IDENTIFIERS",
            format!("At most {MAX_USER_IDENTIFIERS} userIdentifiers per event; got {}.", ids.len()),
        ));
    }
    for (k, id) in ids.iter().enumerate() {
        let ip = format!("{ids_path}[{k}]");
        let set: Vec<&str> =
            ["emailAddress", "phoneNumber", "address"].into_iter().filter(|n| id.get(*n).is_some()).collect();
        if set.len() != 1 {
            out.push(violation(
                &ip,
                if set.is_empty() { "REQUIRED_FIELD_MISSING" } else { "INVALID_ARGUMENT" },
                "A UserIdentifier must set exactly one of emailAddress, phoneNumber, address.",
            ));
            continue;
        }
        let Some(encoding) = encoding else { continue };
        for name in ["emailAddress", "phoneNumber"] {
            if let Some(v) = str_at(id, name)
                && let Err((reason, d)) = check_hash(v, encoding)
            {
                out.push(violation(&ip, reason, d));
            }
        }
        if let Some(addr) = id.get("address") {
            let ap = join(&ip, "address");
            for name in ["givenName", "familyName"] {
                match str_at(addr, name) {
                    None | Some("") => out.push(violation(
                        &join(&ap, &snake(name)),
                        "REQUIRED_FIELD_MISSING",
                        format!("address.{name} is required (hashed)."),
                    )),
                    Some(v) => {
                        if let Err((reason, d)) = check_hash(v, encoding) {
                            out.push(violation(&join(&ap, &snake(name)), reason, d));
                        }
                    }
                }
            }
            match str_at(addr, "regionCode") {
                None | Some("") => out.push(violation(
                    &join(&ap, "region_code"),
                    "REQUIRED_FIELD_MISSING",
                    "address.regionCode is required (ISO-3166-1 alpha-2, not hashed).",
                )),
                Some(r) if !(r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase())) => out.push(violation(
                    &join(&ap, "region_code"),
                    "INVALID_REGION_CODE",
                    "address.regionCode must be a two-letter ISO-3166-1 alpha-2 code, not hashed.",
                )),
                Some(_) => {}
            }
            match str_at(addr, "postalCode") {
                None | Some("") => out.push(violation(
                    &join(&ap, "postal_code"),
                    "REQUIRED_FIELD_MISSING",
                    "address.postalCode is required (not hashed).",
                )),
                Some(p) if p.len() >= 40 && p.bytes().all(|b| b.is_ascii_hexdigit()) => out.push(violation(
                    &join(&ap, "postal_code"),
                    "INVALID_POSTAL_CODE",
                    "address.postalCode must not be hashed.",
                )),
                Some(_) => {}
            }
        }
    }
}

fn has_identifier(e: &Value) -> bool {
    let non_empty = |v: Option<&str>| v.is_some_and(|s| !s.is_empty());
    let ad = e.get("adIdentifiers");
    let ad_id = ad.is_some_and(|a| {
        ["gclid", "gbraid", "wbraid", "sessionAttributes"].iter().any(|n| non_empty(str_at(a, n)))
            || a.get("landingPageDeviceInfo").is_some_and(|d| non_empty(str_at(d, "ipAddress")))
    });
    let user = e.get("userData").is_some_and(|u| !list_at(u, "userIdentifiers").is_empty());
    let ip = e.get("eventDeviceInfo").is_some_and(|d| non_empty(str_at(d, "ipAddress")));
    ad_id || user || ip
}

/// Violations and warnings of a parsed request.
fn check_request(req: &Value, now: i64) -> (Vec<DmViolation>, Vec<DmFieldWarning>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let destinations = list_at(req, "destinations");
    if destinations.is_empty() {
        out.push(violation("destinations", "REQUIRED_FIELD_MISSING", "At least one destination is required."));
    }
    if destinations.len() > MAX_DESTINATIONS {
        out.push(violation(
            "destinations",
            "TOO_MANY_DESTINATIONS",
            format!("Maximum number of destinations allowed per request is {MAX_DESTINATIONS}."),
        ));
    }
    let mut references = HashSet::new();
    for (i, d) in destinations.iter().enumerate() {
        let p = format!("destinations[{i}]");
        match d.get("operatingAccount") {
            Some(acc) => check_account(acc, &join(&p, "operating_account"), &mut out),
            None => out.push(violation(
                &join(&p, "operating_account"),
                "REQUIRED_FIELD_MISSING",
                "operatingAccount is required.",
            )),
        }
        if let Some(acc) = d.get("loginAccount") {
            check_account(acc, &join(&p, "login_account"), &mut out);
        }
        if d.get("linkedAccount").is_some()
            && d.get("loginAccount").and_then(|l| str_at(l, "accountType")) != Some("DATA_PARTNER")
        {
            out.push(violation(
                &join(&p, "linked_account"),
                "LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT",
                "linkedAccount can only be set when the loginAccount is a DATA_PARTNER.",
            ));
        }
        match str_at(d, "productDestinationId") {
            None | Some("") => out.push(violation(
                &join(&p, "product_destination_id"),
                "REQUIRED_FIELD_MISSING",
                "productDestinationId (the conversion action id) is required.",
            )),
            Some(id) if !digits(id) => out.push(violation(
                &join(&p, "product_destination_id"),
                "INVALID_CONVERSION_ACTION_ID",
                "productDestinationId must be the numeric conversion action id, not a resource name.",
            )),
            Some(_) => {}
        }
        if let Some(r) = str_at(d, "reference")
            && !references.insert(r.to_owned())
        {
            out.push(violation(
                &join(&p, "reference"),
                "DUPLICATE_DESTINATION_REFERENCE",
                format!("The destination reference {r:?} is used twice."),
            ));
        }
    }
    let events = list_at(req, "events");
    if events.is_empty() {
        out.push(violation("events", "REQUIRED_FIELD_MISSING", "At least one event is required."));
    }
    if events.len() > MAX_EVENTS {
        out.push(violation(
            "events",
            "TOO_MANY_EVENTS",
            format!("Maximum number of events allowed per request is {MAX_EVENTS}."),
        ));
    }
    let encoding = str_at(req, "encoding").filter(|e| *e != "ENCODING_UNSPECIFIED");
    let mut encoding_reported = false;
    let skew = i64::try_from(FUTURE_SKEW.as_millis()).unwrap_or(i64::MAX);
    for (i, e) in events.iter().enumerate() {
        let p = format!("events[{i}]");
        match str_at(e, "eventTimestamp") {
            None => out.push(violation(
                &join(&p, "event_timestamp"),
                "REQUIRED_FIELD_MISSING",
                "eventTimestamp is required.",
            )),
            Some(t) => match parse_rfc3339(t) {
                None => out.push(violation(
                    &join(&p, "event_timestamp"),
                    "INVALID_FORMAT",
                    format!("eventTimestamp {t:?} is not an RFC 3339 timestamp (e.g. 2026-05-01T20:32:45Z)."),
                )),
                Some(ms) if ms > now + skew => out.push(violation(
                    &join(&p, "event_timestamp"),
                    "EVENT_TIME_INVALID",
                    "Event did not occur within the acceptable time window (it is in the future).",
                )),
                Some(_) => {}
            },
        }
        if let Some(t) = str_at(e, "lastUpdatedTimestamp")
            && parse_rfc3339(t).is_none()
        {
            out.push(violation(
                &join(&p, "last_updated_timestamp"),
                "INVALID_FORMAT",
                "lastUpdatedTimestamp is not an RFC 3339 timestamp.",
            ));
        }
        if !has_identifier(e) {
            out.push(violation(
                &p,
                "NO_IDENTIFIERS_PROVIDED",
                "Events data contains no user identifiers or ad identifiers.",
            ));
        }
        for (k, r) in list_at(e, "destinationReferences").iter().enumerate() {
            if r.as_str().is_none_or(|r| !references.contains(r)) {
                out.push(violation(
                    &format!("{p}.destination_references[{k}]"),
                    "INVALID_DESTINATION",
                    format!("destinationReferences names {r}, which no destination of the request has."),
                ));
            }
        }
        if let Some(ud) = e.get("userData") {
            if encoding.is_none() && !encoding_reported {
                out.push(violation(
                    "encoding",
                    "REQUIRED_FIELD_MISSING",
                    "encoding (HEX or BASE64) is required when events carry userData.",
                ));
                encoding_reported = true;
            }
            check_user_data(ud, &join(&p, "user_data"), encoding, &mut out);
        }
        if e.get("thirdPartyUserData").is_some() {
            out.push(violation(
                &join(&p, "third_party_user_data"),
                "THIRD_PARTY_USER_DATA_NOT_ALLOWED",
                "Third party user data can only be set by data partners.",
            ));
        }
        if let Some(c) = str_at(e, "currency")
            && !is_currency(c)
        {
            out.push(violation(
                &join(&p, "currency"),
                "INVALID_CURRENCY_CODE",
                format!("currency {c:?} must be an ISO 4217 code such as USD."),
            ));
        }
        if let Some(d) = e.get("eventDeviceInfo") {
            check_ip(d, &join(&p, "event_device_info"), &mut out);
        }
        let ad = e.get("adIdentifiers");
        if let Some(d) = ad.and_then(|a| a.get("landingPageDeviceInfo")) {
            check_ip(d, &join(&p, "ad_identifiers.landing_page_device_info"), &mut out);
        }
        if let Some(cart) = e.get("cartData") {
            let cp = join(&p, "cart_data");
            if ad.is_some_and(|a| str_at(a, "gbraid").is_some() || str_at(a, "wbraid").is_some()) {
                warnings.push(DmFieldWarning {
                    reason: "WARNING_REASON_CART_DATA_NOT_SUPPORTED_WITH_GBRAID_OR_WBRAID".into(),
                    field: cp.clone(),
                    description: "Cart data is not supported with gbraid or wbraid; it was ignored.".into(),
                });
            }
            if let Some(m) = str_at(cart, "merchantId")
                && !digits(m)
            {
                warnings.push(DmFieldWarning {
                    reason: "WARNING_REASON_INVALID_MERCHANT_ID".into(),
                    field: join(&cp, "merchant_id"),
                    description: "Merchant id contains non-digit characters.".into(),
                });
            }
            for (j, item) in list_at(cart, "items").iter().enumerate() {
                let ipath = format!("{cp}.items[{j}]");
                if str_at(item, "merchantProductId").is_none_or(str::is_empty) {
                    warnings.push(DmFieldWarning {
                        reason: "WARNING_REASON_CART_DATA_ITEM_MERCHANT_PRODUCT_ID_MISSING".into(),
                        field: ipath.clone(),
                        description: "The cart item has no merchantProductId.".into(),
                    });
                }
                if item.get("unitPrice").is_none() {
                    warnings.push(DmFieldWarning {
                        reason: "WARNING_REASON_CART_DATA_ITEM_UNIT_PRICE_MISSING".into(),
                        field: ipath,
                        description: "The cart item has no unitPrice.".into(),
                    });
                }
            }
        }
    }
    (out, warnings)
}

// ---------------------------------------------------------------------------
// Storage.

fn consent_of(e: &Value, req: &Value, name: &str) -> Option<String> {
    e.get("consent")
        .and_then(|c| str_at(c, name))
        .or_else(|| req.get("consent").and_then(|c| str_at(c, name)))
        .map(str::to_owned)
}

struct UserIds {
    emails: Vec<String>,
    phones: Vec<String>,
    address: bool,
}

fn user_ids(e: &Value, encoding: &str) -> UserIds {
    let mut u = UserIds { emails: Vec::new(), phones: Vec::new(), address: false };
    for id in e.get("userData").map(|d| list_at(d, "userIdentifiers")).unwrap_or(&[]) {
        if let Some(h) = str_at(id, "emailAddress").and_then(|v| check_hash(v, encoding).ok()) {
            u.emails.push(h);
        }
        if let Some(h) = str_at(id, "phoneNumber").and_then(|v| check_hash(v, encoding).ok()) {
            u.phones.push(h);
        }
        u.address |= id.get("address").is_some();
    }
    u
}

/// Stores the events of an accepted request; returns its per-destination status.
fn store(inner: &mut Inner, req: &Value, request_id: &str) -> Vec<DestinationStatus> {
    let encoding = str_at(req, "encoding").unwrap_or("HEX");
    let destinations = list_at(req, "destinations");
    let mut statuses: Vec<DestinationStatus> = destinations
        .iter()
        .map(|d| {
            let mut echo = Map::new();
            for k in ["reference", "loginAccount", "linkedAccount", "operatingAccount", "productDestinationId"] {
                if let Some(v) = d.get(k) {
                    echo.insert(k.into(), v.clone());
                }
            }
            DestinationStatus { destination: Value::Object(echo), records: 0, invalid_gclids: 0 }
        })
        .collect();
    for e in list_at(req, "events") {
        let refs: Vec<&str> = list_at(e, "destinationReferences").iter().filter_map(Value::as_str).collect();
        let ad = e.get("adIdentifiers");
        let ad_str = |n: &str| ad.and_then(|a| str_at(a, n)).map(str::to_owned);
        let gclid = ad_str("gclid");
        let bad_click = gclid.as_ref().is_some_and(|g| inner.rejected_gclids.contains(g));
        let ids = user_ids(e, encoding);
        for (di, d) in destinations.iter().enumerate() {
            if !refs.is_empty() && !str_at(d, "reference").is_some_and(|r| refs.contains(&r)) {
                continue;
            }
            statuses[di].records += 1;
            if bad_click {
                statuses[di].invalid_gclids += 1;
                continue;
            }
            let op = d.get("operatingAccount");
            let operating_account = op.and_then(|a| str_at(a, "accountId")).unwrap_or_default().to_owned();
            let action = str_at(d, "productDestinationId").unwrap_or_default().to_owned();
            let transaction_id = str_at(e, "transactionId").filter(|t| !t.is_empty()).map(str::to_owned);
            let value = e.get("conversionValue").and_then(Value::as_f64);
            let currency = str_at(e, "currency").map(str::to_owned);
            if let Some(t) = &transaction_id
                && let Some(&idx) = inner.by_key.get(&(operating_account.clone(), action.clone(), t.clone()))
            {
                // An adjustment: value and currency restated, user data only if there was none.
                let c = &mut inner.conversions[idx];
                if value.is_some() {
                    c.value = value;
                }
                if currency.is_some() {
                    c.currency = currency;
                }
                c.restatements += 1;
                c.restated_values.push(value);
                if c.hashed_emails.is_empty() && c.hashed_phones.is_empty() && !c.has_address {
                    c.hashed_emails = ids.emails.clone();
                    c.hashed_phones = ids.phones.clone();
                    c.has_address = ids.address;
                }
                continue;
            }
            let timestamp = str_at(e, "eventTimestamp").unwrap_or_default().to_owned();
            let device = e.get("eventDeviceInfo");
            let cart_items = e
                .get("cartData")
                .map(|c| list_at(c, "items"))
                .unwrap_or(&[])
                .iter()
                .map(|it| DmCartItem {
                    merchant_product_id: str_at(it, "merchantProductId").map(str::to_owned),
                    quantity: it.get("quantity").and_then(Value::as_i64),
                    unit_price: it.get("unitPrice").and_then(Value::as_f64),
                })
                .collect();
            let conversion = DmConversion {
                operating_account: operating_account.clone(),
                operating_account_type: op.and_then(|a| str_at(a, "accountType")).unwrap_or_default().to_owned(),
                login_account: d.get("loginAccount").and_then(|a| str_at(a, "accountId")).map(str::to_owned),
                product_destination_id: action.clone(),
                transaction_id: transaction_id.clone(),
                event_time_ms: parse_rfc3339(&timestamp).unwrap_or_default(),
                event_timestamp: timestamp,
                value,
                currency,
                gclid: gclid.clone(),
                gbraid: ad_str("gbraid"),
                wbraid: ad_str("wbraid"),
                session_attributes: ad_str("sessionAttributes"),
                hashed_emails: ids.emails.clone(),
                hashed_phones: ids.phones.clone(),
                has_address: ids.address,
                ad_user_data: consent_of(e, req, "adUserData"),
                ad_personalization: consent_of(e, req, "adPersonalization"),
                user_agent: device.and_then(|d| str_at(d, "userAgent")).map(str::to_owned),
                ip_address: device.and_then(|d| str_at(d, "ipAddress")).map(str::to_owned),
                event_source: str_at(e, "eventSource").map(str::to_owned),
                cart_items,
                restatements: 0,
                restated_values: Vec::new(),
                first_value: value,
                retracted: false,
                request_id: request_id.to_owned(),
            };
            if let Some(t) = transaction_id {
                inner.by_key.insert((operating_account, action, t), inner.conversions.len());
            }
            inner.conversions.push(conversion);
        }
    }
    statuses
}

// ---------------------------------------------------------------------------
// Handlers.

const FLAGGED_HEADERS: [&str; 3] = ["developer-token", "login-customer-id", "linked-customer-id"];

fn int_enums(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_decode(q).iter().any(|(k, v)| k == "$alt" && v.replace(' ', "") == "json;enum-encoding=int")
    })
}

async fn ingest(
    State(s): State<DataManagerSandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = {
        let mut i = s.lock();
        i.requests += 1;
        i.request_seq += 1;
        new_request_id(i.request_seq)
    };
    let _in_flight = s.faults.enter();
    s.latency.wait().await;
    if let Some(e) = fault_error(s.faults.take()) {
        return e.response(&request_id, false);
    }
    {
        let mut i = s.lock();
        for h in FLAGGED_HEADERS {
            if headers.contains_key(h) {
                i.flagged_headers.push(h.to_owned());
            }
        }
    }
    let reject = |e: RpcError| {
        let mut i = s.lock();
        i.rejections.push(e.rejection());
        e.response(&request_id, i.omit_violation_fields)
    };
    if let Err(p) = s.oauth.check_bearer(&headers, DATAMANAGER_SCOPE) {
        return reject(auth_error(p));
    }
    {
        let mut i = s.lock();
        if i.per_minute > 0 {
            let now = Instant::now();
            while i.window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                i.window.pop_front();
            }
            if i.window.len() >= usize::try_from(i.per_minute).unwrap_or(usize::MAX) {
                let mut e = RpcError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "RATE_LIMIT_EXCEEDED",
                    format!(
                        "Quota exceeded for quota metric 'Ingestion mutate requests' and limit '{QUOTA_LIMIT_PER_MINUTE}' of service '{DOMAIN}'."
                    ),
                );
                e.domain = "googleapis.com";
                e.metadata.insert("quota_limit".into(), Value::String(QUOTA_LIMIT_PER_MINUTE.into()));
                e.metadata.insert("quota_limit_value".into(), Value::String(i.per_minute.to_string()));
                e.metadata.insert("service".into(), Value::String(DOMAIN.into()));
                i.rejections.push(e.rejection());
                return e.response(&request_id, false);
            }
            i.window.push_back(now);
        }
    }
    let json_ct =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return reject(RpcError::invalid(vec![DmViolation {
            field: None,
            reason: None,
            description: "Invalid JSON payload received. Content-Type must be application/json.".into(),
        }]));
    }
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            return reject(RpcError::invalid(vec![DmViolation {
                field: None,
                reason: None,
                description: "Invalid JSON payload received. Expected a JSON object (IngestEventsRequest).".into(),
            }]));
        }
    };
    let mut parser = Parser { int_enums: int_enums(query.as_deref()), violations: Vec::new() };
    let req = match parser.message(&raw, INGEST_EVENTS_REQUEST, "") {
        Ok(v) => v,
        Err(unknown) => return reject(RpcError::invalid(vec![unknown])),
    };
    if !parser.violations.is_empty() {
        return reject(RpcError::invalid(parser.violations));
    }
    let (violations, warnings) = check_request(&req, now_ms());
    if !violations.is_empty() {
        return reject(RpcError::invalid(violations));
    }
    let refused: Vec<DmViolation> = {
        let i = s.lock();
        list_at(&req, "events")
            .iter()
            .enumerate()
            .filter(|(_, e)| str_at(e, "transactionId").is_some_and(|t| i.refused_transactions.contains(t)))
            .map(|(k, _)| {
                violation(
                    &format!("events[{k}].transaction_id"),
                    "INVALID_ARGUMENT",
                    "The event was refused (the sandbox was told to refuse this transactionId).",
                )
            })
            .collect()
    };
    if !refused.is_empty() {
        return reject(RpcError::invalid(refused));
    }
    let required = s.lock().required_login_account.clone();
    if let Some(manager) = required {
        let denied: Vec<DmViolation> = list_at(&req, "destinations")
            .iter()
            .enumerate()
            .filter(|(_, d)| d.get("loginAccount").and_then(|l| str_at(l, "accountId")) != Some(manager.as_str()))
            .map(|(i, _)| {
                violation(
                    &format!("destinations[{i}].login_account"),
                    "PERMISSION_DENIED",
                    format!("The caller has no direct access to the operating account: set loginAccount to the manager {manager}."),
                )
            })
            .collect();
        if !denied.is_empty() {
            let mut e = RpcError::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "PERMISSION_DENIED",
                "The caller does not have permission",
            );
            e.violations = denied;
            return reject(e);
        }
    }
    let validate_only = req.get("validateOnly").and_then(Value::as_bool).unwrap_or(false);
    let mut i = s.lock();
    if validate_only {
        i.validate_only_ids.insert(request_id.clone());
    } else {
        let destinations = store(&mut i, &req, &request_id);
        let ready_at = Instant::now() + i.processing_delay;
        i.statuses.insert(request_id.clone(), StatusEntry { ready_at, finished: false, destinations });
    }
    i.ingests.push(DmIngest {
        request_id: request_id.clone(),
        events: list_at(&req, "events").len(),
        destinations: list_at(&req, "destinations").len(),
        validate_only,
        warnings: warnings.clone(),
    });
    drop(i);
    let mut answer = json!({"requestId": request_id});
    if !warnings.is_empty() {
        answer["fieldWarnings"] = Value::Array(
            warnings
                .iter()
                .map(|w| json!({"reason": w.reason, "description": w.description, "field": w.field}))
                .collect(),
        );
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn retrieve_status(
    State(s): State<DataManagerSandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let request_id = {
        let mut i = s.lock();
        i.status_requests += 1;
        i.request_seq += 1;
        new_request_id(i.request_seq)
    };
    if let Some(e) = fault_error(s.status_faults.take()) {
        return e.response(&request_id, false);
    }
    if let Err(p) = s.oauth.check_bearer(&headers, DATAMANAGER_SCOPE) {
        return auth_error(p).response(&request_id, false);
    }
    let asked = query
        .as_deref()
        .map(form_decode)
        .and_then(|q| q.into_iter().find(|(k, _)| k == "requestId" || k == "request_id").map(|(_, v)| v))
        .filter(|v| !v.is_empty());
    let Some(asked) = asked else {
        let mut e = RpcError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "There was a problem with the request.",
        );
        e.violations = vec![violation("request_id", "REQUIRED_FIELD_MISSING", "requestId is required.")];
        return e.response(&request_id, false);
    };
    let i = s.lock();
    let Some(entry) = i.statuses.get(&asked) else {
        let mut e = RpcError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "There was a problem with the request.",
        );
        let why = if i.validate_only_ids.contains(&asked) {
            "Status can only be retrieved for requests that succeed and don't have validate_only=true; this one had validate_only=true."
        } else {
            "Status can only be retrieved for requests that succeed and don't have validate_only=true; no such request."
        };
        e.violations = vec![violation("request_id", "INVALID_REQUEST_ID", why)];
        return e.response(&request_id, false);
    };
    let processing = !entry.finished && Instant::now() < entry.ready_at;
    let per_destination: Vec<Value> = entry
        .destinations
        .iter()
        .map(|d| {
            let mut o = json!({
                "destination": d.destination,
                "eventsIngestionStatus": {"recordCount": d.records.to_string()},
            });
            let status = if processing {
                "PROCESSING"
            } else if d.invalid_gclids == 0 {
                "SUCCESS"
            } else {
                o["errorInfo"] = json!({"errorCounts": [{
                    "recordCount": d.invalid_gclids.to_string(),
                    "reason": "PROCESSING_ERROR_REASON_INVALID_GCLID",
                }]});
                if d.invalid_gclids >= d.records { "FAILED" } else { "PARTIAL_SUCCESS" }
            };
            o["requestStatus"] = Value::String(status.into());
            o
        })
        .collect();
    axum::Json(json!({"requestStatusPerDestination": per_destination})).into_response()
}

async fn records(State(s): State<DataManagerSandbox>) -> Response {
    let i = s.lock();
    axum::Json(json!({
        "conversions": i.conversions,
        "ingests": i.ingests,
        "rejections": i.rejections,
        "flaggedHeaders": i.flagged_headers,
        "requests": i.requests,
        "statusRequests": i.status_requests,
        "tokenRequests": s.oauth.token_requests(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hashes() {
        assert_eq!(snake("productDestinationId"), "product_destination_id");
        assert_eq!(camel("product_destination_id"), "productDestinationId");
        assert_eq!(camel("gclid"), "gclid");
        let h = "07E2F1394B0EA80E2ADCA010EA8318DF697001A005BA7452720EDDA4B0CE57B3";
        assert_eq!(check_hash(h, "HEX").unwrap(), h.to_ascii_lowercase());
        assert_eq!(check_hash("zz", "HEX").unwrap_err().0, "INVALID_HEX_ENCODING");
        assert_eq!(check_hash("abcd", "HEX").unwrap_err().0, "INVALID_SHA256_FORMAT");
        assert_eq!(
            check_hash("UJ6TMBm7KFoTSpM0uLtnnf950M4CPVKa9L10TUe0/Yo=", "BASE64").unwrap(),
            "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"
        );
        assert_eq!(check_hash("!!", "BASE64").unwrap_err().0, "INVALID_BASE64_ENCODING");
        assert!(int_enums(Some("$alt=json;enum-encoding=int")));
        assert!(int_enums(Some("%24alt=json%3Benum-encoding%3Dint")));
        assert!(!int_enums(None));
        assert!(new_request_id(1).starts_with("t-"));
        assert_eq!(new_request_id(1).len(), 38);
    }
}
