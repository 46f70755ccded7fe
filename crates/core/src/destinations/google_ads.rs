//! Google Ads API: offline click conversions and conversion adjustments
//! (<https://developers.google.com/google-ads/api/docs/conversions/upload-clicks>, <https://developers.google.com/google-ads/api/docs/conversions/upload-adjustments>).
//!
//! * Purchases (or whichever event a [`AdsTarget`] is configured for) become
//!   [`ClickConversion`]s for `:uploadClickConversions`.
//! * Refunds of a purchase target become [`ConversionAdjustment`]s for
//!   `:uploadConversionAdjustments`: `RETRACTION` for a full refund,
//!   `RESTATEMENT` to the remaining value for a partial one.
//!
//! Both refer to the order by its order id in the shop's [`OrderIdForm`](crate::OrderIdForm)
//! (as given by default, or hashed), so the browser tag's `transaction_id`, GA4
//! and Google Ads all agree, and reports line up with the shop's order export.
//!
//! Also here: parsing of upload responses (partial failures per row) and of
//! RPC-level errors, the endpoint URL, customer-id normalisation and the OAuth
//! refresh-token form body. The HTTP calls themselves are the server's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::is_hex64;
use super::{DeliveryContext, split_json_batches};
use crate::click_ids::GoogleClick;
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::{Event, RefundScope};
use crate::event_name::EventName;
use crate::time::google_ads_datetime;

/// Google Ads API host.
pub const DEFAULT_BASE_URL: &str = "https://googleads.googleapis.com";
/// The API version used unless the caller pins another (<https://developers.google.com/google-ads/api/docs/sunset-dates>).
pub const DEFAULT_API_VERSION: &str = "v26";
/// Google's OAuth 2.0 token endpoint (refresh-token grant).
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The OAuth scope of the Google Ads API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/adwords";
/// Optional `developer-token` header (ignored by the API since 2026-09-09; send only if configured).
pub const HEADER_DEVELOPER_TOKEN: &str = "developer-token";
/// Manager (MCC) customer id header, digits only.
pub const HEADER_LOGIN_CUSTOMER_ID: &str = "login-customer-id";
/// Linked-account customer id header, digits only.
pub const HEADER_LINKED_CUSTOMER_ID: &str = "linked-customer-id";
/// Most click conversions per request (`TOO_MANY_CONVERSIONS_IN_REQUEST`).
pub const MAX_CONVERSIONS: usize = 2000;
/// Most adjustments per request (`TOO_MANY_ADJUSTMENTS_IN_REQUEST`).
pub const MAX_ADJUSTMENTS: usize = 2000;
/// Tally's own cap on a request body, far below what the API accepts.
pub const MAX_BODY_BYTES: usize = 8_000_000;
/// Most user identifiers on one click conversion.
pub const MAX_USER_IDENTIFIERS: usize = 5;
/// Click conversions older than this are rejected (`EXPIRED_EVENT`, the longest click-through window).
pub const MAX_CLICK_AGE_DAYS: u32 = 90;
/// Adjustments of conversions older than this are rejected (`CONVERSION_EXPIRED`).
pub const MAX_ADJUSTMENT_AGE_DAYS: u32 = 54;
/// How far in the future (clock skew) an event time may be.
pub const MAX_FUTURE_MS: i64 = 15 * 60_000;

const DESTINATION: &str = "google_ads";

/// Where conversions go: the account and the conversion action, and which
/// event feeds it.
///
/// ```
/// use tally_core::destinations::google_ads::AdsTarget;
/// let t = AdsTarget::new("123-456-7890", "555666777").unwrap();
/// assert_eq!(t.conversion_action(), "customers/1234567890/conversionActions/555666777");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdsTarget {
    /// The customer that owns the conversion action, 10 digits, no dashes.
    pub customer_id: String,
    /// The conversion action id (digits).
    pub conversion_action_id: String,
    /// The event uploaded as this action's click conversion (default `purchase`).
    /// When it is `purchase`, refunds become adjustments of the same action.
    pub event: EventName,
    /// Ask Google to validate without storing (`validateOnly`).
    pub validate_only: bool,
    /// `jobId` for Offline data diagnostics, in `[0, 2^31)`.
    pub job_id: Option<u32>,
}

impl AdsTarget {
    /// A target for `purchase` conversions. `customer_id` may have dashes;
    /// `conversion_action` is the action id or its resource name
    /// `customers/{cid}/conversionActions/{id}`.
    pub fn new(customer_id: &str, conversion_action: &str) -> Result<AdsTarget> {
        Ok(AdsTarget {
            customer_id: normalize_customer_id(customer_id)?,
            conversion_action_id: parse_conversion_action(conversion_action)?,
            event: EventName::Purchase,
            validate_only: false,
            job_id: None,
        })
    }

    /// Feeds the action from another event (e.g. `generate_lead`).
    pub fn for_event(mut self, name: EventName) -> AdsTarget {
        self.event = name;
        self
    }

    /// The conversion action's resource name.
    pub fn conversion_action(&self) -> String {
        let mut s = String::with_capacity(50);
        s.push_str("customers/");
        s.push_str(&self.customer_id);
        s.push_str("/conversionActions/");
        s.push_str(&self.conversion_action_id);
        s
    }

    fn check(&self) -> Result<AdsTarget> {
        let mut t = self.clone();
        t.customer_id = normalize_customer_id(&self.customer_id)?;
        t.conversion_action_id = parse_conversion_action(&self.conversion_action_id)?;
        if self.event == EventName::Refund {
            return Err(Error::Invalid {
                field: "googleAds.event",
                reason: "refunds are uploaded as adjustments of the purchase target",
            });
        }
        if self.job_id.is_some_and(|j| j > i32::MAX as u32) {
            return Err(Error::Invalid { field: "googleAds.jobId", reason: "must be below 2^31" });
        }
        Ok(t)
    }
}

