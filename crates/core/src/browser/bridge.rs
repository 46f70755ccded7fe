//! The gtag / fbq bridge: which calls the page's `gtag` and `fbq` get for an
//! event, under which consent, with which parameters.
//!
//! gtag.js ignores arrays pushed onto `dataLayer` by anyone but itself
//! (<https://github.com/google/site-kit-wp/issues/1181>), so the browser calls `window.gtag(...)` and
//! `window.fbq(...)` as functions, with the same ids the server sends: the
//! order id as GA4's and Ads' `transaction_id` (the order key with
//! `orderId: 'hashed'`) and the event id as Meta's `eventID`, so each platform
//! deduplicates the browser and server copies.
//!
//! GA4 event parameters come from [`for_each_ga4_param`], the field list the
//! Measurement Protocol builder (`destinations::ga4::event_params`) uses too; a
//! test holds the two equal.

use crate::amount::Amount;
use crate::consent::{ConsentState, DestinationKind};
use crate::event::{Event, ParamValue};
use crate::event_name::EventName;
use crate::ids::{OrderIdForm, UserId};
use crate::item::Item;
use crate::json::{ObjectWriter, push_str};
use crate::prelude::*;
use crate::user_data::HashedUserData;

use super::push_array;

/// One GA4 parameter value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ga4Value<'a> {
    /// Text.
    Text(&'a str),
    /// A decimal number.
    Number(Amount),
    /// A whole number.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// The `items` array.
    Items(&'a [Item]),
}

/// Visits the GA4 parameters of an event, in GA4's order: `transaction_id`
/// (the order id in `order_id` form, purchases and refunds), `currency`,
/// `value`, `shipping`, `tax`, `coupon`, `affiliation`, the event's own
/// params, then `items` (always for a purchase). Session and engagement
/// params are the sender's.
pub fn for_each_ga4_param(e: &Event, order_id: OrderIdForm, emit: &mut dyn FnMut(&str, Ga4Value<'_>)) {
    if matches!(e.name, EventName::Purchase | EventName::Refund) {
        if let Some(id) = e.order_ref(order_id) {
            emit("transaction_id", Ga4Value::Text(id));
        }
    }
    if let Some(c) = &e.currency {
        emit("currency", Ga4Value::Text(c.as_str()));
    }
    for (k, v) in [("value", e.value), ("shipping", e.shipping), ("tax", e.tax)] {
        if let Some(v) = v {
            emit(k, Ga4Value::Number(v));
        }
    }
    for (k, v) in [("coupon", &e.coupon), ("affiliation", &e.affiliation)] {
        if let Some(v) = v {
            emit(k, Ga4Value::Text(v));
        }
    }
    for (k, v) in &e.params {
        emit(
            k,
            match v {
                ParamValue::Text(s) => Ga4Value::Text(s),
                ParamValue::Number(a) => Ga4Value::Number(*a),
                ParamValue::Bool(b) => Ga4Value::Bool(*b),
            },
        );
    }
    if !e.items.is_empty() || e.name == EventName::Purchase {
        emit("items", Ga4Value::Items(&e.items));
    }
}

/// Visits an item's GA4 fields: the text fields, `creative_slot`, `price`,
/// `discount`, `quantity`, `index`.
pub fn for_each_ga4_item_field(item: &Item, emit: &mut dyn FnMut(&str, Ga4Value<'_>)) {
    for (k, v) in item.text_fields() {
        if let Some(v) = v {
            emit(k, Ga4Value::Text(v));
        }
    }
    if let Some(v) = &item.creative_slot {
        emit("creative_slot", Ga4Value::Text(v));
    }
    for (k, v) in [("price", item.price), ("discount", item.discount)] {
        if let Some(v) = v {
            emit(k, Ga4Value::Number(v));
        }
    }
    for (k, v) in [("quantity", item.quantity), ("index", item.index)] {
        if let Some(v) = v {
            emit(k, Ga4Value::Int(i64::from(v)));
        }
    }
}

fn write_ga4(w: &mut ObjectWriter<'_>, k: &str, v: Ga4Value<'_>) {
    match v {
        Ga4Value::Text(s) => {
            w.str(k, s);
        }
        Ga4Value::Number(a) => a.write_decimal(w.key(k)),
        Ga4Value::Int(n) => {
            w.int(k, n);
        }
        Ga4Value::Bool(b) => {
            w.bool(k, b);
        }
        Ga4Value::Items(items) => push_array(w.key(k), items, |o, item| {
            let mut iw = ObjectWriter::new(o);
            for_each_ga4_item_field(item, &mut |k, v| write_ga4(&mut iw, k, v));
            iw.finish();
        }),
    }
}

/// GA4 event parameters for `gtag('event', name, params)`, as JSON: `send_to`
/// first, then [`for_each_ga4_param`].
pub fn ga4_params_json(e: &Event, send_to: Option<&str>, order_id: OrderIdForm) -> String {
    let mut out = String::with_capacity(256);
    let mut w = ObjectWriter::new(&mut out);
    w.opt_str("send_to", send_to);
    for_each_ga4_param(e, order_id, &mut |k, v| write_ga4(&mut w, k, v));
    w.finish();
    out
}

fn write_amount(w: &mut ObjectWriter<'_>, k: &str, v: Option<Amount>) {
    if let Some(v) = v {
        v.write_decimal(w.key(k));
    }
}

/// Google Ads conversion parameters for `gtag('event', 'conversion', params)`:
/// `send_to: 'AW-…/label'`, `transaction_id` (the order id in `order_id` form
/// for purchases and refunds, the event id otherwise), `value`, `currency`.
pub fn ads_conversion_json(e: &Event, ads_id: &str, label: &str, order_id: OrderIdForm) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::new(&mut out);
    let mut send_to = String::with_capacity(ads_id.len() + label.len() + 1);
    send_to.push_str(ads_id);
    send_to.push('/');
    send_to.push_str(label);
    w.str("send_to", &send_to);
    let txn = match (&e.name, e.order_ref(order_id)) {
        (EventName::Purchase | EventName::Refund, Some(id)) => id,
        _ => e.id.as_str(),
    };
    w.str("transaction_id", txn);
    write_amount(&mut w, "value", e.value);
    w.opt_str("currency", e.currency.as_ref().map(|c| c.as_str()));
    w.finish();
    out
}

/// Whether Meta has a standard event for this name (`fbq('track', …)`);
/// otherwise it goes as `fbq('trackCustom', …)`. Refunds are not sent to Meta.
pub fn meta_call(name: &EventName) -> Option<&'static str> {
    match name {
        EventName::Refund => None,
        n if n.meta_name() != n.as_str() => Some("track"),
        _ => Some("trackCustom"),
    }
}

/// Meta custom data for `fbq('track', name, data, { eventID })`: `value`,
/// `currency`, `content_ids`, `contents`, `content_type`, `num_items`, `search_string`.
pub fn meta_custom_data_json(e: &Event) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::new(&mut out);
    write_amount(&mut w, "value", e.value);
    w.opt_str("currency", e.currency.as_ref().map(|c| c.as_str()));
    if !e.items.is_empty() {
        push_array(w.key("content_ids"), e.items.iter().filter_map(|i| i.item_id.as_deref()), push_str);
        push_array(w.key("contents"), &e.items, |o, item| {
            let mut cw = ObjectWriter::new(o);
            cw.opt_str("id", item.item_id.as_deref().or(item.item_name.as_deref()));
            cw.int("quantity", i64::from(item.quantity.unwrap_or(1)));
            write_amount(&mut cw, "item_price", item.price);
            cw.finish();
        });
        w.str("content_type", "product");
        let n: i64 = e.items.iter().map(|i| i64::from(i.quantity.unwrap_or(1))).sum();
        w.int("num_items", n);
    }
    if let Some(ParamValue::Text(s)) = e.params.get("search_term") {
        w.str("search_string", s);
    }
    w.finish();
    out
}

