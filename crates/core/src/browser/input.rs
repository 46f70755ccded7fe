//! What JavaScript hands the tracker, read into the core's types.
//!
//! The browser module reads the JavaScript value the page hands it into a [`Value`]
//! (strings, numbers, booleans, arrays, plain objects) and everything after
//! that is here: the event a helper builds from `{ value, currency, items, … }`, the
//! user data to hash, a consent update. Every error names the field, spelled as
//! the JavaScript API spells it, so the page developer knows what to fix.

use crate::amount::Amount;
use crate::consent::{ConsentSignal, ConsentUpdate};
use crate::currency::Currency;
use crate::error::{Error, Result};
use crate::event::{Event, ParamValue};
use crate::event_id::EventId;
use crate::event_name::EventName;
use crate::ids::TransactionId;
use crate::item::Item;
use crate::prelude::*;
use crate::user_data::{Address, UserData};

/// A JavaScript value, as far as the tracker reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// `undefined` or `null` (or a missing property).
    #[default]
    Absent,
    /// A boolean.
    Bool(bool),
    /// A number (any JavaScript number, `NaN` and infinities included).
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Value>),
    /// A plain object's own enumerable properties, in their order.
    Map(Vec<(String, Value)>),
    /// A function (only the `onDrop` option takes one).
    Func,
    /// Anything else (a symbol, a bigint, an object nested too deep).
    Other,
}

static ABSENT: Value = Value::Absent;

impl Value {
    /// The property `key` of an object; [`Value::Absent`] when it is missing or
    /// when this is not an object.
    pub fn get(&self, key: &str) -> &Value {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map_or(&ABSENT, |(_, v)| v),
            _ => &ABSENT,
        }
    }

    /// True for `undefined` / `null`.
    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn invalid(field: &'static str, reason: &'static str) -> Error {
    Error::Invalid { field, reason }
}

/// An optional string property: absent → `None`, a string → `Some`, anything
/// else an error naming `field`.
pub fn opt_str(o: &Value, key: &str, field: &'static str) -> Result<Option<String>> {
    match o.get(key) {
        Value::Absent => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        _ => Err(invalid(field, "expected a string")),
    }
}

/// An amount: a number (rounded once to six decimals) or a decimal string, exactly.
fn opt_amount(v: &Value, field: &'static str) -> Result<Option<Amount>> {
    let r = match v {
        Value::Absent => return Ok(None),
        Value::Num(f) => Amount::from_f64(*f),
        Value::Str(s) => Amount::parse(s),
        _ => return Err(invalid(field, "expected a number such as 12.5")),
    };
    r.map(Some).map_err(|_| invalid(field, "expected a finite decimal number such as 12.5"))
}

/// A number with no fractional part that fits an `i64` (`f64::fract` needs `std`).
fn is_whole(f: f64) -> bool {
    f == (f as i64) as f64
}

fn opt_u32(v: &Value, field: &'static str) -> Result<Option<u32>> {
    match v {
        Value::Absent => Ok(None),
        Value::Num(f) if *f >= 0.0 && *f <= f64::from(u32::MAX) && is_whole(*f) => Ok(Some(*f as u32)),
        _ => Err(invalid(field, "expected a whole number")),
    }
}

