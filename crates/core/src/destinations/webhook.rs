//! The shop's own webhook or warehouse sink (Tally's own contract, not a vendor API): the
//! canonical event as versioned JSON, signed; one event per request, or, for a
//! sink configured with a batch above 1, up to that many records per request.
//!
//! * Body: [`WebhookRecord`] (`schema_version` `"1"`), snake_case; batched:
//!   [`WebhookRecords`], `{"schema_version":"1","records":[…]}`, records of
//!   any visitors in order.
//! * `X-Tally-Timestamp: <unix seconds>` and
//!   `X-Tally-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//!   ([`sign`], checked by the receiver with [`verify`]).
//! * `Idempotency-Key: <event_id>`: the receiver stores each key once. A
//!   batch carries [`batch_idempotency_key`] (the same for a re-sent batch);
//!   the receiver still deduplicates records by their `event_id`, because a
//!   batch re-formed after a restart may group them differently.
//!
//! The shop's own system always receives its events, but identifiers and user
//! data are stripped per the same consent purposes as everywhere else.

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::DeliveryContext;
use crate::amount::Amount;
use crate::click_ids::ClickIds;
use crate::consent::{ConsentSignal, DestinationKind};
use crate::error::Result;
use crate::event::{Event, ParamValue};
use crate::time::rfc3339_utc;
use crate::user_data::HashedUserData;

/// The schema version of [`WebhookRecord`].
pub const SCHEMA_VERSION: &str = "1";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Tally-Signature";
/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Tally-Timestamp";
/// Header carrying the event id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How far a timestamp may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The four consent signals, lower case (`granted` / `denied` / `unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookConsent {
    /// `ad_storage`.
    pub ad_storage: &'static str,
    /// `analytics_storage`.
    pub analytics_storage: &'static str,
    /// `ad_user_data`.
    pub ad_user_data: &'static str,
    /// `ad_personalization`.
    pub ad_personalization: &'static str,
}

/// Who, as far as consent allows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WebhookUser {
    /// GA4 client id (with `analytics_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// GA4 session id (with `analytics_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The site's visitor id (with `analytics_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The shop's own id of the signed-in customer (always: it is the shop's own data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Click ids (with `ad_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_ids: Option<ClickIds>,
    /// Hashed user data, both families (with `ad_user_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<HashedUserData>,
    /// IP address (with `ad_user_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// User agent (with `ad_user_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The canonical event as the webhook receives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookRecord {
    /// `"1"`.
    pub schema_version: &'static str,
    /// [`Event::id`]; also the `Idempotency-Key`.
    pub event_id: String,
    /// GA4 spelling.
    pub event_name: String,
    /// RFC 3339 (the time of sending when the event's time is unknown).
    pub occurred_at: String,
    /// The shop's order id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The order's purchase event id: joins refunds to their purchase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// ISO 4217.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Shipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<f64>,
    /// Tax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax: Option<f64>,
    /// For refunds, the order's value before the refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_value: Option<f64>,
    /// For refunds, the shop's id of the refund, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Coupon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    /// Affiliation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliation: Option<String>,
    /// Conversion label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_label: Option<String>,
    /// Items with GA4's field names.
    pub items: Vec<Map<String, Value>>,
    /// Other parameters.
    pub params: Map<String, Value>,
    /// The page (click-id parameters removed without `ad_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    /// Who.
    pub user: WebhookUser,
    /// The consent state the event was sent under.
    pub consent: WebhookConsent,
}

impl WebhookRecord {
    /// The `Idempotency-Key` header value.
    pub fn idempotency_key(&self) -> &str {
        &self.event_id
    }
}

/// The body of a batched request: records of any visitors, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookRecords<'a> {
    /// `"1"`, as in every record.
    pub schema_version: &'static str,
    /// The records.
    pub records: &'a [WebhookRecord],
}

