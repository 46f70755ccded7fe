//! The simulated payment provider and the shop's webhook handler.
//!
//! Like a real provider, it calls the webhook late (configurable) and signs
//! the body: `X-Demo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tally_core::{Amount, ContextEnvelope, Currency, Item, UserData};
use tally_server::{PurchaseInput, Visitor};

use crate::{Shop, WEBHOOK_SECRET, catalog};

fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> i64 {
    tally_server::tracker::now_ms() / 1000
}

/// Calls the webhook for `order_id` after the configured delay, as many times as configured.
pub fn schedule(shop: Shop, order_id: String) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(shop.config.webhook_delay_ms)).await;
        for _ in 0..shop.config.webhook_deliveries.max(1) {
            deliver(&shop, &order_id).await;
        }
    });
}

/// Sends one signed `payment.succeeded` webhook for `order_id`.
pub async fn deliver(shop: &Shop, order_id: &str) {
    let Some(order) = shop.orders.get(order_id) else {
        return;
    };
    let body = json!({"type": "payment.succeeded", "orderId": order.id, "amountCents": order.total_cents, "currency": order.currency})
        .to_string();
    let ts = now_secs();
    let sig = format!("t={ts},v1={}", sign(WEBHOOK_SECRET, ts, body.as_bytes()));
    let res = shop
        .http
        .post(format!("{}/webhooks/payment", shop.base_url))
        .header("content-type", "application/json")
        .header("x-demo-signature", sig)
        .body(body)
        .send()
        .await;
    if let Err(e) = res {
        tracing::warn!(order = order_id, error = %e, "payment webhook delivery failed");
    }
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers.get("x-demo-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut ts = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => ts = t.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(ts), Some(v1)) = (ts, v1) else {
        return false;
    };
    if (now_secs() - ts).abs() > 300 {
        return false;
    }
    let want = sign(WEBHOOK_SECRET, ts, body);
    want.len() == v1.len() && want.bytes().zip(v1.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `POST /webhooks/payment`: verifies, marks the order paid, reports the purchase.
pub async fn webhook(State(shop): State<Shop>, headers: HeaderMap, body: Bytes) -> Response {
    if !verify(&headers, &body) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad JSON").into_response();
    };
    let Some(order_id) = v.get("orderId").and_then(Value::as_str) else {
        return (StatusCode::BAD_REQUEST, "orderId missing").into_response();
    };
    let Some(order) = shop.orders.update(order_id, |o| {
        o.status = "paid".into();
        o.webhook_deliveries += 1;
    }) else {
        return (StatusCode::NOT_FOUND, "unknown order").into_response();
    };
    let envelope = order.context.as_deref().and_then(|c| match ContextEnvelope::parse(c) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(order = order_id, error = %e, "stored envelope is invalid; tracking without it");
            None
        }
    });
    let (Ok(value), Ok(currency)) = (Amount::from_minor(order.total_cents, 2), Currency::parse(order.currency)) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad order amount").into_response();
    };
    let mut input = PurchaseInput::new(order.id.clone(), value, currency).visitor(Visitor {
        user_data: order.email.clone().map(|email| UserData { email: Some(email), ..UserData::default() }),
        ..Visitor::default()
    });
    for l in &order.lines {
        if let Some(p) = catalog::find(&l.id)
            && let Ok(price) = Amount::from_minor(p.price_cents, 2)
        {
            let mut item = Item::new(p.id, p.name).with_price(price, l.quantity);
            item.item_brand = Some(p.brand.into());
            item.item_category = Some(p.category.into());
            input = input.item(item);
        }
    }
    let result = match &envelope {
        Some(env) => shop.tracker.from_context(env).track_purchase(input).await,
        None => shop.tracker.track_purchase(input).await,
    };
    match result {
        Ok(r) => {
            shop.orders.update(order_id, |o| {
                o.server_event_id = Some(r.event_id.as_str().to_owned());
                for (dest, outcome) in &r.destinations {
                    o.server_outcomes.insert(dest.clone(), outcome.to_string());
                }
            });
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let ts = now_secs();
        let body = b"{\"orderId\":\"ORD-1\"}";
        let mut h = HeaderMap::new();
        h.insert("x-demo-signature", format!("t={ts},v1={}", sign(WEBHOOK_SECRET, ts, body)).parse().unwrap());
        assert!(verify(&h, body));
        assert!(!verify(&h, b"{\"orderId\":\"ORD-2\"}"));
        let old = ts - 3600;
        h.insert("x-demo-signature", format!("t={old},v1={}", sign(WEBHOOK_SECRET, old, body)).parse().unwrap());
        assert!(!verify(&h, body), "stale signatures are refused");
    }
}
