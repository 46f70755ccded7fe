//! The admin page's API: refunds, and the page switches (ad blocker,
//! destination outage, webhook timing).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tally_core::{Amount, Currency};
use tally_sandbox::Mode;
use tally_server::RefundInput;

use crate::Shop;
use crate::server_tracker::Report;

/// The admin routes.
pub fn routes() -> Router<Shop> {
    Router::new()
        .route("/admin", get(|| async { crate::pages::page("admin", "Admin") }))
        .route("/api/admin/refund", post(refund))
        .route("/api/admin/switches", get(get_switches).post(set_switches))
        .route("/api/admin/flush", post(flush))
}

/// `POST /api/admin/refund` body: no `amountCents` for a full refund.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest {
    order_id: String,
    amount_cents: Option<i64>,
}

async fn refund(State(shop): State<Shop>, Json(req): Json<RefundRequest>) -> Response {
    let Some(order) = shop.orders.get(&req.order_id) else {
        return (StatusCode::NOT_FOUND, "unknown order").into_response();
    };
    if order.status == "pending" {
        return (StatusCode::CONFLICT, "the order is not paid yet").into_response();
    }
    let remaining = order.total_cents - order.refunded_cents;
    let amount = match refund_cents(&order.id, req.amount_cents, remaining, &order.currency) {
        Ok(a) => a,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Ok(currency) = Currency::parse(&order.currency) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad currency").into_response();
    };
    let input = if amount == remaining && order.refunded_cents == 0 {
        RefundInput::full(order.id.clone(), currency)
    } else {
        let (Ok(refunded), Ok(original)) = (Amount::from_minor(amount, 2), Amount::from_minor(remaining, 2)) else {
            return (StatusCode::BAD_REQUEST, "bad amount").into_response();
        };
        RefundInput::partial(order.id.clone(), refunded, original, currency)
    };
    // The refund goes out with the purchase's visitor and consent (GA4 needs the client id).
    let envelope = crate::server_tracker::stored_envelope(&order);
    let mut input = input;
    input.visitor = crate::payment::visitor_of(&order, envelope.is_some());
    let stored = envelope.as_ref().zip(order.context.as_deref());
    match crate::server_tracker::confirm(&shop, stored, Report::Refund(input)).await {
        Ok(r) => {
            let order = shop.orders.update(&order.id, |o| {
                o.refunded_cents += amount;
                o.status = if o.refunded_cents >= o.total_cents { "refunded" } else { "partially refunded" }.into();
                o.refund_outcomes = r.outcomes;
            });
            Json(order).into_response()
        }
        Err(e) => (e.status(), e.to_string()).into_response(),
    }
}

/// `cents` of `currency` as money people read (`158.90 EUR`).
fn money(cents: i64, currency: &str) -> String {
    Amount::from_minor(cents, 2).map_or_else(|_| cents.to_string(), |a| tally_core::reconcile::money(a, currency))
}

/// The cents to refund when `requested` (none: everything left) is asked of an
/// order with `remaining` cents left, or what to enter instead.
pub fn refund_cents(order: &str, requested: Option<i64>, remaining: i64, currency: &str) -> Result<i64, String> {
    if remaining <= 0 {
        return Err(format!("{order} is already refunded in full."));
    }
    let amount = requested.unwrap_or(remaining);
    if amount > remaining {
        return Err(format!(
            "Cannot refund {} of {order}: only {} is left to refund. Enter at most {}.",
            money(amount, currency),
            money(remaining, currency),
            money(remaining, currency)
        ));
    }
    if amount <= 0 {
        return Err(format!(
            "Enter the amount to refund, from {} to {}.",
            money(1, currency),
            money(remaining, currency)
        ));
    }
    Ok(amount)
}

/// What a flush left, for the admin page: `complete` when the outbox emptied.
pub fn flush_message(complete: bool, queued: usize, in_flight: usize, dead: usize) -> String {
    let dead = match dead {
        0 => String::new(),
        n => format!(" {n} delivery(ies) were given up on; the inspector lists them with the reason."),
    };
    if complete {
        format!("Outbox flushed: nothing is waiting.{dead}")
    } else {
        format!(
            "Still waiting after 5 s: {queued} queued, {in_flight} in flight (a destination is down or slow); \
             they stay in the outbox and are retried.{dead}"
        )
    }
}

const DESTINATIONS: [&str; 5] = ["ga4", "google_ads", "meta", "rokt", "webhook"];

fn fault_of(shop: &Shop, dest: &str) -> Option<tally_sandbox::fault::FaultSwitch> {
    let s = &shop.sandbox;
    Some(match dest {
        "ga4" => s.ga4.faults.clone(),
        "google_ads" => s.data_manager.faults.clone(),
        "meta" => s.meta.faults.clone(),
        "rokt" => s.rokt.faults.clone(),
        "webhook" => s.webhook.faults.clone(),
        _ => return None,
    })
}

