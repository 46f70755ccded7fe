//! What each sandbox destination received, turned into a delivery log and
//! reconciled against the backend's orders ([`tally_core::reconcile`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tally_core::reconcile::{self, Delivery, DeliveryKind, DestinationStatus, OrderRecord, ReconcileReport};
use tally_core::{Amount, EventId, EventName, TransactionId};

use crate::Shop;
use crate::orders::Order;

/// The destinations the demo reconciles, by the tracker's names.
pub const DESTINATIONS: [&str; 5] = ["ga4", "google_ads", "meta", "rokt", "webhook:warehouse"];

fn amount(v: f64) -> Option<Amount> {
    Amount::from_f64(v).ok()
}

fn amount_str(v: Option<&str>) -> Option<Amount> {
    v.and_then(|s| Amount::parse(s).ok())
}

/// Backend orders as reconciliation input (paid or refunded orders only).
pub fn order_records(orders: &[Order]) -> Vec<OrderRecord> {
    orders
        .iter()
        .filter(|o| o.status != "pending")
        .filter_map(|o| {
            Some(OrderRecord {
                order_id: o.id.clone(),
                value: Amount::from_minor(o.total_cents, 2).ok()?,
                currency: o.currency.clone(),
                refunded: (o.refunded_cents > 0).then(|| Amount::from_minor(o.refunded_cents, 2).ok()).flatten(),
            })
        })
        .collect()
}

/// Maps the keys destinations know an order by (the order id, or Google's
/// order key derived from it) back to the order id.
fn key_map(orders: &[Order]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for o in orders {
        m.insert(o.id.clone(), o.id.clone());
        if let Ok(t) = TransactionId::parse(&o.id) {
            m.insert(EventId::order_key(&t).as_str().to_owned(), o.id.clone());
            m.insert(EventId::for_transaction(&EventName::Purchase, &t).as_str().to_owned(), o.id.clone());
        }
    }
    m
}

/// The delivery log of every sandbox destination.
pub fn delivery_log(shop: &Shop, orders: &[Order]) -> Vec<Delivery> {
    let keys = key_map(orders);
    let txn = |raw: &str| keys.get(raw).cloned().unwrap_or_else(|| raw.to_owned());
    let mut log = Vec::new();
    let mut push = |destination: &str, kind, id: String, value: Option<Amount>, currency: Option<&str>, duplicate| {
        log.push(Delivery {
            destination: destination.to_owned(),
            kind,
            transaction_id: id,
            event_id: None,
            value,
            currency: currency.unwrap_or("").to_owned(),
            duplicate,
        });
    };
    let sb = &shop.sandbox;
    for e in sb.ga4.events() {
        let kind = match e.name.as_str() {
            "purchase" => DeliveryKind::Purchase,
            "refund" => DeliveryKind::Refund,
            _ => continue,
        };
        let value = e.params.get("value").and_then(Value::as_f64).and_then(amount);
        push("ga4", kind, txn(e.transaction_id().unwrap_or("")), value, e.currency(), e.duplicate);
    }
    // Google Ads (one account behind the Data Manager and Google Ads APIs):
    // the value first ingested, then what restatements and retractions took off.
    for c in sb.data_manager.conversions() {
        let id = txn(c.transaction_id.as_deref().unwrap_or(""));
        let first = c.first_value.and_then(amount);
        let cur = c.currency.as_deref();
        push("google_ads", DeliveryKind::Purchase, id.clone(), first, cur, false);
        if c.retracted {
            push("google_ads", DeliveryKind::Refund, id, first, cur, false);
        } else if let (Some(v), Some(now)) = (first, c.value.and_then(amount))
            && now < v
        {
            push("google_ads", DeliveryKind::Refund, id, v.checked_sub(now), cur, false);
        }
    }
    for e in sb.meta.events() {
        if e.event_name != "Purchase" {
            continue;
        }
        let id = e
            .custom_data
            .as_ref()
            .and_then(|c| c.get("order_id"))
            .and_then(Value::as_str)
            .map(&txn)
            .unwrap_or_else(|| e.event_id.clone().unwrap_or_default());
        push("meta", DeliveryKind::Purchase, id, e.value().and_then(amount), e.currency(), e.duplicate);
    }
    for e in sb.rokt.events() {
        if e.object("conversiontype") != Some("purchase") {
            continue;
        }
        let id = txn(e.object("transactionid").unwrap_or(""));
        push("rokt", DeliveryKind::Purchase, id, amount_str(e.object("amount")), e.object("currency"), e.duplicate);
    }
    for r in sb.webhook.events("warehouse") {
        let kind = match r.event_name.as_str() {
            "purchase" => DeliveryKind::Purchase,
            "refund" => DeliveryKind::Refund,
            _ => continue,
        };
        let id = txn(r.body.get("transaction_id").and_then(Value::as_str).unwrap_or(""));
        let value = r.body.get("value").and_then(Value::as_f64).and_then(amount);
        let cur = r.body.get("currency").and_then(Value::as_str);
        push("webhook:warehouse", kind, id, value, cur, r.duplicate);
    }
    log
}