/// Normalises a customer id: dashes and spaces removed, exactly 10 digits.
///
/// ```
/// use tally_core::destinations::google_ads::normalize_customer_id;
/// assert_eq!(normalize_customer_id("123-456-7890").unwrap(), "1234567890");
/// assert!(normalize_customer_id("123-456-789").is_err());
/// ```
pub fn normalize_customer_id(raw: &str) -> Result<String> {
    let digits: String = raw.trim().chars().filter(|c| *c != '-' && *c != ' ').collect();
    if digits.is_empty() {
        return Err(Error::Missing { field: "googleAds.customerId" });
    }
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid {
            field: "googleAds.customerId",
            reason: "expected 10 digits such as 123-456-7890",
        });
    }
    Ok(digits)
}

fn parse_conversion_action(raw: &str) -> Result<String> {
    let t = raw.trim();
    let id = match t.strip_prefix("customers/") {
        Some(rest) => match rest.split_once("/conversionActions/") {
            Some((_, id)) => id,
            None => "",
        },
        None => t,
    };
    if t.is_empty() {
        return Err(Error::Missing { field: "googleAds.conversionActionId" });
    }
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid {
            field: "googleAds.conversionActionId",
            reason: "expected the numeric id or customers/{cid}/conversionActions/{id}",
        });
    }
    Ok(id.to_owned())
}

/// The `consent` of a click conversion: only `adUserData` may be set
/// (`ad_personalization` is for the user-data services only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickConsent {
    /// `GRANTED` or `DENIED`.
    pub ad_user_data: &'static str,
}

/// One `UserIdentifier`: exactly one of the hashed fields is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentifier {
    /// Always `FIRST_PARTY`.
    pub user_identifier_source: &'static str,
    /// SHA-256 of the Google-normalised email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_email: Option<String>,
    /// SHA-256 of the E.164 phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_phone_number: Option<String>,
}

/// A `ClickConversion` (REST JSON, lowerCamelCase).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickConversion {
    /// Google click id (at most one of gclid / gbraid / wbraid is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// iOS app click id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<String>,
    /// iOS web click id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<String>,
    /// `customers/{cid}/conversionActions/{id}`.
    pub conversion_action: String,
    /// `yyyy-mm-dd hh:mm:ss+00:00`.
    pub conversion_date_time: String,
    /// The value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_value: Option<f64>,
    /// ISO 4217.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    /// The order key (Tally's purchase event id): one conversion per action per order.
    pub order_id: String,
    /// Hashed email / phone, at most 5; never with a gbraid or wbraid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_identifiers: Vec<UserIdentifier>,
    /// Consent.
    pub consent: ClickConsent,
}

/// An `UploadClickConversionsRequest` body.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadClickConversionsRequest {
    /// At most 2,000.
    pub conversions: Vec<ClickConversion>,
    /// Always `true` (required by the API).
    pub partial_failure: bool,
    /// Validate only.
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub validate_only: bool,
    /// Job id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u32>,
}

/// `RETRACTION` or `RESTATEMENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AdjustmentType {
    /// The conversion's value and count go to zero (full refund).
    Retraction,
    /// The conversion's value changes (partial refund).
    Restatement,
}

/// `restatementValue` of a `RESTATEMENT`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestatementValue {
    /// The new total of the order.
    pub adjusted_value: f64,
    /// ISO 4217.
    pub currency_code: String,
}

/// A `ConversionAdjustment`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionAdjustment {
    /// `customers/{cid}/conversionActions/{id}`.
    pub conversion_action: String,
    /// Retraction or restatement.
    pub adjustment_type: AdjustmentType,
    /// The order key of the purchase being adjusted.
    pub order_id: String,
    /// When the refund happened.
    pub adjustment_date_time: String,
    /// Only for restatements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restatement_value: Option<RestatementValue>,
}

/// An `UploadConversionAdjustmentsRequest` body.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadConversionAdjustmentsRequest {
    /// At most 2,000.
    pub conversion_adjustments: Vec<ConversionAdjustment>,
    /// Always `true`.
    pub partial_failure: bool,
    /// Validate only.
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    pub validate_only: bool,
    /// Job id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u32>,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as AdsSkip;

/// The requests to send and, per input event, why it was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdsBatch {
    /// `:uploadClickConversions` bodies.
    pub clicks: Vec<UploadClickConversionsRequest>,
    /// For each click request, the input indices of its conversions.
    pub click_indices: Vec<Vec<usize>>,
    /// `:uploadConversionAdjustments` bodies.
    pub adjustments: Vec<UploadConversionAdjustmentsRequest>,
    /// For each adjustment request, the input indices of its adjustments.
    pub adjustment_indices: Vec<Vec<usize>>,
    /// `(index into the input, reason)` for events not sent, by index.
    pub skipped: Vec<(usize, AdsSkip)>,
}

/// The time an event is reported at: its own, or the time of sending when unknown (0).
fn event_time_ms(e: &Event, now_ms: i64) -> i64 {
    if e.occurred_at_ms > 0 { e.occurred_at_ms } else { now_ms }
}

fn check_age(at_ms: i64, now_ms: i64, max_age_days: u32) -> Result<()> {
    let age = now_ms.saturating_sub(at_ms);
    if age > i64::from(max_age_days) * 86_400_000 || age < -MAX_FUTURE_MS {
        return Err(Error::OutsideWindow {
            field: "occurredAt",
            destination: DESTINATION,
            max_age_hours: max_age_days * 24,
        });
    }
    Ok(())
}

/// Checks a click conversion's time: at most 90 days old, not in the future.
pub fn check_click_window(e: &Event, now_ms: i64) -> Result<()> {
    check_age(event_time_ms(e, now_ms), now_ms, MAX_CLICK_AGE_DAYS)
}

