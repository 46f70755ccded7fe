//! The canonical event: what a browser or a backend reports, before any destination shapes it.

use crate::prelude::*;

use crate::amount::Amount;
use crate::currency::Currency;
use crate::error::{Error, Result};
use crate::event_id::EventId;
use crate::event_name::{EventName, RESERVED_PREFIXES, is_valid_ga4_name};
use crate::ids::{RefundId, TransactionId};
use crate::item::{Item, MAX_ITEMS, MAX_PARAM_VALUE, write_item_json};
pub use crate::params::Params;

/// Most parameters on one event (GA4's limit, items excluded).
pub const MAX_PARAMS: usize = 25;

/// A parameter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// Text.
    Text(String),
    /// A decimal number, kept exact.
    Number(Amount),
    /// A boolean.
    Bool(bool),
}

/// Whether a refund returns the whole order or part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundScope {
    /// The whole order: Google Ads retracts the conversion.
    Full,
    /// Part of it: Google Ads restates the conversion to `remaining`.
    Partial {
        /// What the order is worth after the refund.
        remaining: Amount,
    },
}

/// One event, in Tally's canonical form.
///
/// Build it with [`Event::transactional`] (purchase, refund: the id is
/// derived from the transaction id) or [`Event::new`] (everything else, with a
/// UUIDv7), then set the fields and call [`Event::validate`]. A refund's id
/// also names which refund of the order it is: call [`Event::key_refund`]
/// once its amounts and refund id are set.
///
/// ```
/// use tally_core::{Amount, Currency, Event, EventName, Item, TransactionId};
/// let txn = TransactionId::parse("ORD-1001").unwrap();
/// let mut e = Event::transactional(EventName::Purchase, txn, 1_757_409_591_000);
/// e.value = Some(Amount::parse("30.03").unwrap());
/// e.currency = Some(Currency::parse("USD").unwrap());
/// e.items.push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
/// e.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The deduplication key.
    pub id: EventId,
    /// What happened.
    pub name: EventName,
    /// When it happened, Unix milliseconds.
    pub occurred_at_ms: i64,
    /// The order id, for transactional events.
    pub transaction_id: Option<TransactionId>,
    /// Monetary value (order total for a purchase; amount refunded for a refund).
    pub value: Option<Amount>,
    /// Currency of `value`, shipping, tax and item prices.
    pub currency: Option<Currency>,
    /// Product lines.
    pub items: Vec<Item>,
    /// Order-level coupon.
    pub coupon: Option<String>,
    /// Store or affiliation.
    pub affiliation: Option<String>,
    /// Shipping cost.
    pub shipping: Option<Amount>,
    /// Tax.
    pub tax: Option<Amount>,
    /// For refunds: the order's value before this refund. A refund whose value
    /// is less than this is partial.
    pub original_value: Option<Amount>,
    /// For refunds: the shop's id of this refund, when it has one; it keys
    /// the refund's event id ([`Event::key_refund`]).
    pub refund_id: Option<RefundId>,
    /// For conversions: the label naming the conversion action.
    pub conversion_label: Option<String>,
    /// Other parameters (`method`, `search_term`, `payment_type`,
    /// `shipping_tier`, `page_location`, custom ones …), by GA4 name.
    pub params: Params,
}

impl Event {
    /// An event with a given id.
    pub fn new(name: EventName, id: EventId, occurred_at_ms: i64) -> Event {
        Event {
            id,
            name,
            occurred_at_ms,
            transaction_id: None,
            value: None,
            currency: None,
            items: Vec::new(),
            coupon: None,
            affiliation: None,
            shipping: None,
            tax: None,
            original_value: None,
            refund_id: None,
            conversion_label: None,
            params: Params::new(),
        }
    }

    /// A transactional event whose id is derived from (name, transaction id).
    pub fn transactional(name: EventName, txn: TransactionId, occurred_at_ms: i64) -> Event {
        let id = EventId::for_transaction(&name, &txn);
        let mut e = Event::new(name, id, occurred_at_ms);
        e.transaction_id = Some(txn);
        e
    }

    /// Sets a text parameter.
    pub fn set_text(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.params.insert(name.to_owned(), ParamValue::Text(value.into()));
        self
    }

    /// The key derived from this event's order id: the purchase's event id.
    pub fn order_key(&self) -> Option<&EventId> {
        self.transaction_id.as_ref().map(TransactionId::order_key)
    }

