//! TikTok Events API 2.0 requests (`POST /open_api/v1.3/event/track/`, <https://business-api.tiktok.com/portal/docs?id=1771100865818625>).
//!
//! `event_id` is [`Event::id`], the key the browser's `ttq.track(…, {event_id})`
//! sends, so TikTok deduplicates the two. Email is hashed the way Meta does it
//! (taken from `user_data.meta.em`), the phone the way Google does it, E.164
//! with `+` (from `user_data.google.sha256_phone_number`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::is_hex64;
use super::{DeliveryContext, VisitorEvents};
use super::{page_url, strip_click_ids};
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::{Event, ParamValue};
use crate::event_name::EventName;

/// The Events API 2.0 endpoint.
pub const DEFAULT_URL: &str = "https://business-api.tiktok.com/open_api/v1.3/event/track/";
/// The header carrying the Events API access token.
pub const HEADER_ACCESS_TOKEN: &str = "Access-Token";
/// Most events per request.
pub const MAX_EVENTS: usize = 1000;
/// Tally's own cap on a request body.
pub const MAX_BODY_BYTES: usize = 4_000_000;
/// How far back `event_time` may go. TikTok's web limit is not documented in
/// the sources Tally follows; Tally uses Meta's 7 days.
pub const MAX_AGE_DAYS: u32 = 7;
/// How far in the future (clock skew) an event time may be.
pub const MAX_FUTURE_MS: i64 = 15 * 60_000;

/// Per-pixel settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TikTokOptions {
    /// The pixel code (`event_source_id`).
    pub pixel_code: String,
    /// `test_event_code` from Events Manager; remove in production.
    pub test_event_code: Option<String>,
}

/// `user` of one event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TikTokUser {
    /// SHA-256 of the trimmed, lowercased email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// SHA-256 of the E.164 phone (with `+`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// SHA-256 of the shop's customer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// TikTok click id, only with `ad_storage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// IP address, unhashed, only with `ad_user_data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// User agent, unhashed, only with `ad_user_data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl TikTokUser {
    fn is_empty(&self) -> bool {
        *self == TikTokUser::default()
    }
}

/// `page` of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TikTokPage {
    /// The page URL.
    pub url: String,
    /// The referrer (`page_referrer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
}

/// One entry of `contents`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TikTokContent {
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    /// `product`.
    pub content_type: &'static str,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_name: Option<String>,
    /// Quantity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Unit price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// `properties` of one event.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TikTokProperties {
    /// ISO 4217.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `product` when there are contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'static str>,
    /// The shop's order id, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Product lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<TikTokContent>,
    /// The search, for `Search`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// One event of a request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TikTokEvent {
    /// Standard name (`CompletePayment`) or the GA4 name as a custom event.
    pub event: String,
    /// Unix seconds.
    pub event_time: i64,
    /// [`Event::id`].
    pub event_id: String,
    /// Who.
    pub user: TikTokUser,
    /// Where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<TikTokPage>,
    /// What.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<TikTokProperties>,
    /// `true` unless both `ad_user_data` and `ad_personalization` are granted.
    pub limited_data_use: bool,
}

/// A request body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TikTokRequest {
    /// `web`.
    pub event_source: &'static str,
    /// The pixel code.
    pub event_source_id: String,
    /// Test event code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<String>,
    /// At most 1,000 events.
    pub data: Vec<TikTokEvent>,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as TikTokSkip;

/// The requests to send and, per input event, why it was left out.
pub type TikTokBatch = super::Batch<TikTokRequest>;

fn first_hash(v: Option<&Vec<String>>) -> Option<String> {
    v.and_then(|v| v.iter().find(|s| is_hex64(s)).cloned())
}

/// Checks the event time: at most [`MAX_AGE_DAYS`] old, not in the future.
pub fn check_window(e: &Event, now_ms: i64) -> Result<()> {
    let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { now_ms };
    let age = now_ms.saturating_sub(at);
    if age > i64::from(MAX_AGE_DAYS) * 86_400_000 || age < -MAX_FUTURE_MS {
        return Err(Error::OutsideWindow {
            field: "occurredAt",
            destination: "tiktok",
            max_age_hours: MAX_AGE_DAYS * 24,
        });
    }
    Ok(())
}

