//! Google Data Manager API: Google Ads conversions through `events:ingest`
//! (<https://developers.google.com/data-manager/api/devguides/events/google-ads/offline/send-events>).
//!
//! Since 2026-06-15 the Google Ads API takes no new adopters of offline
//! conversion imports
//! (<https://developers.google.com/ads/blog/posts/2026/05/changes-to-offline-click-conversion>);
//! the Data Manager API is the path for Google Ads conversions.
//!
//! * Purchases (or whichever event a [`DmTarget`] is for) become [`DmEvent`]s;
//!   events of many visitors share one [`IngestEventsRequest`] (at most 2,000).
//! * A **partial refund** is a restatement: the same `transactionId` ingested
//!   again with the remaining value; Google treats a known `transactionId` as
//!   an adjustment
//!   (<https://developers.google.com/data-manager/api/devguides/events/google-ads/conversion-adjustments>).
//!   A **full refund** (retraction) has no Data Manager form and is left out
//!   as [`Skip::RetractionUnsupported`]; the server can send it through the
//!   Google Ads API instead.
//! * The API is **fast-fail**: one invalid event rejects the whole request.
//!   So every event is checked here, before it joins a batch, against the
//!   rules the API enforces (an order id, an RFC 3339 time inside the window,
//!   64-hex hashes, complete addresses, at most 10 identifiers, a valid IP),
//!   and what cannot be fixed is skipped with the reason.
//! * Consent: nothing without `ad_storage` or `ad_user_data`; click ids only
//!   with `ad_storage`; `userData` and the device's IP and user agent only
//!   with `ad_user_data`; every event carries its visitor's `consent`
//!   (`CONSENT_GRANTED` / `CONSENT_DENIED`).
//!
//! Also here: the request-status answer ([`RequestStatusResponse`]), the error
//! body ([`DmError`], with the events its field violations name) and the
//! documented polling schedule ([`PollSchedule`]). The HTTP calls are the server's.

use serde::{Deserialize, Deserializer, Serialize};

use super::google_ads::{AdsTarget, check_click_window};
use super::{Batch, DeliveryContext, Skip, VisitorEvents, is_hex64, pack_visitors};
use crate::click_ids::GoogleClick;
use crate::consent::{ConsentSignal, DestinationKind};
use crate::error::{Error, Result};
use crate::event::{Event, RefundScope};
use crate::event_name::EventName;
use crate::user_data::GoogleAddress;

/// The API host.
pub const DEFAULT_BASE_URL: &str = "https://datamanager.googleapis.com";
/// The OAuth scope the API requires (a Google Ads API token does not carry it).
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
/// `POST`: ingest events.
pub const INGEST_PATH: &str = "/v1/events:ingest";
/// `GET ?requestId=`: the processing status of an ingest request.
pub const STATUS_PATH: &str = "/v1/requestStatus:retrieve";
/// Most events per request.
pub const MAX_EVENTS: usize = 2000;
/// Most user identifiers per event.
pub const MAX_USER_IDENTIFIERS: usize = 10;
/// The project quota of the ingestion service, requests per minute (for
/// ingest; reads have a bucket of their own).
pub const REQUESTS_PER_MINUTE: u32 = 300;
/// Google recommends at most this many requests in flight.
pub const MAX_CONCURRENT_REQUESTS: usize = 10;
/// Tally's own cap on a request body (the API documents none).
pub const MAX_BODY_BYTES: usize = 8_000_000;

/// Where conversions go: the Google Ads account that owns the conversion
/// action, the manager used to reach it (if any), the action, and which event
/// feeds it.
///
/// ```
/// use tally_core::destinations::data_manager::DmTarget;
/// let t = DmTarget::new("123-456-7890", "customers/1234567890/conversionActions/555666777").unwrap();
/// assert_eq!((t.operating_account_id.as_str(), t.product_destination_id.as_str()), ("1234567890", "555666777"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmTarget {
    /// `operatingAccount.accountId`: 10 digits, the owner of the conversion action.
    pub operating_account_id: String,
    /// `loginAccount.accountId`: the manager account the credentials belong to.
    pub login_account_id: Option<String>,
    /// `productDestinationId`: the conversion action id.
    pub product_destination_id: String,
    /// The event that feeds the action (refunds restate it when this is `purchase`).
    pub event: EventName,
    /// Merchant Center account of the items (`cartData.merchantId`), digits.
    pub merchant_id: Option<String>,
    /// `validateOnly`: Google checks the request and stores nothing.
    pub validate_only: bool,
}

impl DmTarget {
    /// A target for purchases; the account id may carry dashes, the action
    /// may be its id or its Google Ads resource name.
    pub fn new(operating_account: &str, conversion_action: &str) -> Result<DmTarget> {
        let t = AdsTarget::new(operating_account, conversion_action)?;
        Ok(DmTarget {
            operating_account_id: t.customer_id,
            login_account_id: None,
            product_destination_id: t.conversion_action_id,
            event: EventName::Purchase,
            merchant_id: None,
            validate_only: false,
        })
    }

    /// The same target for events called `name`.
    pub fn for_event(mut self, name: EventName) -> DmTarget {
        self.event = name;
        self
    }

    fn destination(&self) -> DmDestination {
        DmDestination {
            login_account: self.login_account_id.as_ref().map(|id| ProductAccount::google_ads(id)),
            operating_account: ProductAccount::google_ads(&self.operating_account_id),
            product_destination_id: self.product_destination_id.clone(),
        }
    }
}

/// `ProductAccount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductAccount {
    /// Always `GOOGLE_ADS` here.
    pub account_type: &'static str,
    /// 10 digits.
    pub account_id: String,
}

impl ProductAccount {
    fn google_ads(id: &str) -> ProductAccount {
        ProductAccount { account_type: "GOOGLE_ADS", account_id: id.to_owned() }
    }
}

