//! What backend code passes to the helpers, and how it merges with an envelope.

use tally_core::{
    Amount, ClickIds, ClientId, ConsentState, ContextEnvelope, Currency, HashedUserData, Item, UserData, UserId,
    VisitorId,
};

/// Who the event is about: identity, click ids, consent and user data.
///
/// On a bound tracker ([`ServerTracker::from_context`](crate::ServerTracker::from_context))
/// the rules are: every field given explicitly here wins over the envelope's,
/// field by field; click ids merge per id (an explicit `gclid` replaces the
/// envelope's `gclid` but keeps its `fbc`); user data replaces the envelope's
/// as a whole; consent replaces the envelope's as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visitor {
    /// GA4 client id (required by GA4).
    pub client_id: Option<ClientId>,
    /// GA4 session id.
    pub session_id: Option<String>,
    /// Signed-in user id.
    pub user_id: Option<UserId>,
    /// The site's visitor id.
    pub visitor_id: Option<VisitorId>,
    /// Click ids.
    pub click_ids: ClickIds,
    /// Consent; when absent everywhere, the tracker's default consent applies.
    pub consent: Option<ConsentState>,
    /// Raw user data, normalised and hashed per destination by the tracker.
    pub user_data: Option<UserData>,
    /// Already-hashed user data (what the browser's envelope carries).
    pub hashed_user_data: Option<HashedUserData>,
    /// The end user's IP address.
    pub ip_address: Option<String>,
    /// The end user's user agent.
    pub user_agent: Option<String>,
    /// The page the event belongs to.
    pub page_url: Option<String>,
}

impl Visitor {
    /// The visitor an envelope describes.
    pub fn from_envelope(env: &ContextEnvelope) -> Visitor {
        Visitor {
            client_id: env.client_id.clone(),
            session_id: env.session_id.clone(),
            user_id: env.user_id.clone(),
            visitor_id: env.visitor_id.clone(),
            click_ids: env.click_ids.clone(),
            consent: Some(env.consent),
            user_data: env.raw_user_data.clone(),
            hashed_user_data: env.hashed_user_data.clone(),
            ip_address: None,
            user_agent: None,
            page_url: env.page_url.clone(),
        }
    }

    /// `self` (explicit input) over `base` (the envelope), field by field.
    pub fn over(self, base: &Visitor) -> Visitor {
        let mut click_ids = self.click_ids;
        click_ids.fill_from(&base.click_ids);
        let explicit_user_data = self.user_data.is_some() || self.hashed_user_data.is_some();
        Visitor {
            client_id: self.client_id.or_else(|| base.client_id.clone()),
            session_id: self.session_id.or_else(|| base.session_id.clone()),
            user_id: self.user_id.or_else(|| base.user_id.clone()),
            visitor_id: self.visitor_id.or_else(|| base.visitor_id.clone()),
            click_ids,
            consent: self.consent.or(base.consent),
            user_data: if explicit_user_data { self.user_data } else { base.user_data.clone() },
            hashed_user_data: if explicit_user_data { self.hashed_user_data } else { base.hashed_user_data.clone() },
            ip_address: self.ip_address.or_else(|| base.ip_address.clone()),
            user_agent: self.user_agent.or_else(|| base.user_agent.clone()),
            page_url: self.page_url.or_else(|| base.page_url.clone()),
        }
    }
}

/// A purchase, as the backend knows it.
///
/// ```
/// use tally_server::PurchaseInput;
/// use tally_core::{Amount, Currency, Item};
/// let p = PurchaseInput::new("ORD-1001", Amount::parse("30.03").unwrap(), Currency::parse("USD").unwrap())
///     .item(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
/// assert_eq!(p.items.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseInput {
    /// The order id; must match the browser's. Empty is an error.
    pub transaction_id: String,
    /// Order total.
    pub value: Amount,
    /// Currency.
    pub currency: Currency,
    /// Lines.
    pub items: Vec<Item>,
    /// Coupon.
    pub coupon: Option<String>,
    /// Shipping.
    pub shipping: Option<Amount>,
    /// Tax.
    pub tax: Option<Amount>,
    /// Affiliation.
    pub affiliation: Option<String>,
    /// When the purchase happened (Unix ms); default: now.
    pub occurred_at_ms: Option<i64>,
    /// Who bought.
    pub visitor: Visitor,
}

