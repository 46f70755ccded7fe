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
use tally_core::{Amount, ContextEnvelope, Currency};
use tally_sandbox::Mode;
use tally_server::RefundInput;

use crate::Shop;

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
    let amount = req.amount_cents.unwrap_or(remaining);
    if amount <= 0 || amount > remaining {
        return (StatusCode::BAD_REQUEST, format!("refund 0.01 to {:.2}", remaining as f64 / 100.0)).into_response();
    }
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
    let envelope = order.context.as_deref().and_then(|c| ContextEnvelope::parse(c).ok());
    let mut input = input;
    input.visitor = crate::payment::visitor_of(&order, envelope.is_some());
    let result = match &envelope {
        Some(env) => shop.tracker.from_context(env).track_refund(input).await,
        None => shop.tracker.track_refund(input).await,
    };
    match result {
        Ok(r) => {
            let order = shop.orders.update(&order.id, |o| {
                o.refunded_cents += amount;
                o.status = if o.refunded_cents >= o.total_cents { "refunded" } else { "partially refunded" }.into();
                o.refund_outcomes = r.destinations.iter().map(|(d, out)| (d.clone(), out.to_string())).collect();
            });
            Json(order).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

const DESTINATIONS: [&str; 5] = ["ga4", "google_ads", "meta", "rokt", "webhook"];

fn fault_of(shop: &Shop, dest: &str) -> Option<tally_sandbox::fault::FaultSwitch> {
    let s = &shop.sandbox;
    Some(match dest {
        "ga4" => s.ga4.faults.clone(),
        "google_ads" => s.google_ads.faults.clone(),
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
    Json(json!({ "report": format!("{report:?}") }))
}