/// `Destination`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DmDestination {
    /// The manager account, when the credentials reach the account through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_account: Option<ProductAccount>,
    /// The account that owns the conversion action.
    pub operating_account: ProductAccount,
    /// The conversion action id.
    pub product_destination_id: String,
}

/// `Consent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DmConsent {
    /// `CONSENT_GRANTED` or `CONSENT_DENIED`.
    pub ad_user_data: &'static str,
    /// `CONSENT_GRANTED` or `CONSENT_DENIED`.
    pub ad_personalization: &'static str,
}

/// The Data Manager spelling of a consent signal; anything not granted is denied.
pub fn consent_status(s: ConsentSignal) -> &'static str {
    if s.is_granted() { "CONSENT_GRANTED" } else { "CONSENT_DENIED" }
}

/// `AddressInfo`: names hashed, region and postal code plain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressInfo {
    /// SHA-256 of the normalised given name.
    pub given_name: String,
    /// SHA-256 of the normalised family name.
    pub family_name: String,
    /// ISO 3166-1 alpha-2, not hashed.
    pub region_code: String,
    /// Not hashed.
    pub postal_code: String,
}

/// `UserIdentifier`: exactly one of the fields is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentifier {
    /// SHA-256 hex of the normalised email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    /// SHA-256 hex of the E.164 phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// An address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressInfo>,
}

/// `UserData`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DmUserData {
    /// 1 to 10 identifiers.
    pub user_identifiers: Vec<UserIdentifier>,
}

/// `AdIdentifiers`: one click id (gclid, else wbraid, else gbraid).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdIdentifiers {
    /// Google click id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// App click id (iOS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<String>,
    /// Web click id (iOS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<String>,
}

/// `DeviceInfo` of the event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// The browser's user agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// IPv4 or IPv6 (as the collector keeps it, truncated if configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// `Item` of `cartData`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    /// The product id in Merchant Center (the item id).
    pub merchant_product_id: String,
    /// int64, a JSON string.
    pub quantity: String,
    /// Unit price, without tax, shipping and order-level discounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<f64>,
}

/// `CartData`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartData {
    /// Merchant Center account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// The items.
    pub items: Vec<CartItem>,
    /// The order's coupon.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coupon_codes: Vec<String>,
}

/// `Event`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DmEvent {
    /// The shop's order id (or the event id for non-orders): the dedup and adjustment key.
    pub transaction_id: String,
    /// RFC 3339.
    pub event_timestamp: String,
    /// For a restatement: when the order changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_timestamp: Option<String>,
    /// Hashed identifiers (only with `ad_user_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<DmUserData>,
    /// The visitor's consent.
    pub consent: DmConsent,
    /// The click id (only with `ad_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad_identifiers: Option<AdIdentifiers>,
    /// ISO 4217, with a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// In currency units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_value: Option<f64>,
    /// `WEB`.
    pub event_source: &'static str,
    /// User agent and IP (only with `ad_user_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_device_info: Option<DeviceInfo>,
    /// Items (not with a gbraid/wbraid, which Google does not support).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_data: Option<CartData>,
}

/// `IngestEventsRequest`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestEventsRequest {
    /// The one destination (conversion action) of this request.
    pub destinations: Vec<DmDestination>,
    /// 1 to 2,000 events.
    pub events: Vec<DmEvent>,
    /// `HEX` whenever an event carries `userData` (required then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// Validate only.
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub validate_only: bool,
}

impl IngestEventsRequest {
    /// The same request carrying only the events at `keep` (indices into
    /// `events`, in order): how a rejected batch is split.
    pub fn subset(&self, keep: &[usize]) -> IngestEventsRequest {
        let events: Vec<DmEvent> = keep.iter().filter_map(|&i| self.events.get(i).cloned()).collect();
        let encoding = events.iter().any(|e| e.user_data.is_some()).then_some("HEX");
        IngestEventsRequest {
            destinations: self.destinations.clone(),
            events,
            encoding,
            validate_only: self.validate_only,
        }
    }
}

/// Builds the ingest requests for the events of many visitors, all for `target`.
///
/// Events named `target.event` become conversions; partial refunds restate
/// them when the target is for purchases; full refunds are
/// [`Skip::RetractionUnsupported`]; other events are [`Skip::Unsupported`].
/// Each event is checked as the API would check it (see the module doc) and
/// skipped with the reason if it fails, so it cannot reject its batch. A bad
/// target is an error for the whole call.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, data_manager};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_000);
/// e.value = Some(Amount::parse("129.99").unwrap());
/// e.currency = Some(Currency::parse("USD").unwrap());
/// let ctx = DeliveryContext {
///     click_ids: ClickIds { gclid: Some("Cj0KCQjw".into()), ..Default::default() },
///     consent: ConsentState::ALL_GRANTED,
///     now_ms: 2_000,
///     ..Default::default()
/// };
/// let target = data_manager::DmTarget::new("123-456-7890", "555666777").unwrap();
/// let batch = data_manager::build_many(&[(std::slice::from_ref(&e), &ctx)], &target).unwrap();
/// let event = &batch.requests[0].events[0];
/// assert_eq!(event.transaction_id, "ORD-1001");
/// assert_eq!(event.event_timestamp, "1970-01-01T00:00:01.000Z");
/// assert_eq!(event.consent.ad_user_data, "CONSENT_GRANTED");
/// ```
pub fn build_many(groups: &[VisitorEvents<'_>], target: &DmTarget) -> Result<Batch<IngestEventsRequest>> {
    check_target(target)?;
    let destination = target.destination();
    Ok(pack_visitors(
        groups,
        |events, ctx, offset, ok, skipped| {
            for (i, e) in events.iter().enumerate() {
                match event(e, ctx, target) {
                    Ok(ev) => ok.push((offset + i, ev)),
                    Err(skip) => skipped.push((offset + i, skip)),
                }
            }
        },
        (MAX_EVENTS, MAX_BODY_BYTES - 1024, MAX_BODY_BYTES),
        |events| IngestEventsRequest {
            destinations: vec![destination.clone()],
            encoding: events.iter().any(|e| e.user_data.is_some()).then_some("HEX"),
            events,
            validate_only: target.validate_only,
        },
    ))
}

fn check_target(t: &DmTarget) -> Result<()> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if t.operating_account_id.len() != 10 || !digits(&t.operating_account_id) {
        return Err(Error::Invalid { field: "googleAds.customerId", reason: "expected 10 digits" });
    }
    if t.login_account_id.as_deref().is_some_and(|l| l.len() != 10 || !digits(l)) {
        return Err(Error::Invalid { field: "googleAds.loginCustomerId", reason: "expected 10 digits" });
    }
    if !digits(&t.product_destination_id) {
        return Err(Error::Invalid { field: "googleAds.conversionAction", reason: "expected a numeric action id" });
    }
    if t.merchant_id.as_deref().is_some_and(|m| !digits(m)) {
        return Err(Error::Invalid { field: "googleAds.merchantId", reason: "expected digits" });
    }
    Ok(())
}