/// An argument of a bridge call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A string.
    Str(String),
    /// An object or value, as JSON (the browser parses it with `JSON.parse`).
    Json(String),
}

/// One call to the page's `gtag` (or `fbq`), made only if the page defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `window.fbq` rather than `window.gtag`.
    pub fbq: bool,
    /// The arguments.
    pub args: Vec<Arg>,
}

fn s(v: &str) -> Arg {
    Arg::Str(v.to_owned())
}

/// What the bridge knows beyond the event and the consent.
#[derive(Clone, Copy, Debug, Default)]
pub struct BridgeContext<'a> {
    /// `ga4MeasurementId` (`send_to` of GA4 events).
    pub ga4: Option<&'a str>,
    /// `adsConversionId`.
    pub ads: Option<&'a str>,
    /// The gtag conversion label for this event, if one is configured.
    pub label: Option<&'a str>,
    /// `metaPixelId` (calls go with `trackSingle` to that pixel).
    pub pixel: Option<&'a str>,
    /// The user's hashed data.
    pub hashed: Option<&'a HashedUserData>,
    /// How the order id fills `transaction_id` (`orderId` option; the server must match).
    pub order_id: OrderIdForm,
}

/// The gtag and fbq calls for one event, each under the core's consent policy:
///
/// * `gtag('set', 'user_data', google)` with `ad_user_data` granted, before the event;
/// * `gtag('event', name, params)` with GA4's policy (not for `trackConversion`);
/// * `gtag('event', 'conversion', { send_to: 'AW-…/label', … })` with Google Ads'
///   policy, when the event has a label;
/// * `fbq('track' | 'trackCustom', MetaName, data, { eventID })` (or
///   `trackSingle…` to the configured pixel) with ad user data and ad storage.
pub fn event_calls(e: &Event, c: &ConsentState, ctx: &BridgeContext<'_>) -> Vec<Call> {
    let mut out = Vec::new();
    let conversion = e.name.as_str() == "conversion";
    let ga4 = c.policy(DestinationKind::Ga4).may_send();
    let ads = c.policy(DestinationKind::GoogleAds).may_send();
    let gtag = |args| Call { fbq: false, args };
    if let Some(g) = ctx
        .hashed
        .and_then(|h| h.google.as_ref())
        .filter(|g| !g.is_empty() && c.ad_user_data.is_granted() && (ga4 || ads))
    {
        let mut j = String::new();
        HashedUserData { google: Some(g.clone()), meta: None }.write_json(&mut j);
        if let Some(inner) = j.strip_prefix("{\"google\":").and_then(|r| r.strip_suffix('}')) {
            out.push(gtag(vec![s("set"), s("user_data"), Arg::Json(inner.to_owned())]));
        }
    }
    if ga4 && !conversion {
        out.push(gtag(vec![s("event"), s(e.name.as_str()), Arg::Json(ga4_params_json(e, ctx.ga4, ctx.order_id))]));
    }
    if let (true, Some(ads_id), Some(label)) = (ads, ctx.ads, ctx.label) {
        out.push(gtag(vec![
            s("event"),
            s("conversion"),
            Arg::Json(ads_conversion_json(e, ads_id, label, ctx.order_id)),
        ]));
    }
    let meta = meta_call(&e.name).filter(|_| !conversion);
    if let Some(call) = meta.filter(|_| super::consent_gate::meta_pixel_allowed(c)) {
        let mut args = Vec::with_capacity(5);
        match ctx.pixel {
            Some(px) => {
                args.push(s(if call == "track" { "trackSingle" } else { "trackSingleCustom" }));
                args.push(s(px));
            }
            None => args.push(s(call)),
        }
        args.push(s(e.name.meta_name()));
        args.push(Arg::Json(meta_custom_data_json(e)));
        let mut opts = String::new();
        let mut w = ObjectWriter::new(&mut opts);
        w.str("eventID", e.id.as_str());
        w.finish();
        args.push(Arg::Json(opts));
        out.push(Call { fbq: true, args });
    }
    out
}