/// The text fields of an item by their JavaScript spellings (camelCase, GA4's
/// snake_case, and the short `id` / `name`).
fn item_slot<'a>(it: &'a mut Item, key: &str) -> Option<&'a mut Option<String>> {
    Some(match key {
        "itemId" | "item_id" | "id" => &mut it.item_id,
        "itemName" | "item_name" | "name" => &mut it.item_name,
        "affiliation" => &mut it.affiliation,
        "coupon" => &mut it.coupon,
        "itemBrand" | "item_brand" => &mut it.item_brand,
        "itemCategory" | "item_category" => &mut it.item_category,
        "itemCategory2" | "item_category2" => &mut it.item_category2,
        "itemCategory3" | "item_category3" => &mut it.item_category3,
        "itemCategory4" | "item_category4" => &mut it.item_category4,
        "itemCategory5" | "item_category5" => &mut it.item_category5,
        "itemListId" | "item_list_id" => &mut it.item_list_id,
        "itemListName" | "item_list_name" => &mut it.item_list_name,
        "itemVariant" | "item_variant" => &mut it.item_variant,
        "locationId" | "location_id" => &mut it.location_id,
        "promotionId" | "promotion_id" => &mut it.promotion_id,
        "promotionName" | "promotion_name" => &mut it.promotion_name,
        "creativeName" | "creative_name" => &mut it.creative_name,
        "creativeSlot" | "creative_slot" => &mut it.creative_slot,
        _ => return None,
    })
}

/// Reads one item (`{ itemId, itemName, price, quantity, … }`). Whole-number
/// ids are kept as text (numeric SKUs are common); unknown keys are ignored.
pub fn item(o: &Value) -> Result<Item> {
    let Value::Map(m) = o else {
        return Err(invalid("items[]", "expected objects such as { itemId: 'SKU_1', price: 10, quantity: 1 }"));
    };
    let mut it = Item::default();
    for (k, v) in m {
        match k.as_str() {
            "price" => it.price = opt_amount(v, "items[].price")?,
            "discount" => it.discount = opt_amount(v, "items[].discount")?,
            "quantity" => it.quantity = opt_u32(v, "items[].quantity")?,
            "index" => it.index = opt_u32(v, "items[].index")?,
            key => {
                if let Some(slot) = item_slot(&mut it, key) {
                    *slot = match v {
                        Value::Str(s) => Some(s.clone()),
                        Value::Num(f) if is_whole(*f) => {
                            let mut s = String::new();
                            crate::json::push_i64(&mut s, *f as i64);
                            Some(s)
                        }
                        _ => None,
                    };
                }
            }
        }
    }
    Ok(it)
}

fn param_value(v: &Value) -> Result<ParamValue> {
    match v {
        Value::Str(s) => Ok(ParamValue::Text(s.clone())),
        Value::Bool(b) => Ok(ParamValue::Bool(*b)),
        Value::Num(f) => {
            Amount::from_f64(*f).map(ParamValue::Number).map_err(|_| invalid("params", "numbers must be finite"))
        }
        _ => Err(invalid("params", "values must be strings, numbers or booleans")),
    }
}

/// What a helper reads beyond the fields every helper shares.
#[derive(Clone, Copy, Debug)]
pub struct Extra {
    /// `(input key, GA4 parameter)` pairs copied as text (`paymentType` → `payment_type`).
    pub params: &'static [(&'static str, &'static str)],
    /// `transactionId` is required (purchase, refund).
    pub txn_required: bool,
}

/// Nothing beyond the common fields.
pub const NO_EXTRA: Extra = Extra { params: &[], txn_required: false };