/// One event in Data Manager form, or why it cannot go.
fn event(e: &Event, ctx: &DeliveryContext, target: &DmTarget) -> core::result::Result<DmEvent, Skip> {
    let policy = ctx.consent.policy(DestinationKind::GoogleAds);
    policy.send.map_err(Skip::Consent)?;
    let restated = match (&e.name, &target.event) {
        (EventName::Refund, EventName::Purchase) => match e.refund_scope() {
            RefundScope::Partial { remaining } => Some(remaining),
            RefundScope::Full => return Err(Skip::RetractionUnsupported),
        },
        (name, wanted) if name == wanted => None,
        _ => return Err(Skip::Unsupported),
    };
    e.validate().map_err(Skip::Invalid)?;
    check_click_window(e, ctx.now_ms).map_err(Skip::Invalid)?;
    let transaction_id = match (e.order_ref(ctx.order_id), restated) {
        (Some(t), _) => t.to_owned(),
        (None, Some(_)) => return Err(Skip::Invalid(Error::Missing { field: "transactionId" })),
        (None, None) => e.id.as_str().to_owned(),
    };
    let value = restated.or(e.value);
    let currency = match (value, e.currency) {
        (Some(_), Some(c)) => Some(c.as_str().to_owned()),
        (Some(_), None) => return Err(Skip::Invalid(Error::Missing { field: "currency" })),
        (None, _) => None,
    };

    let ids = if policy.click_ids { ctx.click_ids.clone().validated() } else { Default::default() };
    let click = ids.primary_google();
    let ad_identifiers = click.map(|c| match c {
        GoogleClick::Gclid(g) => AdIdentifiers { gclid: Some(g.to_owned()), ..Default::default() },
        GoogleClick::Gbraid(b) => AdIdentifiers { gbraid: Some(b.to_owned()), ..Default::default() },
        GoogleClick::Wbraid(w) => AdIdentifiers { wbraid: Some(w.to_owned()), ..Default::default() },
    });
    let braid = matches!(click, Some(GoogleClick::Gbraid(_) | GoogleClick::Wbraid(_)));
    let user_data = if policy.user_data { user_identifiers(ctx) } else { None };
    let event_device_info = if policy.user_data { device_info(ctx) } else { None };
    if ad_identifiers.is_none() && user_data.is_none() {
        return Err(Skip::NoAttribution);
    }
    let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
    let cart_data = if braid { None } else { cart(e, target) };
    Ok(DmEvent {
        transaction_id,
        event_timestamp: crate::time::rfc3339_utc(at),
        last_updated_timestamp: restated.map(|_| crate::time::rfc3339_utc(at)),
        user_data,
        consent: DmConsent {
            ad_user_data: consent_status(ctx.consent.ad_user_data),
            ad_personalization: consent_status(ctx.consent.ad_personalization),
        },
        ad_identifiers,
        currency,
        conversion_value: value.map(|v| v.to_f64()),
        event_source: "WEB",
        event_device_info,
        cart_data,
    })
}

/// The visitor's hashed identifiers in Data Manager form, at most 10: emails,
/// phones, then complete addresses (an address without both names, a region
/// and a postal code is left out, as Google advises, rather than rejected).
fn user_identifiers(ctx: &DeliveryContext) -> Option<DmUserData> {
    let g = ctx.user_data.as_ref()?.google.as_ref()?;
    let emails = g.sha256_email_address.iter().filter(|v| is_hex64(v)).map(|v| UserIdentifier {
        email_address: Some(v.clone()),
        phone_number: None,
        address: None,
    });
    let phones = g.sha256_phone_number.iter().filter(|v| is_hex64(v)).map(|v| UserIdentifier {
        email_address: None,
        phone_number: Some(v.clone()),
        address: None,
    });
    let addresses = g.address.iter().filter_map(address_info).map(|a| UserIdentifier {
        email_address: None,
        phone_number: None,
        address: Some(a),
    });
    let user_identifiers: Vec<UserIdentifier> =
        emails.chain(phones).chain(addresses).take(MAX_USER_IDENTIFIERS).collect();
    (!user_identifiers.is_empty()).then_some(DmUserData { user_identifiers })
}

/// The address in Data Manager form, or `None` when it lacks a hashed given
/// or family name, a two-letter region or a postal code (the match-key
/// counts use the same rule).
pub(crate) fn address_info(a: &GoogleAddress) -> Option<AddressInfo> {
    let hashed = |v: &Option<String>| v.as_ref().filter(|v| is_hex64(v)).cloned();
    let region_code = a.country.as_ref().filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))?;
    let postal_code = a.postal_code.as_ref().map(|p| p.trim()).filter(|p| !p.is_empty())?;
    Some(AddressInfo {
        given_name: hashed(&a.sha256_first_name)?,
        family_name: hashed(&a.sha256_last_name)?,
        region_code: region_code.clone(),
        postal_code: postal_code.to_owned(),
    })
}

