//! GA4 Measurement Protocol requests (<https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events>).

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{DeliveryContext, json_size, split_json_batches};
use crate::amount::Amount;
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::{Event, ParamValue};
use crate::event_name::EventName;
use crate::ids::OrderIdForm;
use crate::user_data::GoogleUserData;

/// Most events per request.
pub const MAX_EVENTS: usize = 25;
/// Largest request body in bytes (Google: "smaller than 130kB").
pub const MAX_BODY_BYTES: usize = 130_000;
/// How far back `timestamp_micros` may go.
pub const MAX_AGE_HOURS: u32 = 72;
/// The production endpoint.
pub const DEFAULT_BASE_URL: &str = "https://www.google-analytics.com";
/// The EU data-collection endpoint.
pub const EU_BASE_URL: &str = "https://region1.google-analytics.com";

/// The `consent` object of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ga4Consent {
    /// `GRANTED` or `DENIED`.
    pub ad_user_data: &'static str,
    /// `GRANTED` or `DENIED`.
    pub ad_personalization: &'static str,
}

/// One event of a request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ga4Event {
    /// The event name.
    pub name: String,
    /// Its parameters.
    pub params: Map<String, Value>,
    /// The event time in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_micros: Option<i64>,
}

/// A Measurement Protocol request body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ga4Request {
    /// The browser's client id.
    pub client_id: String,
    /// The signed-in user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Consent signals, always sent.
    pub consent: Ga4Consent,
    /// Hashed user data (only with `ad_user_data` granted and a `user_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<GoogleUserData>,
    /// At most 25 events.
    pub events: Vec<Ga4Event>,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as Ga4Skip;

/// The requests to send and, per input event, why it was left out.
pub type Ga4Batch = super::Batch<Ga4Request>;

/// A JSON number for an amount (GA4, webhook records).
pub(crate) fn num(a: Amount) -> Value {
    Number::from_f64(a.to_f64()).map_or(Value::Null, Value::Number)
}

/// An item with GA4's snake_case item fields (GA4 params, webhook records).
pub(crate) fn item_fields(item: &crate::item::Item) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in item.text_fields() {
        if let Some(v) = v {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(s) = &item.creative_slot {
        m.insert("creative_slot".into(), Value::String(s.clone()));
    }
    if let Some(p) = item.price {
        m.insert("price".into(), num(p));
    }
    if let Some(d) = item.discount {
        m.insert("discount".into(), num(d));
    }
    if let Some(q) = item.quantity {
        m.insert("quantity".into(), Value::from(q));
    }
    if let Some(i) = item.index {
        m.insert("index".into(), Value::from(i));
    }
    m
}

/// The GA4 params of one event, with `session_id` and `engagement_time_msec`
/// so it shows in reports, and `transaction_id` (purchases and refunds) the
/// order id in `order_id` form. Without `ad_storage` (`click_ids == false`),
/// click-id query parameters are removed from page URLs.
pub fn event_params(e: &Event, session_id: Option<&str>, click_ids: bool, order_id: OrderIdForm) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(s) = session_id {
        p.insert("session_id".into(), Value::String(s.to_owned()));
    }
    p.insert("engagement_time_msec".into(), Value::from(1));
    if matches!(e.name, EventName::Purchase | EventName::Refund)
        && let Some(id) = e.order_ref(order_id)
    {
        p.insert("transaction_id".into(), Value::String(id.to_owned()));
    }
    if let Some(c) = e.currency {
        p.insert("currency".into(), Value::String(c.as_str().to_owned()));
    }
    for (k, v) in [("value", e.value), ("shipping", e.shipping), ("tax", e.tax)] {
        if let Some(v) = v {
            p.insert(k.into(), num(v));
        }
    }
    for (k, v) in [("coupon", &e.coupon), ("affiliation", &e.affiliation)] {
        if let Some(v) = v {
            p.insert(k.into(), Value::String(v.clone()));
        }
    }
    for (k, v) in &e.params {
        let v = match v {
            ParamValue::Text(s) if !click_ids && matches!(k.as_str(), "page_location" | "page_referrer") => {
                Value::String(super::strip_click_ids(s))
            }
            ParamValue::Text(s) => Value::String(s.clone()),
            ParamValue::Number(a) => num(*a),
            ParamValue::Bool(b) => Value::Bool(*b),
        };
        p.insert(k.clone(), v);
    }
    if !e.items.is_empty() || matches!(e.name, EventName::Purchase) {
        p.insert("items".into(), Value::Array(e.items.iter().map(|i| Value::Object(item_fields(i))).collect()));
    }
    p
}