impl<'a> WebhookRecords<'a> {
    /// The body carrying `records`.
    pub fn new(records: &'a [WebhookRecord]) -> WebhookRecords<'a> {
        WebhookRecords { schema_version: SCHEMA_VERSION, records }
    }
}

/// The `Idempotency-Key` of a batched request: `batch-` and the SHA-256 hex
/// of its records' event ids, each followed by `\n`. The same records in the
/// same order give the same key, so a retried request is recognisable.
///
/// ```
/// use tally_core::destinations::webhook::batch_idempotency_key_of;
/// assert_eq!(
///     batch_idempotency_key_of(["a", "b"]),
///     format!("batch-{}", tally_core::hash::sha256_hex("a\nb\n"))
/// );
/// ```
pub fn batch_idempotency_key_of<'a>(event_ids: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    for id in event_ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    let mut key = String::with_capacity(70);
    key.push_str("batch-");
    for b in h.finalize() {
        key.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        key.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    key
}

/// [`batch_idempotency_key_of`] the records' event ids.
pub fn batch_idempotency_key(records: &[WebhookRecord]) -> String {
    batch_idempotency_key_of(records.iter().map(|r| r.event_id.as_str()))
}

/// [`build`] for the events of many visitors: one record per event, indices
/// counting the visitors' events laid end to end (the first visitor's from
/// 0, the next one's after them).
pub fn build_many(visitors: &[super::VisitorEvents<'_>]) -> Result<WebhookBatch> {
    let mut all = WebhookBatch::default();
    let mut offset = 0;
    for (events, ctx) in visitors {
        let b = build(events, ctx)?;
        all.records.extend(b.records);
        all.indices.extend(b.indices.into_iter().map(|i| offset + i));
        all.skipped.extend(b.skipped.into_iter().map(|(i, s)| (offset + i, s)));
        offset += events.len();
    }
    Ok(all)
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as WebhookSkip;

/// The records to send (one per request) and, per input event, why it was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebhookBatch {
    /// Request bodies.
    pub records: Vec<WebhookRecord>,
    /// For each record, the input index of its event.
    pub indices: Vec<usize>,
    /// `(index into the input, reason)` for events not sent, by index.
    pub skipped: Vec<(usize, WebhookSkip)>,
}

use super::ga4::{item_fields as item_json, num};

fn signal(s: ConsentSignal) -> &'static str {
    s.as_str()
}

/// Builds one record per event under `ctx`.
///
/// Consent is applied here (policy [`DestinationKind::Webhook`]): the event is
/// always built, but client, session and visitor ids need `analytics_storage`,
/// click ids need `ad_storage` (and without it click-id parameters are removed
/// from URLs), hashed user data, IP address and user agent need `ad_user_data`.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, webhook};
/// use tally_core::*;
/// let e = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), 1_000);
/// let batch = webhook::build(std::slice::from_ref(&e), &DeliveryContext::default()).unwrap();
/// let r = &batch.records[0];
/// assert_eq!(r.idempotency_key(), e.id.as_str());
/// assert_eq!(r.consent.ad_storage, "unknown");
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext) -> Result<WebhookBatch> {
    let policy = ctx.consent.policy(DestinationKind::Webhook);
    if let Err(denial) = policy.send {
        return Ok(WebhookBatch {
            skipped: (0..events.len()).map(|i| (i, WebhookSkip::Consent(denial))).collect(),
            ..WebhookBatch::default()
        });
    }
    let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let click_ids =
        if policy.click_ids { Some(ctx.click_ids.clone().validated()).filter(|c| !c.is_empty()) } else { None };
    let mut user = WebhookUser {
        client_id: ctx.client_id.as_ref().filter(|_| policy.analytics_ids).map(|c| c.as_str().to_owned()),
        session_id: ctx.session_id.clone().filter(|_| policy.analytics_ids),
        visitor_id: ctx.visitor_id.as_ref().filter(|_| policy.analytics_ids).map(|v| v.as_str().to_owned()),
        user_id: ctx.user_id.as_ref().map(|u| u.as_str().to_owned()),
        click_ids,
        user_data: ctx.user_data.clone().filter(|u| policy.user_data && !u.is_empty()),
        ip_address: clean(&ctx.ip_address).filter(|_| policy.user_data),
        user_agent: clean(&ctx.user_agent).filter(|_| policy.user_data),
    };
    let consent = WebhookConsent {
        ad_storage: signal(ctx.consent.ad_storage),
        analytics_storage: signal(ctx.consent.analytics_storage),
        ad_user_data: signal(ctx.consent.ad_user_data),
        ad_personalization: signal(ctx.consent.ad_personalization),
    };
    let url = |u: &str| {
        if policy.click_ids { u.to_owned() } else { super::meta::strip_click_ids(u) }
    };
    let mut batch = WebhookBatch::default();
    for (i, e) in events.iter().enumerate() {
        if let Err(err) = e.validate() {
            batch.skipped.push((i, WebhookSkip::Invalid(err)));
            continue;
        }
        let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
        let params: Map<String, Value> = e
            .params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    ParamValue::Text(s) if k == "page_location" || k == "page_referrer" => Value::String(url(s)),
                    ParamValue::Text(s) => Value::String(s.clone()),
                    ParamValue::Number(a) => num(*a),
                    ParamValue::Bool(b) => Value::Bool(*b),
                };
                (k.clone(), v)
            })
            .collect();
        let f = |a: Option<Amount>| a.map(Amount::to_f64);
        batch.indices.push(i);
        batch.records.push(WebhookRecord {
            schema_version: SCHEMA_VERSION,
            event_id: e.id.as_str().to_owned(),
            event_name: e.name.as_str().to_owned(),
            occurred_at: rfc3339_utc(at),
            transaction_id: e.transaction_id.as_ref().map(|t| t.as_str().to_owned()),
            order_key: e.order_key().map(|k| k.as_str().to_owned()),
            value: f(e.value),
            currency: e.currency.map(|c| c.as_str().to_owned()),
            shipping: f(e.shipping),
            tax: f(e.tax),
            original_value: f(e.original_value),
            refund_id: e.refund_id.as_ref().map(|r| r.as_str().to_owned()),
            coupon: e.coupon.clone(),
            affiliation: e.affiliation.clone(),
            conversion_label: e.conversion_label.clone(),
            items: e.items.iter().map(item_json).collect(),
            params,
            page_url: clean(&ctx.page_url).map(|u| url(&u)),
            user: super::share(&mut user, i, events.len()),
            consent,
        });
    }
    Ok(batch)
}

