//! The storefront's pages and assets (embedded), and the inspector's data.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::Shop;

const SHELL: &str = include_str!("../static/shell.html");
const SHOP_JS: &str = include_str!("../static/shop.js");
const INSPECTOR_JS: &str = include_str!("../static/inspector.js");
const ADMIN_JS: &str = include_str!("../static/admin.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
const FAVICON_SVG: &str = include_str!("../static/favicon.svg");

pub(crate) fn page(name: &str, title: &str) -> Html<String> {
    let script = match name {
        "inspector" => "/static/inspector.js",
        "admin" => "/static/admin.js",
        _ => "/static/shop.js",
    };
    Html(SHELL.replace("{{page}}", name).replace("{{title}}", title).replace("{{script}}", script))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The page and asset routes.
pub fn routes() -> Router<Shop> {
    Router::new()
        .route("/", get(|| async { page("catalog", "Tally demo shop") }))
        .route("/product/{id}", get(|| async { page("product", "Product") }))
        .route("/cart", get(|| async { page("cart", "Cart") }))
        .route("/checkout", get(|| async { page("checkout", "Checkout") }))
        .route("/thank-you", get(|| async { page("thank-you", "Thank you") }))
        .route("/inspector", get(|| async { page("inspector", "Inspector") }))
        .route("/static/shop.js", get(|| async { asset(SHOP_JS, "text/javascript") }))
        .route("/static/inspector.js", get(|| async { asset(INSPECTOR_JS, "text/javascript") }))
        .route("/static/admin.js", get(|| async { asset(ADMIN_JS, "text/javascript") }))
        .route("/static/style.css", get(|| async { asset(STYLE_CSS, "text/css") }))
        // Browsers ask for /favicon.ico on their own; both paths serve the SVG.
        .route("/favicon.svg", get(|| async { asset(FAVICON_SVG, "image/svg+xml") }))
        .route("/favicon.ico", get(|| async { asset(FAVICON_SVG, "image/svg+xml") }))
        .route("/api/inspector", get(inspector))
}

/// `GET /api/inspector`: per destination what was accepted, deduplicated and
/// dropped; the outbox; the reconciliation; the orders.
async fn inspector(State(shop): State<Shop>) -> axum::Json<serde_json::Value> {
    axum::Json(crate::inspect::inspector_json(&shop))
}