/// Builds and validates the event of a helper from its input
/// `{ value, currency, items, coupon, affiliation, shipping, tax, originalValue,
/// refundId, transactionId, eventId, params }`.
///
/// With a `transactionId` the id is derived from it (the server derives the
/// same; a refund's also from its `refundId`, else what remains of the order:
/// [`Event::key_refund`]); otherwise it is the given `eventId` or a UUIDv7 from `now_ms` and
/// `random`. Unknown keys (`userData`, a helper's own ones) are ignored here.
pub fn event(name: EventName, o: &Value, extra: &Extra, now_ms: i64, random: [u8; 10]) -> Result<Event> {
    if !matches!(o, Value::Absent | Value::Map(_)) {
        return Err(invalid("input", "expected an object"));
    }
    let txn = opt_str(o, "transactionId", "transactionId")?.map(|t| TransactionId::parse(&t)).transpose()?;
    let mut e = match txn {
        Some(t) => Event::transactional(name, t, now_ms),
        None if extra.txn_required => {
            return Err(Error::Missing { field: "transactionId" });
        }
        None => {
            let id = match opt_str(o, "eventId", "eventId")? {
                Some(id) => EventId::parse(&id)?,
                None => EventId::random_v7(now_ms.max(0).unsigned_abs(), random),
            };
            Event::new(name, id, now_ms)
        }
    };
    e.value = opt_amount(o.get("value"), "value")?;
    e.shipping = opt_amount(o.get("shipping"), "shipping")?;
    e.tax = opt_amount(o.get("tax"), "tax")?;
    e.original_value = opt_amount(o.get("originalValue"), "originalValue")?;
    e.refund_id = opt_str(o, "refundId", "refundId")?.map(|r| crate::ids::RefundId::parse(&r)).transpose()?;
    e.key_refund();
    e.currency = opt_str(o, "currency", "currency")?.map(|c| Currency::parse(&c)).transpose()?;
    e.coupon = opt_str(o, "coupon", "coupon")?;
    e.affiliation = opt_str(o, "affiliation", "affiliation")?;
    match o.get("items") {
        Value::Absent => {}
        Value::List(items) => {
            for v in items {
                e.items.push(item(v)?);
            }
        }
        _ => return Err(invalid("items", "expected an array of items")),
    }
    for (key, param) in extra.params {
        if let Some(v) = opt_str(o, key, "params")? {
            e.set_text(param, v);
        }
    }
    match o.get("params") {
        Value::Absent => {}
        Value::Map(m) => {
            for (k, v) in m.iter().filter(|(_, v)| !v.is_absent()) {
                e.params.insert(k.clone(), param_value(v)?);
            }
        }
        _ => {
            return Err(invalid("params", "expected an object of strings, numbers or booleans"));
        }
    }
    e.validate()?;
    Ok(e)
}

/// Reads `{ email, phone, firstName, lastName, dateOfBirth, gender, externalId,
/// address: { street, city, region, postalCode, country } }`. The browser
/// passes strings in NFC (`String.prototype.normalize`), as the core's browser
/// build expects.
pub fn user_data(o: &Value) -> Result<UserData> {
    if !matches!(o, Value::Map(_)) {
        return Err(invalid("userData", "expected an object such as { email, phone, firstName, lastName, address }"));
    }
    let a = o.get("address");
    let address = if a.is_absent() {
        None
    } else {
        Some(Address {
            street: opt_str(a, "street", "userData.address.street")?,
            city: opt_str(a, "city", "userData.address.city")?,
            region: opt_str(a, "region", "userData.address.region")?,
            postal_code: opt_str(a, "postalCode", "userData.address.postalCode")?,
            country: opt_str(a, "country", "userData.address.country")?,
        })
    };
    Ok(UserData {
        email: opt_str(o, "email", "userData.email")?,
        phone: opt_str(o, "phone", "userData.phone")?,
        first_name: opt_str(o, "firstName", "userData.firstName")?,
        last_name: opt_str(o, "lastName", "userData.lastName")?,
        date_of_birth: opt_str(o, "dateOfBirth", "userData.dateOfBirth")?,
        gender: opt_str(o, "gender", "userData.gender")?,
        external_id: opt_str(o, "externalId", "userData.externalId")?,
        address,
    })
}

/// The consent keys: gtag's snake_case, the camelCase alias, and the field an error names.
pub const CONSENT_KEYS: [(&str, &str, &str); 4] = [
    ("ad_storage", "adStorage", "consent.ad_storage"),
    ("analytics_storage", "analyticsStorage", "consent.analytics_storage"),
    ("ad_user_data", "adUserData", "consent.ad_user_data"),
    ("ad_personalization", "adPersonalization", "consent.ad_personalization"),
];

