//! Rokt Event API v2 requests (legacy `POST https://api.rokt.com/v2/events`,
//! <https://docs.rokt.com/developers/integration-guides/rokt-ads/event-api/>).
//!
//! Every event goes as `eventType: "conversion"` (which triggers Rokt's
//! attribution) with `conversiontype` naming the Tally event.
//! `clientEventId` is [`Event::id`] (36 characters at most), so a retry or
//! the browser's copy of the same purchase is recognised. A 200 answer can
//! still reject single records: see [`RoktResponse::row_errors`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::is_hex64;
use super::{DeliveryContext, VisitorEvents};
use crate::consent::DestinationKind;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::event_id::MAX_EVENT_ID;
use crate::event_name::EventName;
use crate::time::rfc3339_utc;

/// The legacy Event API v2 endpoint.
pub const DEFAULT_URL: &str = "https://api.rokt.com/v2/events";
/// The `Rokt-Version` header's name.
pub const HEADER_ROKT_VERSION: &str = "Rokt-Version";
/// The API version pinned in `Rokt-Version` (empty would mean "latest", possibly incompatible).
pub const ROKT_VERSION: &str = "2020-05-21";
/// Most events per request.
pub const MAX_EVENTS: usize = 100;
/// Tally's own cap on a request body.
pub const MAX_BODY_BYTES: usize = 4_000_000;
/// Longest `accountId`.
pub const MAX_ACCOUNT_ID: usize = 64;
/// Longest name/value value.
pub const MAX_VALUE_CHARS: usize = 65_536;
/// How far back `eventTime` may go: Rokt says 18 months; Tally counts 540 days.
pub const MAX_AGE_DAYS: u32 = 540;
/// How far in the future `eventTime` may be.
pub const MAX_FUTURE_MS: i64 = 5 * 60_000;

/// Per-account settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoktOptions {
    /// The advertiser account id (≤ 64 characters).
    pub account_id: String,
}

/// One `{name, value}` entry of `objectData` / `metaData`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    /// Lower-case attribute name.
    pub name: String,
    /// The value, as text.
    pub value: String,
}

fn nv(name: &str, value: impl Into<String>) -> NameValue {
    NameValue { name: name.to_owned(), value: value.into() }
}

/// One event of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoktEvent {
    /// [`Event::id`].
    pub client_event_id: String,
    /// `conversion`.
    pub event_type: &'static str,
    /// RFC 3339, UTC, milliseconds.
    pub event_time: String,
    /// Non-business data: `source: tally`.
    pub meta_data: Vec<NameValue>,
    /// Business data (`emailsha256`, `passbackconversiontrackingid`, `amount`, …).
    pub object_data: Vec<NameValue>,
}

/// A request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoktRequest {
    /// The account.
    pub account_id: String,
    /// At most 100 events.
    pub events: Vec<RoktEvent>,
}

/// Why an event was left out (the same for every destination).
pub use super::Skip as RoktSkip;

/// The requests to send and, per input event, why it was left out.
pub type RoktBatch = super::Batch<RoktRequest>;

/// Checks the event time: at most 18 months (540 days) old, at most 5 minutes in the future.
pub fn check_window(e: &Event, now_ms: i64) -> Result<()> {
    let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { now_ms };
    let age = now_ms.saturating_sub(at);
    if age > i64::from(MAX_AGE_DAYS) * 86_400_000 || age < -MAX_FUTURE_MS {
        return Err(Error::OutsideWindow {
            field: "occurredAt",
            destination: "rokt",
            max_age_hours: MAX_AGE_DAYS * 24,
        });
    }
    Ok(())
}

/// Builds the requests for `events` under `ctx`.
///
/// Consent is applied here: with neither `ad_storage` nor `ad_user_data`
/// granted nothing is built. `emailsha256` (Meta's email hash: trimmed,
/// lowercased) goes only with `ad_user_data`, `passbackconversiontrackingid`
/// (the `rtid` click id) only with `ad_storage`; an event left with neither is
/// [`RoktSkip::NoAttribution`]. The raw email is never sent. Refunds are
/// [`RoktSkip::Unsupported`]. A missing or too long account id is an error
/// for the whole call.
///
/// ```
/// use tally_core::destinations::{DeliveryContext, rokt};
/// use tally_core::*;
/// let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_000);
/// e.value = Some(Amount::parse("129.99").unwrap());
/// e.currency = Some(Currency::parse("USD").unwrap());
/// let ctx = DeliveryContext {
///     click_ids: ClickIds { rtid: Some("rtid123".into()), ..Default::default() },
///     consent: ConsentState::ALL_GRANTED,
///     now_ms: 2_000,
///     ..Default::default()
/// };
/// let config = rokt::RoktOptions { account_id: "12345".into() };
/// let batch = rokt::build(std::slice::from_ref(&e), &ctx, &config).unwrap();
/// assert_eq!(batch.requests[0].events[0].client_event_id, e.id.as_str());
/// ```
pub fn build(events: &[Event], ctx: &DeliveryContext, config: &RoktOptions) -> Result<RoktBatch> {
    build_many(&[(events, ctx)], config)
}

