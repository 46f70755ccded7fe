//! Pinterest Conversions API requests (`POST /v5/ad_accounts/{ad_account_id}/events`,
//! <https://developers.pinterest.com/docs/api/v5/events-create>, guide
//! <https://developers.pinterest.com/docs/conversions/conversions/>).
//!
//! `event_id` is [`Event::id`], the id the browser's `pintrk('track', …, {event_id})`
//! sends, so Pinterest deduplicates the two. `user_data` takes arrays of
//! SHA-256 digests: the email as Meta hashes it (trimmed, lowercased, from
//! `user_data.meta.em`), the phone as Meta hashes it (digits with the country
//! code, no `+`, from `user_data.meta.ph`: Pinterest's documented form), the
//! shop's customer id (`external_id`); the IP address and user agent unhashed;
//! `click_id` is the `epik` click id. Pinterest needs `em`, `hashed_maids`, or
//! both `client_ip_address` and `client_user_agent` on every event.
//! `custom_data.value` and each content's `item_price` are decimal strings.

use serde::{Deserialize, Serialize};

use super::{DeliveryContext, VisitorEvents, is_hex64, page_url, strip_click_ids};
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::{Event, ParamValue};
use crate::event_name::EventName;

/// The API's base URL; requests go to `{base}/ad_accounts/{ad_account_id}/events`.
pub const DEFAULT_BASE_URL: &str = "https://api.pinterest.com/v5";
/// Most events per request (`data`: 1 to 1,000).
pub const MAX_EVENTS: usize = 1000;
/// Tally's own cap on a request body (Pinterest documents none).
pub const MAX_BODY_BYTES: usize = 4_000_000;
/// How far back `event_time` may go. Pinterest reports events received more
/// than an hour late as offline conversions and documents no hard limit in
/// the sources Tally follows; Tally uses Meta's and TikTok's 7 days.
pub const MAX_AGE_DAYS: u32 = 7;
/// How far in the future (clock skew) an event time may be.
pub const MAX_FUTURE_MS: i64 = 15 * 60_000;
/// The longest ad account id (`^\d+$`, at most 18 digits).
pub const MAX_AD_ACCOUNT_ID_LEN: usize = 18;

/// Per-ad-account settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinterestOptions {
    /// The ad account the events are reported to (digits).
    pub ad_account_id: String,
}

/// `user_data` of one event: arrays of SHA-256 digests, plus the raw IP
/// address, user agent and click id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinterestUserData {
    /// SHA-256 of the trimmed, lowercased email.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub em: Vec<String>,
    /// SHA-256 of the phone: digits with country code, no `+`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ph: Vec<String>,
    /// SHA-256 of the shop's customer id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_id: Vec<String>,
    /// IP address, unhashed, only with `ad_user_data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<String>,
    /// User agent, unhashed, only with `ad_user_data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<String>,
    /// The `epik` click id, only with `ad_storage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_id: Option<String>,
}

impl PinterestUserData {
    /// Whether Pinterest can match on it: `em`, or both the IP address and
    /// the user agent (`hashed_maids` is for apps, which Tally does not send).
    pub fn is_matchable(&self) -> bool {
        !self.em.is_empty() || (self.client_ip_address.is_some() && self.client_user_agent.is_some())
    }
}

/// One entry of `custom_data.contents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinterestContent {
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Unit price, a decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_price: Option<String>,
    /// Quantity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_name: Option<String>,
}

/// `custom_data` of one event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinterestCustomData {
    /// ISO 4217, with a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The value, a decimal string (`"129.99"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The shop's order id, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The SKUs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub content_ids: Vec<String>,
    /// Product lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<PinterestContent>,
    /// Units in all (the sum of the quantities).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_items: Option<u32>,
    /// The search, for `search`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_string: Option<String>,
}

/// One event of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinterestEvent {
    /// `checkout`, `add_to_cart`, `page_visit`, `view_category`, `search`,
    /// `signup`, `lead`, or `custom` for the others ([`pinterest_name`]).
    pub event_name: &'static str,
    /// `web`.
    pub action_source: &'static str,
    /// Unix seconds.
    pub event_time: i64,
    /// [`Event::id`].
    pub event_id: String,
    /// The page URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<String>,
    /// `true` unless both `ad_user_data` and `ad_personalization` are granted.
    pub opt_out: bool,
    /// Who.
    pub user_data: PinterestUserData,
    /// What.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<PinterestCustomData>,
}