fn switches_json(shop: &Shop) -> Value {
    let sw = &shop.switches;
    let down: Vec<&str> =
        DESTINATIONS.iter().copied().filter(|d| fault_of(shop, d).is_some_and(|f| f.get() == Mode::Down)).collect();
    json!({
        "collectBlocked": sw.collect_blocked.load(Ordering::Relaxed),
        "collectDown": sw.collect_down.load(Ordering::Relaxed),
        "webhookDelayMs": sw.webhook_delay_ms.load(Ordering::Relaxed),
        "webhookDeliveries": sw.webhook_deliveries.load(Ordering::Relaxed),
        "webhookLateMs": sw.webhook_late_ms.load(Ordering::Relaxed),
        "down": down,
        "serverTracker": crate::server_tracker::live(shop),
    })
}

async fn get_switches(State(shop): State<Shop>) -> Json<Value> {
    Json(switches_json(&shop))
}

/// `POST /api/admin/switches` body; absent fields are left alone.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchUpdate {
    collect_blocked: Option<bool>,
    collect_down: Option<bool>,
    webhook_delay_ms: Option<u64>,
    webhook_deliveries: Option<u32>,
    webhook_late_ms: Option<u64>,
    /// `{"destination": "meta", "down": true}`.
    outage: Option<Outage>,
}

/// A destination outage switch.
#[derive(Deserialize)]
pub struct Outage {
    destination: String,
    down: bool,
}

async fn set_switches(State(shop): State<Shop>, Json(u): Json<SwitchUpdate>) -> Response {
    let sw = &shop.switches;
    if let Some(b) = u.collect_blocked {
        sw.collect_blocked.store(b, Ordering::Relaxed);
    }
    if let Some(b) = u.collect_down {
        sw.collect_down.store(b, Ordering::Relaxed);
    }
    if let Some(d) = u.webhook_delay_ms {
        sw.webhook_delay_ms.store(d.min(600_000), Ordering::Relaxed);
    }
    if let Some(n) = u.webhook_deliveries {
        sw.webhook_deliveries.store(n.clamp(1, 10), Ordering::Relaxed);
    }
    if let Some(l) = u.webhook_late_ms {
        sw.webhook_late_ms.store(l.min(86_400_000), Ordering::Relaxed);
    }
    if let Some(o) = u.outage {
        let Some(f) = fault_of(&shop, &o.destination) else {
            return (StatusCode::BAD_REQUEST, "unknown destination").into_response();
        };
        f.set(if o.down { Mode::Down } else { Mode::Up });
    }
    Json(switches_json(&shop)).into_response()
}

async fn flush(State(shop): State<Shop>) -> Json<Value> {
    let report = shop.tracker.flush(Duration::from_secs(5)).await;
    let r = report.remaining;
    let dead = shop.tracker.outbox().stats().map(|s| s.dead).unwrap_or(0);
    Json(json!({
        "complete": report.complete,
        "queued": r.queued,
        "inFlight": r.in_flight,
        "message": flush_message(report.complete, r.queued, r.in_flight, dead),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_over_refund_says_how_much_is_left() {
        let e = refund_cents("ORD-1001", Some(20_000), 15_890, "EUR").unwrap_err();
        assert_eq!(
            e,
            "Cannot refund 200.00 EUR of ORD-1001: only 158.90 EUR is left to refund. Enter at most 158.90 EUR."
        );
        let e = refund_cents("ORD-1001", Some(0), 15_890, "EUR").unwrap_err();
        assert_eq!(e, "Enter the amount to refund, from 0.01 EUR to 158.90 EUR.");
        assert!(refund_cents("ORD-1001", None, 0, "EUR").unwrap_err().contains("already refunded"));
        assert_eq!(refund_cents("ORD-1001", Some(15_890), 15_890, "USD"), Ok(15_890));
        assert_eq!(refund_cents("ORD-1001", None, 1_025, "USD"), Ok(1_025));
    }

    #[test]
    fn the_flush_result_reads_as_a_sentence() {
        assert_eq!(flush_message(true, 0, 0, 0), "Outbox flushed: nothing is waiting.");
        let m = flush_message(false, 2, 1, 1);
        assert!(m.starts_with("Still waiting after 5 s: 2 queued, 1 in flight"), "{m}");
        assert!(m.contains("1 delivery(ies) were given up on"), "{m}");
        assert!(!m.contains("FlushReport") && !m.contains('{'), "{m}");
    }
}