fn mac(secret: &[u8], timestamp_secs: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    let mut ts = String::with_capacity(20);
    crate::json::push_i64(&mut ts, timestamp_secs);
    m.update(ts.as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// The `X-Tally-Signature` value: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`,
/// where `<timestamp>` is the decimal `X-Tally-Timestamp`.
///
/// ```
/// use tally_core::destinations::webhook::sign;
/// assert_eq!(
///     sign(b"whsec_test", 1_777_667_565, br#"{"a":1}"#),
///     "sha256=106a7f9ce5cf78d5912af1bdbe5e453544eabd1119279f77b1f8d438e2b1d1cd"
/// );
/// ```
pub fn sign(secret: &[u8], timestamp_secs: i64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(71);
    s.push_str("sha256=");
    if let Some(m) = mac(secret, timestamp_secs, body) {
        for b in m.finalize().into_bytes() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    s
}

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing or not in the expected form.
    #[error("signature or timestamp header is missing or malformed")]
    Malformed,
    /// The timestamp is further from now than the tolerance (a replay, or a skewed clock).
    #[error("timestamp is outside the tolerance window")]
    Expired,
    /// The signature does not match the body and secret.
    #[error("signature does not match")]
    Mismatch,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Checks a request as a receiver: the timestamp header (Unix seconds) must be
/// within `tolerance_secs` of `now_secs`, and the signature header must be
/// `sha256=<hex>` matching [`sign`] of the raw body. The comparison is
/// constant-time.
///
/// ```
/// use tally_core::destinations::webhook::{sign, verify, VerifyError, DEFAULT_TOLERANCE_SECS};
/// let body = br#"{"event_id":"x"}"#;
/// let sig = sign(b"secret", 1_000, body);
/// assert_eq!(verify(b"secret", "1000", body, &sig, 1_100, DEFAULT_TOLERANCE_SECS), Ok(()));
/// assert_eq!(verify(b"other", "1000", body, &sig, 1_100, DEFAULT_TOLERANCE_SECS), Err(VerifyError::Mismatch));
/// ```
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> core::result::Result<(), VerifyError> {
    let t = timestamp_header.trim();
    if t.is_empty() || t.len() > 18 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    let ts: i64 = t.parse().map_err(|_| VerifyError::Malformed)?;
    let expected = signature_header
        .trim()
        .strip_prefix("sha256=")
        .and_then(unhex)
        .filter(|b| b.len() == 32)
        .ok_or(VerifyError::Malformed)?;
    if now_secs.saturating_sub(ts).saturating_abs() > tolerance_secs.max(0) {
        return Err(VerifyError::Expired);
    }
    let m = mac(secret, ts, body).ok_or(VerifyError::Mismatch)?;
    m.verify_slice(&expected).map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_777_667_565_000;

    fn purchase() -> Event {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), NOW);
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_12345", "Stan and Friends Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e.set_text("payment_type", "card");
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            client_id: Some(ClientId::parse("1958185836.1757409569").unwrap()),
            visitor_id: Some(VisitorId::parse("v-1").unwrap()),
            user_id: Some(UserId::parse("cust_1").unwrap()),
            click_ids: ClickIds { gclid: Some("G1".into()), ..Default::default() },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(HashedUserData {
                google: None,
                meta: Some(user_data::MetaUserData { em: vec!["a".repeat(64)], ..Default::default() }),
            }),
            page_url: Some("https://shop.example/done?gclid=G1".into()),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("UA".into()),
            now_ms: NOW + 1000,
            ..Default::default()
        }
    }

    #[test]
    fn many_visitors_keep_their_own_user_and_global_indices() {
        let a = purchase();
        let mut b = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-2002").unwrap(), NOW);
        (b.value, b.currency) = (a.value, a.currency);
        let denied = DeliveryContext { consent: ConsentState::default(), ..ctx() };
        let mut other = ctx();
        other.client_id = Some(ClientId::parse("1111111111.2222222222").unwrap());
        let first = [a.clone()];
        let second = [purchase(), b.clone()];
        let no_value = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-3003").unwrap(), NOW);
        let third = [purchase(), no_value];
        let batch = build_many(&[(&first, &ctx()), (&second, &other), (&third, &denied)]).unwrap();
        assert_eq!(batch.indices, [0, 1, 2, 3]);
        assert_eq!(batch.records[0].user.client_id.as_deref(), Some("1958185836.1757409569"));
        assert_eq!(batch.records[2].user.client_id.as_deref(), Some("1111111111.2222222222"));
        assert_eq!(batch.records[2].event_id, b.id.as_str());
        // The third visitor's events: from index 3, after the three before them, under its own consent.
        assert_eq!(batch.records[3].user.client_id, None, "no analytics_storage for the third visitor");
        assert!(matches!(batch.skipped.as_slice(), [(4, WebhookSkip::Invalid(_))]), "{:?}", batch.skipped);
        let body = serde_json::to_value(WebhookRecords::new(&batch.records)).unwrap();
        assert_eq!(body["schema_version"], "1");
        assert_eq!(body["records"].as_array().map(Vec::len), Some(4));
        let key = batch_idempotency_key(&batch.records);
        assert_eq!(key, batch_idempotency_key(&batch.records.clone()));
        assert_ne!(key, batch_idempotency_key(&batch.records[1..]));
        assert_eq!(key.len(), "batch-".len() + 64);
    }

    #[test]
    fn record_shape() {
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx()).unwrap();
        let got = serde_json::to_value(&b.records[0]).unwrap();
        let want = json!({"schema_version":"1","event_id":e.id.as_str(),"event_name":"purchase",
            "occurred_at":"2026-05-01T20:32:45.000Z","transaction_id":"ORD-1001","order_key":e.id.as_str(),
            "value":30.03,"currency":"USD",
            "items":[{"item_id":"SKU_12345","item_name":"Stan and Friends Tee","price":10.01,"quantity":3}],
            "params":{"payment_type":"card"},
            "page_url":"https://shop.example/done?gclid=G1",
            "user":{"client_id":"1958185836.1757409569","visitor_id":"v-1","user_id":"cust_1",
                    "click_ids":{"gclid":"G1"},"user_data":{"meta":{"em":["a".repeat(64)]}},
                    "ip_address":"203.0.113.7","user_agent":"UA"},
            "consent":{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}});
        assert_eq!(got, want);
    }

    #[test]
    fn consent_strips_per_purpose() {
        let mut c = ctx();
        c.consent = ConsentState::ALL_DENIED;
        let b = build(&[purchase()], &c).unwrap();
        let r = &b.records[0];
        assert_eq!(r.user, WebhookUser { user_id: Some("cust_1".into()), ..Default::default() });
        assert_eq!(r.page_url.as_deref(), Some("https://shop.example/done"));
        assert_eq!(r.consent.ad_user_data, "denied");
    }

    #[test]
    fn refunds_carry_the_order_key() {
        let mut r = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), 0);
        r.value = Some(Amount::parse("10").unwrap());
        r.original_value = Some(Amount::parse("30.03").unwrap());
        r.currency = Some(Currency::parse("USD").unwrap());
        let b = build(&[r.clone(), purchase()], &ctx()).unwrap();
        let rec = &b.records[0];
        assert_eq!(rec.order_key.as_deref(), Some(purchase().id.as_str()));
        assert_ne!(rec.event_id, purchase().id.as_str());
        assert_eq!(rec.original_value, Some(30.03));
        assert_eq!(rec.occurred_at, rfc3339_utc(NOW + 1000));
        assert_eq!(b.indices, vec![0, 1]);
        assert_eq!(rec.refund_id, None);
    }

    #[test]
    fn each_refund_of_an_order_is_its_own_record() {
        let refund = |refunded: &str, before: &str, refund_id: Option<&str>| {
            let mut r = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), 0);
            r.value = Some(Amount::parse(refunded).unwrap());
            r.original_value = Some(Amount::parse(before).unwrap());
            r.currency = Some(Currency::parse("USD").unwrap());
            r.refund_id = refund_id.map(|id| crate::RefundId::parse(id).unwrap());
            r.key_refund();
            r
        };
        let b = build(&[refund("20", "100", None), refund("30", "80", None), refund("50", "50", Some("RF-3"))], &ctx())
            .unwrap();
        let keys: Vec<&str> = b.records.iter().map(WebhookRecord::idempotency_key).collect();
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2], "{keys:?}");
        assert!(b.records.iter().all(|r| r.order_key.as_deref() == Some(purchase().id.as_str())));
        assert_eq!(b.records[2].refund_id.as_deref(), Some("RF-3"));
    }

    #[test]
    fn invalid_events_are_skipped() {
        let mut e = purchase();
        e.value = None;
        let b = build(&[e], &ctx()).unwrap();
        assert_eq!(b.skipped, vec![(0, WebhookSkip::Invalid(Error::Missing { field: "value" }))]);
    }

    #[test]
    fn signatures() {
        // Python: hmac.new(b"whsec_test", b'1777667565.{"a":1}', hashlib.sha256).hexdigest()
        let body = br#"{"a":1}"#;
        let sig = sign(b"whsec_test", 1_777_667_565, body);
        assert_eq!(sig, "sha256=106a7f9ce5cf78d5912af1bdbe5e453544eabd1119279f77b1f8d438e2b1d1cd");
        let ok = |ts: &str, body: &[u8], sig: &str, now| verify(b"whsec_test", ts, body, sig, now, 300);
        assert_eq!(ok("1777667565", body, &sig, 1_777_667_565), Ok(()));
        assert_eq!(ok("1777667565", body, &sig.to_uppercase().replace("SHA256", "sha256"), 1_777_667_565), Ok(()));
        assert_eq!(ok("1777667565", br#"{"a":2}"#, &sig, 1_777_667_565), Err(VerifyError::Mismatch));
        assert_eq!(ok("1777667566", body, &sig, 1_777_667_565), Err(VerifyError::Mismatch));
        assert_eq!(ok("1777667565", body, &sig, 1_777_667_566 + 300), Err(VerifyError::Expired));
        assert_eq!(ok("1777667565", body, &sig, 1_777_667_565 - 301), Err(VerifyError::Expired));
        for bad_sig in ["", "sha256=", "sha1=abc", "sha256=zz", &sig[..70]] {
            assert_eq!(ok("1777667565", body, bad_sig, 1_777_667_565), Err(VerifyError::Malformed), "{bad_sig}");
        }
        for bad_ts in ["", "-1", "1e9", "99999999999999999999"] {
            assert_eq!(ok(bad_ts, body, &sig, 1_777_667_565), Err(VerifyError::Malformed), "{bad_ts}");
        }
    }
}