fn device_info(ctx: &DeliveryContext) -> Option<DeviceInfo> {
    let user_agent = ctx.user_agent.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
    let ip_address = usable_ip(ctx);
    let info = DeviceInfo { user_agent, ip_address: ip_address.map(str::to_owned) };
    (info != DeviceInfo::default()).then_some(info)
}

/// The visitor's IP if it is an IPv4 or IPv6 address: Google refuses a
/// request whose IP is not one, so an unusable value is left out.
pub(crate) fn usable_ip(ctx: &DeliveryContext) -> Option<&str> {
    ctx.ip_address.as_deref().map(str::trim).filter(|ip| ip.parse::<core::net::IpAddr>().is_ok())
}

fn cart(e: &Event, target: &DmTarget) -> Option<CartData> {
    let items: Vec<CartItem> = e
        .items
        .iter()
        .filter_map(|i| {
            let id = i.item_id.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
            Some(CartItem {
                merchant_product_id: id.to_owned(),
                quantity: itoa::Buffer::new().format(i.quantity.unwrap_or(1)).to_owned(),
                unit_price: i.price.map(|p| p.to_f64()),
            })
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    Some(CartData {
        merchant_id: target.merchant_id.clone(),
        items,
        coupon_codes: e.coupon.iter().map(|c| c.trim()).filter(|c| !c.is_empty()).map(str::to_owned).collect(),
    })
}

/// A `FieldWarning` of a 200: an optional field Google could not use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldWarning {
    /// `WARNING_REASON_…`.
    pub reason: String,
    /// Human readable.
    pub description: String,
    /// Where (`events[1].cart_data.items[0]`).
    pub field: String,
}

/// The answer to an ingest request (HTTP 200).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngestResponse {
    /// The id to ask [`STATUS_PATH`] about (absent for `validateOnly`).
    pub request_id: Option<String>,
    /// Optional fields that could not be used.
    pub field_warnings: Vec<FieldWarning>,
}

impl IngestResponse {
    /// Parses a 200 body (an empty body is an empty answer).
    pub fn parse(body: &str) -> Result<IngestResponse> {
        if body.trim().is_empty() {
            return Ok(IngestResponse::default());
        }
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "dataManager.response", reason: "not an ingest response" })
    }
}

/// The index of the event a field path names: `events[3].user_data…`, also in
/// the doubled form the API prints (`events.events[3]…`); `None` for paths
/// outside `events` (`destinations[0]…`).
///
/// ```
/// use tally_core::destinations::data_manager::event_index;
/// assert_eq!(event_index("events.events[12].user_data.user_identifiers[1]"), Some(12));
/// assert_eq!(event_index("events[0].transaction_id"), Some(0));
/// assert_eq!(event_index("destinations[0].login_account.account_id"), None);
/// ```
pub fn event_index(field: &str) -> Option<usize> {
    let start = field.find("events[")? + "events[".len();
    let rest = field.get(start..)?;
    let end = rest.find(']')?;
    rest.get(..end)?.parse().ok()
}

/// One `BadRequest.fieldViolations` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldViolation {
    /// The path, when given.
    pub field: String,
    /// Human readable.
    pub description: String,
    /// An `ErrorReason` (`INVALID_HEX_ENCODING`, …).
    pub reason: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Detail {
    #[serde(rename = "@type")]
    type_url: String,
    reason: Option<String>,
    metadata: std::collections::BTreeMap<String, String>,
    field_violations: Vec<FieldViolation>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Status {
    code: i64,
    message: String,
    status: String,
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Status,
}

/// A `google.rpc.Status` error answer, read for what the sender needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmError {
    /// `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, `PERMISSION_DENIED`, …
    pub status: String,
    /// Summary.
    pub message: String,
    /// `ErrorInfo.reason` (`SERVICE_DISABLED`, `ACCESS_TOKEN_SCOPE_INSUFFICIENT`, …).
    pub reason: Option<String>,
    /// `ErrorInfo.metadata.quota_limit` of a quota error.
    pub quota_limit: Option<String>,
    /// `RequestInfo.requestId` / `ErrorInfo.metadata.requestId`.
    pub request_id: Option<String>,
    /// The field violations.
    pub violations: Vec<FieldViolation>,
}

impl DmError {
    /// Parses an error body; `None` when it is not a `google.rpc.Status`.
    pub fn parse(body: &str) -> Option<DmError> {
        let s = serde_json::from_str::<ErrorBody>(body).ok()?.error;
        let mut e = DmError { status: s.status, message: s.message, ..DmError::default() };
        let _ = s.code;
        for d in s.details {
            if d.type_url.ends_with("google.rpc.ErrorInfo") {
                e.reason = d.reason;
                e.quota_limit = d.metadata.get("quota_limit").cloned();
                e.request_id = e.request_id.or_else(|| d.metadata.get("requestId").cloned());
            }
            e.violations.extend(d.field_violations);
        }
        Some(e)
    }

    /// The events its violations name, sorted, without repeats.
    pub fn event_indices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.violations.iter().filter_map(|f| event_index(&f.field)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// True when a violation is about the request itself (destinations,
    /// encoding …) rather than an event: splitting the batch cannot help.
    pub fn is_request_level(&self) -> bool {
        self.violations.iter().any(|f| !f.field.is_empty() && event_index(&f.field).is_none())
    }

    /// The violations, each as `REASON at field: description`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        s.push_str(if self.status.is_empty() { "ERROR" } else { &self.status });
        s.push_str(": ");
        s.push_str(&self.message);
        if let Some(r) = &self.reason {
            s.push_str(" (");
            s.push_str(r);
            s.push(')');
        }
        for v in &self.violations {
            s.push_str("; ");
            s.push_str(&v.reason);
            if !v.field.is_empty() {
                s.push_str(" at ");
                s.push_str(&v.field);
            }
            if !v.description.is_empty() {
                s.push_str(": ");
                s.push_str(&v.description);
            }
        }
        s
    }
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> core::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(u64),
    }
    Ok(match Int64::deserialize(d)? {
        Int64::Text(s) => s.trim().parse().unwrap_or(0),
        Int64::Number(n) => n,
    })
}