/// Checks an adjustment's time: at most 54 days old, not in the future.
///
/// Google's limit is on the age of the *conversion* (the purchase); the event
/// model carries only the refund's time, which is later, so this check is
/// necessary but not sufficient: an order bought 60 days ago and refunded
/// today passes here and comes back as `CONVERSION_EXPIRED`.
pub fn check_adjustment_window(e: &Event, now_ms: i64) -> Result<()> {
    check_age(event_time_ms(e, now_ms), now_ms, MAX_ADJUSTMENT_AGE_DAYS)
}

/// Builds the upload requests for `events` under `ctx`.
///
/// Consent is applied here: with neither `ad_storage` nor `ad_user_data`
/// granted nothing is built. The click id (exactly one: gclid, else wbraid,
/// else gbraid) goes only with `ad_storage`; hashed email and phone
/// (`userIdentifiers`, at most 5) only with `ad_user_data`, and never together
/// with a gbraid/wbraid (Google rejects braid + identifiers). Events with
/// neither are skipped as [`AdsSkip::NoAttribution`]. `consent.adUserData` is
/// always sent.
///
/// Events named `target.event` become click conversions; refunds become
/// adjustments when the target's event is `purchase`; everything else is
/// [`AdsSkip::Unsupported`]. An event time of 0 (unknown) is reported as
/// `ctx.now_ms`. A bad target is an error for the whole call.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, google_ads};
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
/// let target = google_ads::AdsTarget::new("123-456-7890", "555666777").unwrap();
/// let batch = google_ads::build(std::slice::from_ref(&e), &ctx, &target).unwrap();
/// let c = &batch.clicks[0].conversions[0];
/// assert_eq!(c.gclid.as_deref(), Some("Cj0KCQjw"));
/// assert_eq!(c.order_id, "ORD-1001"); // the shop's order id, as GA4's transaction_id
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext, target: &AdsTarget) -> Result<AdsBatch> {
    let target = target.check()?;
    let policy = ctx.consent.policy(DestinationKind::GoogleAds);
    if let Err(denial) = policy.send {
        return Ok(AdsBatch {
            skipped: (0..events.len()).map(|i| (i, AdsSkip::Consent(denial))).collect(),
            ..AdsBatch::default()
        });
    }
    let action = target.conversion_action();
    let ids = if policy.click_ids { ctx.click_ids.clone().validated() } else { crate::click_ids::ClickIds::default() };
    let click = ids.primary_google();
    let braid = matches!(click, Some(GoogleClick::Gbraid(_) | GoogleClick::Wbraid(_)));
    let mut identifiers: Vec<UserIdentifier> = match (&ctx.user_data, policy.user_data && !braid) {
        (Some(h), true) => h
            .google
            .iter()
            .flat_map(|g| {
                let emails = g.sha256_email_address.iter().filter(|v| is_hex64(v)).map(|v| UserIdentifier {
                    user_identifier_source: "FIRST_PARTY",
                    hashed_email: Some(v.clone()),
                    hashed_phone_number: None,
                });
                let phones = g.sha256_phone_number.iter().filter(|v| is_hex64(v)).map(|v| UserIdentifier {
                    user_identifier_source: "FIRST_PARTY",
                    hashed_email: None,
                    hashed_phone_number: Some(v.clone()),
                });
                emails.chain(phones)
            })
            .take(MAX_USER_IDENTIFIERS)
            .collect(),
        _ => Vec::new(),
    };
    let consent = ClickConsent { ad_user_data: ctx.consent.ad_user_data.google_enum() };
    let (gclid, gbraid, wbraid) = match click {
        Some(GoogleClick::Gclid(g)) => (Some(g.to_owned()), None, None),
        Some(GoogleClick::Gbraid(b)) => (None, Some(b.to_owned()), None),
        Some(GoogleClick::Wbraid(w)) => (None, None, Some(w.to_owned())),
        None => (None, None, None),
    };

    let mut skipped = Vec::new();
    let mut clicks = Vec::new();
    let mut adjustments = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let is_adjustment = e.name == EventName::Refund && target.event == EventName::Purchase;
        if !is_adjustment && e.name != target.event {
            skipped.push((i, AdsSkip::Unsupported));
            continue;
        }
        let at = event_time_ms(e, ctx.now_ms);
        if is_adjustment {
            match adjustment(e, at, ctx, &action) {
                Ok(a) => adjustments.push((i, a)),
                Err(err) => skipped.push((i, AdsSkip::Invalid(err))),
            }
            continue;
        }
        if let Err(err) = e.validate().and_then(|()| check_click_window(e, ctx.now_ms)) {
            skipped.push((i, AdsSkip::Invalid(err)));
            continue;
        }
        if click.is_none() && identifiers.is_empty() {
            skipped.push((i, AdsSkip::NoAttribution));
            continue;
        }
        let order_id = e.order_ref(ctx.order_id).unwrap_or(e.id.as_str()).to_owned();
        clicks.push((
            i,
            ClickConversion {
                gclid: gclid.clone(),
                gbraid: gbraid.clone(),
                wbraid: wbraid.clone(),
                conversion_action: action.clone(),
                conversion_date_time: google_ads_datetime(at, 0),
                conversion_value: e.value.map(|v| v.to_f64()),
                currency_code: e.value.and(e.currency).map(|c| c.as_str().to_owned()),
                order_id,
                user_identifiers: super::share(&mut identifiers, i, events.len()),
                consent: consent.clone(),
            },
        ));
    }

    let (click_batches, oversized) = split_json_batches(clicks, MAX_CONVERSIONS, MAX_BODY_BYTES - 256);
    for (i, _) in oversized {
        skipped.push((i, too_large()));
    }
    let (adj_batches, oversized) = split_json_batches(adjustments, MAX_ADJUSTMENTS, MAX_BODY_BYTES - 256);
    for (i, _) in oversized {
        skipped.push((i, too_large()));
    }
    skipped.sort_by_key(|(i, _)| *i);

    let mut batch = AdsBatch { skipped, ..AdsBatch::default() };
    for b in click_batches {
        let (idx, conversions): (Vec<usize>, Vec<ClickConversion>) = b.into_iter().unzip();
        batch.click_indices.push(idx);
        batch.clicks.push(UploadClickConversionsRequest {
            conversions,
            partial_failure: true,
            validate_only: target.validate_only,
            job_id: target.job_id,
        });
    }
    for b in adj_batches {
        let (idx, conversion_adjustments): (Vec<usize>, Vec<ConversionAdjustment>) = b.into_iter().unzip();
        batch.adjustment_indices.push(idx);
        batch.adjustments.push(UploadConversionAdjustmentsRequest {
            conversion_adjustments,
            partial_failure: true,
            validate_only: target.validate_only,
            job_id: target.job_id,
        });
    }
    Ok(batch)
}

