//! Items (products) carried by ecommerce events, with the GA4 item fields.

use crate::prelude::*;
use serde::Deserialize;

use crate::amount::Amount;
use crate::error::{Error, Result};

/// Most items GA4 accepts on one event.
pub const MAX_ITEMS: usize = 200;
/// GA4's limit for parameter values.
pub const MAX_PARAM_VALUE: usize = 100;

/// A product line on an event. One of `item_id` / `item_name` is required.
///
/// JSON input uses camelCase (`itemId`, as the JS API does) and also accepts
/// GA4's snake_case (`item_id`).
///
/// ```
/// use tally_core::{Amount, Item};
/// let tee = Item::new("SKU_12345", "Stan and Friends Tee")
///     .with_price(Amount::parse("10.01").unwrap(), 3);
/// assert_eq!(tee.line_total().unwrap().to_string(), "30.03");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Item {
    /// SKU or product id.
    #[serde(alias = "item_id", alias = "id")]
    pub item_id: Option<String>,
    /// Product name.
    #[serde(alias = "item_name", alias = "name")]
    pub item_name: Option<String>,
    /// Store or affiliation.
    pub affiliation: Option<String>,
    /// Item-level coupon.
    pub coupon: Option<String>,
    /// Unit discount.
    pub discount: Option<Amount>,
    /// Position in a list.
    pub index: Option<u32>,
    /// Brand.
    #[serde(alias = "item_brand")]
    pub item_brand: Option<String>,
    /// Category.
    #[serde(alias = "item_category")]
    pub item_category: Option<String>,
    /// Second category level.
    #[serde(alias = "item_category2")]
    pub item_category2: Option<String>,
    /// Third category level.
    #[serde(alias = "item_category3")]
    pub item_category3: Option<String>,
    /// Fourth category level.
    #[serde(alias = "item_category4")]
    pub item_category4: Option<String>,
    /// Fifth category level.
    #[serde(alias = "item_category5")]
    pub item_category5: Option<String>,
    /// List id the item was shown in.
    #[serde(alias = "item_list_id")]
    pub item_list_id: Option<String>,
    /// List name the item was shown in.
    #[serde(alias = "item_list_name")]
    pub item_list_name: Option<String>,
    /// Variant (size, colour).
    #[serde(alias = "item_variant")]
    pub item_variant: Option<String>,
    /// Physical location id.
    #[serde(alias = "location_id")]
    pub location_id: Option<String>,
    /// Unit price.
    pub price: Option<Amount>,
    /// Quantity (GA4 defaults to 1).
    pub quantity: Option<u32>,
    /// Promotion id.
    #[serde(alias = "promotion_id")]
    pub promotion_id: Option<String>,
    /// Promotion name.
    #[serde(alias = "promotion_name")]
    pub promotion_name: Option<String>,
    /// Creative name.
    #[serde(alias = "creative_name")]
    pub creative_name: Option<String>,
    /// Creative slot.
    #[serde(alias = "creative_slot")]
    pub creative_slot: Option<String>,
}

impl Item {
    /// An item with id and name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Item {
        Item { item_id: Some(id.into()), item_name: Some(name.into()), ..Item::default() }
    }

    /// Sets unit price and quantity.
    pub fn with_price(mut self, price: Amount, quantity: u32) -> Item {
        self.price = Some(price);
        self.quantity = Some(quantity);
        self
    }

    /// `price × quantity` (quantity defaults to 1), exact; `None` without a price.
    pub fn line_total(&self) -> Option<Amount> {
        self.price?.checked_mul_qty(self.quantity.unwrap_or(1))
    }

    /// The text fields with their GA4 names, in the order GA4 documents them.
    pub fn text_fields(&self) -> [(&'static str, Option<&str>); 17] {
        [
            ("item_id", self.item_id.as_deref()),
            ("item_name", self.item_name.as_deref()),
            ("affiliation", self.affiliation.as_deref()),
            ("coupon", self.coupon.as_deref()),
            ("item_brand", self.item_brand.as_deref()),
            ("item_category", self.item_category.as_deref()),
            ("item_category2", self.item_category2.as_deref()),
            ("item_category3", self.item_category3.as_deref()),
            ("item_category4", self.item_category4.as_deref()),
            ("item_category5", self.item_category5.as_deref()),
            ("item_list_id", self.item_list_id.as_deref()),
            ("item_list_name", self.item_list_name.as_deref()),
            ("item_variant", self.item_variant.as_deref()),
            ("location_id", self.location_id.as_deref()),
            ("promotion_id", self.promotion_id.as_deref()),
            ("promotion_name", self.promotion_name.as_deref()),
            ("creative_name", self.creative_name.as_deref()),
        ]
    }

    /// Checks GA4's rules: an id or a name, values ≤ 100 characters, no negative price.
    pub fn validate(&self) -> Result<()> {
        let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if !has(&self.item_id) && !has(&self.item_name) {
            return Err(Error::Missing { field: "items[].itemId" });
        }
        for (name, v) in self.text_fields() {
            if v.is_some_and(|v| crate::text::char_count(v) > MAX_PARAM_VALUE) {
                return Err(Error::TooLong { field: item_field(name), max: MAX_PARAM_VALUE });
            }
        }
        if self.creative_slot.as_deref().is_some_and(|v| crate::text::char_count(v) > MAX_PARAM_VALUE) {
            return Err(Error::TooLong { field: "items[].creativeSlot", max: MAX_PARAM_VALUE });
        }
        if self.price.is_some_and(Amount::is_negative) {
            return Err(Error::Invalid { field: "items[].price", reason: "must not be negative" });
        }
        Ok(())
    }
}