impl PurchaseInput {
    /// A purchase of `value` in `currency` for order `transaction_id`.
    pub fn new(transaction_id: impl Into<String>, value: Amount, currency: Currency) -> PurchaseInput {
        PurchaseInput {
            transaction_id: transaction_id.into(),
            value,
            currency,
            items: Vec::new(),
            coupon: None,
            shipping: None,
            tax: None,
            affiliation: None,
            occurred_at_ms: None,
            visitor: Visitor::default(),
        }
    }

    /// Adds a line.
    pub fn item(mut self, item: Item) -> Self {
        self.items.push(item);
        self
    }

    /// Sets who bought (explicit fields win over a bound envelope).
    pub fn visitor(mut self, visitor: Visitor) -> Self {
        self.visitor = visitor;
        self
    }

    /// Sets when it happened.
    pub fn occurred_at_ms(mut self, ms: i64) -> Self {
        self.occurred_at_ms = Some(ms);
        self
    }
}

/// Any event, for `track_event` (custom names too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventInput {
    /// The event name (standard or custom; validated).
    pub name: String,
    /// For transactional events.
    pub transaction_id: Option<String>,
    /// Value.
    pub value: Option<Amount>,
    /// Currency.
    pub currency: Option<Currency>,
    /// Lines.
    pub items: Vec<Item>,
    /// Extra parameters by GA4 name.
    pub params: Vec<(String, tally_core::ParamValue)>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

impl EventInput {
    /// An event called `name`.
    pub fn new(name: impl Into<String>) -> EventInput {
        EventInput { name: name.into(), ..EventInput::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::ConsentSignal;

    #[test]
    fn explicit_wins_field_by_field() {
        let env = ContextEnvelope::parse_json(
            r#"{"v":1,"createdAt":1,"clientId":"1.2","sessionId":"99","clickIds":{"gclid":"ENV","fbc":"fb.1.1.x"},
               "consent":{"ad_storage":"granted"},"userData":{"email":"env@example.com"}}"#,
        )
        .unwrap();
        let base = Visitor::from_envelope(&env);
        let explicit = Visitor {
            client_id: Some(ClientId::parse("3.4").unwrap()),
            click_ids: ClickIds { gclid: Some("MINE".into()), ..Default::default() },
            user_data: Some(UserData { phone: Some("+15551234567".into()), ..Default::default() }),
            ..Default::default()
        };
        let v = explicit.over(&base);
        assert_eq!(v.client_id.unwrap().as_str(), "3.4");
        assert_eq!(v.session_id.as_deref(), Some("99"));
        assert_eq!(v.click_ids.gclid.as_deref(), Some("MINE"));
        assert_eq!(v.click_ids.fbc.as_deref(), Some("fb.1.1.x"));
        let ud = v.user_data.unwrap();
        assert_eq!(ud.email, None, "user data replaces as a whole");
        assert_eq!(v.consent.unwrap().ad_storage, ConsentSignal::Granted);
    }
}

/// Input of the cart-style helpers (`track_view_item`, `track_add_to_cart`,
/// `track_begin_checkout`, `track_add_payment_info` …): value, currency, lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CartInput {
    /// Value of the lines.
    pub value: Option<Amount>,
    /// Currency (required with a value).
    pub currency: Option<Currency>,
    /// Lines.
    pub items: Vec<Item>,
    /// Coupon.
    pub coupon: Option<String>,
    /// `payment_type` (add_payment_info).
    pub payment_type: Option<String>,
    /// `shipping_tier` (add_shipping_info).
    pub shipping_tier: Option<String>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

impl CartInput {
    /// Lines worth `value` in `currency`.
    pub fn new(value: Amount, currency: Currency) -> CartInput {
        CartInput { value: Some(value), currency: Some(currency), ..CartInput::default() }
    }

    /// Adds a line.
    pub fn item(mut self, item: Item) -> Self {
        self.items.push(item);
        self
    }

