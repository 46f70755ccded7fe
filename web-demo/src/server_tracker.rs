//! Which server tracker confirms paid orders and refunds: the Rust crate
//! (`ServerTracker::from_context`, in process) or the JS server tracker
//! (`tally-web/server` in a Node process, [`crate::node`]). One switch,
//! `--server-tracker rust|js` ([`ServerTrackerPath`]); the webhook and the
//! refunds build the same input from the order either way, and both paths end
//! in the same text per destination ([`Confirmed`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tally_core::{ContextEnvelope, Item};
use tally_server::{OutcomeReport, PurchaseInput, RefundInput, TrackResult, Visitor};

use crate::Shop;

/// The switch: what confirms orders server-side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerTrackerPath {
    /// `tally-server`'s `ServerTracker::from_context`, in the demo's process.
    #[default]
    Rust,
    /// `tally-web/server` (`pkg/server.js`) in a Node route handler, reporting to
    /// the demo's collector with the server secret.
    Js,
}

impl ServerTrackerPath {
    /// Reads the switch's value: `rust` or `js`.
    pub fn parse(s: &str) -> Result<ServerTrackerPath, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rust" => Ok(ServerTrackerPath::Rust),
            "js" => Ok(ServerTrackerPath::Js),
            other => Err(format!("--server-tracker takes rust or js, not {other:?}")),
        }
    }

    /// `rust` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTrackerPath::Rust => "rust",
            ServerTrackerPath::Js => "js",
        }
    }

    /// What the inspector and the admin page say is live.
    pub fn describe(self) -> &'static str {
        match self {
            ServerTrackerPath::Rust => "the Rust crate: ServerTracker::from_context(envelope) in the demo's process",
            ServerTrackerPath::Js => {
                "the JS server tracker: tally-web/server's fromContext(envelope) in a Node route handler \
                 (web-demo/node/payment-route.mjs), through the collector's /collect with the server secret"
            }
        }
    }
}

/// What a confirmation did: the event id and, per destination, the outcome in
/// words (`Outcome`'s text, the same on both paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// Which tracker answered.
    pub via: ServerTrackerPath,
    /// The event id every destination received.
    pub event_id: String,
    /// Outcome per destination, as text (`sent (1 attempt(s))`, `skipped: duplicate`, …).
    pub outcomes: BTreeMap<String, String>,
}

impl From<TrackResult> for Confirmed {
    fn from(r: TrackResult) -> Confirmed {
        Confirmed {
            via: ServerTrackerPath::Rust,
            event_id: r.event_id.as_str().to_owned(),
            outcomes: r.destinations.iter().map(|(d, o)| (d.clone(), o.to_string())).collect(),
        }
    }
}

impl Confirmed {
    /// Reads a `tally-web/server` result (`ServerTrackResult`: `eventId` and
    /// `destinations`). A destination whose entry is not an outcome report is
    /// shown as such, never dropped.
    pub fn from_js(v: &Value) -> Result<Confirmed, String> {
        let event_id = v.get("eventId").and_then(Value::as_str).ok_or_else(|| format!("no eventId in {v}"))?;
        let destinations =
            v.get("destinations").and_then(Value::as_object).ok_or_else(|| format!("no destinations in {v}"))?;
        let outcomes = destinations
            .iter()
            .map(|(d, r)| {
                let text =
                    OutcomeReport::from_json(r).map_or_else(|| format!("unreadable outcome: {r}"), |r| r.to_string());
                (d.clone(), text)
            })
            .collect();
        Ok(Confirmed { via: ServerTrackerPath::Js, event_id: event_id.to_owned(), outcomes })
    }
}

/// Why a confirmation did not reach the destinations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfirmError {
    /// The input or the call was refused (the tracker's own error).
    #[error("{0}")]
    Rejected(String),
    /// The JS server tracker could not be asked, or could not ask the collector.
    #[error("{0}")]
    Unreachable(String),
}

impl ConfirmError {
    /// The webhook's (or the refund's) answer: 422 for a refused input, 502
    /// when the JS server tracker or its collector could not be asked.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            ConfirmError::Rejected(_) => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            ConfirmError::Unreachable(_) => axum::http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// Which path is live, for the inspector and the admin page:
/// `{"path": "js", "description": "…", "url": "http://127.0.0.1:…"}`.
pub fn live(shop: &Shop) -> Value {
    let path = shop.config.server_tracker;
    json!({
        "path": path.as_str(),
        "description": path.describe(),
        "url": shop.js_tracker.as_ref().map(crate::node::JsServerTracker::base_url),
    })
}

/// The stored envelope of an order, parsed: `None` without one, or (logged)
/// when it does not parse. Both paths then track without it.
pub fn stored_envelope(order: &crate::orders::Order) -> Option<ContextEnvelope> {
    order.context.as_deref().and_then(|c| match ContextEnvelope::parse(c) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(order = %order.id, error = %e, "stored envelope is invalid; tracking without it");
            None
        }
    })
}