fn too_large() -> AdsSkip {
    AdsSkip::Invalid(Error::TooLarge { field: "event", max: MAX_BODY_BYTES })
}

fn adjustment(e: &Event, at: i64, ctx: &DeliveryContext, action: &str) -> Result<ConversionAdjustment> {
    e.validate()?;
    check_adjustment_window(e, ctx.now_ms)?;
    let order_id = e.order_ref(ctx.order_id).ok_or(Error::Missing { field: "transactionId" })?;
    let (adjustment_type, restatement_value) = match e.refund_scope() {
        RefundScope::Full => (AdjustmentType::Retraction, None),
        RefundScope::Partial { remaining } => {
            let currency = e.currency.ok_or(Error::Missing { field: "currency" })?;
            (
                AdjustmentType::Restatement,
                Some(RestatementValue {
                    adjusted_value: remaining.to_f64(),
                    currency_code: currency.as_str().to_owned(),
                }),
            )
        }
    };
    Ok(ConversionAdjustment {
        conversion_action: action.to_owned(),
        adjustment_type,
        order_id: order_id.to_owned(),
        adjustment_date_time: google_ads_datetime(at, 0),
        restatement_value,
    })
}

/// Which upload method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upload {
    /// `:uploadClickConversions`.
    Clicks,
    /// `:uploadConversionAdjustments`.
    Adjustments,
}

/// The upload URL: `{base}/{version}/customers/{cid}:uploadClickConversions`
/// (or `:uploadConversionAdjustments`). The customer id is normalised.
///
/// ```
/// use tally_core::destinations::google_ads::{upload_url, Upload, DEFAULT_BASE_URL, DEFAULT_API_VERSION};
/// assert_eq!(
///     upload_url(DEFAULT_BASE_URL, DEFAULT_API_VERSION, "123-456-7890", Upload::Clicks).unwrap(),
///     "https://googleads.googleapis.com/v26/customers/1234567890:uploadClickConversions"
/// );
/// ```
pub fn upload_url(base: &str, version: &str, customer_id: &str, upload: Upload) -> Result<String> {
    let cid = normalize_customer_id(customer_id)?;
    let v = version.trim().trim_matches('/');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::Invalid { field: "googleAds.apiVersion", reason: "expected a version such as v26" });
    }
    let mut s = String::with_capacity(base.len() + 64);
    s.push_str(base.trim_end_matches('/'));
    s.push('/');
    s.push_str(v);
    s.push_str("/customers/");
    s.push_str(&cid);
    s.push_str(match upload {
        Upload::Clicks => ":uploadClickConversions",
        Upload::Adjustments => ":uploadConversionAdjustments",
    });
    Ok(s)
}

/// The `application/x-www-form-urlencoded` body of the OAuth refresh-token grant.
///
/// ```
/// use tally_core::destinations::google_ads::refresh_token_form;
/// assert_eq!(
///     refresh_token_form("id", "s/cr+t", "1//r"),
///     "grant_type=refresh_token&client_id=id&client_secret=s%2Fcr%2Bt&refresh_token=1%2F%2Fr"
/// );
/// ```
pub fn refresh_token_form(client_id: &str, client_secret: &str, refresh_token: &str) -> String {
    use crate::cookie::percent_encode;
    let mut s = String::with_capacity(64 + client_id.len() + client_secret.len() + refresh_token.len());
    s.push_str("grant_type=refresh_token&client_id=");
    s.push_str(&percent_encode(client_id));
    s.push_str("&client_secret=");
    s.push_str(&percent_encode(client_secret));
    s.push_str("&refresh_token=");
    s.push_str(&percent_encode(refresh_token));
    s
}

/// A successful token response.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds (3599 typically).
    #[serde(default)]
    pub expires_in: u64,
    /// `Bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
}

impl core::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .finish()
    }
}

/// A token endpoint error (`400 {"error":"invalid_grant",…}`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TokenError {
    /// `invalid_grant`, `invalid_client`, …
    pub error: String,
    /// Human readable.
    #[serde(default)]
    pub error_description: Option<String>,
}

impl TokenError {
    /// True when retrying cannot help (revoked or expired grant, wrong client):
    /// someone must re-authorise or fix the configuration.
    pub fn is_permanent(&self) -> bool {
        matches!(self.error.as_str(), "invalid_grant" | "invalid_client" | "unauthorized_client" | "invalid_scope")
    }
}

/// One element of `location.fieldPathElements`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldPathElement {
    /// `conversions`, `gclid`, …
    pub field_name: String,
    /// The row, for repeated fields.
    pub index: Option<u64>,
}

/// Where an error is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorLocation {
    /// The path; the first element names the row (`conversions[i]`).
    pub field_path_elements: Vec<FieldPathElement>,
}