/// Checks the event time against the 72-hour backdating window (and a small
/// allowance for clock skew into the future).
pub fn check_window(e: &Event, now_ms: i64) -> Result<()> {
    let age_ms = now_ms - e.occurred_at_ms;
    if e.occurred_at_ms > 0 && (age_ms > i64::from(MAX_AGE_HOURS) * 3_600_000 || age_ms < -15 * 60_000) {
        return Err(Error::OutsideWindow { field: "occurredAt", destination: "ga4", max_age_hours: MAX_AGE_HOURS });
    }
    Ok(())
}

/// Builds the requests for `events` under `ctx`.
///
/// Consent is applied here: without `analytics_storage` nothing is built;
/// `user_data` goes only with `ad_user_data` granted and a `user_id` (Google's rule).
/// A request without a client id cannot be built: the caller gets
/// `Error::Missing { field: "clientId" }`.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, ga4};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("T_1").unwrap(), 1_000);
/// e.value = Some(Amount::parse("9.99").unwrap());
/// e.currency = Some(Currency::parse("EUR").unwrap());
/// let ctx = DeliveryContext {
///     client_id: Some(ClientId::parse("123.456").unwrap()),
///     consent: ConsentState::ALL_GRANTED,
///     now_ms: 2_000,
///     ..Default::default()
/// };
/// let batch = ga4::build(&[e], &ctx).unwrap();
/// assert_eq!(batch.requests[0].events[0].name, "purchase");
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext) -> Result<Ga4Batch> {
    let policy = ctx.consent.policy(DestinationKind::Ga4);
    if let Err(denial) = policy.send {
        return Ok(Ga4Batch {
            requests: Vec::new(),
            indices: Vec::new(),
            skipped: (0..events.len()).map(|i| (i, Ga4Skip::Consent(denial))).collect(),
        });
    }
    let client_id = ctx.client_id.as_ref().ok_or(Error::Missing { field: "clientId" })?;
    let session_id = if policy.analytics_ids { ctx.session_id.as_deref() } else { None };
    let user_id = ctx.user_id.as_ref().map(|u| u.as_str().to_owned());
    let user_data = if policy.user_data && user_id.is_some() {
        ctx.user_data.as_ref().and_then(|h| h.google.clone()).filter(|g| !g.is_empty())
    } else {
        None
    };
    let mut skipped = Vec::new();
    let mut ok = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Err(err) = e.validate().and_then(|()| check_window(e, ctx.now_ms)) {
            skipped.push((i, Ga4Skip::Invalid(err)));
            continue;
        }
        let params = event_params(e, session_id, ctx.consent.ad_storage.is_granted(), ctx.order_id);
        if params.len() > crate::event::MAX_PARAMS + 1 {
            skipped.push((i, Ga4Skip::Invalid(Error::TooMany { field: "params", max: crate::event::MAX_PARAMS })));
            continue;
        }
        ok.push((
            i,
            Ga4Event {
                name: e.name.as_str().to_owned(),
                params,
                timestamp_micros: (e.occurred_at_ms > 0).then_some(e.occurred_at_ms * 1000),
            },
        ));
    }
    let consent = Ga4Consent {
        ad_user_data: ctx.consent.ad_user_data.google_enum(),
        ad_personalization: ctx.consent.ad_personalization.google_enum(),
    };
    let envelope_bytes = 512 + user_data.as_ref().map_or(0, json_size::upper_bound);
    let (batches, oversized) = split_json_batches(ok, MAX_EVENTS, MAX_BODY_BYTES.saturating_sub(envelope_bytes));
    for (i, _) in oversized {
        skipped.push((i, Ga4Skip::Invalid(Error::TooLarge { field: "event", max: MAX_BODY_BYTES })));
    }
    let mut requests = Vec::with_capacity(batches.len());
    let mut indices = Vec::with_capacity(batches.len());
    for batch in batches {
        let (idx, events): (Vec<usize>, Vec<Ga4Event>) = batch.into_iter().unzip();
        indices.push(idx);
        requests.push(Ga4Request {
            client_id: client_id.as_str().to_owned(),
            user_id: user_id.clone(),
            consent: consent.clone(),
            user_data: user_data.clone(),
            events,
        });
    }
    Ok(Ga4Batch { requests, indices, skipped })
}

