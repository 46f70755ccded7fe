//! Orders: created at checkout with the browser's envelope, paid by the webhook.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Shop;
use crate::catalog;

/// One order line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// SKU.
    pub id: String,
    /// Quantity.
    pub quantity: u32,
}

/// An order.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id (the transaction id).
    pub id: String,
    /// Lines.
    pub lines: Vec<Line>,
    /// Total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: &'static str,
    /// Customer email.
    pub email: Option<String>,
    /// The envelope from `exportContext()`, as JSON text.
    pub context: Option<String>,
    /// `pending` → `paid`.
    pub status: String,
    /// How many times the payment webhook arrived.
    pub webhook_deliveries: u32,
    /// Per-destination outcome of the server-side purchase, as text.
    pub server_outcomes: BTreeMap<String, String>,
    /// The event id the server used.
    pub server_event_id: Option<String>,
}

/// The order book.
#[derive(Clone, Default)]
pub struct Orders {
    inner: Arc<Mutex<BTreeMap<String, Order>>>,
}

impl Orders {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Order>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of an order.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.lock().get(id).cloned()
    }

    /// Every order.
    pub fn all(&self) -> Vec<Order> {
        self.lock().values().cloned().collect()
    }

    /// Applies `f` to an order.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Order)) -> Option<Order> {
        let mut map = self.lock();
        let o = map.get_mut(id)?;
        f(o);
        Some(o.clone())
    }

    fn insert(&self, o: Order) {
        self.lock().insert(o.id.clone(), o);
    }

    fn next_id(&self) -> String {
        let n = self.lock().len() + 1001;
        format!("ORD-{n}")
    }
}

/// `POST /api/orders` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    lines: Vec<Line>,
    email: Option<String>,
    context: Option<Value>,
}

/// Creates an order and starts the simulated payment.
pub async fn create(State(shop): State<Shop>, Json(body): Json<NewOrder>) -> Response {
    if body.lines.is_empty() || body.lines.len() > 50 {
        return (StatusCode::BAD_REQUEST, "an order has 1 to 50 lines").into_response();
    }
    let mut total = 0i64;
    for l in &body.lines {
        let Some(p) = catalog::find(&l.id) else {
            return (StatusCode::BAD_REQUEST, format!("unknown product {}", l.id)).into_response();
        };
        if l.quantity == 0 || l.quantity > 99 {
            return (StatusCode::BAD_REQUEST, "quantity must be 1 to 99").into_response();
        }
        total += p.price_cents * i64::from(l.quantity);
    }
    let order = Order {
        id: shop.orders.next_id(),
        lines: body.lines,
        total_cents: total,
        currency: catalog::CURRENCY,
        email: body.email.filter(|e| !e.trim().is_empty()),
        context: body.context.map(|c| c.to_string()),
        status: "pending".into(),
        webhook_deliveries: 0,
        server_outcomes: BTreeMap::new(),
        server_event_id: None,
    };
    shop.orders.insert(order.clone());
    crate::payment::schedule(shop.clone(), order.id.clone());
    Json(order).into_response()
}

/// `GET /api/orders`.
pub async fn list(State(shop): State<Shop>) -> Json<Vec<Order>> {
    Json(shop.orders.all())
}

/// `GET /api/orders/{id}`.
pub async fn get(State(shop): State<Shop>, Path(id): Path<String>) -> Response {
    match shop.orders.get(&id) {
        Some(o) => Json(o).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