/// What the webhook or a refund reports.
#[derive(Clone, Debug)]
pub enum Report {
    /// A paid order: `trackPurchase` / `track_purchase`.
    Purchase(PurchaseInput),
    /// A refund: `trackRefund` / `track_refund`.
    Refund(RefundInput),
}

/// Reports through the live path. `envelope` is the order's stored envelope,
/// parsed, and its text as stored (what the JS path passes to `fromContext`).
pub async fn confirm(
    shop: &Shop,
    envelope: Option<(&ContextEnvelope, &str)>,
    report: Report,
) -> Result<Confirmed, ConfirmError> {
    if let Some(js) = &shop.js_tracker {
        let (route, input) = match &report {
            Report::Purchase(p) => (crate::node::Route::Purchase, purchase_json(p)),
            Report::Refund(r) => (crate::node::Route::Refund, refund_json(r)),
        };
        return js.track(route, envelope.map(|e| e.1), input).await;
    }
    let tracker = &shop.tracker;
    let result = match (envelope.map(|(env, _)| tracker.from_context(env)), report) {
        (Some(bound), Report::Purchase(p)) => bound.track_purchase(p).await,
        (Some(bound), Report::Refund(r)) => bound.track_refund(r).await,
        (None, Report::Purchase(p)) => tracker.track_purchase(p).await,
        (None, Report::Refund(r)) => tracker.track_refund(r).await,
    };
    result.map(Confirmed::from).map_err(|e| ConfirmError::Rejected(e.to_string()))
}

/// `input` as `tally-web/server`'s `trackPurchase` takes it (`ServerPurchaseInput`).
/// Amounts go as decimal text, exact to the cent.
pub fn purchase_json(input: &PurchaseInput) -> Value {
    let mut o = Map::new();
    o.insert("transactionId".into(), input.transaction_id.clone().into());
    o.insert("value".into(), input.value.to_string().into());
    o.insert("currency".into(), input.currency.as_str().into());
    o.insert("items".into(), input.items.iter().map(item_json).collect());
    for (k, v) in [("shipping", input.shipping), ("tax", input.tax)] {
        if let Some(v) = v {
            o.insert(k.into(), v.to_string().into());
        }
    }
    for (k, v) in [("coupon", &input.coupon), ("affiliation", &input.affiliation)] {
        if let Some(v) = v {
            o.insert(k.into(), v.clone().into());
        }
    }
    visitor_json(&input.visitor, input.occurred_at_ms, &mut o);
    Value::Object(o)
}

/// `input` as `tally-web/server`'s `trackRefund` takes it (`ServerRefundInput`):
/// no `value` for a full refund, `value` and `originalValue` for a partial one,
/// `refundId` when the shop keys its refunds.
pub fn refund_json(input: &RefundInput) -> Value {
    let mut o = Map::new();
    o.insert("transactionId".into(), input.transaction_id.clone().into());
    if let Some(r) = &input.refund_id {
        o.insert("refundId".into(), r.clone().into());
    }
    o.insert("currency".into(), input.currency.as_str().into());
    for (k, v) in [("value", input.value), ("originalValue", input.original_value)] {
        if let Some(v) = v {
            o.insert(k.into(), v.to_string().into());
        }
    }
    if !input.items.is_empty() {
        o.insert("items".into(), input.items.iter().map(item_json).collect());
    }
    visitor_json(&input.visitor, input.occurred_at_ms, &mut o);
    Value::Object(o)
}

/// An item as the JS API writes it (camelCase; amounts as decimal text).
fn item_json(item: &Item) -> Value {
    let mut o = Map::new();
    for (ga4, v) in item.text_fields() {
        if let Some(v) = v {
            o.insert(camel_case(ga4), v.into());
        }
    }
    if let Some(s) = &item.creative_slot {
        o.insert("creativeSlot".into(), s.clone().into());
    }
    for (k, v) in [("price", item.price), ("discount", item.discount)] {
        if let Some(v) = v {
            o.insert(k.into(), v.to_string().into());
        }
    }
    for (k, v) in [("quantity", item.quantity), ("index", item.index)] {
        if let Some(v) = v {
            o.insert(k.into(), v.into());
        }
    }
    Value::Object(o)
}

