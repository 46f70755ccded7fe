//! Servoki-style server events (`POST https://servoki.com/api/events/server`,
//! <https://servoki.com/docs/server-events/>): first-party analytics, one event per request.
//!
//! `event_id` is [`Event::id`]: Servoki counts repeated ids once, so retries
//! and the browser's copy of a purchase do not double-count.

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::DeliveryContext;
use crate::amount::Amount;
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::{Event, ParamValue};
use crate::time::rfc3339_utc;

/// The server-events endpoint.
pub const DEFAULT_URL: &str = "https://servoki.com/api/events/server";
/// Tally's own cap on a request body.
pub const MAX_BODY_BYTES: usize = 64_000;

/// Per-site settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServokiOptions {
    /// The site: its domain or numeric site code.
    pub site: String,
}

/// One request body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServokiEvent {
    /// The site.
    pub site: String,
    /// The event name (GA4 spelling, lower case).
    pub event_type: String,
    /// Visitor id, only with `analytics_storage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vid: Option<String>,
    /// Value, summed as revenue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// ISO 4217.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// [`Event::id`].
    pub event_id: String,
    /// RFC 3339.
    pub occurred_at: String,
    /// Grouping properties: `order_id`, `items`, `coupon`, … and the event's params.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub props: Map<String, Value>,
    /// `true` only when `ad_storage` and `ad_user_data` are granted: Servoki may
    /// forward the event to ad platforms.
    pub consent: bool,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as ServokiSkip;

/// The requests to send (one event each) and, per input event, why it was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServokiBatch {
    /// Request bodies.
    pub requests: Vec<ServokiEvent>,
    /// For each request, the input index of its event.
    pub indices: Vec<usize>,
    /// `(index into the input, reason)` for events not sent, by index.
    pub skipped: Vec<(usize, ServokiSkip)>,
}

fn num(a: Amount) -> Value {
    Number::from_f64(a.to_f64()).map_or(Value::Null, Value::Number)
}

fn props(e: &Event, strip_urls: bool) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(t) = &e.transaction_id {
        p.insert("order_id".into(), Value::String(t.as_str().to_owned()));
    }
    if !e.items.is_empty() {
        let n: u64 = e.items.iter().map(|i| u64::from(i.quantity.unwrap_or(1))).sum();
        p.insert("items".into(), Value::from(n));
    }
    for (k, v) in [("coupon", &e.coupon), ("affiliation", &e.affiliation)] {
        if let Some(v) = v {
            p.insert(k.into(), Value::String(v.clone()));
        }
    }
    for (k, v) in [("shipping", e.shipping), ("tax", e.tax)] {
        if let Some(v) = v {
            p.insert(k.into(), num(v));
        }
    }
    for (k, v) in &e.params {
        let v = match v {
            ParamValue::Text(s) if strip_urls && (k == "page_location" || k == "page_referrer") => {
                Value::String(super::meta::strip_click_ids(s))
            }
            ParamValue::Text(s) => Value::String(s.clone()),
            ParamValue::Number(a) => num(*a),
            ParamValue::Bool(b) => Value::Bool(*b),
        };
        p.insert(k.clone(), v);
    }
    p
}