/// `gtag('config', ga4MeasurementId, { user_id, send_page_view: false })` after
/// `identifyUser` (`user_id: null` after `clearUser`), with GA4's policy.
pub fn user_call(ga4: Option<&str>, user: Option<&UserId>, c: &ConsentState) -> Option<Call> {
    let ga4 = ga4.filter(|_| c.policy(DestinationKind::Ga4).may_send())?;
    let mut j = String::new();
    let mut w = ObjectWriter::new(&mut j);
    match user {
        Some(u) => w.str("user_id", u.as_str()),
        None => w.raw("user_id", "null"),
    };
    w.bool("send_page_view", false);
    w.finish();
    Some(Call { fbq: false, args: vec![s("config"), s(ga4), Arg::Json(j)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentSignal::*;
    use crate::{Currency, TransactionId};

    fn purchase() -> Event {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse("T_12345").unwrap(), 1);
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e
    }

    #[test]
    fn gtag_params() {
        let e = purchase();
        // The shop's order id, as the server sends it too.
        let j = ga4_params_json(&e, Some("G-X1"), OrderIdForm::AsGiven);
        assert_eq!(
            j,
            r#"{"send_to":"G-X1","transaction_id":"T_12345","currency":"USD","value":30.03,"items":[{"item_id":"SKU_1","item_name":"Tee","price":10.01,"quantity":3}]}"#
        );
        let a = ads_conversion_json(&e, "AW-123", "lbl", OrderIdForm::AsGiven);
        assert_eq!(a, r#"{"send_to":"AW-123/lbl","transaction_id":"T_12345","value":30.03,"currency":"USD"}"#);
        // Hashed: the order key (the purchase's event id).
        let j = ga4_params_json(&e, None, OrderIdForm::Hashed);
        assert!(j.starts_with(r#"{"transaction_id":"54de189e-77b5-88e0-9311-ea73ac8286ab","#), "{j}");
        let a = ads_conversion_json(&e, "AW-123", "lbl", OrderIdForm::Hashed);
        assert_eq!(
            a,
            r#"{"send_to":"AW-123/lbl","transaction_id":"54de189e-77b5-88e0-9311-ea73ac8286ab","value":30.03,"currency":"USD"}"#
        );
        let m = meta_custom_data_json(&e);
        assert_eq!(
            m,
            r#"{"value":30.03,"currency":"USD","content_ids":["SKU_1"],"contents":[{"id":"SKU_1","quantity":3,"item_price":10.01}],"content_type":"product","num_items":3}"#
        );
        assert_eq!(meta_call(&EventName::Purchase), Some("track"));
        assert_eq!(meta_call(&EventName::ViewCart), Some("trackCustom"));
        assert_eq!(meta_call(&EventName::Refund), None);
    }

    fn names(calls: &[Call]) -> Vec<String> {
        calls
            .iter()
            .map(|c| {
                let a: Vec<&str> = c
                    .args
                    .iter()
                    .take(2)
                    .map(|a| match a {
                        Arg::Str(s) | Arg::Json(s) => s.as_str(),
                    })
                    .collect();
                let mut s = String::from(if c.fbq { "fbq:" } else { "gtag:" });
                s.push_str(&a.join(","));
                s
            })
            .collect()
    }

    #[test]
    fn calls_follow_consent() {
        let e = purchase();
        let hashed = HashedUserData {
            google: Some(crate::user_data::GoogleUserData {
                sha256_email_address: vec!["a".repeat(64)],
                ..Default::default()
            }),
            meta: None,
        };
        let ctx = BridgeContext {
            ga4: Some("G-X"),
            ads: Some("AW-1"),
            label: Some("L"),
            pixel: None,
            hashed: Some(&hashed),
            order_id: OrderIdForm::AsGiven,
        };
        let all = event_calls(&e, &ConsentState::ALL_GRANTED, &ctx);
        assert_eq!(
            names(&all),
            ["gtag:set,user_data", "gtag:event,purchase", "gtag:event,conversion", "fbq:track,Purchase"]
        );
        assert_eq!(all[0].args[2], Arg::Json(format!(r#"{{"sha256_email_address":["{}"]}}"#, "a".repeat(64))));
        assert_eq!(all[3].args[3], Arg::Json(r#"{"eventID":"54de189e-77b5-88e0-9311-ea73ac8286ab"}"#.into()));
        let analytics_only = ConsentState { analytics_storage: Granted, ..ConsentState::ALL_DENIED };
        assert_eq!(names(&event_calls(&e, &analytics_only, &ctx)), ["gtag:event,purchase"]);
        let px = BridgeContext { pixel: Some("123456"), ..ctx };
        let calls = event_calls(&e, &ConsentState::ALL_GRANTED, &px);
        assert_eq!(names(&calls)[3], "fbq:trackSingle,123456");
        let mut conv = purchase();
        conv.name = EventName::Custom("conversion".into());
        assert_eq!(
            names(&event_calls(&conv, &ConsentState::ALL_GRANTED, &ctx)),
            ["gtag:set,user_data", "gtag:event,conversion"]
        );
    }

    #[test]
    fn user_calls() {
        let u = UserId::parse("u1").unwrap();
        let c = user_call(Some("G-X"), Some(&u), &ConsentState::ALL_GRANTED).unwrap();
        assert_eq!(c.args[2], Arg::Json(r#"{"user_id":"u1","send_page_view":false}"#.into()));
        let c = user_call(Some("G-X"), None, &ConsentState::ALL_GRANTED).unwrap();
        assert_eq!(c.args[2], Arg::Json(r#"{"user_id":null,"send_page_view":false}"#.into()));
        assert!(user_call(Some("G-X"), Some(&u), &ConsentState::ALL_DENIED).is_none());
        assert!(user_call(None, Some(&u), &ConsentState::ALL_GRANTED).is_none());
    }

    /// The gtag params and the Measurement Protocol params are one field list:
    /// writing [`for_each_ga4_param`] into serde_json gives exactly
    /// `destinations::ga4::event_params` (less the session params), and the
    /// hand-written JSON parses to the same.
    #[cfg(feature = "serde_json")]
    #[test]
    fn same_fields_as_the_measurement_protocol() {
        use serde_json::{Map, Number, Value as J};
        fn j(v: Ga4Value<'_>) -> J {
            match v {
                Ga4Value::Text(s) => J::String(s.to_owned()),
                Ga4Value::Number(a) => Number::from_f64(a.to_f64()).map_or(J::Null, J::Number),
                Ga4Value::Int(n) => J::from(n),
                Ga4Value::Bool(b) => J::Bool(b),
                Ga4Value::Items(items) => J::Array(
                    items
                        .iter()
                        .map(|it| {
                            let mut m = Map::new();
                            for_each_ga4_item_field(it, &mut |k, v| {
                                m.insert(k.to_owned(), j(v));
                            });
                            J::Object(m)
                        })
                        .collect(),
                ),
            }
        }
        let mut events = vec![purchase()];
        let mut e = Event::new(EventName::AddToCart, crate::EventId::random_v7(1, [0; 10]), 1);
        e.currency = Some(Currency::parse("EUR").unwrap());
        e.value = Some(Amount::parse("5").unwrap());
        e.coupon = Some("C".into());
        e.shipping = Some(Amount::parse("1.5").unwrap());
        e.set_text("page_location", "https://s.example/");
        e.params.insert("flag".into(), ParamValue::Bool(true));
        e.params.insert("n".into(), ParamValue::Number(Amount::parse("2.25").unwrap()));
        let mut it = Item::new("A", "B");
        it.item_brand = Some("Br".into());
        it.creative_slot = Some("s".into());
        it.discount = Some(Amount::parse("0.5").unwrap());
        it.index = Some(2);
        e.items.push(it);
        events.push(e);
        let mut refund = Event::transactional(EventName::Refund, TransactionId::parse("T_1").unwrap(), 1);
        refund.currency = Some(Currency::parse("USD").unwrap());
        events.push(refund);
        for e in &events {
            let mut ours = Map::new();
            for_each_ga4_param(e, OrderIdForm::AsGiven, &mut |k, v| {
                ours.insert(k.to_owned(), j(v));
            });
            let mut mp = crate::destinations::ga4::event_params(e, None, true, OrderIdForm::AsGiven);
            mp.remove("engagement_time_msec");
            assert_eq!(ours, mp, "{:?}", e.name);
            // The JSON twin parses to the same (numbers compared as numbers: `5` is `5.0`).
            fn floats(v: J) -> J {
                match v {
                    J::Number(n) => n.as_f64().and_then(Number::from_f64).map_or(J::Null, J::Number),
                    J::Array(a) => J::Array(a.into_iter().map(floats).collect()),
                    J::Object(m) => J::Object(m.into_iter().map(|(k, v)| (k, floats(v))).collect()),
                    v => v,
                }
            }
            let parsed: J = serde_json::from_str(&ga4_params_json(e, None, OrderIdForm::AsGiven)).unwrap();
            assert_eq!(floats(parsed), floats(J::Object(mp)));
        }
    }
}