/// [`build`] for the events of several visitors at once, so one request carries
/// events of many visitors (each event keeps its own visitor's user data and
/// consent). Indices in the batch count through the groups' events in order.
pub fn build_many(groups: &[VisitorEvents<'_>], config: &RoktOptions) -> Result<RoktBatch> {
    let account = config.account_id.trim();
    if account.is_empty() {
        return Err(Error::Missing { field: "rokt.account_id" });
    }
    if crate::text::char_count(account) > MAX_ACCOUNT_ID {
        return Err(Error::TooLong { field: "rokt.account_id", max: MAX_ACCOUNT_ID });
    }
    Ok(super::pack_visitors(groups, visitor_events, (MAX_EVENTS, MAX_BODY_BYTES - 128, MAX_BODY_BYTES), |events| {
        RoktRequest { account_id: account.to_owned(), events }
    }))
}

/// One visitor's events: the accepted ones into `ok`, the others into `skipped`,
/// indexed from `offset`.
fn visitor_events(
    events: &[Event],
    ctx: &DeliveryContext,
    offset: usize,
    ok: &mut Vec<(usize, RoktEvent)>,
    skipped: &mut Vec<(usize, RoktSkip)>,
) {
    let policy = ctx.consent.policy(DestinationKind::Rokt);
    if let Err(denial) = policy.send {
        skipped.extend((0..events.len()).map(|i| (offset + i, RoktSkip::Consent(denial))));
        return;
    }
    let email = if policy.user_data {
        ctx.user_data.as_ref().and_then(|h| h.meta.as_ref()).and_then(|m| m.em.iter().find(|s| is_hex64(s)).cloned())
    } else {
        None
    };
    let rtid = if policy.click_ids { ctx.click_ids.valid_rtid() } else { None };

    for (i, e) in events.iter().enumerate() {
        if e.name == EventName::Refund {
            skipped.push((offset + i, RoktSkip::Unsupported));
            continue;
        }
        if let Err(err) = e.validate().and_then(|()| check_window(e, ctx.now_ms)) {
            skipped.push((offset + i, RoktSkip::Invalid(err)));
            continue;
        }
        if e.id.as_str().len() > MAX_EVENT_ID {
            skipped.push((offset + i, RoktSkip::Invalid(Error::TooLong { field: "eventId", max: MAX_EVENT_ID })));
            continue;
        }
        if email.is_none() && rtid.is_none() {
            skipped.push((offset + i, RoktSkip::NoAttribution));
            continue;
        }
        let mut object = Vec::with_capacity(9);
        if let Some(h) = &email {
            object.push(nv("emailsha256", h.clone()));
        }
        if let Some(r) = rtid {
            object.push(nv("passbackconversiontrackingid", r));
        }
        object.push(nv("conversiontype", e.name.as_str()));
        if let Some(v) = e.value {
            object.push(nv("amount", v.to_string()));
        }
        if let Some(c) = e.value.and(e.currency) {
            object.push(nv("currency", c.as_str()));
        }
        if !e.items.is_empty() {
            let q: u64 = e.items.iter().map(|i| u64::from(i.quantity.unwrap_or(1))).sum();
            object.push(nv("quantity", q.to_string()));
        }
        if let Some(t) = &e.transaction_id {
            object.push(nv("transactionid", t.as_str()));
            object.push(nv("confirmationref", t.as_str()));
        }
        if object.iter().any(|o| crate::text::char_count(&o.value) > MAX_VALUE_CHARS) {
            skipped.push((offset + i, RoktSkip::Invalid(Error::TooLong { field: "objectData", max: MAX_VALUE_CHARS })));
            continue;
        }
        let at = if e.occurred_at_ms > 0 { e.occurred_at_ms } else { ctx.now_ms };
        ok.push((
            offset + i,
            RoktEvent {
                client_event_id: e.id.as_str().to_owned(),
                event_type: "conversion",
                event_time: rfc3339_utc(at),
                meta_data: vec![nv("source", "tally")],
                object_data: object,
            },
        ));
    }
}

fn key_part(field: &'static str, prefix: &'static str, raw: &str) -> Result<String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(Error::Missing { field });
    }
    let ok = t.len() > prefix.len() && t.starts_with(prefix) && t.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !ok {
        return Err(Error::Invalid {
            field,
            reason: if prefix == "rpub-" {
                "expected the public key issued by Rokt, starting with rpub-"
            } else {
                "expected the secret key issued by Rokt, starting with rsec-"
            },
        });
    }
    Ok(t.to_owned())
}