    /// The order id as a destination's order or transaction id field carries
    /// it ([`OrderIdForm`](crate::OrderIdForm)); `None` for an event without a transaction id.
    pub fn order_ref(&self, form: crate::ids::OrderIdForm) -> Option<&str> {
        self.transaction_id.as_ref().map(|t| t.sent_as(form))
    }

    /// For a refund, whether it is full or partial.
    pub fn refund_scope(&self) -> RefundScope {
        match (self.value, self.original_value) {
            (Some(v), Some(orig)) if v < orig => {
                RefundScope::Partial { remaining: orig.checked_sub(v).unwrap_or(Amount::ZERO) }
            }
            _ => RefundScope::Full,
        }
    }

    /// For a refund: what remains of the order after it (zero for a full refund).
    pub fn refund_remaining(&self) -> Amount {
        match self.refund_scope() {
            RefundScope::Partial { remaining } => remaining,
            RefundScope::Full => Amount::ZERO,
        }
    }

    /// For a refund with a transaction id, sets [`Event::id`] to the id of
    /// this one refund of the order ([`EventId::for_refund`]: from
    /// [`Event::refund_id`], else from [`Event::refund_remaining`]), so a
    /// second partial refund is not taken for a copy of the first. Call it
    /// once the refund's amounts and refund id are set; other events are left
    /// as they are.
    ///
    /// ```
    /// use tally_core::{Amount, Currency, Event, EventName, TransactionId};
    /// let refund = |refunded: &str, before: &str| {
    ///     let mut r = Event::transactional(EventName::Refund, TransactionId::parse("ORD-1").unwrap(), 0);
    ///     r.value = Some(Amount::parse(refunded).unwrap());
    ///     r.original_value = Some(Amount::parse(before).unwrap());
    ///     r.currency = Some(Currency::parse("EUR").unwrap());
    ///     r.key_refund();
    ///     r
    /// };
    /// // 100 → 80 → 50: two refunds, two events; the same one twice, one event.
    /// assert_ne!(refund("20", "100").id, refund("30", "80").id);
    /// assert_eq!(refund("30", "80").id, refund("30.00", "80").id);
    /// ```
    pub fn key_refund(&mut self) {
        if self.name != EventName::Refund {
            return;
        }
        if let Some(t) = &self.transaction_id {
            self.id = EventId::for_refund(t, self.refund_id.as_ref(), self.refund_remaining());
        }
    }

    /// Sum of item line totals, when every item has a price.
    pub fn items_total(&self) -> Option<Amount> {
        self.items.iter().try_fold(Amount::ZERO, |acc, i| acc.checked_add(i.line_total()?))
    }

    /// Checks the event against the rules every destination shares.
    pub fn validate(&self) -> Result<()> {
        if self.name.requires_transaction() && self.transaction_id.is_none() {
            return Err(Error::Missing { field: "transactionId" });
        }
        if self.name == EventName::Purchase {
            if self.value.is_none() {
                return Err(Error::Missing { field: "value" });
            }
            if self.currency.is_none() {
                return Err(Error::Missing { field: "currency" });
            }
        }
        for (field, v) in [
            ("value", self.value),
            ("shipping", self.shipping),
            ("tax", self.tax),
            ("originalValue", self.original_value),
        ] {
            if v.is_some_and(Amount::is_negative) {
                return Err(Error::Invalid { field, reason: "must not be negative" });
            }
            if v.is_some() && self.currency.is_none() {
                return Err(Error::Missing { field: "currency" });
            }
        }
        if self.items.len() > MAX_ITEMS {
            return Err(Error::TooMany { field: "items", max: MAX_ITEMS });
        }
        for item in &self.items {
            item.validate()?;
        }
        for (field, v) in
            [("coupon", &self.coupon), ("affiliation", &self.affiliation), ("label", &self.conversion_label)]
        {
            if v.as_deref().is_some_and(|s| crate::text::char_count(s) > MAX_PARAM_VALUE) {
                return Err(Error::TooLong { field, max: MAX_PARAM_VALUE });
            }
        }
        if self.params.len() > MAX_PARAMS - 8 {
            return Err(Error::TooMany { field: "params", max: MAX_PARAMS - 8 });
        }
        for (k, v) in &self.params {
            validate_param(k, v)?;
        }
        Ok(())
    }