/// Per destination, from the orders' server outcomes: the orders withheld
/// because consent did not allow them (each a consent drop, reconciled apart),
/// and the purchases and refunds queued but not yet seen by the destination.
/// A server report skipped as a duplicate of a copy the destination has not
/// seen yet (the browser's, still in the outbox while the destination is
/// down) is pending too: the copy that claimed it is on its way.
pub fn order_statuses(orders: &[Order], log: &[Delivery]) -> BTreeMap<String, DestinationStatus> {
    let mut st: BTreeMap<String, DestinationStatus> =
        DESTINATIONS.iter().map(|d| ((*d).to_owned(), DestinationStatus::default())).collect();
    let seen = |dest: &str, order: &str, kind: DeliveryKind| {
        log.iter().any(|d| d.destination == dest && d.transaction_id == order && d.kind == kind && !d.duplicate)
    };
    for o in orders {
        for (dest, outcome) in &o.server_outcomes {
            let Some(s) = st.get_mut(dest) else { continue };
            if outcome.starts_with("skipped: consent") {
                s.consent_drops += 1;
                s.withheld_by_consent.push(o.id.clone());
            }
            if on_its_way(outcome) && !seen(dest, &o.id, DeliveryKind::Purchase) {
                s.pending += 1;
            }
        }
        for (dest, outcome) in &o.refund_outcomes {
            let Some(s) = st.get_mut(dest) else { continue };
            if on_its_way(outcome) && !seen(dest, &o.id, DeliveryKind::Refund) {
                s.pending += 1;
            }
        }
    }
    st
}

/// A server outcome that leaves the delivery to come: queued, or skipped
/// because another copy of the same event claimed it first.
fn on_its_way(outcome: &str) -> bool {
    outcome.starts_with("queued") || outcome.starts_with("skipped: duplicate")
}

/// [`order_statuses`] plus the outbox's dead entries.
pub fn statuses(shop: &Shop, orders: &[Order], log: &[Delivery]) -> BTreeMap<String, DestinationStatus> {
    let mut st = order_statuses(orders, log);
    if let Ok(dead) = shop.tracker.outbox().dead_entries(1000) {
        for d in dead {
            if let Some(s) = st.get_mut(&d.entry.destination) {
                s.dead += 1;
            }
        }
    }
    st
}

/// How many order ids a cell of the inspector lists before "and N more".
const SHOWN_IDS: usize = 3;

/// The reconciliation rows as the inspector shows them: each row's fields,
/// whether it matches, its money with the currency's minor unit (`158.90 EUR`)
/// and its order lists for people.
pub fn reconciliation_rows(report: &ReconcileReport) -> Vec<Value> {
    report
        .rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("matches".into(), Value::Bool(r.matches()));
                m.insert("backendMoney".into(), reconcile::money(r.backend_revenue, &r.currency).into());
                m.insert("destinationMoney".into(), reconcile::money(r.destination_revenue, &r.currency).into());
                m.insert("withheldText".into(), reconcile::list_ids(&r.withheld_by_consent, SHOWN_IDS).into());
                let mut problems = Vec::new();
                for (what, ids) in [
                    ("missing", &r.missing),
                    ("counted twice", &r.double_counted),
                    ("not an order", &r.unknown),
                    ("counted despite consent", &r.counted_despite_consent),
                ] {
                    if !ids.is_empty() {
                        problems.push(format!("{what}: {}", reconcile::list_ids(ids, SHOWN_IDS)));
                    }
                }
                if problems.is_empty() && !r.matches() {
                    problems.push("revenue differs".to_owned());
                }
                m.insert("problems".into(), problems.into());
            }
            v
        })
        .collect()
}