/// A request body: `{"data": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinterestRequest {
    /// 1 to 1,000 events.
    pub data: Vec<PinterestEvent>,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as PinterestSkip;

/// The requests to send and, per input event, why it was left out.
pub type PinterestBatch = super::Batch<PinterestRequest>;

/// Pinterest's event name for a Tally event (`None`: a refund, which
/// Pinterest has no way to take). Events without a standard counterpart are
/// sent as `custom`.
pub fn pinterest_name(name: &EventName) -> Option<&'static str> {
    Some(match name {
        EventName::Purchase => "checkout",
        EventName::AddToCart => "add_to_cart",
        EventName::PageView | EventName::ViewItem => "page_visit",
        EventName::ViewItemList => "view_category",
        EventName::Search => "search",
        EventName::SignUp => "signup",
        EventName::GenerateLead => "lead",
        EventName::Refund => return None,
        _ => "custom",
    })
}

/// The events URL for `ad_account_id` under `base` (`test`: `?test=true`,
/// validated by Pinterest and not recorded).
///
/// ```
/// use tally_core::destinations::pinterest;
/// assert_eq!(
///     pinterest::events_url(pinterest::DEFAULT_BASE_URL, "549755885175", true),
///     "https://api.pinterest.com/v5/ad_accounts/549755885175/events?test=true"
/// );
/// ```
pub fn events_url(base: &str, ad_account_id: &str, test: bool) -> String {
    let base = base.trim_end_matches('/');
    let query = if test { "?test=true" } else { "" };
    format!("{base}/ad_accounts/{}/events{query}", ad_account_id.trim())
}

/// Checks an ad account id: 1 to 18 digits.
pub fn validate_ad_account_id(id: &str) -> Result<()> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Error::Missing { field: "pinterest.ad_account_id" });
    }
    if id.len() > MAX_AD_ACCOUNT_ID_LEN || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid {
            field: "pinterest.ad_account_id",
            reason: "expected the ad account id from Pinterest Ads Manager: up to 18 digits",
        });
    }
    Ok(())
}

/// Checks the event time: at most [`MAX_AGE_DAYS`] old, not in the future.
pub fn check_window(e: &Event, now_ms: i64) -> Result<()> {
    let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { now_ms };
    let age = now_ms.saturating_sub(at);
    if age > i64::from(MAX_AGE_DAYS) * 86_400_000 || age < -MAX_FUTURE_MS {
        return Err(Error::OutsideWindow {
            field: "occurredAt",
            destination: "pinterest",
            max_age_hours: MAX_AGE_DAYS * 24,
        });
    }
    Ok(())
}

fn hashes(v: Option<&Vec<String>>) -> Vec<String> {
    v.map(|v| v.iter().filter(|s| is_hex64(s)).cloned().collect()).unwrap_or_default()
}

fn custom_data(e: &Event) -> PinterestCustomData {
    let mut c = PinterestCustomData {
        currency: e.value.and(e.currency).map(|c| c.as_str().to_owned()),
        value: e.value.map(|v| v.to_string()),
        order_id: e.transaction_id.as_ref().map(|t| t.as_str().to_owned()),
        ..PinterestCustomData::default()
    };
    c.content_ids = e.items.iter().filter_map(|i| i.item_id.clone()).collect();
    c.contents = e
        .items
        .iter()
        .map(|i| PinterestContent {
            id: i.item_id.clone(),
            item_price: i.price.map(|a| a.to_string()),
            quantity: i.quantity,
            item_name: i.item_name.clone(),
        })
        .collect();
    let units: u32 = e.items.iter().map(|i| i.quantity.unwrap_or(1)).fold(0, u32::saturating_add);
    c.num_items = (units > 0).then_some(units);
    if e.name == EventName::Search
        && let Some(ParamValue::Text(s)) = e.params.get("search_term")
    {
        c.search_string = Some(s.clone());
    }
    c
}