    /// Sets who.
    pub fn visitor(mut self, visitor: Visitor) -> Self {
        self.visitor = visitor;
        self
    }
}

/// A page view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageViewInput {
    /// Full URL (`page_location`).
    pub page_location: Option<String>,
    /// Title.
    pub page_title: Option<String>,
    /// Referrer.
    pub page_referrer: Option<String>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

/// A refund of an order, full or partial.
///
/// `value` is the amount refunded; with `original_value` (what the order was
/// worth before this refund) a smaller refund is partial: Google Ads restates
/// the conversion to the remainder. Without a value, or refunding all that is
/// left, the refund is full: Google Ads retracts the conversion.
///
/// An order can be refunded several times (20 of 100, then 30 of the 80
/// left, then the last 50): each refund is its own event, keyed by the shop's
/// `refund_id` when it gives one ([`RefundInput::refund_id`]), else by the
/// order id and what remains after it. The same refund reported twice (a
/// webhook retried, the browser and the server both) is still one event.
///
/// ```
/// use tally_core::{Amount, Currency};
/// use tally_server::RefundInput;
/// let eur = Currency::parse("EUR").unwrap();
/// let second = RefundInput::partial("ORD-1", Amount::parse("30").unwrap(), Amount::parse("80").unwrap(), eur)
///     .refund_id("RF-2");
/// assert_eq!(second.refund_id.as_deref(), Some("RF-2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundInput {
    /// The order id of the purchase being refunded.
    pub transaction_id: String,
    /// Amount refunded; `None` for the whole order.
    pub value: Option<Amount>,
    /// The order's value before this refund (after any earlier refunds).
    pub original_value: Option<Amount>,
    /// The shop's id of this refund (Shopify's refund id, Stripe's `re_…`),
    /// if it has one: then it keys the refund. Give it on every report of the
    /// refund (browser and server) or on none.
    pub refund_id: Option<String>,
    /// Currency.
    pub currency: Currency,
    /// Refunded lines (GA4 partial refunds).
    pub items: Vec<Item>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

impl RefundInput {
    /// A full refund of `transaction_id`.
    pub fn full(transaction_id: impl Into<String>, currency: Currency) -> RefundInput {
        RefundInput {
            transaction_id: transaction_id.into(),
            value: None,
            original_value: None,
            refund_id: None,
            currency,
            items: Vec::new(),
            occurred_at_ms: None,
            visitor: Visitor::default(),
        }
    }

    /// A partial refund of `refunded` out of `original`.
    pub fn partial(
        transaction_id: impl Into<String>,
        refunded: Amount,
        original: Amount,
        currency: Currency,
    ) -> RefundInput {
        RefundInput {
            value: Some(refunded),
            original_value: Some(original),
            ..RefundInput::full(transaction_id, currency)
        }
    }

    /// The same refund, keyed by the shop's id of it.
    #[must_use]
    pub fn refund_id(mut self, refund_id: impl Into<String>) -> RefundInput {
        self.refund_id = Some(refund_id.into());
        self
    }
}

/// A sign-up or a login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignUpInput {
    /// How (`email`, `google` …).
    pub method: Option<String>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

/// A lead (`generate_lead`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeadInput {
    /// The lead's id in your system: makes the event id deterministic, so a
    /// browser-side lead with the same id deduplicates.
    pub lead_id: Option<String>,
    /// Value.
    pub value: Option<Amount>,
    /// Currency.
    pub currency: Option<Currency>,
    /// Where the lead came from.
    pub lead_source: Option<String>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}

/// A conversion for a labelled Google Ads conversion action (`track_conversion`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversionInput {
    /// The label, a key of the Google Ads `conversion_actions` map.
    pub label: String,
    /// The order or lead id: the dedup key (required; never generated).
    pub transaction_id: String,
    /// Value.
    pub value: Option<Amount>,
    /// Currency.
    pub currency: Option<Currency>,
    /// When (Unix ms); default now.
    pub occurred_at_ms: Option<i64>,
    /// Who.
    pub visitor: Visitor,
}