    /// The wire JSON the browser sends to the collector and the webhook sink
    /// receives (camelCase, compact). [`Event::from_json`] reads it back.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Appends [`Event::to_json`] to `out`.
    pub fn write_json(&self, out: &mut String) {
        let mut w = crate::json::ObjectWriter::new(out);
        w.str("eventId", self.id.as_str())
            .str("name", self.name.as_str())
            .int("occurredAt", self.occurred_at_ms)
            .opt_str("transactionId", self.transaction_id.as_ref().map(|t| t.as_str()))
            .opt_str("refundId", self.refund_id.as_ref().map(RefundId::as_str));
        for (k, v) in [
            ("value", self.value),
            ("shipping", self.shipping),
            ("tax", self.tax),
            ("originalValue", self.original_value),
        ] {
            if let Some(v) = v {
                v.write_decimal(w.key(k));
            }
        }
        w.opt_str("currency", self.currency.as_ref().map(|c| c.as_str()))
            .opt_str("coupon", self.coupon.as_deref())
            .opt_str("affiliation", self.affiliation.as_deref())
            .opt_str("label", self.conversion_label.as_deref());
        if !self.items.is_empty() {
            let o = w.key("items");
            o.push('[');
            for (i, item) in self.items.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                write_item_json(item, o);
            }
            o.push(']');
        }
        if !self.params.is_empty() {
            let o = w.key("params");
            let mut p = crate::json::ObjectWriter::new(o);
            for (k, v) in &self.params {
                match v {
                    ParamValue::Text(s) => {
                        p.str(k, s);
                    }
                    ParamValue::Number(a) => a.write_decimal(p.key(k)),
                    ParamValue::Bool(b) => {
                        p.bool(k, *b);
                    }
                }
            }
            p.finish();
        }
        w.finish();
    }
}

fn param_value_limit(name: &str) -> usize {
    match name {
        "page_location" => 1000,
        "page_referrer" => 420,
        "page_title" => 300,
        _ => MAX_PARAM_VALUE,
    }
}

fn validate_param(name: &str, v: &ParamValue) -> Result<()> {
    if !is_valid_ga4_name(name)
        || RESERVED_PREFIXES.iter().any(|p| name.to_ascii_lowercase().starts_with(p))
        || name == "firebase_conversion"
    {
        return Err(Error::Invalid {
            field: "params",
            reason: "parameter names start with a letter, use letters, digits and _, at most 40, and no ga_/google_/firebase_ prefix",
        });
    }
    if let ParamValue::Text(s) = v {
        let max = param_value_limit(name);
        if crate::text::char_count(s) > max {
            return Err(Error::TooLong { field: "params", max });
        }
    }
    Ok(())
}

#[cfg(feature = "serde_json")]
mod parse {
    use super::*;
    use serde_json::{Map, Value};