fn properties(e: &Event) -> TikTokProperties {
    let mut p = TikTokProperties {
        currency: e.value.and(e.currency).map(|c| c.as_str().to_owned()),
        value: e.value.map(|v| v.to_f64()),
        order_id: e.transaction_id.as_ref().map(|t| t.as_str().to_owned()),
        ..TikTokProperties::default()
    };
    p.contents = e
        .items
        .iter()
        .map(|i| TikTokContent {
            content_id: i.item_id.clone(),
            content_type: "product",
            content_name: i.item_name.clone(),
            quantity: i.quantity,
            price: i.price.map(|a| a.to_f64()),
        })
        .collect();
    if !p.contents.is_empty() {
        p.content_type = Some("product");
    }
    if e.name == EventName::Search
        && let Some(ParamValue::Text(s)) = e.params.get("search_term")
    {
        p.query = Some(s.clone());
    }
    p
}

/// Builds the requests for `events` under `ctx`.
///
/// Consent is applied here: with neither `ad_storage` nor `ad_user_data`
/// granted nothing is built. `ttclid` goes only with `ad_storage` (and without
/// it click-id parameters are removed from the page URL); hashed email, phone
/// and external id, the IP address and the user agent only with
/// `ad_user_data`. An event with nothing left to match on is
/// [`TikTokSkip::NoAttribution`]; refunds are [`TikTokSkip::Unsupported`].
/// An empty pixel code is an error for the whole call.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, tiktok};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_000);
/// e.value = Some(Amount::parse("129.99").unwrap());
/// e.currency = Some(Currency::parse("USD").unwrap());
/// let ctx = DeliveryContext {
///     click_ids: ClickIds { ttclid: Some("E.C.P.abc".into()), ..Default::default() },
///     consent: ConsentState::ALL_GRANTED,
///     now_ms: 2_000,
///     ..Default::default()
/// };
/// let config = tiktok::TikTokOptions { pixel_code: "C4PIXEL".into(), ..Default::default() };
/// let batch = tiktok::build(&[e], &ctx, &config).unwrap();
/// assert_eq!(batch.requests[0].data[0].event, "CompletePayment");
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext, config: &TikTokOptions) -> Result<TikTokBatch> {
    build_many(&[(events, ctx)], config)
}

/// [`build`] for the events of several visitors at once, so one request carries
/// events of many visitors (each event keeps its own visitor's user data and
/// consent). Indices in the batch count through the groups' events in order.
pub fn build_many(groups: &[VisitorEvents<'_>], config: &TikTokOptions) -> Result<TikTokBatch> {
    let pixel = config.pixel_code.trim();
    if pixel.is_empty() {
        return Err(Error::Missing { field: "tiktok.pixel_code" });
    }
    let envelope = 128 + pixel.len() + config.test_event_code.as_ref().map_or(0, String::len);
    Ok(super::pack_visitors(groups, visitor_events, (MAX_EVENTS, MAX_BODY_BYTES - envelope, MAX_BODY_BYTES), |data| {
        TikTokRequest {
            event_source: "web",
            event_source_id: pixel.to_owned(),
            test_event_code: config.test_event_code.clone(),
            data,
        }
    }))
}

/// One visitor's events: the accepted ones into `ok`, the others into `skipped`,
/// indexed from `offset`.
fn visitor_events(
    events: &[Event],
    ctx: &DeliveryContext,
    offset: usize,
    ok: &mut Vec<(usize, TikTokEvent)>,
    skipped: &mut Vec<(usize, TikTokSkip)>,
) {
    let policy = ctx.consent.policy(DestinationKind::TikTok);
    if let Err(denial) = policy.send {
        skipped.extend((0..events.len()).map(|i| (offset + i, TikTokSkip::Consent(denial))));
        return;
    }
    let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let ud = ctx.user_data.as_ref().filter(|_| policy.user_data);
    let meta = ud.and_then(|h| h.meta.as_ref());
    let google = ud.and_then(|h| h.google.as_ref());
    let mut user = TikTokUser {
        email: first_hash(meta.map(|m| &m.em)),
        phone: first_hash(google.map(|g| &g.sha256_phone_number)),
        external_id: first_hash(meta.map(|m| &m.external_id)),
        ttclid: if policy.click_ids { ctx.click_ids.valid_ttclid().map(str::to_owned) } else { None },
        ip: if policy.user_data { clean(&ctx.ip_address) } else { None },
        user_agent: if policy.user_data { clean(&ctx.user_agent) } else { None },
    };
    let limited_data_use = !(policy.user_data && policy.personalization);

    for (i, e) in events.iter().enumerate() {
        if e.name == EventName::Refund {
            skipped.push((offset + i, TikTokSkip::Unsupported));
            continue;
        }
        if let Err(err) = e.validate().and_then(|()| check_window(e, ctx.now_ms)) {
            skipped.push((offset + i, TikTokSkip::Invalid(err)));
            continue;
        }
        if user.is_empty() {
            skipped.push((offset + i, TikTokSkip::NoAttribution));
            continue;
        }
        let page = page_url(e, ctx).map(|u| TikTokPage {
            url: if policy.click_ids { u } else { strip_click_ids(&u) },
            referrer: match e.params.get("page_referrer") {
                Some(ParamValue::Text(r)) if !r.trim().is_empty() => {
                    Some(if policy.click_ids { r.clone() } else { strip_click_ids(r) })
                }
                _ => None,
            },
        });
        let props = properties(e);
        let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
        ok.push((
            offset + i,
            TikTokEvent {
                event: e.name.tiktok_name().unwrap_or_else(|| e.name.as_str()).to_owned(),
                event_time: at.div_euclid(1000),
                event_id: e.id.as_str().to_owned(),
                user: super::share(&mut user, i, events.len()),
                page,
                properties: (props != TikTokProperties::default()).then_some(props),
                limited_data_use,
            },
        ));
    }
}

/// The answer (HTTP 200 even for most errors: classify by `code`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TikTokResponse {
    /// `0` success, `20001` partial success, `40100` throttled, …
    pub code: i64,
    /// `OK` or the problem.
    pub message: String,
    /// TikTok's request id.
    pub request_id: Option<String>,
    /// Details.
    pub data: Option<Value>,
}

