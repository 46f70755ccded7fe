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
use std::sync::atomic::Ordering;

use tally_core::client_id::client_id_from_cookie_header;
use tally_core::{Amount, ClickIds, ConsentSignal, ConsentState, Currency, Item, UserData};
use tally_server::{PurchaseInput, Visitor};

use crate::server_tracker::Report;
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
    tally_server::now_ms() / 1000
}

/// Calls the webhook for `order_id` after the configured delay, as many times as configured.
pub fn schedule(shop: Shop, order_id: String) {
    tokio::spawn(async move {
        let delay = shop.switches.webhook_delay_ms.load(Ordering::Relaxed);
        let deliveries = shop.switches.webhook_deliveries.load(Ordering::Relaxed).clamp(1, 10);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        for _ in 0..deliveries {
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
    let envelope = crate::server_tracker::stored_envelope(&order);
    let (Ok(value), Ok(currency)) = (Amount::from_minor(order.total_cents, 2), Currency::parse(&order.currency)) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad order amount").into_response();
    };
    // The purchase happened at checkout; a late webhook must not move it.
    let late_ms = i64::try_from(shop.switches.webhook_late_ms.load(Ordering::Relaxed)).unwrap_or(0);
    let occurred_at = order.created_at_ms.saturating_sub(late_ms);
    let mut input =
        PurchaseInput::new(order.id.clone(), value, currency).visitor(visitor_of(&order, envelope.is_some()));
    if occurred_at > 0 {
        input.occurred_at_ms = Some(occurred_at);
    }
    for l in &order.lines {
        if let Some(p) = catalog::find(&l.id)
            && let Some(cents) = p.price_in(&order.currency)
            && let Ok(price) = Amount::from_minor(cents, 2)
        {
            let mut item = Item::new(p.id, p.name).with_price(price, l.quantity);
            item.item_brand = Some(p.brand.into());
            item.item_category = Some(p.category.into());
            input = input.item(item);
        }
    }
    let stored = envelope.as_ref().zip(order.context.as_deref());
    match crate::server_tracker::confirm(&shop, stored, Report::Purchase(input)).await {
        Ok(r) => {
            shop.orders.update(order_id, |o| {
                o.server_event_id = Some(r.event_id);
                o.confirmed_via = Some(r.via.as_str().to_owned());
                o.server_error = None;
                for (dest, text) in r.outcomes {
                    // A repeated webhook is skipped as a duplicate: keep the first delivery's outcome.
                    if text != "skipped: duplicate" || !o.server_outcomes.contains_key(&dest) {
                        o.server_outcomes.insert(dest, text);
                    }
                }
            });
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => {
            tracing::warn!(order = order_id, error = %e, "the purchase was not reported");
            shop.orders.update(order_id, |o| o.server_error = Some(e.to_string()));
            (e.status(), e.to_string()).into_response()
        }
    }
}

/// The visitor as the backend knows it from the checkout request: user agent,
/// page URL, email, and — when the browser exported no envelope (tracker
/// blocked) — the client id and click ids from the request's cookies.
pub fn visitor_of(order: &crate::orders::Order, has_envelope: bool) -> Visitor {
    let mut v = Visitor {
        user_data: order.email.clone().map(|email| UserData { email: Some(email), ..UserData::default() }),
        user_agent: order.user_agent.clone(),
        page_url: order.page_url.clone(),
        ..Visitor::default()
    };
    if !has_envelope && let Some(cookies) = order.tracking_cookies.as_deref() {
        v.client_id = client_id_from_cookie_header(cookies);
        v.click_ids = ClickIds::from_cookie_header(cookies);
        v.consent = tally_core::cookie::get(cookies, "demo_consent").and_then(consent_from_cookie);
    }
    v
}

/// The shop's consent record: `analytics.<granted|denied>.ads.<granted|denied>`.
pub fn consent_from_cookie(v: &str) -> Option<ConsentState> {
    let parts: Vec<&str> = v.split('.').collect();
    let [("analytics", a), ("ads", ads)] =
        [(parts.first()?, parts.get(1)?), (parts.get(2)?, parts.get(3)?)].map(|(k, v)| (*k, ConsentSignal::parse(v)))
    else {
        return None;
    };
    let (a, ads) = (a?, ads?);
    Some(ConsentState { analytics_storage: a, ad_storage: ads, ad_user_data: ads, ad_personalization: ads })
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

    #[test]
    fn consent_cookie() {
        let c = consent_from_cookie("analytics.granted.ads.denied").unwrap();
        assert_eq!(c.analytics_storage, ConsentSignal::Granted);
        assert_eq!(c.ad_user_data, ConsentSignal::Denied);
        assert!(consent_from_cookie("ads.granted").is_none());
        assert!(consent_from_cookie("analytics.maybe.ads.denied").is_none());
    }
}