/// A count of records for one reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReasonCount {
    /// int64 (a JSON string).
    #[serde(deserialize_with = "int64")]
    pub record_count: u64,
    /// `PROCESSING_ERROR_REASON_…` / `PROCESSING_WARNING_REASON_…`.
    pub reason: String,
}

/// `errorInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorInfo {
    /// Failed records per reason.
    pub error_counts: Vec<ReasonCount>,
}

/// `warningInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WarningInfo {
    /// Records with a warning, per reason.
    pub warning_counts: Vec<ReasonCount>,
}

/// `eventsIngestionStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngestionStatus {
    /// Events in the request.
    #[serde(deserialize_with = "int64")]
    pub record_count: u64,
}

/// The status of a request at one destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationStatus {
    /// `PROCESSING`, `SUCCESS`, `PARTIAL_SUCCESS`, `FAILED`, `REQUEST_STATUS_UNKNOWN`.
    pub request_status: String,
    /// For `FAILED` / `PARTIAL_SUCCESS`.
    pub error_info: Option<ErrorInfo>,
    /// Warnings.
    pub warning_info: Option<WarningInfo>,
    /// The record count.
    pub events_ingestion_status: Option<IngestionStatus>,
}

impl DestinationStatus {
    /// True once processing has ended (`SUCCESS`, `PARTIAL_SUCCESS`, `FAILED`).
    pub fn is_final(&self) -> bool {
        matches!(self.request_status.as_str(), "SUCCESS" | "PARTIAL_SUCCESS" | "FAILED")
    }
}

/// The answer of [`STATUS_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStatusResponse {
    /// One per destination of the request, in request order.
    pub request_status_per_destination: Vec<DestinationStatus>,
}

impl RequestStatusResponse {
    /// Parses a 200 body.
    pub fn parse(body: &str) -> Result<RequestStatusResponse> {
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "dataManager.requestStatus", reason: "not a request status" })
    }

    /// True once every destination's processing has ended.
    pub fn is_final(&self) -> bool {
        !self.request_status_per_destination.is_empty()
            && self.request_status_per_destination.iter().all(DestinationStatus::is_final)
    }
}

/// When to ask for a request's status: Google's suggested schedule is a
/// first wait of 30 minutes, then exponential backoff ×1.3 capped at 60
/// minutes, for at most 24 hours
/// (<https://developers.google.com/data-manager/api/devguides/diagnostics>).
///
/// ```
/// use tally_core::destinations::data_manager::PollSchedule;
/// let s = PollSchedule::default();
/// let minutes: Vec<u64> = (0..4).map(|n| s.elapsed_before(n).unwrap() / 60_000).collect();
/// assert_eq!(minutes, [30, 69, 119, 179]); // 00:30, 01:09, 01:59, 02:59
/// assert_eq!(s.elapsed_before(100), None); // past 24 h: stop asking
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollSchedule {
    /// Before the first poll, ms.
    pub first_ms: u64,
    /// Growth of the wait per poll.
    pub factor: f64,
    /// Longest wait between polls, ms.
    pub max_interval_ms: u64,
    /// Stop after this long, ms.
    pub max_total_ms: u64,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule { first_ms: 30 * 60_000, factor: 1.3, max_interval_ms: 60 * 60_000, max_total_ms: 24 * 3_600_000 }
    }
}

impl PollSchedule {
    /// The same schedule scaled to start after `first_ms` (tests and demos
    /// that cannot wait half an hour): every wait shrinks in proportion.
    pub fn scaled_to(first_ms: u64) -> PollSchedule {
        let d = PollSchedule::default();
        let scale = |v: u64| ((v as f64) * (first_ms as f64) / (d.first_ms as f64)).max(1.0) as u64;
        PollSchedule {
            first_ms,
            factor: d.factor,
            max_interval_ms: scale(d.max_interval_ms),
            max_total_ms: scale(d.max_total_ms),
        }
    }

    /// The wait before poll `n` (0-based), ms.
    pub fn wait_before(&self, n: u32) -> u64 {
        let grown = (self.first_ms as f64) * self.factor.powi(i32::try_from(n).unwrap_or(i32::MAX));
        (grown.min(self.max_interval_ms as f64) as u64).max(1)
    }

