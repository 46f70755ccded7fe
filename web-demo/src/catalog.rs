//! The demo catalog: six products with generated images.

use axum::Json;
use serde::Serialize;

/// A product.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// SKU.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// Brand.
    pub brand: &'static str,
    /// Category.
    pub category: &'static str,
    /// Price in cents.
    pub price_cents: i64,
    /// Colour of the generated image.
    pub colour: &'static str,
}

/// Every product. Prices are in EUR.
pub const PRODUCTS: [Product; 6] = [
    Product {
        id: "SKU-204",
        name: "Merino runner",
        brand: "Tally Goods",
        category: "Shoes",
        price_cents: 11_900,
        colour: "#3b82f6",
    },
    Product {
        id: "SKU-311",
        name: "Canvas tote",
        brand: "Tally Goods",
        category: "Bags",
        price_cents: 2_450,
        colour: "#f59e0b",
    },
    Product {
        id: "SKU-402",
        name: "Linen shirt",
        brand: "Northfold",
        category: "Shirts",
        price_cents: 5_999,
        colour: "#10b981",
    },
    Product {
        id: "SKU-518",
        name: "Wool beanie",
        brand: "Northfold",
        category: "Hats",
        price_cents: 1_995,
        colour: "#ef4444",
    },
    Product {
        id: "SKU-627",
        name: "Rain shell",
        brand: "Coastline",
        category: "Jackets",
        price_cents: 14_950,
        colour: "#8b5cf6",
    },
    Product {
        id: "SKU-733",
        name: "Trail socks (3 pairs)",
        brand: "Coastline",
        category: "Socks",
        price_cents: 1_299,
        colour: "#14b8a6",
    },
];

/// The currency of every price.
pub const CURRENCY: &str = "EUR";

/// Finds a product by SKU.
pub fn find(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// `GET /api/catalog`.
pub async fn list() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "currency": CURRENCY, "products": PRODUCTS }))
}