/// `item_category2` → `itemCategory2`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The visitor's fields as the JS helpers take them (`ServerVisitor`): each
/// given field overrides the envelope's there, as in `Visitor::over`.
fn visitor_json(v: &Visitor, occurred_at_ms: Option<i64>, o: &mut Map<String, Value>) {
    let text = [
        ("clientId", v.client_id.as_ref().map(|c| c.as_str().to_owned())),
        ("sessionId", v.session_id.clone()),
        ("userId", v.user_id.as_ref().map(|u| u.as_str().to_owned())),
        ("visitorId", v.visitor_id.as_ref().map(|u| u.as_str().to_owned())),
        ("ipAddress", v.ip_address.clone()),
        ("userAgent", v.user_agent.clone()),
        ("pageUrl", v.page_url.clone()),
    ];
    for (k, val) in text {
        if let Some(val) = val {
            o.insert(k.into(), val.into());
        }
    }
    for (k, val) in v.click_ids.slots() {
        if let Some(val) = val {
            o.insert(k.into(), val.clone().into());
        }
    }
    if let Some(c) = &v.consent {
        o.insert("consent".into(), json!(c));
    }
    if let Some(u) = &v.user_data {
        o.insert("userData".into(), json!(u));
    }
    if let Some(h) = &v.hashed_user_data {
        o.insert("hashedUserData".into(), json!(h));
    }
    if let Some(ms) = occurred_at_ms {
        o.insert("occurredAt".into(), ms.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::{Amount, ClickIds, ClientId, ConsentSignal, ConsentState, Currency, UserData};

    #[test]
    fn the_switch_reads_rust_or_js_and_nothing_else() {
        assert_eq!(ServerTrackerPath::parse("js"), Ok(ServerTrackerPath::Js));
        assert_eq!(ServerTrackerPath::parse(" Rust "), Ok(ServerTrackerPath::Rust));
        let e = ServerTrackerPath::parse("node").unwrap_err();
        assert!(e.contains("rust or js") && e.contains("node"), "{e}");
        assert_eq!(ServerTrackerPath::default(), ServerTrackerPath::Rust);
    }

    #[test]
    fn a_purchase_goes_to_js_with_exact_amounts_and_the_visitor() {
        let amount = |s| Amount::parse(s).unwrap();
        let mut item = Item::new("SKU-204", "Trail mug").with_price(amount("79.45"), 2);
        item.item_category2 = Some("Kitchen".into());
        let visitor = Visitor {
            client_id: ClientId::from_ga_cookie("GA1.1.987654321.1760000000").ok(),
            click_ids: ClickIds { gclid: Some("Cj0-test".into()), ..ClickIds::default() },
            consent: Some(ConsentState { ad_user_data: ConsentSignal::Denied, ..ConsentState::default() }),
            user_data: Some(UserData { email: Some("a@example.com".into()), ..UserData::default() }),
            user_agent: Some("UA".into()),
            ..Visitor::default()
        };
        let input = PurchaseInput::new("ORD-1001", amount("158.90"), Currency::parse("EUR").unwrap())
            .item(item)
            .visitor(visitor)
            .occurred_at_ms(1_760_000_000_000);
        let v = purchase_json(&input);
        assert_eq!(v["transactionId"], "ORD-1001");
        assert_eq!(v["value"], "158.9", "decimal text, exact: {v}");
        assert_eq!(
            v["items"][0],
            json!({"itemId": "SKU-204", "itemName": "Trail mug", "itemCategory2": "Kitchen", "price": "79.45", "quantity": 2})
        );
        assert_eq!(v["clientId"], "987654321.1760000000");
        assert_eq!(v["gclid"], "Cj0-test");
        assert_eq!(v["consent"]["ad_user_data"], "denied");
        assert_eq!(v["userData"], json!({"email": "a@example.com"}));
        assert_eq!(v["userAgent"], "UA");
        assert_eq!(v["occurredAt"], 1_760_000_000_000i64);
        assert!(v.get("hashedUserData").is_none() && v.get("pageUrl").is_none(), "{v}");
    }

    #[test]
    fn refunds_go_to_js_full_or_partial() {
        let eur = Currency::parse("EUR").unwrap();
        let full = refund_json(&RefundInput::full("ORD-1", eur));
        assert_eq!(full, json!({"transactionId": "ORD-1", "currency": "EUR"}));
        let partial = refund_json(&RefundInput::partial(
            "ORD-2",
            Amount::parse("10.25").unwrap(),
            Amount::parse("129.00").unwrap(),
            eur,
        ));
        assert_eq!(partial["value"], "10.25");
        assert_eq!(partial["originalValue"], "129");
        assert!(partial.get("refundId").is_none());
        let keyed = refund_json(&RefundInput::full("ORD-1", eur).refund_id("RF-1"));
        assert_eq!(keyed["refundId"], "RF-1");
    }

    #[test]
    fn a_js_result_reads_as_the_rust_outcomes_do() {
        let v = json!({"eventId": "e-1", "status": "accepted", "destinations": {
            "ga4": {"outcome": "sent", "attempts": 1},
            "meta": {"outcome": "queued", "error": {"code": "transport", "message": "transport error: down"}},
            "google_ads": {"outcome": "skipped", "reason": "consent_denied", "detail": "consent denied (ad_user_data_not_granted)"},
            "rokt": {"outcome": "lost"},
        }});
        let c = Confirmed::from_js(&v).unwrap();
        assert_eq!((c.via, c.event_id.as_str()), (ServerTrackerPath::Js, "e-1"));
        assert_eq!(c.outcomes["ga4"], "sent (1 attempt(s))");
        assert_eq!(c.outcomes["meta"], "queued for retry: transport error: down");
        assert_eq!(c.outcomes["google_ads"], "skipped: consent denied (ad_user_data_not_granted)");
        assert!(c.outcomes["rokt"].starts_with("unreadable outcome: "), "{:?}", c.outcomes);
        assert!(Confirmed::from_js(&json!({"destinations": {}})).unwrap_err().contains("eventId"));
    }
}