/// Reads a consent update: `'granted' | 'denied'` or booleans, keyed as gtag
/// spells them (camelCase accepted). Absent keys do not change.
pub fn consent_update(o: &Value) -> Result<ConsentUpdate> {
    if !matches!(o, Value::Map(_)) {
        return Err(invalid(
            "consent",
            "expected an object such as { ad_storage: 'granted', analytics_storage: 'denied' }",
        ));
    }
    let mut u = ConsentUpdate::default();
    let slots = [&mut u.ad_storage, &mut u.analytics_storage, &mut u.ad_user_data, &mut u.ad_personalization];
    for ((snake, camel, field), slot) in CONSENT_KEYS.iter().zip(slots) {
        let mut v = o.get(snake);
        if v.is_absent() {
            v = o.get(camel);
        }
        *slot = match v {
            Value::Absent => continue,
            Value::Bool(true) => Some(ConsentSignal::Granted),
            Value::Bool(false) => Some(ConsentSignal::Denied),
            Value::Str(s) => ConsentSignal::parse(s),
            _ => None,
        };
        if slot.is_none() {
            return Err(invalid(field, "expected 'granted' or 'denied'"));
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    fn cart() -> Value {
        map(&[
            ("value", Value::Num(20.0)),
            ("currency", s("EUR")),
            (
                "items",
                Value::List(vec![map(&[
                    ("itemId", Value::Num(1234.0)),
                    ("item_name", s("Tee")),
                    ("price", s("10.00")),
                    ("quantity", Value::Num(2.0)),
                    ("unknown", Value::Bool(true)),
                ])]),
            ),
            ("params", map(&[("color", s("red")), ("n", Value::Num(1.5)), ("x", Value::Absent)])),
            ("userData", map(&[("email", s("a@b.c"))])),
        ])
    }

    #[test]
    fn each_refund_the_page_reports_has_the_servers_id_for_it() {
        let refund = |pairs: &[(&str, Value)]| -> Event {
            let mut all = vec![("transactionId", s("ORD-7")), ("currency", s("EUR"))];
            all.extend(pairs.iter().cloned());
            event(EventName::Refund, &map(&all), &NO_EXTRA, 5, [7; 10]).unwrap()
        };
        let first = refund(&[("value", Value::Num(20.0)), ("originalValue", Value::Num(100.0))]);
        let second = refund(&[("value", Value::Num(30.0)), ("originalValue", s("80.00"))]);
        assert_ne!(first.id, second.id, "a second partial refund is its own event");
        let txn = TransactionId::parse("ORD-7").unwrap();
        assert_eq!(
            second.id,
            EventId::for_refund(&txn, None, Amount::parse("50").unwrap()),
            "as the server derives it"
        );
        let keyed =
            refund(&[("refundId", s("RF-2")), ("value", Value::Num(30.0)), ("originalValue", Value::Num(80.0))]);
        assert_eq!(keyed.refund_id.as_ref().map(crate::RefundId::as_str), Some("RF-2"));
        assert_ne!(keyed.id, second.id);
        let bad = event(
            EventName::Refund,
            &map(&[("transactionId", s("ORD-7")), ("refundId", Value::Num(2.0))]),
            &NO_EXTRA,
            5,
            [7; 10],
        );
        assert_eq!(bad.unwrap_err().field(), "refundId");
    }

    #[test]
    fn builds_an_event() {
        let e = event(EventName::AddToCart, &cart(), &NO_EXTRA, 5, [7; 10]).unwrap();
        assert_eq!(e.value, Some(Amount::parse("20").unwrap()));
        assert_eq!(e.items[0].item_id.as_deref(), Some("1234"));
        assert_eq!(e.items[0].item_name.as_deref(), Some("Tee"));
        assert_eq!(e.items[0].quantity, Some(2));
        assert_eq!(e.params.len(), 2);
        assert_eq!(e.id.as_str().len(), 36);
        let same = event(EventName::AddToCart, &cart(), &NO_EXTRA, 5, [7; 10]).unwrap();
        assert_eq!(e.id, same.id, "the id comes from the time and the random bytes given");
    }

    #[test]
    fn transactions_and_ids() {
        let need = Extra { params: &[], txn_required: true };
        assert_eq!(
            event(EventName::Purchase, &Value::Absent, &need, 1, [0; 10]).unwrap_err(),
            Error::Missing { field: "transactionId" }
        );
        let order = map(&[("transactionId", s("T_12345")), ("value", s("30.03")), ("currency", s("USD"))]);
        let e = event(EventName::Purchase, &order, &need, 1, [0; 10]).unwrap();
        assert_eq!(e.id.as_str(), "54de189e-77b5-88e0-9311-ea73ac8286ab");
        let given = map(&[("eventId", s("my-id"))]);
        let e = event(EventName::ViewItem, &given, &NO_EXTRA, 1, [0; 10]).unwrap();
        assert_eq!(e.id.as_str(), "my-id");
        let x = Extra { params: &[("method", "method")], txn_required: false };
        let e = event(EventName::SignUp, &map(&[("method", s("google"))]), &x, 1, [0; 10]).unwrap();
        assert_eq!(e.params.get("method"), Some(&ParamValue::Text("google".into())));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |o: Value| event(EventName::AddToCart, &o, &NO_EXTRA, 1, [0; 10]).unwrap_err().field();
        assert_eq!(field(s("x")), "input");
        assert_eq!(field(map(&[("value", Value::Num(f64::NAN))])), "value");
        assert_eq!(field(map(&[("value", Value::Bool(true))])), "value");
        assert_eq!(field(map(&[("value", Value::Num(1.0))])), "currency");
        assert_eq!(field(map(&[("items", s("x"))])), "items");
        assert_eq!(field(map(&[("items", Value::List(vec![s("x")]))])), "items[]");
        assert_eq!(
            field(map(&[("items", Value::List(vec![map(&[("itemId", s("a")), ("quantity", Value::Num(1.5))])]))])),
            "items[].quantity"
        );
        assert_eq!(field(map(&[("params", s("x"))])), "params");
        assert_eq!(field(map(&[("params", map(&[("a", Value::Func)]))])), "params");
        assert_eq!(field(map(&[("coupon", Value::Num(1.0))])), "coupon");
    }

    #[test]
    fn whole_numbers_are_told_apart_without_std() {
        for f in [0.0, -0.0, 1.0, -7.0, 4_294_967_295.0, 1e15] {
            assert!(is_whole(f), "{f}");
        }
        for f in [0.5, -1.25, 1e-9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
            assert!(!is_whole(f), "{f}");
        }
    }

    #[test]
    fn reads_user_data() {
        let u = user_data(&map(&[("email", s("a@b.c")), ("address", map(&[("postalCode", s("10001"))]))])).unwrap();
        assert_eq!(u.email.as_deref(), Some("a@b.c"));
        assert_eq!(u.address.unwrap().postal_code.as_deref(), Some("10001"));
        assert_eq!(user_data(&map(&[("email", Value::Num(5.0))])).unwrap_err().field(), "userData.email");
        assert!(user_data(&s("x")).is_err());
    }

    #[test]
    fn reads_consent_updates() {
        let u = consent_update(&map(&[
            ("ad_storage", s("granted")),
            ("analyticsStorage", Value::Bool(false)),
            ("functionality_storage", s("granted")),
        ]))
        .unwrap();
        assert_eq!(u.ad_storage, Some(ConsentSignal::Granted));
        assert_eq!(u.analytics_storage, Some(ConsentSignal::Denied));
        assert_eq!(u.ad_user_data, None);
        assert_eq!(consent_update(&map(&[("ad_user_data", s("yes"))])).unwrap_err().field(), "consent.ad_user_data");
        assert!(consent_update(&Value::Absent).is_err());
    }
}
