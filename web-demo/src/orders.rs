//! Orders: created at checkout with the browser's envelope, paid by the webhook.
//! Kept in SQLite (one JSON row per order) with an in-memory copy for reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
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
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id (the transaction id).
    pub id: String,
    /// Lines.
    pub lines: Vec<Line>,
    /// Total in cents.
    pub total_cents: i64,
    /// Currency.
    pub currency: String,
    /// Customer email.
    pub email: Option<String>,
    /// The envelope from `exportContext()`, as JSON text.
    pub context: Option<String>,
    /// When the order was placed (Unix ms).
    #[serde(default)]
    pub created_at_ms: i64,
    /// The checkout request's user agent (Meta needs it for website events).
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The checkout page URL (`event_source_url`).
    #[serde(default)]
    pub page_url: Option<String>,
    /// The checkout request's `Cookie` header, reduced to the tracking cookies
    /// (`_ga`, `_tally_*`, `_gcl_*`, `_fbp`, `_fbc`, and the shop's
    /// consent record `demo_consent`): stitches the order to the
    /// visitor when the tracker script was blocked.
    #[serde(default)]
    pub tracking_cookies: Option<String>,
    /// `pending` → `paid` → `refunded` / `partially refunded`.
    pub status: String,
    /// How many times the payment webhook arrived.
    pub webhook_deliveries: u32,
    /// Per-destination outcome of the server-side purchase, as text.
    pub server_outcomes: BTreeMap<String, String>,
    /// The event id the server used.
    pub server_event_id: Option<String>,
    /// Which server tracker reported the purchase (`rust` or `js`).
    #[serde(default)]
    pub confirmed_via: Option<String>,
    /// Why the latest webhook could not report the purchase (cleared once one does).
    #[serde(default)]
    pub server_error: Option<String>,
    /// Refunded so far, in cents.
    #[serde(default)]
    pub refunded_cents: i64,
    /// Per-destination outcome of the latest refund, as text.
    #[serde(default)]
    pub refund_outcomes: BTreeMap<String, String>,
}

/// The order book.
#[derive(Clone)]
pub struct Orders {
    inner: Arc<Mutex<BTreeMap<String, Order>>>,
    db: Arc<Mutex<Connection>>,
}

impl Orders {
    /// Opens (or creates) the SQLite order book at `path` and loads its orders.
    pub fn open(path: &Path) -> Result<Orders, rusqlite::Error> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, body TEXT NOT NULL);",
        )?;
        let mut map = BTreeMap::new();
        {
            let mut stmt = db.prepare("SELECT body FROM orders ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for body in rows {
                match serde_json::from_str::<Order>(&body?) {
                    Ok(o) => {
                        map.insert(o.id.clone(), o);
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable stored order"),
                }
            }
        }
        Ok(Orders { inner: Arc::new(Mutex::new(map)), db: Arc::new(Mutex::new(db)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Order>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, o: &Order, seq: usize) {
        let Ok(body) = serde_json::to_string(o) else {
            return;
        };
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let res = db.execute(
            "INSERT INTO orders (id, seq, body) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            rusqlite::params![o.id, seq as i64, body],
        );
        if let Err(e) = res {
            tracing::error!(order = %o.id, error = %e, "cannot store the order");
        }
    }

    /// A copy of an order.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.lock().get(id).cloned()
    }

    /// Every order.
    pub fn all(&self) -> Vec<Order> {
        self.lock().values().cloned().collect()
    }

    /// Applies `f` to an order and stores it.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Order)) -> Option<Order> {
        let mut map = self.lock();
        let seq = map.len();
        let o = map.get_mut(id)?;
        f(o);
        let o = o.clone();
        self.persist(&o, seq);
        Some(o)
    }

    /// Stores a new order under a fresh id (`ORD-1001`, …).
    fn insert_new(&self, mut o: Order) -> Order {
        let mut map = self.lock();
        let mut n = map.len() + 1001;
        while map.contains_key(&format!("ORD-{n}")) {
            n += 1;
        }
        o.id = format!("ORD-{n}");
        self.persist(&o, n);
        map.insert(o.id.clone(), o.clone());
        o
    }
}

/// `POST /api/orders` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    lines: Vec<Line>,
    email: Option<String>,
    context: Option<Value>,
    /// The page the order was placed on (`location.href`).
    page_url: Option<String>,
    /// The shopper's currency (one of [`catalog::CURRENCIES`]; default the first).
    currency: Option<String>,
}

const TRACKING_COOKIES: [&str; 7] = ["_ga", "_tally_", "_gcl_", "_fbp", "_fbc", "_gac_", "demo_consent="];