impl TikTokResponse {
    /// Parses a response body.
    pub fn parse(body: &str) -> Result<TikTokResponse> {
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "tiktok.response", reason: "not an Events API response" })
    }
}

/// What a call's outcome means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TikTokOutcome {
    /// `code` 0.
    Success,
    /// `code` 20001: some events were rejected; the rest were taken.
    PartialSuccess,
    /// Not taken: try again with backoff ([`ErrorClass::Transient`]: `code`
    /// 40100, 5xxxx, HTTP 429 / 5xx), fix the access token
    /// ([`ErrorClass::Credentials`]: 40001, 40104, 40105) or the request
    /// ([`ErrorClass::Permanent`]: 40002 and other codes).
    Failed(ErrorClass),
}

pub use crate::http::ErrorClass;

/// Classifies a call by HTTP status and, if parsed, its body.
///
/// The HTTP status first, by [the one status rule](crate::http) (a transient
/// status whatever the body says), then TikTok's `code`.
pub fn classify(http_status: u16, body: Option<&TikTokResponse>) -> TikTokOutcome {
    if ErrorClass::of_status(http_status) == ErrorClass::Transient {
        return TikTokOutcome::Failed(ErrorClass::Transient);
    }
    match body.map(|b| b.code) {
        Some(0) if (200..300).contains(&http_status) => TikTokOutcome::Success,
        Some(20001) => TikTokOutcome::PartialSuccess,
        Some(40100) => TikTokOutcome::Failed(ErrorClass::Transient),
        Some(c) if (50000..60000).contains(&c) => TikTokOutcome::Failed(ErrorClass::Transient),
        Some(40001 | 40104 | 40105) => TikTokOutcome::Failed(ErrorClass::Credentials),
        None if ErrorClass::of_status(http_status) == ErrorClass::Credentials => {
            TikTokOutcome::Failed(ErrorClass::Credentials)
        }
        _ => TikTokOutcome::Failed(ErrorClass::Permanent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000 + 60_000;
    const EM: &str = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
    const PH: &str = "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8";
    const XID: &str = "d8c59e8348e0c03f9d2105eed9791438f9aea9586381b79deadbc857eef89d78";

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_700_000_000_000);
        e.value = Some(Amount::parse("129.99").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_12345", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e.set_text("page_referrer", "https://shop.example.com/cart");
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds { ttclid: Some("E.C.P.abc".into()), ..Default::default() },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(HashedUserData {
                google: Some(user_data::GoogleUserData { sha256_phone_number: vec![PH.into()], ..Default::default() }),
                meta: Some(user_data::MetaUserData {
                    em: vec![EM.into()],
                    external_id: vec![XID.into()],
                    ..Default::default()
                }),
            }),
            page_url: Some("https://shop.example.com/checkout/complete".into()),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
            now_ms: NOW,
            ..Default::default()
        }
    }

    fn config() -> TikTokOptions {
        TikTokOptions { pixel_code: "PIXEL_CODE".into(), test_event_code: Some("TEST123".into()) }
    }

    #[test]
    fn canonical_request() {
        // https://business-api.tiktok.com/portal/docs?id=1771100865818625, with Tally's event id.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx(), &config()).unwrap();
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        let want = json!({"event_source":"web","event_source_id":"PIXEL_CODE","test_event_code":"TEST123",
         "data":[{"event":"CompletePayment","event_time":1_700_000_000i64,"event_id":e.id.as_str(),
           "user":{"email":EM,"phone":PH,"external_id":XID,
                   "ttclid":"E.C.P.abc","ip":"203.0.113.7","user_agent":"Mozilla/5.0"},
           "page":{"url":"https://shop.example.com/checkout/complete","referrer":"https://shop.example.com/cart"},
           "properties":{"currency":"USD","value":129.99,"content_type":"product","order_id":"ORD-1001",
                         "contents":[{"content_id":"SKU_12345","content_type":"product","content_name":"Tee","quantity":3,"price":10.01}]},
           "limited_data_use":false}]});
        assert_eq!(got, want);
    }

    #[test]
    fn consent() {
        let mut c = ctx();
        c.consent = ConsentState::ALL_DENIED;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert_eq!(b.skipped, vec![(0, TikTokSkip::Consent(ConsentDenial::NoAdSignal))]);
        // Click id only.
        let mut c = ctx();
        c.consent.ad_user_data = ConsentSignal::Denied;
        let b = build(&[purchase()], &c, &config()).unwrap();
        let ev = &b.requests[0].data[0];
        assert_eq!(ev.user, TikTokUser { ttclid: Some("E.C.P.abc".into()), ..Default::default() });
        assert!(ev.limited_data_use);
        // User data only; click ids stripped from URLs too.
        let mut c = ctx();
        c.consent.ad_storage = ConsentSignal::Denied;
        c.page_url = Some("https://s.example/?ttclid=E.C.P.abc".into());
        let b = build(&[purchase()], &c, &config()).unwrap();
        let ev = &b.requests[0].data[0];
        assert!(ev.user.ttclid.is_none() && ev.user.email.is_some());
        assert_eq!(ev.page.as_ref().unwrap().url, "https://s.example/");
        // Nothing left to match on.
        c.user_data = None;
        c.ip_address = None;
        c.user_agent = None;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert_eq!(b.skipped, vec![(0, TikTokSkip::NoAttribution)]);
    }

    #[test]
    fn names_refunds_windows() {
        let mut old = purchase();
        old.occurred_at_ms = NOW - 8 * 86_400_000;
        let refund = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), NOW);
        let mut search = Event::new(EventName::Search, EventId::parse("s1").unwrap(), NOW);
        search.set_text("search_term", "tee");
        let custom = Event::new(EventName::parse("quiz_done").unwrap(), EventId::parse("q1").unwrap(), 0);
        let b = build(&[old, refund, search, custom], &ctx(), &config()).unwrap();
        assert!(matches!(b.skipped[0], (0, TikTokSkip::Invalid(Error::OutsideWindow { .. }))));
        assert_eq!(b.skipped[1], (1, TikTokSkip::Unsupported));
        let data = &b.requests[0].data;
        assert_eq!(data[0].event, "Search");
        assert_eq!(data[0].properties.as_ref().unwrap().query.as_deref(), Some("tee"));
        assert_eq!(data[1].event, "quiz_done");
        assert_eq!(data[1].event_time, NOW / 1000);
        assert!(data[1].properties.is_none());
    }

    #[test]
    fn needs_pixel_code() {
        let c = TikTokOptions::default();
        assert_eq!(build(&[purchase()], &ctx(), &c).unwrap_err(), Error::Missing { field: "tiktok.pixel_code" });
    }

    #[test]
    fn outcomes() {
        let ok = TikTokResponse::parse(r#"{"code":0,"message":"OK","request_id":"r1","data":{}}"#).unwrap();
        assert_eq!(classify(200, Some(&ok)), TikTokOutcome::Success);
        let t = |code| TikTokResponse { code, ..Default::default() };
        assert_eq!(classify(200, Some(&t(20001))), TikTokOutcome::PartialSuccess);
        assert_eq!(classify(200, Some(&t(40100))), TikTokOutcome::Failed(ErrorClass::Transient));
        assert_eq!(classify(200, Some(&t(40001))), TikTokOutcome::Failed(ErrorClass::Credentials));
        assert_eq!(classify(200, Some(&t(40002))), TikTokOutcome::Failed(ErrorClass::Permanent));
        assert_eq!(classify(502, None), TikTokOutcome::Failed(ErrorClass::Transient));
        assert_eq!(classify(401, None), TikTokOutcome::Failed(ErrorClass::Credentials));
        assert!(TikTokResponse::parse("nope").is_err());
    }
}