/// Builds the requests for `events` under `ctx`.
///
/// Consent is applied here: with neither `ad_storage` nor `ad_user_data`
/// granted nothing is built. The `epik` click id goes only with
/// `ad_storage` (and without it click-id parameters are removed from the
/// page URL); hashed email, phone and external id, the IP address and the
/// user agent only with `ad_user_data`. An event Pinterest could not match
/// (no email, and not both IP address and user agent) is
/// [`PinterestSkip::NoAttribution`]; refunds are [`PinterestSkip::Unsupported`].
/// A missing or malformed ad account id is an error for the whole call.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, pinterest};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_000);
/// e.value = Some(Amount::parse("129.99").unwrap());
/// e.currency = Some(Currency::parse("USD").unwrap());
/// let ctx = DeliveryContext {
///     ip_address: Some("203.0.113.7".into()),
///     user_agent: Some("Mozilla/5.0".into()),
///     consent: ConsentState::ALL_GRANTED,
///     now_ms: 2_000,
///     ..Default::default()
/// };
/// let config = pinterest::PinterestOptions { ad_account_id: "549755885175".into() };
/// let batch = pinterest::build(&[e], &ctx, &config).unwrap();
/// assert_eq!(batch.requests[0].data[0].event_name, "checkout");
/// assert_eq!(batch.requests[0].data[0].custom_data.as_ref().unwrap().value.as_deref(), Some("129.99"));
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext, config: &PinterestOptions) -> Result<PinterestBatch> {
    build_many(&[(events, ctx)], config)
}

/// [`build`] for the events of several visitors at once, so one request
/// carries events of many visitors (each event keeps its own visitor's user
/// data and consent). Indices in the batch count through the groups' events in order.
pub fn build_many(groups: &[VisitorEvents<'_>], config: &PinterestOptions) -> Result<PinterestBatch> {
    validate_ad_account_id(&config.ad_account_id)?;
    Ok(super::pack_visitors(groups, visitor_events, (MAX_EVENTS, MAX_BODY_BYTES - 16, MAX_BODY_BYTES), |data| {
        PinterestRequest { data }
    }))
}

/// One visitor's events: the accepted ones into `ok`, the others into
/// `skipped`, indexed from `offset`.
fn visitor_events(
    events: &[Event],
    ctx: &DeliveryContext,
    offset: usize,
    ok: &mut Vec<(usize, PinterestEvent)>,
    skipped: &mut Vec<(usize, PinterestSkip)>,
) {
    let policy = ctx.consent.policy(DestinationKind::Pinterest);
    if let Err(denial) = policy.send {
        skipped.extend((0..events.len()).map(|i| (offset + i, PinterestSkip::Consent(denial))));
        return;
    }
    let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let meta = ctx.user_data.as_ref().filter(|_| policy.user_data).and_then(|h| h.meta.as_ref());
    let mut user = PinterestUserData {
        em: hashes(meta.map(|m| &m.em)),
        ph: hashes(meta.map(|m| &m.ph)),
        external_id: hashes(meta.map(|m| &m.external_id)),
        client_ip_address: if policy.user_data { clean(&ctx.ip_address) } else { None },
        client_user_agent: if policy.user_data { clean(&ctx.user_agent) } else { None },
        click_id: if policy.click_ids { clean(&ctx.click_ids.clone().validated().epik) } else { None },
    };
    let opt_out = !(policy.user_data && policy.personalization);

    for (i, e) in events.iter().enumerate() {
        let Some(event_name) = pinterest_name(&e.name) else {
            skipped.push((offset + i, PinterestSkip::Unsupported));
            continue;
        };
        if let Err(err) = e.validate().and_then(|()| check_window(e, ctx.now_ms)) {
            skipped.push((offset + i, PinterestSkip::Invalid(err)));
            continue;
        }
        if !user.is_matchable() {
            skipped.push((offset + i, PinterestSkip::NoAttribution));
            continue;
        }
        let data = custom_data(e);
        let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
        ok.push((
            offset + i,
            PinterestEvent {
                event_name,
                action_source: "web",
                event_time: at.div_euclid(1000),
                event_id: e.id.as_str().to_owned(),
                event_source_url: page_url(e, ctx).map(|u| if policy.click_ids { u } else { strip_click_ids(&u) }),
                opt_out,
                user_data: super::share(&mut user, i, events.len()),
                custom_data: (data != PinterestCustomData::default()).then_some(data),
            },
        ));
    }
}

/// One entry of a response's `events`, in the order of the request's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PinterestEventStatus {
    /// `processed` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error_message: Option<String>,
    /// What Pinterest accepted but could not use.
    pub warning_message: Option<String>,
}

impl PinterestEventStatus {
    /// Whether Pinterest processed the event.
    pub fn is_processed(&self) -> bool {
        self.status == "processed"
    }
}

/// A 200 answer: counts and one status per event. A 422 ("not all events
/// were successfully processed") carries the same under `details`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PinterestResponse {
    /// Events received.
    pub num_events_received: u64,
    /// Events processed.
    pub num_events_processed: u64,
    /// Per event, in request order.
    pub events: Vec<PinterestEventStatus>,
}