/// Keeps only the tracking cookies of a `Cookie` header.
pub fn tracking_cookies(headers: &HeaderMap) -> Option<String> {
    let raw: Vec<&str> = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    let kept: Vec<&str> = raw
        .iter()
        .flat_map(|h| h.split(';'))
        .map(str::trim)
        .filter(|c| TRACKING_COOKIES.iter().any(|p| c.starts_with(p)))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Creates an order and starts the simulated payment.
pub async fn create(State(shop): State<Shop>, headers: HeaderMap, Json(body): Json<NewOrder>) -> Response {
    if body.lines.is_empty() || body.lines.len() > 50 {
        return (StatusCode::BAD_REQUEST, "an order has 1 to 50 lines").into_response();
    }
    let currency = body.currency.as_deref().unwrap_or(catalog::CURRENCIES[0]);
    if !catalog::CURRENCIES.contains(&currency) {
        let sold = catalog::CURRENCIES.join(" or ");
        return (StatusCode::BAD_REQUEST, format!("the shop sells in {sold}, not {currency:?}")).into_response();
    }
    let currency = currency.to_owned();
    let mut total = 0i64;
    for l in &body.lines {
        let Some(p) = catalog::find(&l.id) else {
            return (StatusCode::BAD_REQUEST, format!("unknown product {}", l.id)).into_response();
        };
        if l.quantity == 0 || l.quantity > 99 {
            return (StatusCode::BAD_REQUEST, "quantity must be 1 to 99").into_response();
        }
        total += p.price_in(&currency).unwrap_or(p.price_cents) * i64::from(l.quantity);
    }
    let header_text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let page_url =
        body.page_url.filter(|u| u.starts_with("http") && u.len() < 2048).or_else(|| header_text(header::REFERER));
    let order = Order {
        id: String::new(),
        lines: body.lines,
        total_cents: total,
        currency,
        email: body.email.filter(|e| !e.trim().is_empty()),
        context: body.context.filter(|c| !c.is_null()).map(|c| c.to_string()),
        created_at_ms: tally_server::now_ms(),
        user_agent: header_text(header::USER_AGENT),
        page_url,
        tracking_cookies: tracking_cookies(&headers),
        status: "pending".into(),
        webhook_deliveries: 0,
        server_outcomes: BTreeMap::new(),
        server_event_id: None,
        confirmed_via: None,
        server_error: None,
        refunded_cents: 0,
        refund_outcomes: BTreeMap::new(),
    };
    let order = shop.orders.insert_new(order);
    crate::payment::schedule(shop.clone(), order.id.clone());
    Json(order).into_response()
}

/// `GET /api/orders`.
pub async fn list(State(shop): State<Shop>) -> Json<Vec<Order>> {
    Json(shop.orders.all())
}

/// `GET /api/orders/{id}`.
pub async fn get(State(shop): State<Shop>, UrlPath(id): UrlPath<String>) -> Response {
    match shop.orders.get(&id) {
        Some(o) => Json(o).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        Order {
            id: String::new(),
            lines: vec![Line { id: "SKU-204".into(), quantity: 2 }],
            total_cents: 23800,
            currency: "EUR".into(),
            email: Some("a@example.com".into()),
            context: Some("{\"v\":1}".into()),
            created_at_ms: 1,
            user_agent: Some("UA".into()),
            page_url: Some("http://127.0.0.1/checkout".into()),
            tracking_cookies: Some("_ga=GA1.1.1.2".into()),
            status: "pending".into(),
            webhook_deliveries: 0,
            server_outcomes: BTreeMap::new(),
            server_event_id: None,
            confirmed_via: None,
            server_error: None,
            refunded_cents: 0,
            refund_outcomes: BTreeMap::new(),
        }
    }

    #[test]
    fn orders_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("tally-demo-orders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("orders.db");
        let id = {
            let book = Orders::open(&path).unwrap();
            let o = book.insert_new(order());
            assert_eq!(o.id, "ORD-1001");
            book.update(&o.id, |o| o.status = "paid".into()).unwrap();
            assert_eq!(book.insert_new(order()).id, "ORD-1002");
            o.id
        };
        let book = Orders::open(&path).unwrap();
        let o = book.get(&id).unwrap();
        assert_eq!(o.status, "paid");
        assert_eq!(o.context.as_deref(), Some("{\"v\":1}"), "the envelope is stored with the order");
        assert_eq!(book.all().len(), 2);
        assert_eq!(book.insert_new(order()).id, "ORD-1003");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_tracking_cookies_are_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "session=secret; _ga=GA1.1.1.2; _gcl_aw=GCL.1.x; demo_consent=analytics.granted.ads.denied"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            tracking_cookies(&h).as_deref(),
            Some("_ga=GA1.1.1.2; _gcl_aw=GCL.1.x; demo_consent=analytics.granted.ads.denied")
        );
    }
}
