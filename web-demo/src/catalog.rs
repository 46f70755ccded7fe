//! The demo catalog: six products with generated images, priced in two
//! currencies (EUR and USD) so the inspector reconciles each currency apart.

use axum::Json;
use serde::Serialize;
use serde_json::json;

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
    /// Price in EUR cents.
    pub price_cents: i64,
    /// Price in USD cents.
    pub price_usd_cents: i64,
    /// Colour of the generated image.
    pub colour: &'static str,
}

/// Every product.
pub const PRODUCTS: [Product; 6] = [
    Product {
        id: "SKU-204",
        name: "Merino runner",
        brand: "Tally Goods",
        category: "Shoes",
        price_cents: 11_900,
        price_usd_cents: 12_900,
        colour: "#3b82f6",
    },
    Product {
        id: "SKU-311",
        name: "Canvas tote",
        brand: "Tally Goods",
        category: "Bags",
        price_cents: 2_450,
        price_usd_cents: 2_650,
        colour: "#f59e0b",
    },
    Product {
        id: "SKU-402",
        name: "Linen shirt",
        brand: "Northfold",
        category: "Shirts",
        price_cents: 5_999,
        price_usd_cents: 6_499,
        colour: "#10b981",
    },
    Product {
        id: "SKU-518",
        name: "Wool beanie",
        brand: "Northfold",
        category: "Hats",
        price_cents: 1_995,
        price_usd_cents: 2_150,
        colour: "#ef4444",
    },
    Product {
        id: "SKU-627",
        name: "Rain shell",
        brand: "Coastline",
        category: "Jackets",
        price_cents: 14_950,
        price_usd_cents: 15_990,
        colour: "#8b5cf6",
    },
    Product {
        id: "SKU-733",
        name: "Trail socks (3 pairs)",
        brand: "Coastline",
        category: "Socks",
        price_cents: 1_299,
        price_usd_cents: 1_399,
        colour: "#14b8a6",
    },
];

/// The shop's currencies; the first is the default.
pub const CURRENCIES: [&str; 2] = ["EUR", "USD"];

impl Product {
    /// The price in `currency`'s cents, if the shop sells in it.
    pub fn price_in(&self, currency: &str) -> Option<i64> {
        match currency {
            "EUR" => Some(self.price_cents),
            "USD" => Some(self.price_usd_cents),
            _ => None,
        }
    }
}

/// Finds a product by SKU.
pub fn find(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// `GET /api/catalog`: the products with their price in every currency.
pub async fn list() -> Json<serde_json::Value> {
    let products: Vec<_> = PRODUCTS
        .iter()
        .map(|p| {
            let prices: serde_json::Map<_, _> =
                CURRENCIES.iter().filter_map(|c| Some(((*c).to_owned(), p.price_in(c)?.into()))).collect();
            json!({ "id": p.id, "name": p.name, "brand": p.brand, "category": p.category, "colour": p.colour, "prices": prices })
        })
        .collect();
    Json(json!({ "currencies": CURRENCIES, "products": products }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_has_a_price_in_every_currency() {
        for p in &PRODUCTS {
            for c in CURRENCIES {
                assert!(p.price_in(c).is_some_and(|v| v > 0), "{} in {c}", p.id);
            }
            assert_eq!(p.price_in("JPY"), None);
        }
    }
}