/// An error answer (`{"code": 2, "message": "Authentication failed."}`),
/// with `details` on a 422.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PinterestError {
    /// Pinterest's error code.
    pub code: i64,
    /// What was wrong.
    pub message: String,
    /// On a 422: the per-event statuses, if Pinterest gave them.
    pub details: Option<PinterestResponse>,
}

impl PinterestResponse {
    /// Parses a 200 body.
    pub fn parse(body: &str) -> Result<PinterestResponse> {
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "pinterest.response", reason: "not a Conversions API response" })
    }
}

impl PinterestError {
    /// Parses an error body.
    pub fn parse(body: &str) -> Option<PinterestError> {
        serde_json::from_str(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000 + 60_000;
    const EM: &str = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
    const PH: &str = "d6d4b4ab09b0e3ff3b3b2bfd0e8b2f0e0d11d8d1e7c7bd6f4ad6c4dc2b3a1f10";
    const XID: &str = "d8c59e8348e0c03f9d2105eed9791438f9aea9586381b79deadbc857eef89d78";
    const EPIK: &str = "dj0yJnU9b2JDcFFHekV4SHJNcmVr";

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_700_000_000_000);
        e.value = Some(Amount::parse("129.99").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_12345", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e.items.push(Item::new("SKU_777", "Mug").with_price(Amount::parse("99.96").unwrap(), 1));
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds { epik: Some(EPIK.into()), ..Default::default() },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(HashedUserData {
                google: None,
                meta: Some(user_data::MetaUserData {
                    em: vec![EM.into(), "jane@example.com".into()],
                    ph: vec![PH.into()],
                    external_id: vec![XID.into()],
                    ..Default::default()
                }),
            }),
            page_url: Some("https://shop.example.com/checkout/complete?epik=abc&x=1".into()),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
            now_ms: NOW,
            ..Default::default()
        }
    }

    fn config() -> PinterestOptions {
        PinterestOptions { ad_account_id: "549755885175".into() }
    }

    #[test]
    fn canonical_purchase() {
        // https://developers.pinterest.com/docs/api/v5/events-create, with Tally's event id.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx(), &config()).unwrap();
        assert_eq!(b.indices, [vec![0]]);
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        let want = json!({"data":[{
            "event_name":"checkout","action_source":"web","event_time":1_700_000_000i64,"event_id":e.id.as_str(),
            "event_source_url":"https://shop.example.com/checkout/complete?epik=abc&x=1","opt_out":false,
            "user_data":{"em":[EM],"ph":[PH],"external_id":[XID],
                         "client_ip_address":"203.0.113.7","client_user_agent":"Mozilla/5.0","click_id":EPIK},
            "custom_data":{"currency":"USD","value":"129.99","order_id":"ORD-1001",
                           "content_ids":["SKU_12345","SKU_777"],
                           "contents":[{"id":"SKU_12345","item_price":"10.01","quantity":3,"item_name":"Tee"},
                                       {"id":"SKU_777","item_price":"99.96","quantity":1,"item_name":"Mug"}],
                           "num_items":4}}]});
        assert_eq!(got, want);
    }

    #[test]
    fn only_sha256_digests_are_forwarded() {
        // The raw email in the hashed list never leaves: only 64-hex digests do.
        let b = build(&[purchase()], &ctx(), &config()).unwrap();
        let body = serde_json::to_string(&b.requests[0]).unwrap();
        assert!(!body.contains("jane@example.com"), "{body}");
        assert_eq!(b.requests[0].data[0].user_data.em, [EM]);
    }

    #[test]
    fn consent() {
        let mut c = ctx();
        c.consent = ConsentState::ALL_DENIED;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert_eq!(b.skipped, vec![(0, PinterestSkip::Consent(ConsentDenial::NoAdSignal))]);
        assert!(b.requests.is_empty());
        // Click id only: Pinterest cannot match on it alone.
        let mut c = ctx();
        c.consent.ad_user_data = ConsentSignal::Denied;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert_eq!(b.skipped, vec![(0, PinterestSkip::NoAttribution)]);
        // User data only: no click id, and none left in the URL.
        let mut c = ctx();
        c.consent.ad_storage = ConsentSignal::Denied;
        let b = build(&[purchase()], &c, &config()).unwrap();
        let ev = &b.requests[0].data[0];
        assert!(ev.user_data.click_id.is_none() && !ev.user_data.em.is_empty());
        assert_eq!(ev.event_source_url.as_deref(), Some("https://shop.example.com/checkout/complete?x=1"));
        // Personalisation denied: opted out.
        let mut c = ctx();
        c.consent.ad_personalization = ConsentSignal::Denied;
        assert!(build(&[purchase()], &c, &config()).unwrap().requests[0].data[0].opt_out);
        // IP address and user agent without an email still match.
        let mut c = ctx();
        c.user_data = None;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert!(b.skipped.is_empty());
        c.user_agent = None;
        let b = build(&[purchase()], &c, &config()).unwrap();
        assert_eq!(b.skipped, vec![(0, PinterestSkip::NoAttribution)]);
    }