/// One `GoogleAdsError`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleAdsError {
    /// A one-key object naming the category and the code,
    /// e.g. `{"conversionUploadError":"UNPARSEABLE_GCLID"}`.
    pub error_code: BTreeMap<String, Value>,
    /// Human readable.
    pub message: String,
    /// The offending value.
    pub trigger: Option<Value>,
    /// Where it is.
    pub location: Option<ErrorLocation>,
}

impl GoogleAdsError {
    /// `category:CODE`, e.g. `conversionUploadError:ORDER_ID_ALREADY_IN_USE`.
    pub fn code(&self) -> String {
        let mut s = String::new();
        if let Some((k, v)) = self.error_code.iter().next() {
            s.push_str(k);
            s.push(':');
            match v {
                Value::String(c) => s.push_str(c),
                other => s.push_str(&other.to_string()),
            }
        }
        s
    }

    /// The row index named by the first path element, if any.
    pub fn row(&self) -> Option<usize> {
        self.location
            .as_ref()
            .and_then(|l| l.field_path_elements.first())
            .and_then(|p| p.index)
            .and_then(|i| usize::try_from(i).ok())
    }
}

/// One entry of `details` (a `GoogleAdsFailure`, or another detail type whose errors are empty).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusDetail {
    /// `type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure`.
    #[serde(rename = "@type")]
    pub type_url: String,
    /// The errors.
    pub errors: Vec<GoogleAdsError>,
    /// Google's request id.
    pub request_id: Option<String>,
}

/// A `google.rpc.Status` (partial failure, or the `error` of an RPC-level failure).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RpcStatus {
    /// gRPC code (partial failure) or HTTP status (RPC error).
    pub code: i64,
    /// Summary.
    pub message: String,
    /// `UNAUTHENTICATED`, `PERMISSION_DENIED`, … (RPC errors only).
    pub status: Option<String>,
    /// Details.
    pub details: Vec<StatusDetail>,
}

/// A failed row (or, for an RPC-level error, a request-wide error with no index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// Index of the row in the request's `conversions` / `conversionAdjustments`.
    pub index: Option<usize>,
    /// `category:CODE`.
    pub code: String,
    /// Human readable.
    pub message: String,
}

impl RpcStatus {
    /// Every error in the details, with its row.
    pub fn errors(&self) -> Vec<RowError> {
        self.details
            .iter()
            .flat_map(|d| d.errors.iter())
            .map(|e| RowError { index: e.row(), code: e.code(), message: e.message.clone() })
            .collect()
    }
}

/// The response of either upload method (HTTP 200).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UploadResponse {
    /// One result per row; rows that failed are `{}`.
    pub results: Vec<Value>,
    /// Present when some rows failed.
    pub partial_failure_error: Option<RpcStatus>,
    /// The job id (a JSON string: int64).
    pub job_id: Option<Value>,
}