/// The collect URL for a base URL (`/mp/collect` or, for validation, `/debug/mp/collect`).
pub fn collect_url(base: &str, measurement_id: &str, api_secret: &str, debug: bool) -> String {
    let mut s = String::with_capacity(base.len() + 80);
    s.push_str(base.trim_end_matches('/'));
    s.push_str(if debug { "/debug/mp/collect" } else { "/mp/collect" });
    s.push_str("?measurement_id=");
    s.push_str(&crate::cookie::percent_encode(measurement_id));
    s.push_str("&api_secret=");
    s.push_str(&crate::cookie::percent_encode(api_secret));
    s
}

/// Validates a measurement id (`G-` followed by letters and digits).
pub fn validate_measurement_id(id: &str) -> Result<()> {
    let rest = id.strip_prefix("G-").unwrap_or_default();
    if rest.is_empty() || rest.len() > 20 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Invalid {
            field: "ga4.measurement_id",
            reason: "expected G- followed by letters and digits, e.g. G-ABC123XYZ",
        });
    }
    Ok(())
}

/// One message from the validation server (`/debug/mp/collect`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    /// The field at fault.
    #[serde(default)]
    pub field_path: String,
    /// What is wrong.
    #[serde(default)]
    pub description: String,
    /// `VALUE_INVALID`, `NAME_RESERVED`, …
    #[serde(default)]
    pub validation_code: String,
}