    #[test]
    fn names_refunds_windows() {
        let mut old = purchase();
        old.occurred_at_ms = NOW - 8 * 86_400_000;
        let mut future = purchase();
        future.occurred_at_ms = NOW + 16 * 60_000;
        let refund = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), NOW);
        let mut search = Event::new(EventName::Search, EventId::parse("s1").unwrap(), NOW);
        search.set_text("search_term", "tee");
        let custom = Event::new(EventName::parse("quiz_done").unwrap(), EventId::parse("q1").unwrap(), 0);
        let b = build(&[old, future, refund, search, custom], &ctx(), &config()).unwrap();
        let window = Error::OutsideWindow { field: "occurredAt", destination: "pinterest", max_age_hours: 168 };
        assert_eq!(b.skipped[0], (0, PinterestSkip::Invalid(window.clone())));
        assert_eq!(b.skipped[1], (1, PinterestSkip::Invalid(window)));
        assert_eq!(b.skipped[2], (2, PinterestSkip::Unsupported));
        assert_eq!(b.indices, [vec![3, 4]]);
        let data = &b.requests[0].data;
        assert_eq!(data[0].event_name, "search");
        assert_eq!(data[0].custom_data.as_ref().unwrap().search_string.as_deref(), Some("tee"));
        assert_eq!(data[1].event_name, "custom");
        assert_eq!(data[1].event_time, NOW / 1000);
        assert!(data[1].custom_data.is_none());
        // Seven days less a minute is inside.
        let mut edge = purchase();
        edge.occurred_at_ms = NOW - 7 * 86_400_000 + 60_000;
        assert!(build(&[edge], &ctx(), &config()).unwrap().skipped.is_empty());
    }

    #[test]
    fn batches_of_many_visitors_split_at_1000() {
        let events: Vec<Event> = (0..1500)
            .map(|i| {
                let mut e = purchase();
                e.transaction_id = Some(TransactionId::parse(&format!("O-{i}")).unwrap());
                e.id = EventId::parse(&format!("e-{i}")).unwrap();
                e
            })
            .collect();
        let c = ctx();
        let b = build_many(&[(&events[..700], &c), (&events[700..], &c)], &config()).unwrap();
        assert!(b.skipped.is_empty(), "{:?}", b.skipped.first());
        assert_eq!(b.requests.iter().map(|r| r.data.len()).collect::<Vec<_>>(), [1000, 500]);
        assert_eq!(b.indices[1][0], 1000);
    }

    #[test]
    fn needs_an_ad_account_id() {
        let c = |id: &str| PinterestOptions { ad_account_id: id.into() };
        assert_eq!(
            build(&[purchase()], &ctx(), &c(" ")).unwrap_err(),
            Error::Missing { field: "pinterest.ad_account_id" }
        );
        assert!(matches!(build(&[purchase()], &ctx(), &c("12a")), Err(Error::Invalid { .. })));
        assert!(matches!(build(&[purchase()], &ctx(), &c(&"1".repeat(19))), Err(Error::Invalid { .. })));
    }

    #[test]
    fn answers() {
        let ok = PinterestResponse::parse(
            r#"{"num_events_received":2,"num_events_processed":1,
                "events":[{"status":"processed","error_message":null,"warning_message":"content_ids unknown"},
                          {"status":"failed","error_message":"event_time too old"}]}"#,
        )
        .unwrap();
        assert!(ok.events[0].is_processed() && !ok.events[1].is_processed());
        assert_eq!(ok.events[1].error_message.as_deref(), Some("event_time too old"));
        let e = PinterestError::parse(r#"{"code":2,"message":"Authentication failed."}"#).unwrap();
        assert_eq!((e.code, e.details), (2, None));
        assert!(PinterestResponse::parse("nope").is_err());
    }
}