/// The `Authorization` header value: `Basic base64("rpub-…:rsec-…")`,
/// after checking both keys' shapes.
///
/// ```
/// use tally_core::destinations::rokt::basic_auth;
/// assert_eq!(basic_auth("rpub-abc", "rsec-xyz").unwrap(), "Basic cnB1Yi1hYmM6cnNlYy14eXo=");
/// assert!(basic_auth("abc", "rsec-xyz").is_err());
/// ```
pub fn basic_auth(public_key: &str, secret: &str) -> Result<String> {
    let public = key_part("rokt.public_key", "rpub-", public_key)?;
    let secret = key_part("rokt.secret", "rsec-", secret)?;
    let mut pair = String::with_capacity(public.len() + secret.len() + 1);
    pair.push_str(&public);
    pair.push(':');
    pair.push_str(&secret);
    let mut s = String::from("Basic ");
    s.push_str(&base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
    Ok(s)
}

/// The error of an unprocessed record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RecordError {
    /// `ValidationError`, …
    pub code: String,
    /// Human readable.
    pub message: String,
}

/// A record Rokt did not take.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UnprocessedRecord {
    /// Why.
    pub error: RecordError,
    /// The record as sent.
    pub record: Value,
}

impl UnprocessedRecord {
    /// The record's `clientEventId`, if Rokt echoed it.
    pub fn client_event_id(&self) -> Option<&str> {
        self.record.get("clientEventId").and_then(Value::as_str)
    }
}

/// `data` of an answer.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RoktResponseData {
    /// Records that failed although the call succeeded.
    pub unprocessed_records: Vec<UnprocessedRecord>,
}

/// The answer to a 2xx call.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RoktResponse {
    /// Details.
    pub data: Option<RoktResponseData>,
}

/// A record of a sent request that Rokt rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// Position of the event in the request's `events`, when it can be matched.
    pub position: Option<usize>,
    /// Its `clientEventId`, when echoed.
    pub client_event_id: Option<String>,
    /// Rokt's code.
    pub code: String,
    /// Rokt's message.
    pub message: String,
}

impl RoktResponse {
    /// Parses a 2xx body; an empty body is a full success.
    pub fn parse(body: &str) -> Result<RoktResponse> {
        if body.trim().is_empty() {
            return Ok(RoktResponse::default());
        }
        serde_json::from_str(body)
            .map_err(|_| Error::Invalid { field: "rokt.response", reason: "not an Event API response" })
    }

    /// The unprocessed records, matched to their position in `sent` by `clientEventId`.
    /// A 200 with unprocessed records is a failure for those records only.
    pub fn row_errors(&self, sent: &RoktRequest) -> Vec<RowError> {
        self.data
            .iter()
            .flat_map(|d| d.unprocessed_records.iter())
            .map(|r| {
                let id = r.client_event_id();
                RowError {
                    position: id.and_then(|id| sent.events.iter().position(|e| e.client_event_id == id)),
                    client_event_id: id.map(str::to_owned),
                    code: r.error.code.clone(),
                    message: r.error.message.clone(),
                }
            })
            .collect()
    }
}

pub use crate::http::ErrorClass;