/// The validation server's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationResponse {
    /// Empty when valid.
    #[serde(default)]
    pub validation_messages: Vec<ValidationMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_757_409_600_000;

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("T_12345").unwrap(), 1_757_409_591_000);
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.tax = Some(Amount::parse("4.90").unwrap());
        e.shipping = Some(Amount::parse("5.99").unwrap());
        e.coupon = Some("SUMMER_FUN".into());
        e.items.push(Item::new("SKU_12345", "Stan and Friends Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            client_id: Some(ClientId::parse("1958185836.1757409569").unwrap()),
            session_id: Some("1757409568".into()),
            user_id: Some(UserId::parse("cust_1").unwrap()),
            consent: ConsentState { ad_personalization: ConsentSignal::Denied, ..ConsentState::ALL_GRANTED },
            now_ms: NOW,
            ..Default::default()
        }
    }

    #[test]
    fn canonical_purchase_request() {
        // The Measurement Protocol's purchase example, with transaction_id the shop's order id.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx()).unwrap();
        assert!(b.skipped.is_empty());
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        let want = json!({"client_id":"1958185836.1757409569","user_id":"cust_1",
          "consent":{"ad_user_data":"GRANTED","ad_personalization":"DENIED"},
          "events":[{"name":"purchase","timestamp_micros":1_757_409_591_000_000i64,"params":{
            "session_id":"1757409568","engagement_time_msec":1,
            "transaction_id":"T_12345","currency":"USD","value":30.03,"tax":4.9,"shipping":5.99,"coupon":"SUMMER_FUN",
            "items":[{"item_id":"SKU_12345","item_name":"Stan and Friends Tee","price":10.01,"quantity":3}]}}]});
        assert_eq!(got, want);
        // A shop that asked for hashed order ids sends the order key instead.
        let hashed = DeliveryContext { order_id: OrderIdForm::Hashed, ..ctx() };
        let b = build(std::slice::from_ref(&e), &hashed).unwrap();
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        assert_eq!(got["events"][0]["params"]["transaction_id"], e.order_key().unwrap().as_str());
    }

    #[test]
    fn consent_drops_or_strips() {
        let mut c = ctx();
        c.consent.analytics_storage = ConsentSignal::Denied;
        let b = build(&[purchase()], &c).unwrap();
        assert!(b.requests.is_empty());
        assert_eq!(b.skipped, vec![(0, Ga4Skip::Consent(ConsentDenial::AnalyticsStorage))]);

        let mut c = ctx();
        c.user_data = Some(HashedUserData {
            google: Some(user_data::GoogleUserData {
                sha256_email_address: vec!["a".repeat(64)],
                ..Default::default()
            }),
            meta: None,
        });
        let with = build(&[purchase()], &c).unwrap();
        assert!(with.requests[0].user_data.is_some());
        c.consent.ad_user_data = ConsentSignal::Unknown;
        let without = build(&[purchase()], &c).unwrap();
        assert!(without.requests[0].user_data.is_none());
        assert_eq!(without.requests[0].consent.ad_user_data, "DENIED");
        // user_data never goes without user_id (Google's rule).
        let mut c2 = c.clone();
        c2.consent.ad_user_data = ConsentSignal::Granted;
        c2.user_id = None;
        assert!(build(&[purchase()], &c2).unwrap().requests[0].user_data.is_none());
    }

    #[test]
    fn splits_at_25_events() {
        let events: Vec<Event> = (0..60)
            .map(|i| {
                let mut e = Event::new(EventName::PageView, EventId::random_v7(i, [0; 10]), NOW - 1000);
                e.set_text("page_location", "https://shop.example/");
                e
            })
            .collect();
        let b = build(&events, &ctx()).unwrap();
        assert_eq!(b.requests.iter().map(|r| r.events.len()).collect::<Vec<_>>(), [25, 25, 10]);
        assert_eq!(b.indices[1], (25..50).collect::<Vec<_>>());
        for r in &b.requests {
            assert!(serde_json::to_string(r).unwrap().len() < MAX_BODY_BYTES);
        }
    }

    #[test]
    fn click_ids_leave_page_urls_without_ad_storage() {
        let mut e = Event::new(EventName::PageView, EventId::random_v7(1, [0; 10]), NOW - 1000);
        e.set_text("page_location", "https://shop.example/p?gclid=SECRET&x=1");
        let mut c = ctx();
        c.consent.ad_storage = ConsentSignal::Denied;
        let b = build(std::slice::from_ref(&e), &c).unwrap();
        assert_eq!(b.requests[0].events[0].params["page_location"], "https://shop.example/p?x=1");
        c.consent.ad_storage = ConsentSignal::Granted;
        let b = build(&[e], &c).unwrap();
        assert_eq!(b.requests[0].events[0].params["page_location"], "https://shop.example/p?gclid=SECRET&x=1");
    }

    #[test]
    fn outside_window_is_skipped() {
        let mut e = purchase();
        e.occurred_at_ms = NOW - 73 * 3_600_000;
        let b = build(&[e], &ctx()).unwrap();
        assert!(matches!(b.skipped[0].1, Ga4Skip::Invalid(Error::OutsideWindow { .. })));
    }

    #[test]
    fn needs_client_id() {
        let mut c = ctx();
        c.client_id = None;
        assert_eq!(build(&[purchase()], &c).unwrap_err(), Error::Missing { field: "clientId" });
    }

    #[test]
    fn urls_and_ids() {
        assert_eq!(
            collect_url("http://127.0.0.1:9/", "G-ABC", "s&x", false),
            "http://127.0.0.1:9/mp/collect?measurement_id=G-ABC&api_secret=s%26x"
        );
        assert!(
            collect_url(EU_BASE_URL, "G-A", "s", true)
                .starts_with("https://region1.google-analytics.com/debug/mp/collect")
        );
        assert!(validate_measurement_id("G-ABC123").is_ok());
        for bad in ["", "G-", "UA-1", "G-AB C"] {
            assert!(validate_measurement_id(bad).is_err());
        }
    }

    #[test]
    fn validation_response_parses() {
        let r: ValidationResponse = serde_json::from_str(
            r#"{"validationMessages":[{"fieldPath":"events","description":"bad","validationCode":"NAME_INVALID"}]}"#,
        )
        .unwrap();
        assert_eq!(r.validation_messages[0].validation_code, "NAME_INVALID");
    }
}