    /// Time from ingest to poll `n`, ms; `None` when that is past the end.
    pub fn elapsed_before(&self, n: u32) -> Option<u64> {
        let mut total = 0u64;
        for k in 0..=n {
            total = total.saturating_add(self.wait_before(k));
            if total > self.max_total_ms {
                return None;
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::NormalizeOptions;
    use crate::user_data::Address;
    use crate::*;

    const NOW: i64 = 1_777_667_565_000 + 3_600_000;

    fn purchase(id: &str, value: &str) -> Event {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse(id).unwrap(), 1_777_667_565_000);
        e.value = Some(Amount::parse(value).unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e
    }

    fn ctx(consent: ConsentState, user: Option<UserData>) -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds { gclid: Some("Cj0KCQjw_example".into()), ..Default::default() },
            consent,
            user_data: user.map(|u| u.hashed(&NormalizeOptions::default())),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            now_ms: NOW,
            ..Default::default()
        }
    }

    fn target() -> DmTarget {
        DmTarget::new("123-456-7890", "555666777").unwrap()
    }

    fn jane() -> UserData {
        UserData {
            email: Some("Jane.Doe@gmail.com".into()),
            phone: Some("+1 800-555-0100".into()),
            first_name: Some("Jane".into()),
            last_name: Some("Doe".into()),
            address: Some(Address {
                postal_code: Some("94043".into()),
                country: Some("US".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn build_one(e: &Event, c: &DeliveryContext) -> Batch<IngestEventsRequest> {
        build_many(&[(std::slice::from_ref(e), c)], &target()).unwrap()
    }

    /// The official example (Data Manager "events:ingest" with every Google
    /// Ads field, serialised by Google's client library): the same user, click
    /// and device give the same identifiers and the same hashes.
    #[test]
    fn matches_the_official_example_request() {
        let e = purchase("ORD-1001", "129.99");
        let b = build_one(&e, &ctx(ConsentState::ALL_GRANTED, Some(jane())));
        assert!(b.skipped.is_empty(), "{:?}", b.skipped);
        let body = serde_json::to_value(&b.requests[0]).unwrap();
        let want = serde_json::json!({
            "destinations": [{
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                "productDestinationId": "555666777"
            }],
            "events": [{
                "transactionId": "ORD-1001",
                "eventTimestamp": "2026-05-01T20:32:45.000Z",
                "userData": {"userIdentifiers": [
                    {"emailAddress": "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"},
                    {"phoneNumber": "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"},
                    {"address": {
                        "givenName": "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
                        "familyName": "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
                        "regionCode": "US",
                        "postalCode": "94043"}}
                ]},
                "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
                "adIdentifiers": {"gclid": "Cj0KCQjw_example"},
                "currency": "USD",
                "conversionValue": 129.99,
                "eventSource": "WEB",
                "eventDeviceInfo": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "ipAddress": "203.0.113.7"}
            }],
            "encoding": "HEX"
        });
        assert_eq!(body, want);
    }

    /// Google's formatter test vectors and the audience guide's hash table
    /// (developers.google.com/data-manager/api/devguides/concepts/formatting,
    /// googleads/data-manager-python tests/formatter_test.py): Tally's
    /// normalisation and hashing give the same SHA-256.
    #[test]
    fn official_hash_vectors() {
        let email = |raw: &str| crate::hash::sha256_hex(&crate::normalize::google_email(raw).unwrap());
        let phone = |raw: &str| crate::hash::sha256_hex(&crate::normalize::google_phone(raw, None).unwrap());
        let name = |raw: &str| crate::hash::sha256_hex(&crate::normalize::google_name(raw).unwrap());
        for raw in ["alexz@example.com", "  ALEXZ@example.com   ", "  alexz@EXAMPLE.com   "] {
            assert_eq!(email(raw), "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a", "{raw}");
        }
        for raw in ["+18005550100", "   +1-800-555-0100", "1-800-555-0100   ", "1 800 555 0100", "+1 800-555-0100"] {
            assert_eq!(phone(raw), "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30", "{raw}");
        }
        for raw in ["441134960987", "+441134960987", "+44-113-496-0987"] {
            assert_eq!(phone(raw), "0fac52d27ec377f8ad2f9de75d1f9bace693237e31868ae6f4616b8bbd0e94fb", "{raw}");
        }
        for raw in ["Givenname", "  GivenName  "] {
            assert_eq!(name(raw), "128a07bfe2df877c52076e60d7774cf5baaa046c5a6c48daf30ff43ecca2f814");
        }
        for raw in ["Familyname", "  FamilyName "] {
            assert_eq!(name(raw), "77762c287e61ce065bee5c15464012c6fbe088398b8057627d5577249430d574");
        }
        let emails = [
            ("Jefferson.Loves.hiking@gmail.com", "jeffersonloveshiking@gmail.com"),
            ("Jefferson.LOVES.Hiking@googlemail.com", "jeffersonloveshiking@googlemail.com"),
            ("Cloudy.SanFrancisco+shopping@googlemail.com", "cloudysanfrancisco@googlemail.com"),
            ("user.name+NYC@Example.com", "user.name+nyc@example.com"),
        ];
        for (raw, normalised) in emails {
            assert_eq!(crate::normalize::google_email(raw).as_deref(), Some(normalised));
        }
        let table = [
            ("dana@example.com", "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"),
            ("DanaM@example.com", "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7"),
            ("quinn@CYMBALGROUP.com", "05bb62526f091b45d20e243d194766cca8869137421047dc53fa4876d111a6f0"),
            ("baklavainthebalkans@gmail.com", "f1fcde379f31f4d446b76ee8f34860eca2288adc6b6d6c0fdc56d9eee75a2fa5"),
            ("rosario@example.org", "83a834cc5327bc4dee7c5408988040dc5813c7662611cd93b707aff72bf7d33f"),
            ("cloudySanFrancisco@GMAIL.com", "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"),
            (
                "Cloudy.SanFrancisco+shopping@gmail.com",
                "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4",
            ),
            ("user.name+NYC@Example.com", "f109a2a632fbcea5fc82049f50beed3d8621bf9034399f437fb622222acccdac"),
        ];
        for (raw, hash) in table {
            assert_eq!(email(raw), hash, "{raw}");
        }
        for (raw, hash) in [
            ("+1 800-555-0101", "61d6c2976b5d92b1ad63073a12fddd26040cd980067d03a93dd1cc50f1a3ac68"),
            ("+1 800-555-0102", "c5383c2eeada28210d27f011bc127d4f9562cf38ff0c9bba33dd45ae79b9fe7c"),
            ("+1-800-555-0110", "525c2390a4e2a9766fa8ddc341dd10414603baebefa401f5a5e29f55e176525d"),
        ] {
            assert_eq!(phone(raw), hash, "{raw}");
        }
        for bad in ["", "  ", "quinn", " @googlemail.com", " ...@gmail.com"] {
            assert_eq!(crate::normalize::google_email(bad), None, "{bad:?}");
        }
        assert_eq!(crate::normalize::google_phone(" +A BCD EFG ", None), None);
        assert_eq!(crate::normalize::google_country(" uS ").as_deref(), Some("US"));
    }

    #[test]
    fn consent_decides_what_travels() {
        let e = purchase("ORD-1", "10.00");
        // ad_user_data denied: the click id goes, no user data, no IP or user agent.
        let mut c = ConsentState::ALL_GRANTED;
        c.ad_user_data = ConsentSignal::Denied;
        let b = build_one(&e, &ctx(c, Some(jane())));
        let ev = &b.requests[0].events[0];
        assert!(ev.user_data.is_none() && ev.event_device_info.is_none());
        assert_eq!(ev.consent.ad_user_data, "CONSENT_DENIED");
        assert!(b.requests[0].encoding.is_none());
        // ad_storage denied: user data only, no click id.
        let mut c = ConsentState::ALL_GRANTED;
        c.ad_storage = ConsentSignal::Denied;
        let b = build_one(&e, &ctx(c, Some(jane())));
        let ev = &b.requests[0].events[0];
        assert!(ev.ad_identifiers.is_none());
        assert_eq!(ev.user_data.as_ref().unwrap().user_identifiers.len(), 3);
        assert_eq!(b.requests[0].encoding, Some("HEX"));
        // Both denied: nothing.
        let mut c = ConsentState::ALL_GRANTED;
        c.ad_storage = ConsentSignal::Denied;
        c.ad_user_data = ConsentSignal::Denied;
        let b = build_one(&e, &ctx(c, Some(jane())));
        assert!(b.requests.is_empty());
        assert!(matches!(b.skipped[0], (0, Skip::Consent(_))));
        // ad_user_data denied and no click id: nothing to attribute with.
        let mut c = ctx(ConsentState::ALL_GRANTED, Some(jane()));
        c.consent.ad_user_data = ConsentSignal::Denied;
        c.click_ids = ClickIds::default();
        assert_eq!(build_one(&e, &c).skipped, [(0, Skip::NoAttribution)]);
    }

    #[test]
    fn refunds_restate_partial_and_skip_full() {
        let mut partial = Event::transactional(EventName::Refund, TransactionId::parse("ORD-9").unwrap(), NOW - 1000);
        partial.value = Some(Amount::parse("30.00").unwrap());
        partial.original_value = Some(Amount::parse("100.00").unwrap());
        partial.currency = Some(Currency::parse("EUR").unwrap());
        let mut full = partial.clone();
        full.value = Some(Amount::parse("100.00").unwrap());
        let c = ctx(ConsentState::ALL_GRANTED, None);
        let b = build_many(&[(&[partial, full][..], &c)], &target()).unwrap();
        let ev = &b.requests[0].events[0];
        assert_eq!((ev.transaction_id.as_str(), ev.conversion_value), ("ORD-9", Some(70.0)));
        assert_eq!(ev.currency.as_deref(), Some("EUR"));
        assert!(ev.last_updated_timestamp.is_some());
        assert_eq!(b.indices, [vec![0]]);
        assert_eq!(b.skipped, [(1, Skip::RetractionUnsupported)]);
    }

    #[test]
    fn events_the_api_would_reject_are_left_out_before_batching() {
        let c = ctx(ConsentState::ALL_GRANTED, Some(jane()));
        let mut old = purchase("OLD", "1.00");
        old.occurred_at_ms = NOW - 91 * 86_400_000;
        let mut future = purchase("FUT", "1.00");
        future.occurred_at_ms = NOW + 3_600_000;
        let mut no_currency = purchase("NOCUR", "1.00");
        no_currency.currency = None;
        let good = purchase("OK", "1.00");
        let events = [old, future, no_currency, good];
        let b = build_many(&[(&events[..], &c)], &target()).unwrap();
        assert_eq!(b.indices, [vec![3]]);
        let reasons: Vec<usize> = b.skipped.iter().map(|(i, _)| *i).collect();
        assert_eq!(reasons, [0, 1, 2]);
        assert!(b.skipped.iter().all(|(_, s)| matches!(s, Skip::Invalid(_))));
        // A malformed IP is left out; the event still goes.
        let mut c = c.clone();
        c.ip_address = Some("not-an-ip".into());
        let b = build_one(&events[3], &c);
        assert_eq!(b.requests[0].events[0].event_device_info.as_ref().unwrap().ip_address, None);
        // An incomplete address is left out, not sent half.
        let mut u = jane();
        u.address = Some(Address { country: Some("US".into()), ..Default::default() });
        let b = build_one(&events[3], &ctx(ConsentState::ALL_GRANTED, Some(u)));
        let ids = &b.requests[0].events[0].user_data.as_ref().unwrap().user_identifiers;
        assert!(ids.iter().all(|i| i.address.is_none()));
    }

    #[test]
    fn visitors_share_requests_of_at_most_2000_events() {
        let contexts: Vec<DeliveryContext> = (0..2500)
            .map(|i| {
                let mut c = ctx(ConsentState::ALL_GRANTED, None);
                c.click_ids.gclid = Some(format!("gclid-{i}"));
                c
            })
            .collect();
        let events: Vec<Event> = (0..2500).map(|i| purchase(&format!("ORD-{i}"), "5.00")).collect();
        let groups: Vec<VisitorEvents<'_>> =
            events.iter().zip(&contexts).map(|(e, c)| (std::slice::from_ref(e), c)).collect();
        let b = build_many(&groups, &target()).unwrap();
        assert_eq!(b.requests.iter().map(|r| r.events.len()).collect::<Vec<_>>(), [2000, 500]);
        assert_eq!(b.requests[1].events[0].ad_identifiers.as_ref().unwrap().gclid.as_deref(), Some("gclid-2000"));
        assert_eq!(b.indices[1][0], 2000);
    }

    #[test]
    fn cart_items_travel_without_braids() {
        let mut e = purchase("ORD-C", "20.00");
        e.items = vec![Item::new("SKU-1", "Mug").with_price(Amount::parse("10.00").unwrap(), 2)];
        let c = ctx(ConsentState::ALL_GRANTED, None);
        let b = build_one(&e, &c);
        let cart = b.requests[0].events[0].cart_data.as_ref().unwrap();
        assert_eq!((cart.items[0].merchant_product_id.as_str(), cart.items[0].quantity.as_str()), ("SKU-1", "2"));
        assert_eq!(serde_json::to_value(&cart.items[0]).unwrap()["quantity"], "2");
        let mut c = c.clone();
        c.click_ids = ClickIds { wbraid: Some("wb".into()), ..Default::default() };
        assert!(build_one(&e, &c).requests[0].events[0].cart_data.is_none());
    }

    #[test]
    fn reads_errors_warnings_and_statuses() {
        let body = r#"{"error":{"code":400,"message":"There was a problem with the request.","status":"INVALID_ARGUMENT",
          "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_ARGUMENT","domain":"datamanager.googleapis.com","metadata":{"requestId":"t-6bc8"}},
          {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[
            {"field":"events.events[0].user_data.user_identifiers[1]","description":"The HEX encoded value is malformed.","reason":"INVALID_HEX_ENCODING"},
            {"field":"events.events[1].user_data.user_identifiers[2]","description":"The HEX encoded value is malformed.","reason":"INVALID_HEX_ENCODING"}]}]}}"#;
        let e = DmError::parse(body).unwrap();
        assert_eq!(e.event_indices(), [0, 1]);
        assert!(!e.is_request_level());
        assert_eq!(e.request_id.as_deref(), Some("t-6bc8"));
        assert!(e.describe().contains("INVALID_HEX_ENCODING at events.events[0]"));
        let dest = r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"x","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"destinations[0].login_account.account_id","reason":"INVALID_NUMBER_FORMAT"}]}]}}"#;
        assert!(DmError::parse(dest).unwrap().is_request_level());
        let quota = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"q","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","metadata":{"quota_limit":"IngestionMutateRequestsPerMinutePerProject"}}]}}"#;
        assert_eq!(
            DmError::parse(quota).unwrap().quota_limit.as_deref(),
            Some("IngestionMutateRequestsPerMinutePerProject")
        );
        assert_eq!(DmError::parse("<html>"), None);

        let ok = IngestResponse::parse(r#"{"requestId":"t-1","fieldWarnings":[{"reason":"WARNING_REASON_CART_DATA_ITEM_MERCHANT_PRODUCT_ID_MISSING","description":"d","field":"events[1].cart_data.items[0]"}]}"#).unwrap();
        assert_eq!(ok.request_id.as_deref(), Some("t-1"));
        assert_eq!(event_index(&ok.field_warnings[0].field), Some(1));
        assert_eq!(IngestResponse::parse("").unwrap(), IngestResponse::default());

        let status = RequestStatusResponse::parse(r#"{"requestStatusPerDestination":[{"destination":{},"requestStatus":"PARTIAL_SUCCESS",
          "errorInfo":{"errorCounts":[{"recordCount":"1","reason":"PROCESSING_ERROR_REASON_INVALID_GCLID"}]},
          "eventsIngestionStatus":{"recordCount":"3"},"warningInfo":{"warningCounts":[{"recordCount":2,"reason":"PROCESSING_WARNING_REASON_INTERNAL_ERROR"}]}}]}"#).unwrap();
        assert!(status.is_final());
        let d = &status.request_status_per_destination[0];
        assert_eq!(d.error_info.as_ref().unwrap().error_counts[0].record_count, 1);
        assert_eq!(d.warning_info.as_ref().unwrap().warning_counts[0].record_count, 2);
        assert_eq!(d.events_ingestion_status.as_ref().unwrap().record_count, 3);
        let processing =
            RequestStatusResponse::parse(r#"{"requestStatusPerDestination":[{"requestStatus":"PROCESSING"}]}"#)
                .unwrap();
        assert!(!processing.is_final());
    }

    #[test]
    fn poll_schedule_follows_the_guide_and_scales() {
        let s = PollSchedule::default();
        assert_eq!(s.wait_before(0), 30 * 60_000);
        assert_eq!(s.wait_before(1), 39 * 60_000);
        assert_eq!(s.wait_before(10), 60 * 60_000);
        // 30 + 39 + 50.7 + then hourly: the last poll is before 24 h.
        let last = (0..100).take_while(|&n| s.elapsed_before(n).is_some()).last().unwrap();
        assert!(s.elapsed_before(last).unwrap() <= 24 * 3_600_000);
        assert_eq!(last, 24); // 25 polls in all
        let fast = PollSchedule::scaled_to(100);
        assert_eq!(fast.wait_before(0), 100);
        assert_eq!(fast.wait_before(10), 200);
        assert_eq!(fast.max_total_ms, 4800);
    }

    #[test]
    fn subsets_keep_the_destination_and_recompute_the_encoding() {
        let with = build_one(&purchase("A", "1.00"), &ctx(ConsentState::ALL_GRANTED, Some(jane())));
        let mut r = with.requests[0].clone();
        let mut c = ConsentState::ALL_GRANTED;
        c.ad_user_data = ConsentSignal::Denied;
        let without = build_one(&purchase("B", "1.00"), &ctx(c, Some(jane())));
        r.events.push(without.requests[0].events[0].clone());
        assert_eq!(r.subset(&[1]).encoding, None);
        assert_eq!(r.subset(&[0, 1]).encoding, Some("HEX"));
        assert_eq!(r.subset(&[1]).events[0].transaction_id, "B");
        assert_eq!(r.subset(&[1]).destinations, r.destinations);
    }
}