/// Classifies a non-2xx HTTP status.
///
/// Rokt's answers mean what [the one status rule](crate::http) says: 429 and
/// 5xx transient, 401 / 403 the key pair, other 4xx the request.
pub fn classify(http_status: u16) -> ErrorClass {
    ErrorClass::of_status(http_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use serde_json::json;

    const NOW: i64 = 1_777_667_565_339 + 60_000;
    const EM: &str = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1001").unwrap(), 1_777_667_565_339);
        e.value = Some(Amount::parse("129.99").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_1", "Tee").with_price(Amount::parse("43.33").unwrap(), 3));
        e
    }

    fn ctx() -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds { rtid: Some("rtid-abc123".into()), ..Default::default() },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(HashedUserData {
                google: None,
                meta: Some(user_data::MetaUserData { em: vec![EM.into()], ..Default::default() }),
            }),
            now_ms: NOW,
            ..Default::default()
        }
    }

    fn config() -> RoktOptions {
        RoktOptions { account_id: "12345".into() }
    }

    #[test]
    fn canonical_request() {
        // https://docs.rokt.com/developers/integration-guides/rokt-ads/event-api/, with Tally's event id and hashed email.
        let e = purchase();
        let b = build(std::slice::from_ref(&e), &ctx(), &config()).unwrap();
        let got = serde_json::to_value(&b.requests[0]).unwrap();
        let want = json!({"accountId":"12345","events":[{
            "clientEventId":e.id.as_str(),"eventType":"conversion","eventTime":"2026-05-01T20:32:45.339Z",
            "metaData":[{"name":"source","value":"tally"}],
            "objectData":[{"name":"emailsha256","value":EM},
                          {"name":"passbackconversiontrackingid","value":"rtid-abc123"},
                          {"name":"conversiontype","value":"purchase"},
                          {"name":"amount","value":"129.99"},
                          {"name":"currency","value":"USD"},
                          {"name":"quantity","value":"3"},
                          {"name":"transactionid","value":"ORD-1001"},
                          {"name":"confirmationref","value":"ORD-1001"}]}]});
        assert_eq!(got, want);
        assert!(e.id.as_str().len() <= 36);
    }

    #[test]
    fn consent_and_attribution() {
        let mut c = ctx();
        c.consent = ConsentState::ALL_DENIED;
        assert_eq!(
            build(&[purchase()], &c, &config()).unwrap().skipped,
            vec![(0, RoktSkip::Consent(ConsentDenial::NoAdSignal))]
        );
        let mut c = ctx();
        c.consent.ad_user_data = ConsentSignal::Denied;
        let b = build(&[purchase()], &c, &config()).unwrap();
        let names: Vec<&str> = b.requests[0].events[0].object_data.iter().map(|o| o.name.as_str()).collect();
        assert!(!names.contains(&"emailsha256"));
        assert!(names.contains(&"passbackconversiontrackingid"));
        c.click_ids = ClickIds::default();
        assert_eq!(build(&[purchase()], &c, &config()).unwrap().skipped, vec![(0, RoktSkip::NoAttribution)]);
    }

    #[test]
    fn windows_refunds_and_batches() {
        let mut old = purchase();
        old.occurred_at_ms = NOW - 541 * 86_400_000;
        let mut future = purchase();
        future.occurred_at_ms = NOW + 6 * 60_000;
        let refund = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1001").unwrap(), NOW);
        let b = build(&[old, future, refund], &ctx(), &config()).unwrap();
        assert!(matches!(b.skipped[0].1, RoktSkip::Invalid(Error::OutsideWindow { .. })));
        assert!(matches!(b.skipped[1].1, RoktSkip::Invalid(Error::OutsideWindow { .. })));
        assert_eq!(b.skipped[2], (2, RoktSkip::Unsupported));

        let events: Vec<Event> =
            (0..250).map(|i| Event::new(EventName::SignUp, EventId::random_v7(i, [1; 10]), NOW)).collect();
        let b = build(&events, &ctx(), &config()).unwrap();
        assert_eq!(b.requests.iter().map(|r| r.events.len()).collect::<Vec<_>>(), [100, 100, 50]);
    }

    #[test]
    fn account_id_rules() {
        for (id, field) in [("", "rokt.account_id"), (&*"1".repeat(65), "rokt.account_id")] {
            let c = RoktOptions { account_id: id.into() };
            assert_eq!(build(&[], &ctx(), &c).unwrap_err().field(), field);
        }
    }

    #[test]
    fn auth() {
        assert!(basic_auth("rpub-", "rsec-x").is_err());
        assert!(basic_auth("rpub-a:b", "rsec-x").is_err());
        assert_eq!(basic_auth("rpub-a", "rsek-x").unwrap_err().field(), "rokt.secret");
        assert_eq!(basic_auth("", "rsec-x").unwrap_err(), Error::Missing { field: "rokt.public_key" });
    }

    #[test]
    fn unprocessed_records_map_to_rows() {
        let b = build(&[purchase()], &ctx(), &config()).unwrap();
        let sent = &b.requests[0];
        let id = &sent.events[0].client_event_id;
        let body = json!({"data":{"unprocessedRecords":[
            {"error":{"code":"ValidationError","message":"Invalid content"},"record":{"clientEventId":id}},
            {"error":{"code":"ValidationError","message":"x"},"record":{}}]}})
        .to_string();
        let r = RoktResponse::parse(&body).unwrap();
        let errs = r.row_errors(sent);
        assert_eq!(errs[0].position, Some(0));
        assert_eq!(errs[0].code, "ValidationError");
        assert_eq!(errs[1].position, None);
        assert!(RoktResponse::parse("").unwrap().row_errors(sent).is_empty());
        assert!(RoktResponse::parse("{}").unwrap().row_errors(sent).is_empty());
        assert!(RoktResponse::parse("<html>").is_err());
        assert_eq!(classify(503), ErrorClass::Transient);
        assert_eq!(classify(401), ErrorClass::Credentials);
        assert_eq!(classify(400), ErrorClass::Permanent);
    }
}