impl UploadResponse {
    /// Parses a response body.
    pub fn parse(body: &str) -> Result<UploadResponse> {
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "googleAds.response", reason: "not an upload response" })
    }

    /// The failed rows.
    pub fn row_errors(&self) -> Vec<RowError> {
        self.partial_failure_error.as_ref().map(RpcStatus::errors).unwrap_or_default()
    }

    /// The job id as text, whether sent as a string or a number.
    pub fn job_id(&self) -> Option<String> {
        match &self.job_id {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RpcErrorBody {
    error: RpcStatus,
}

/// Parses an RPC-level error body `{"error":{code,message,status,details}}`.
pub fn parse_rpc_error(body: &str) -> Option<RpcStatus> {
    serde_json::from_str::<RpcErrorBody>(body).ok().map(|b| b.error)
}

fn bare_code(code: &str) -> &str {
    code.rsplit_once(':').map_or(code, |(_, c)| c)
}

/// True for row errors that mean "this conversion or adjustment is already
/// there": the row counts as delivered (a retry of an earlier success).
/// Takes `category:CODE` or a bare code.
pub fn is_duplicate(code: &str) -> bool {
    matches!(
        bare_code(code),
        "ORDER_ID_ALREADY_IN_USE"
            | "DUPLICATE_ORDER_ID"
            | "CLICK_CONVERSION_ALREADY_EXISTS"
            | "RESTATEMENT_ALREADY_EXISTS"
            | "CONVERSION_ALREADY_RETRACTED"
            | "DUPLICATE_ADJUSTMENT_IN_REQUEST"
    )
}

/// True for row errors worth retrying later: too soon after the click, the
/// conversion or the action's creation, or a transient server or quota error.
pub fn is_retryable_row(code: &str) -> bool {
    let bare = bare_code(code);
    bare.starts_with("TOO_RECENT_")
        || bare == "TRANSIENT_ERROR"
        || code.starts_with("internalError:")
        || code.starts_with("quotaError:")
}

/// How long to wait before sending a row again that Google refused only for
/// being too recent, in ms: the `TOO_RECENT_*` codes (a click under 6 h old,
/// a conversion action created minutes ago) wait 6 h. `None` for every other
/// code. (Adjustments no longer wait 24 h after their conversion: Google
/// stopped returning `TOO_RECENT_CONVERSION` for them on 2024-09-09.)
///
/// ```
/// use tally_core::destinations::google_ads::too_recent_wait_ms;
/// assert_eq!(too_recent_wait_ms("conversionUploadError:TOO_RECENT_EVENT"), Some(6 * 3_600_000));
/// assert_eq!(too_recent_wait_ms("conversionUploadError:UNPARSEABLE_GCLID"), None);
/// ```
pub fn too_recent_wait_ms(code: &str) -> Option<i64> {
    bare_code(code).starts_with("TOO_RECENT_").then_some(6 * 3_600_000)
}

pub use crate::http::ErrorClass;

/// Classifies a non-2xx answer by HTTP status and, if parsed, its RPC error.
///
/// [The one status rule](crate::http), with Google's 403 (`PERMISSION_DENIED`:
/// the account lacks access to this customer or action) a permanent error of
/// the request rather than of the credentials.
pub fn classify(http_status: u16, error: Option<&RpcStatus>) -> ErrorClass {
    match (http_status, ErrorClass::of_status(http_status)) {
        (403, _) => {}
        (_, c @ (ErrorClass::Transient | ErrorClass::Credentials)) => return c,
        _ => {}
    }
    if let Some(e) = error {
        let transient_status = matches!(
            e.status.as_deref(),
            Some("UNAVAILABLE" | "INTERNAL" | "RESOURCE_EXHAUSTED" | "DEADLINE_EXCEEDED")
        );
        if transient_status || e.errors().iter().any(|r| is_retryable_row(&r.code)) {
            return ErrorClass::Transient;
        }
        if e.status.as_deref() == Some("UNAUTHENTICATED") {
            return ErrorClass::Credentials;
        }
    }
    ErrorClass::Permanent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_777_667_565_000 + 7 * 3_600_000;
    const EMAIL: &str = "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69";
    const PHONE: &str = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_777_667_565_000);
        e.value = Some(Amount::parse("129.99").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e
    }

    fn refund(value: &str, original: Option<&str>) -> Event {
        let mut e = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), NOW - 3_600_000);
        e.value = Some(Amount::parse(value).unwrap());
        e.original_value = original.map(|o| Amount::parse(o).unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds { gclid: Some("Cj0KCQjw".into()), ..Default::default() },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(HashedUserData {
                google: Some(user_data::GoogleUserData {
                    sha256_email_address: vec![EMAIL.into()],
                    sha256_phone_number: vec![PHONE.into()],
                    address: vec![],
                }),
                meta: None,
            }),
            now_ms: NOW,
            ..Default::default()
        }
    }

    fn target() -> AdsTarget {
        AdsTarget::new("123-456-7890", "555666777").unwrap()
    }

    #[test]
    fn canonical_click_conversion() {
        // https://developers.google.com/google-ads/api/docs/conversions/upload-clicks, with orderId = the order key.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx(), &target()).unwrap();
        assert!(b.skipped.is_empty());
        assert_eq!(b.click_indices, vec![vec![0]]);
        let got = serde_json::to_value(&b.clicks[0]).unwrap();
        let want = json!({"conversions":[{
            "gclid":"Cj0KCQjw",
            "conversionAction":"customers/1234567890/conversionActions/555666777",
            "conversionDateTime":"2026-05-01 20:32:45+00:00",
            "conversionValue":129.99,"currencyCode":"USD","orderId":"ORD-1001",
            "userIdentifiers":[{"userIdentifierSource":"FIRST_PARTY","hashedEmail":EMAIL},
                               {"userIdentifierSource":"FIRST_PARTY","hashedPhoneNumber":PHONE}],
            "consent":{"adUserData":"GRANTED"}}],
          "partialFailure":true});
        assert_eq!(got, want);
    }

    #[test]
    fn consent_strips_and_drops() {
        let mut c = ctx();
        c.consent = ConsentState::ALL_DENIED;
        let b = build(&[purchase()], &c, &target()).unwrap();
        assert!(b.clicks.is_empty());
        assert_eq!(b.skipped, vec![(0, AdsSkip::Consent(ConsentDenial::NoAdSignal))]);

        // ad_user_data denied: click id only, consent says DENIED.
        let mut c = ctx();
        c.consent.ad_user_data = ConsentSignal::Denied;
        let b = build(&[purchase()], &c, &target()).unwrap();
        let conv = &b.clicks[0].conversions[0];
        assert!(conv.user_identifiers.is_empty());
        assert_eq!(conv.consent.ad_user_data, "DENIED");
        assert!(conv.gclid.is_some());

        // ad_storage denied: identifiers only (enhanced conversions for leads).
        let mut c = ctx();
        c.consent.ad_storage = ConsentSignal::Unknown;
        let b = build(&[purchase()], &c, &target()).unwrap();
        let conv = &b.clicks[0].conversions[0];
        assert!(conv.gclid.is_none());
        assert_eq!(conv.user_identifiers.len(), 2);

        // ad_storage denied and no user data: nothing to attribute with.
        c.user_data = None;
        let b = build(&[purchase()], &c, &target()).unwrap();
        assert_eq!(b.skipped, vec![(0, AdsSkip::NoAttribution)]);
    }

    #[test]
    fn braid_drops_identifiers_and_one_click_id() {
        let mut c = ctx();
        c.click_ids = ClickIds { gbraid: Some("GB".into()), wbraid: Some("WB".into()), ..Default::default() };
        let b = build(&[purchase()], &c, &target()).unwrap();
        let conv = &b.clicks[0].conversions[0];
        assert_eq!(conv.wbraid.as_deref(), Some("WB"));
        assert!(conv.gbraid.is_none() && conv.gclid.is_none());
        assert!(conv.user_identifiers.is_empty());
    }

    #[test]
    fn at_most_five_identifiers_and_only_hashes() {
        let mut c = ctx();
        c.user_data = Some(HashedUserData {
            google: Some(user_data::GoogleUserData {
                sha256_email_address: (0..4).map(|i| format!("{i}").repeat(64)).collect(),
                sha256_phone_number: vec![PHONE.into(), "+16505551212".into(), PHONE.into()],
                address: vec![],
            }),
            meta: None,
        });
        let b = build(&[purchase()], &c, &target()).unwrap();
        let ids = &b.clicks[0].conversions[0].user_identifiers;
        assert_eq!(ids.len(), 5);
        assert!(!serde_json::to_string(ids).unwrap().contains("+1650"));
    }

    #[test]
    fn refunds_become_adjustments() {
        // https://developers.google.com/google-ads/api/docs/conversions/upload-adjustments: 129.99 → restated to 70.
        let partial = refund("59.99", Some("129.99"));
        let full = refund("129.99", Some("129.99"));
        let b = build(&[partial.clone(), full], &ctx(), &target()).unwrap();
        assert!(b.clicks.is_empty());
        assert_eq!(b.adjustment_indices, vec![vec![0, 1]]);
        let got = serde_json::to_value(&b.adjustments[0]).unwrap();
        let key = "ORD-1001";
        let want = json!({"conversionAdjustments":[
            {"conversionAction":"customers/1234567890/conversionActions/555666777",
             "adjustmentType":"RESTATEMENT","orderId":key,
             "adjustmentDateTime":"2026-05-02 02:32:45+00:00",
             "restatementValue":{"adjustedValue":70.0,"currencyCode":"USD"}},
            {"conversionAction":"customers/1234567890/conversionActions/555666777",
             "adjustmentType":"RETRACTION","orderId":key,
             "adjustmentDateTime":"2026-05-02 02:32:45+00:00"}],
          "partialFailure":true});
        assert_eq!(got, want);
        // The adjustment names the order as the purchase's upload did, in either form.
        let purchase_upload = build(&[purchase()], &ctx(), &target()).unwrap();
        assert_eq!(purchase_upload.clicks[0].conversions[0].order_id, key);
        let hashed = DeliveryContext { order_id: OrderIdForm::Hashed, ..ctx() };
        let purchase_upload = build(&[purchase()], &hashed, &target()).unwrap();
        let refund_upload = build(std::slice::from_ref(&partial), &hashed, &target()).unwrap();
        assert_eq!(purchase_upload.clicks[0].conversions[0].order_id, purchase().id.as_str());
        assert_eq!(refund_upload.adjustments[0].conversion_adjustments[0].order_id, purchase().id.as_str());
    }

    #[test]
    fn adjustments_need_no_attribution_but_respect_the_window() {
        let mut c = ctx();
        c.click_ids = ClickIds::default();
        c.user_data = None;
        let mut r = refund("10", Some("129.99"));
        let b = build(&[r.clone()], &c, &target()).unwrap();
        assert_eq!(b.adjustments.len(), 1);
        r.occurred_at_ms = NOW - 55 * 86_400_000;
        let b = build(&[r], &c, &target()).unwrap();
        assert!(matches!(b.skipped[0].1, AdsSkip::Invalid(Error::OutsideWindow { max_age_hours: 1296, .. })));
    }

    #[test]
    fn windows_and_unsupported() {
        let mut old = purchase();
        old.occurred_at_ms = NOW - 91 * 86_400_000;
        let mut future = purchase();
        future.occurred_at_ms = NOW + 3_600_000;
        let view = Event::new(EventName::PageView, EventId::parse("pv-1").unwrap(), NOW - 1000);
        let b = build(&[old, future, view], &ctx(), &target()).unwrap();
        assert!(matches!(b.skipped[0].1, AdsSkip::Invalid(Error::OutsideWindow { max_age_hours: 2160, .. })));
        assert!(matches!(b.skipped[1].1, AdsSkip::Invalid(Error::OutsideWindow { .. })));
        assert_eq!(b.skipped[2], (2, AdsSkip::Unsupported));

        // A lead target: the event's own id is the order id; refunds are unsupported.
        let lead_target = target().for_event(EventName::GenerateLead);
        let lead = Event::new(EventName::GenerateLead, EventId::parse("lead-1").unwrap(), NOW - 1000);
        let b = build(&[lead, refund("1", None)], &ctx(), &lead_target).unwrap();
        let conv = &b.clicks[0].conversions[0];
        assert_eq!(conv.order_id, "lead-1");
        assert!(conv.conversion_value.is_none() && conv.currency_code.is_none());
        assert_eq!(b.skipped, vec![(1, AdsSkip::Unsupported)]);
    }

    #[test]
    fn unknown_time_is_now() {
        let mut e = purchase();
        e.occurred_at_ms = 0;
        let b = build(&[e], &ctx(), &target()).unwrap();
        assert_eq!(b.clicks[0].conversions[0].conversion_date_time, google_ads_datetime(NOW, 0));
    }

    #[test]
    fn splits_at_2000() {
        let events: Vec<Event> = (0..4500)
            .map(|i| {
                let mut e = Event::transactional(
                    EventName::Purchase,
                    TransactionId::parse(&format!("T{i}")).unwrap(),
                    NOW - 1000,
                );
                e.value = Some(Amount::parse("1").unwrap());
                e.currency = Some(Currency::parse("EUR").unwrap());
                e
            })
            .collect();
        let mut t = target();
        t.validate_only = true;
        t.job_id = Some(7);
        let b = build(&events, &ctx(), &t).unwrap();
        assert_eq!(b.clicks.iter().map(|r| r.conversions.len()).collect::<Vec<_>>(), [2000, 2000, 500]);
        assert_eq!(b.click_indices[2][0], 4000);
        let v = serde_json::to_value(&b.clicks[2]).unwrap();
        assert_eq!(v["validateOnly"], json!(true));
        assert_eq!(v["jobId"], json!(7));
    }

    #[test]
    fn bad_target_is_an_error() {
        let mut t = target();
        t.customer_id = "12".into();
        assert_eq!(build(&[purchase()], &ctx(), &t).unwrap_err().field(), "googleAds.customerId");
        let mut t = target();
        t.job_id = Some(u32::MAX);
        assert!(build(&[purchase()], &ctx(), &t).is_err());
        let t = target().for_event(EventName::Refund);
        assert_eq!(build(&[purchase()], &ctx(), &t).unwrap_err().field(), "googleAds.event");
        assert!(AdsTarget::new("1234567890", "abc").is_err());
        assert!(AdsTarget::new("1234567890", "").is_err());
        let t = AdsTarget::new("1234567890", "customers/1234567890/conversionActions/42").unwrap();
        assert_eq!(t.conversion_action_id, "42");
    }

    #[test]
    fn customer_ids_and_urls() {
        assert_eq!(normalize_customer_id(" 1234567890 ").unwrap(), "1234567890");
        for bad in ["", "123456789", "12345678901", "123-456-789a"] {
            assert!(normalize_customer_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            upload_url("http://127.0.0.1:9/", "v25", "1234567890", Upload::Adjustments).unwrap(),
            "http://127.0.0.1:9/v25/customers/1234567890:uploadConversionAdjustments"
        );
        assert!(upload_url(DEFAULT_BASE_URL, "v2/../x", "1234567890", Upload::Clicks).is_err());
    }

    #[test]
    fn partial_failure_is_parsed_per_row() {
        let body = r#"{"partialFailureError":{
           "code":3,
           "message":"The imported gclid could not be decoded., at conversions[1].gclid",
           "details":[{"@type":"type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                       "errors":[{"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},
                                  "message":"The imported gclid could not be decoded.",
                                  "trigger":{"stringValue":"Cj0KCQjw..."},
                                  "location":{"fieldPathElements":[{"fieldName":"conversions","index":1},{"fieldName":"gclid"}]}},
                                 {"errorCode":{"conversionUploadError":"ORDER_ID_ALREADY_IN_USE"},
                                  "message":"Order id already used.",
                                  "location":{"fieldPathElements":[{"fieldName":"conversions","index":2}]}}],
                       "requestId":"lvB3KOjGHsgduHjt0wCglQ"}]},
         "results":[{"gclid":"a"},{},{}],"jobId":"2147483999"}"#;
        let r = UploadResponse::parse(body).unwrap();
        assert_eq!(r.job_id().as_deref(), Some("2147483999"));
        let errs = r.row_errors();
        assert_eq!(
            errs,
            vec![
                RowError {
                    index: Some(1),
                    code: "conversionUploadError:UNPARSEABLE_GCLID".into(),
                    message: "The imported gclid could not be decoded.".into()
                },
                RowError {
                    index: Some(2),
                    code: "conversionUploadError:ORDER_ID_ALREADY_IN_USE".into(),
                    message: "Order id already used.".into()
                }
            ]
        );
        assert!(!is_duplicate(&errs[0].code));
        assert!(is_duplicate(&errs[1].code));
        let ok = UploadResponse::parse(r#"{"results":[{}],"jobId":5}"#).unwrap();
        assert!(ok.row_errors().is_empty());
        assert_eq!(ok.job_id().as_deref(), Some("5"));
        assert!(UploadResponse::parse("[").is_err());
    }

    #[test]
    fn duplicates_and_retryable_rows() {
        for c in [
            "ORDER_ID_ALREADY_IN_USE",
            "conversionUploadError:DUPLICATE_ORDER_ID",
            "conversionUploadError:CLICK_CONVERSION_ALREADY_EXISTS",
            "conversionAdjustmentUploadError:RESTATEMENT_ALREADY_EXISTS",
            "conversionAdjustmentUploadError:CONVERSION_ALREADY_RETRACTED",
            "conversionAdjustmentUploadError:DUPLICATE_ADJUSTMENT_IN_REQUEST",
        ] {
            assert!(is_duplicate(c), "{c}");
        }
        assert!(!is_duplicate("conversionUploadError:EXPIRED_EVENT"));
        assert!(is_retryable_row("conversionUploadError:TOO_RECENT_EVENT"));
        assert!(is_retryable_row("internalError:INTERNAL_ERROR"));
        assert!(!is_retryable_row("conversionUploadError:EXPIRED_EVENT"));
    }

    #[test]
    fn rpc_errors_are_classified() {
        let body = r#"{"error":{"code":401,"message":"Request is missing required authentication credential.","status":"UNAUTHENTICATED",
          "details":[{"@type":"type.googleapis.com/google.ads.googleads.v16.errors.GoogleAdsFailure",
                      "errors":[{"errorCode":{"authenticationError":"CUSTOMER_NOT_FOUND"},
                                 "message":"No customer found for the provided customer id."}],
                      "requestId":"lvB3KOjGHsgduHjt0wCglQ"}]}}"#;
        let e = parse_rpc_error(body).unwrap();
        assert_eq!(e.status.as_deref(), Some("UNAUTHENTICATED"));
        assert_eq!(
            e.errors(),
            vec![RowError {
                index: None,
                code: "authenticationError:CUSTOMER_NOT_FOUND".into(),
                message: "No customer found for the provided customer id.".into()
            }]
        );
        assert_eq!(classify(401, Some(&e)), ErrorClass::Credentials);
        assert_eq!(classify(429, None), ErrorClass::Transient);
        assert_eq!(classify(503, None), ErrorClass::Transient);
        assert_eq!(classify(400, None), ErrorClass::Permanent);
        let denied = RpcStatus { code: 403, status: Some("PERMISSION_DENIED".into()), ..Default::default() };
        assert_eq!(classify(403, Some(&denied)), ErrorClass::Permanent);
        assert!(parse_rpc_error("not json").is_none());
    }

    #[test]
    fn token_bodies() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"ya29.x","expires_in":3599,"scope":"https://www.googleapis.com/auth/adwords","token_type":"Bearer"}"#).unwrap();
        assert_eq!(t.expires_in, 3599);
        assert!(!format!("{t:?}").contains("ya29"));
        let e: TokenError = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .unwrap();
        assert!(e.is_permanent());
    }
}