/// Builds one request per event under `ctx`.
///
/// Consent is applied here: without `analytics_storage` nothing is built. The
/// visitor id goes as `vid` (analytics consent covers it); click ids and user
/// data are never sent, and click-id parameters are removed from
/// `page_location` / `page_referrer`. `consent` is `true` only when both
/// `ad_storage` and `ad_user_data` are granted. An empty site is an error for
/// the whole call. An event time of 0 is `ctx.now_ms`.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, servoki};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("order_8841").unwrap(), 1_000);
/// e.value = Some(Amount::parse("238").unwrap());
/// e.currency = Some(Currency::parse("EUR").unwrap());
/// let ctx = DeliveryContext { consent: ConsentState::ALL_GRANTED, now_ms: 2_000, ..Default::default() };
/// let config = servoki::ServokiOptions { site: "example.com".into() };
/// let batch = servoki::build(std::slice::from_ref(&e), &ctx, &config).unwrap();
/// assert_eq!(batch.requests[0].event_id, e.id.as_str());
/// assert!(batch.requests[0].consent);
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext, config: &ServokiOptions) -> Result<ServokiBatch> {
    let site = config.site.trim();
    if site.is_empty() {
        return Err(Error::Missing { field: "servoki.site" });
    }
    let policy = ctx.consent.policy(DestinationKind::Servoki);
    if let Err(denial) = policy.send {
        return Ok(ServokiBatch {
            skipped: (0..events.len()).map(|i| (i, ServokiSkip::Consent(denial))).collect(),
            ..ServokiBatch::default()
        });
    }
    let vid = if policy.analytics_ids { ctx.visitor_id.as_ref().map(|v| v.as_str().to_owned()) } else { None };
    let consent = ctx.consent.ad_storage.is_granted() && ctx.consent.ad_user_data.is_granted();
    let mut batch = ServokiBatch::default();
    for (i, e) in events.iter().enumerate() {
        if let Err(err) = e.validate() {
            batch.skipped.push((i, ServokiSkip::Invalid(err)));
            continue;
        }
        let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
        let body = ServokiEvent {
            site: site.to_owned(),
            event_type: e.name.as_str().to_owned(),
            vid: vid.clone(),
            value: e.value.map(|v| v.to_f64()),
            currency: e.value.and(e.currency).map(|c| c.as_str().to_owned()),
            event_id: e.id.as_str().to_owned(),
            occurred_at: rfc3339_utc(at),
            props: props(e, !policy.click_ids),
            consent,
        };
        if super::json_size::upper_bound(&body) > MAX_BODY_BYTES && super::json_size::exact(&body) > MAX_BODY_BYTES + 1
        {
            batch.skipped.push((i, ServokiSkip::Invalid(Error::TooLarge { field: "event", max: MAX_BODY_BYTES })));
            continue;
        }
        batch.indices.push(i);
        batch.requests.push(body);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("order_8841").unwrap(), 1_781_258_400_000);
        e.value = Some(Amount::parse("238.00").unwrap());
        e.currency = Some(Currency::parse("EUR").unwrap());
        e.items.push(Item::new("SKU-204", "Merino runner").with_price(Amount::parse("119").unwrap(), 2));
        e.set_text("plan", "pro");
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            visitor_id: Some(VisitorId::parse("anon-abc123").unwrap()),
            consent: ConsentState::ALL_GRANTED,
            click_ids: ClickIds { gclid: Some("G".into()), ..Default::default() },
            now_ms: 1_781_258_460_000,
            ..Default::default()
        }
    }

    fn config() -> ServokiOptions {
        ServokiOptions { site: "example.com".into() }
    }

    #[test]
    fn canonical_body() {
        // https://servoki.com/docs/server-events/, with Tally's event id.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx(), &config()).unwrap();
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        let want = json!({"site":"example.com","event_type":"purchase","vid":"anon-abc123",
            "value":238.0,"currency":"EUR","event_id":e.id.as_str(),
            "occurred_at":"2026-06-12T10:00:00.000Z",
            "props":{"order_id":"order_8841","items":2,"plan":"pro"},"consent":true});
        assert_eq!(got, want);
        assert_eq!(b.indices, vec![0]);
    }

    #[test]
    fn consent() {
        let mut c = ctx();
        c.consent.analytics_storage = ConsentSignal::Denied;
        assert_eq!(
            build(&[purchase()], &c, &config()).unwrap().skipped,
            vec![(0, ServokiSkip::Consent(ConsentDenial::AnalyticsStorage))]
        );
        let mut c = ctx();
        c.consent.ad_user_data = ConsentSignal::Unknown;
        let mut e = purchase();
        e.set_text("page_location", "https://s.example/?gclid=G&a=1");
        let b = build(&[e], &c, &config()).unwrap();
        let r = &b.requests[0];
        assert!(!r.consent);
        assert_eq!(r.vid.as_deref(), Some("anon-abc123"));
        assert_eq!(r.props["page_location"], json!("https://s.example/?a=1"));
    }

    #[test]
    fn invalid_and_config() {
        let mut e = purchase();
        e.currency = None;
        let b = build(&[e], &ctx(), &config()).unwrap();
        assert!(matches!(b.skipped[0].1, ServokiSkip::Invalid(_)));
        assert_eq!(
            build(&[], &ctx(), &ServokiOptions::default()).unwrap_err(),
            Error::Missing { field: "servoki.site" }
        );
        let mut lead = Event::new(EventName::SignUp, EventId::parse("s-1").unwrap(), 0);
        lead.set_text("method", "email");
        let b = build(&[lead], &ctx(), &config()).unwrap();
        let v = serde_json::to_value(&b.requests[0]).unwrap();
        assert_eq!(v["event_type"], "sign_up");
        assert_eq!(v["occurred_at"], "2026-06-12T10:01:00.000Z");
        assert!(v.get("value").is_none() && v.get("currency").is_none());
    }
}