fn item_field(ga4: &'static str) -> &'static str {
    match ga4 {
        "item_id" => "items[].itemId",
        "item_name" => "items[].itemName",
        "affiliation" => "items[].affiliation",
        "coupon" => "items[].coupon",
        "item_brand" => "items[].itemBrand",
        "item_category" => "items[].itemCategory",
        "item_list_id" => "items[].itemListId",
        "item_list_name" => "items[].itemListName",
        "item_variant" => "items[].itemVariant",
        _ => "items[]",
    }
}

/// Writes an item as the camelCase wire JSON the browser sends.
pub(crate) fn write_item_json(item: &Item, out: &mut String) {
    let mut w = crate::json::ObjectWriter::new(out);
    for (ga4, v) in item.text_fields() {
        if let Some(v) = v {
            w.str(camel(ga4), v);
        }
    }
    w.opt_str("creativeSlot", item.creative_slot.as_deref());
    if let Some(p) = item.price {
        p.write_decimal(w.key("price"));
    }
    if let Some(d) = item.discount {
        d.write_decimal(w.key("discount"));
    }
    if let Some(q) = item.quantity {
        w.int("quantity", i64::from(q));
    }
    if let Some(i) = item.index {
        w.int("index", i64::from(i));
    }
    w.finish();
}

fn camel(ga4: &'static str) -> &'static str {
    match ga4 {
        "item_id" => "itemId",
        "item_name" => "itemName",
        "item_brand" => "itemBrand",
        "item_category" => "itemCategory",
        "item_category2" => "itemCategory2",
        "item_category3" => "itemCategory3",
        "item_category4" => "itemCategory4",
        "item_category5" => "itemCategory5",
        "item_list_id" => "itemListId",
        "item_list_name" => "itemListName",
        "item_variant" => "itemVariant",
        "location_id" => "locationId",
        "promotion_id" => "promotionId",
        "promotion_name" => "promotionName",
        "creative_name" => "creativeName",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_id_or_name() {
        assert!(Item::default().validate().is_err());
        assert!(Item { item_name: Some("Tee".into()), ..Default::default() }.validate().is_ok());
        assert!(Item { item_id: Some(" ".into()), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn limits() {
        let long = Item::new("x".repeat(101), "n");
        assert_eq!(long.validate().unwrap_err().field(), "items[].itemId");
        let neg = Item::new("a", "b").with_price(Amount::parse("-1").unwrap(), 1);
        assert!(neg.validate().is_err());
    }

    #[test]
    fn wire_json_parses_back() {
        let mut it = Item::new("SKU", "Tee \"x\"").with_price(Amount::parse("10.01").unwrap(), 3);
        it.item_category2 = Some("Shirts".into());
        it.index = Some(2);
        let mut s = String::new();
        write_item_json(&it, &mut s);
        let back: Item = serde_json::from_str(&s).unwrap();
        assert_eq!(back, it);
        let snake: Item = serde_json::from_str(r#"{"item_id":"A","item_category2":"B","price":1.5}"#).unwrap();
        assert_eq!(snake.item_category2.as_deref(), Some("B"));
    }
}