    fn text(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<String>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::Invalid { field, reason: "expected a string" }),
        }
    }

    fn amount(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<Amount>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) => {
                    Amount::from_f64(f).map(Some).map_err(|_| Error::Invalid { field, reason: "number out of range" })
                }
                None => Err(Error::Invalid { field, reason: "expected a number" }),
            },
            Some(Value::String(s)) => {
                Amount::parse(s).map(Some).map_err(|_| Error::Invalid { field, reason: "expected a decimal number" })
            }
            Some(_) => Err(Error::Invalid { field, reason: "expected a number" }),
        }
    }

    impl Event {
        /// Reads the wire JSON ([`Event::to_json`]) with strict types and
        /// errors that name the field; unknown keys are ignored. The result is
        /// validated. A missing `eventId` is derived (transactional events,
        /// refunds per refund: [`Event::key_refund`]) or taken from `fallback_id`.
        pub fn from_json_value(v: &Value, fallback_id: impl FnOnce() -> EventId) -> Result<Event> {
            let o = v.as_object().ok_or(Error::Invalid { field: "event", reason: "expected a JSON object" })?;
            let name = match o.get("name") {
                Some(Value::String(s)) => EventName::parse(s)?,
                None | Some(Value::Null) => return Err(Error::Missing { field: "name" }),
                Some(_) => {
                    return Err(Error::Invalid { field: "name", reason: "expected a string" });
                }
            };
            let txn = text(o, "transactionId", "transactionId")?.map(|t| TransactionId::parse(&t)).transpose()?;
            let occurred_at_ms = match o.get("occurredAt") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .filter(|ms| *ms >= 0)
                    .ok_or(Error::Invalid { field: "occurredAt", reason: "expected Unix milliseconds" })?,
                Some(_) => {
                    return Err(Error::Invalid { field: "occurredAt", reason: "expected Unix milliseconds" });
                }
            };
            let given_id = text(o, "eventId", "eventId")?.map(|s| EventId::parse(&s)).transpose()?;
            let mut e = match (txn, given_id) {
                (Some(t), _) => {
                    // The id of a transactional event is always derived, whatever the
                    // sender claims: that is what makes browser and server agree.
                    Event::transactional(name, t, occurred_at_ms)
                }
                (None, Some(id)) => Event::new(name, id, occurred_at_ms),
                (None, None) => Event::new(name, fallback_id(), occurred_at_ms),
            };
            e.value = amount(o, "value", "value")?;
            e.shipping = amount(o, "shipping", "shipping")?;
            e.tax = amount(o, "tax", "tax")?;
            e.original_value = amount(o, "originalValue", "originalValue")?;
            e.refund_id = text(o, "refundId", "refundId")?.map(|r| RefundId::parse(&r)).transpose()?;
            e.key_refund();
            e.currency = text(o, "currency", "currency")?.map(|c| Currency::parse(&c)).transpose()?;
            e.coupon = text(o, "coupon", "coupon")?;
            e.affiliation = text(o, "affiliation", "affiliation")?;
            e.conversion_label = text(o, "label", "label")?;
            match o.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    if a.len() > MAX_ITEMS {
                        return Err(Error::TooMany { field: "items", max: MAX_ITEMS });
                    }
                    for it in a {
                        let item: Item = serde_json::from_value(it.clone()).map_err(|_| Error::Invalid {
                            field: "items[]",
                            reason: "expected an object with itemId/itemName, price and quantity",
                        })?;
                        e.items.push(item);
                    }
                }
                Some(_) => {
                    return Err(Error::Invalid { field: "items", reason: "expected an array" });
                }
            }
            match o.get("params") {
                None | Some(Value::Null) => {}
                Some(Value::Object(p)) => {
                    if p.len() > MAX_PARAMS {
                        return Err(Error::TooMany { field: "params", max: MAX_PARAMS });
                    }
                    for (k, v) in p {
                        let pv = match v {
                            Value::String(s) => ParamValue::Text(s.clone()),
                            Value::Bool(b) => ParamValue::Bool(*b),
                            Value::Number(n) => ParamValue::Number(
                                n.as_f64()
                                    .and_then(|f| Amount::from_f64(f).ok())
                                    .ok_or(Error::Invalid { field: "params", reason: "number out of range" })?,
                            ),
                            _ => {
                                return Err(Error::Invalid {
                                    field: "params",
                                    reason: "values are strings, numbers or booleans",
                                });
                            }
                        };
                        e.params.insert(k.clone(), pv);
                    }
                }
                Some(_) => {
                    return Err(Error::Invalid { field: "params", reason: "expected an object" });
                }
            }
            e.validate()?;
            Ok(e)
        }

        /// Parses wire JSON text; see [`Event::from_json_value`].
        pub fn from_json(s: &str, fallback_id: impl FnOnce() -> EventId) -> Result<Event> {
            let v: Value =
                serde_json::from_str(s).map_err(|_| Error::Invalid { field: "event", reason: "malformed JSON" })?;
            Event::from_json_value(&v, fallback_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    fn fixed_id() -> EventId {
        EventId::parse("fallback").unwrap()
    }

    #[test]
    fn purchase_rules() {
        purchase().validate().unwrap();
        let mut e = purchase();
        e.value = None;
        assert_eq!(e.validate(), Err(Error::Missing { field: "value" }));
        let mut e = purchase();
        e.currency = None;
        assert_eq!(e.validate(), Err(Error::Missing { field: "currency" }));
        let mut e = Event::new(EventName::Purchase, fixed_id(), 0);
        e.value = Some(Amount::ZERO);
        assert_eq!(e.validate(), Err(Error::Missing { field: "transactionId" }));
    }

    #[test]
    fn value_needs_currency() {
        let mut e = Event::new(EventName::AddToCart, fixed_id(), 0);
        e.value = Some(Amount::parse("1").unwrap());
        assert_eq!(e.validate(), Err(Error::Missing { field: "currency" }));
    }

    #[test]
    fn wire_round_trip() {
        let mut e = purchase();
        e.set_text("payment_type", "card");
        e.params.insert("gift".into(), ParamValue::Bool(true));
        e.params.insert("weight".into(), ParamValue::Number(Amount::parse("1.25").unwrap()));
        let back = Event::from_json(&e.to_json(), fixed_id).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn transactional_id_is_derived_whatever_the_sender_says() {
        let json = r#"{"eventId":"forged","name":"purchase","transactionId":"T_12345","value":30.03,"currency":"USD"}"#;
        let e = Event::from_json(json, fixed_id).unwrap();
        assert_eq!(e.id, purchase().id);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"name":7}"#, "name"),
            (r#"{}"#, "name"),
            (r#"{"name":"purchase","transactionId":""}"#, "transactionId"),
            (r#"{"name":"add_to_cart","value":"abc","currency":"USD"}"#, "value"),
            (r#"{"name":"add_to_cart","currency":"XYZW"}"#, "currency"),
            (r#"{"name":"add_to_cart","items":{}}"#, "items"),
            (r#"{"name":"add_to_cart","items":[{"price":1}]}"#, "items[].itemId"),
            (r#"{"name":"add_to_cart","occurredAt":"yesterday"}"#, "occurredAt"),
            (r#"{"name":"add_to_cart","params":{"ga_x":"1"}}"#, "params"),
            (r#"[1]"#, "event"),
        ];
        for (json, field) in cases {
            let err = Event::from_json(json, fixed_id).unwrap_err();
            assert_eq!(err.field(), field, "{json}");
        }
    }

    #[test]
    fn refund_scope() {
        let mut r = Event::transactional(EventName::Refund, TransactionId::parse("T").unwrap(), 0);
        r.currency = Some(Currency::parse("EUR").unwrap());
        assert_eq!(r.refund_scope(), RefundScope::Full);
        r.value = Some(Amount::parse("30").unwrap());
        r.original_value = Some(Amount::parse("100").unwrap());
        assert_eq!(r.refund_scope(), RefundScope::Partial { remaining: Amount::parse("70").unwrap() });
        r.value = Some(Amount::parse("100").unwrap());
        assert_eq!(r.refund_scope(), RefundScope::Full);
    }

    #[test]
    fn each_refund_of_an_order_is_its_own_event_on_the_wire() {
        // 100 refunded by 20, then by 30, then the remaining 50: three events.
        let json = |refunded: &str, before: &str| {
            let text = [
                r#"{"name":"refund","transactionId":"ORD-7","currency":"EUR","value":"#,
                refunded,
                r#","originalValue":"#,
                before,
                "}",
            ]
            .concat();
            Event::from_json(&text, fixed_id).unwrap()
        };
        let (a, b, c) = (json("20", "100"), json("30", "80"), json("50", "50"));
        assert_ne!(a.id, b.id, "a second partial refund is not a copy of the first");
        assert_ne!(b.id, c.id, "nor is the refund of the rest");
        assert_ne!(a.id, c.id);
        assert_eq!(json("30", "80").id, b.id, "the same refund reported twice is one event");
        let full = r#"{"name":"refund","transactionId":"ORD-7"}"#;
        assert_eq!(Event::from_json(full, fixed_id).unwrap().id, c.id, "the rest refunded = the order refunded");
        // The shop's refund id keys it when given, and travels on the wire.
        let with_id = r#"{"name":"refund","transactionId":"ORD-7","refundId":"RF-2","currency":"EUR","value":30,"originalValue":80}"#;
        let r = Event::from_json(with_id, fixed_id).unwrap();
        assert_eq!(r.refund_id.as_ref().map(RefundId::as_str), Some("RF-2"));
        assert_ne!(r.id, b.id);
        assert_eq!(Event::from_json(&r.to_json(), fixed_id).unwrap(), r);
        let bad = r#"{"name":"refund","transactionId":"ORD-7","refundId":"  "}"#;
        assert_eq!(Event::from_json(bad, fixed_id).unwrap_err().field(), "refundId");
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(s in ".{0,200}") {
            let _ = Event::from_json(&s, fixed_id);
        }

        #[test]
        fn arbitrary_objects_never_panic(name in "[a-z_]{0,12}", v in proptest::num::f64::ANY, t in ".{0,20}") {
            let json = serde_json::json!({"name": name, "value": v, "currency": t, "transactionId": t, "items": [{"itemId": t, "price": v}]});
            let _ = Event::from_json_value(&json, fixed_id);
        }
    }
}