/// Tally's own counters per destination (what `/metrics` exports): delivered,
/// retried, skipped as duplicates, dropped.
pub fn tally_counts(shop: &Shop) -> Vec<Value> {
    shop.tracker
        .metrics()
        .by_destination()
        .into_iter()
        .map(|(d, c)| {
            json!({
                "destination": d,
                "delivered": c.delivered,
                "retried": c.retried,
                "duplicates": c.duplicates,
                "dropped": c.dropped.values().sum::<u64>(),
                "droppedBy": c.dropped,
            })
        })
        .collect()
}

/// The orders placed since the shop started (the sandboxes' records are in memory).
pub fn session_orders(shop: &Shop) -> Vec<Order> {
    shop.orders.all().into_iter().filter(|o| o.created_at_ms >= shop.started_at_ms).collect()
}

/// The reconciliation report for the shop as it is now.
pub fn report(shop: &Shop) -> ReconcileReport {
    let orders = session_orders(shop);
    let log = delivery_log(shop, &orders);
    let st = statuses(shop, &orders, &log);
    reconcile::reconcile(&order_records(&orders), &log, &st)
}

/// Everything the inspector page shows.
pub fn inspector_json(shop: &Shop) -> Value {
    let orders = session_orders(shop);
    let log = delivery_log(shop, &orders);
    let st = statuses(shop, &orders, &log);
    let report = reconcile::reconcile(&order_records(&orders), &log, &st);
    let sb = &shop.sandbox;
    let outbox = shop.tracker.outbox();
    let stats = outbox.stats().ok();
    let dead = outbox.dead_entries(50).unwrap_or_default();
    json!({
        "destinations": {
            "ga4": { "accepted": sb.ga4.events(), "deduplicated": sb.ga4.events().into_iter().filter(|e| e.duplicate).count(), "dropped": sb.ga4.dropped() },
            "google_ads": {
                "accepted": sb.data_manager.conversions(),
                "adjustments": sb.google_ads.adjustments(),
                "restatements": sb.data_manager.conversions().iter().map(|c| c.restatements).sum::<u32>(),
                "dropped": sb.data_manager.rejections(),
                "diagnostics": shop.tracker.destination_diagnostics().remove("google_ads"),
            },
            "meta": { "accepted": sb.meta.events(), "deduplicated": sb.meta.deduplicated().len(), "dropped": sb.meta.dropped() },
            "rokt": { "accepted": sb.rokt.events(), "deduplicated": sb.rokt.events().into_iter().filter(|e| e.duplicate).count(), "dropped": sb.rokt.dropped() },
            "webhook:warehouse": { "accepted": sb.webhook.events("warehouse"), "deduplicated": sb.webhook.events("warehouse").into_iter().filter(|e| e.duplicate).count(), "dropped": sb.webhook.dropped() },
        },
        "outbox": {
            "queued": stats.as_ref().map(|s| s.queued),
            "inFlight": stats.as_ref().map(|s| s.in_flight),
            "dead": stats.as_ref().map(|s| s.dead),
            "deadEntries": dead.iter().map(|d| json!({"destination": d.entry.destination, "reason": d.reason})).collect::<Vec<_>>(),
            "byDestination": outbox.stats_by_destination().unwrap_or_default().into_iter()
                .map(|(d, s)| json!({"destination": d, "queued": s.queued, "inFlight": s.in_flight, "dead": s.dead}))
                .collect::<Vec<_>>(),
        },
        "reconciliation": { "rows": reconciliation_rows(&report), "allMatch": report.all_match() },
        "tally": tally_counts(shop),
        "orders": orders,
        "serverTracker": crate::server_tracker::live(shop),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, cents: i64, currency: &str, outcomes: &[(&str, &str)]) -> Order {
        Order {
            id: id.into(),
            lines: Vec::new(),
            total_cents: cents,
            currency: currency.into(),
            email: None,
            context: None,
            created_at_ms: 1,
            user_agent: None,
            page_url: None,
            tracking_cookies: None,
            status: "paid".into(),
            webhook_deliveries: 1,
            server_outcomes: outcomes.iter().map(|(d, o)| ((*d).to_owned(), (*o).to_owned())).collect(),
            server_event_id: Some("e".into()),
            confirmed_via: Some("rust".into()),
            server_error: None,
            refunded_cents: 0,
            refund_outcomes: BTreeMap::new(),
        }
    }

    fn purchase(dest: &str, id: &str, value: &str, currency: &str) -> Delivery {
        Delivery {
            destination: dest.into(),
            kind: DeliveryKind::Purchase,
            transaction_id: id.into(),
            event_id: None,
            value: Amount::parse(value).ok(),
            currency: currency.into(),
            duplicate: false,
        }
    }

    #[test]
    fn orders_declined_by_consent_are_withheld_and_the_rest_reconciles() {
        let orders = vec![
            order("ORD-1", 15890, "EUR", &[("meta", "sent (HTTP 200)")]),
            order("ORD-2", 2450, "EUR", &[("meta", "skipped: consent (ad_user_data denied)")]),
        ];
        let log = vec![purchase("meta", "ORD-1", "158.9", "EUR")];
        let st = order_statuses(&orders, &log);
        assert_eq!(st["meta"].withheld_by_consent, vec!["ORD-2".to_owned()]);
        assert_eq!(st["meta"].consent_drops, 1);
        let report = reconcile::reconcile(&order_records(&orders), &log, &st);
        let rows = reconciliation_rows(&report);
        let meta = rows.iter().find(|r| r["destination"] == "meta").expect("meta row");
        assert_eq!(meta["matches"], true, "{meta}");
        assert_eq!(meta["withheldText"], "ORD-2");
        assert_eq!(meta["backendMoney"], "158.90 EUR", "money has the currency's minor unit");
        assert_eq!(meta["problems"], json!([]));
        let ga4 = rows.iter().find(|r| r["destination"] == "ga4").expect("ga4 row");
        assert_eq!(ga4["matches"], false);
        assert_eq!(ga4["problems"], json!(["missing: ORD-1, ORD-2"]), "{ga4}");
    }

    #[test]
    fn a_queued_refund_is_pending_until_the_destination_has_it() {
        let mut o = order("ORD-1", 1000, "USD", &[("ga4", "sent (HTTP 204)")]);
        o.refund_outcomes.insert("ga4".into(), "queued (retrying: HTTP 503)".into());
        let mut log = vec![purchase("ga4", "ORD-1", "10", "USD")];
        assert_eq!(order_statuses(std::slice::from_ref(&o), &log)["ga4"].pending, 1);
        log.push(Delivery { kind: DeliveryKind::Refund, ..purchase("ga4", "ORD-1", "10", "USD") });
        assert_eq!(order_statuses(std::slice::from_ref(&o), &log)["ga4"].pending, 0);
    }

    #[test]
    fn a_server_report_behind_the_browsers_undelivered_copy_is_pending() {
        // Meta is down: the browser's purchase claimed the event and waits in
        // the outbox, so the server's own report was skipped as its duplicate.
        let o = order("ORD-1", 1000, "EUR", &[("meta", "skipped: duplicate"), ("ga4", "skipped: consent (analytics)")]);
        let mut log = vec![];
        let st = order_statuses(std::slice::from_ref(&o), &log);
        assert_eq!((st["meta"].pending, st["ga4"].pending), (1, 0));
        log.push(purchase("meta", "ORD-1", "10", "EUR"));
        assert_eq!(order_statuses(std::slice::from_ref(&o), &log)["meta"].pending, 0, "delivered");
    }
}
