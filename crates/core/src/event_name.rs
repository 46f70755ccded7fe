//! Event names: the GA4 recommended events Tally knows, and validated custom names.

use crate::error::{Error, Result};
use crate::prelude::*;

/// An event name.
///
/// ```
/// use tally_core::EventName;
/// assert_eq!(EventName::parse("purchase").unwrap(), EventName::Purchase);
/// assert_eq!(EventName::parse("quiz_done").unwrap().as_str(), "quiz_done");
/// assert!(EventName::parse("session_start").is_err()); // reserved by GA4
/// assert!(EventName::parse("9lives").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventName {
    /// `page_view`
    PageView,
    /// `view_item`
    ViewItem,
    /// `view_item_list`
    ViewItemList,
    /// `select_item`
    SelectItem,
    /// `add_to_wishlist`
    AddToWishlist,
    /// `add_to_cart`
    AddToCart,
    /// `remove_from_cart`
    RemoveFromCart,
    /// `view_cart`
    ViewCart,
    /// `begin_checkout`
    BeginCheckout,
    /// `add_shipping_info`
    AddShippingInfo,
    /// `add_payment_info`
    AddPaymentInfo,
    /// `purchase`
    Purchase,
    /// `refund`
    Refund,
    /// `generate_lead`
    GenerateLead,
    /// `sign_up`
    SignUp,
    /// `login`
    Login,
    /// `search`
    Search,
    /// A validated custom name.
    Custom(String),
}

const STANDARD: [(&str, EventName); 17] = [
    ("page_view", EventName::PageView),
    ("view_item", EventName::ViewItem),
    ("view_item_list", EventName::ViewItemList),
    ("select_item", EventName::SelectItem),
    ("add_to_wishlist", EventName::AddToWishlist),
    ("add_to_cart", EventName::AddToCart),
    ("remove_from_cart", EventName::RemoveFromCart),
    ("view_cart", EventName::ViewCart),
    ("begin_checkout", EventName::BeginCheckout),
    ("add_shipping_info", EventName::AddShippingInfo),
    ("add_payment_info", EventName::AddPaymentInfo),
    ("purchase", EventName::Purchase),
    ("refund", EventName::Refund),
    ("generate_lead", EventName::GenerateLead),
    ("sign_up", EventName::SignUp),
    ("login", EventName::Login),
    ("search", EventName::Search),
];

/// GA4's reserved event names (<https://support.google.com/analytics/answer/10085872>).
const RESERVED: [&str; 34] = [
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_install",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "screen_view",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
];

/// Reserved prefixes for names (events and parameters).
pub(crate) const RESERVED_PREFIXES: [&str; 4] = ["firebase_", "ga_", "google_", "gtag."];

/// The GA4 rule for event and parameter names: a letter, then up to 39
/// letters, digits or underscores.
pub fn is_valid_ga4_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl EventName {
    /// Parses a name: a standard one, or a custom name that follows GA4's rules
    /// and is not reserved.
    pub fn parse(raw: &str) -> Result<EventName> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(Error::Missing { field: "name" });
        }
        if let Some((_, n)) = STANDARD.iter().find(|(s, _)| *s == t) {
            return Ok(n.clone());
        }
        if t.len() > 40 {
            return Err(Error::TooLong { field: "name", max: 40 });
        }
        if !is_valid_ga4_name(t) {
            return Err(Error::Invalid {
                field: "name",
                reason: "start with a letter; use letters, digits and _ only",
            });
        }
        let lower = t.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
            return Err(Error::Invalid { field: "name", reason: "reserved by GA4; choose another name" });
        }
        Ok(EventName::Custom(t.to_owned()))
    }

    /// The GA4 spelling.
    pub fn as_str(&self) -> &str {
        if let EventName::Custom(s) = self {
            return s;
        }
        STANDARD.iter().find(|(_, n)| n == self).map(|(s, _)| *s).unwrap_or("custom")
    }

    /// Events that must carry a transaction id.
    pub fn requires_transaction(&self) -> bool {
        matches!(self, EventName::Purchase | EventName::Refund)
    }

    /// Meta's standard event name, or the GA4 name as a custom event (<https://developers.facebook.com/docs/meta-pixel/reference>).
    pub fn meta_name(&self) -> &str {
        match self {
            EventName::PageView => "PageView",
            EventName::ViewItem => "ViewContent",
            EventName::AddToWishlist => "AddToWishlist",
            EventName::AddToCart => "AddToCart",
            EventName::BeginCheckout => "InitiateCheckout",
            EventName::AddPaymentInfo => "AddPaymentInfo",
            EventName::Purchase => "Purchase",
            EventName::GenerateLead => "Lead",
            EventName::SignUp => "CompleteRegistration",
            EventName::Search => "Search",
            other => other.as_str(),
        }
    }

    /// TikTok's standard event name, if it has one.
    pub fn tiktok_name(&self) -> Option<&'static str> {
        Some(match self {
            EventName::ViewItem => "ViewContent",
            EventName::AddToWishlist => "AddToWishlist",
            EventName::AddToCart => "AddToCart",
            EventName::BeginCheckout => "InitiateCheckout",
            EventName::AddPaymentInfo => "AddPaymentInfo",
            EventName::Purchase => "CompletePayment",
            EventName::GenerateLead => "SubmitForm",
            EventName::SignUp => "CompleteRegistration",
            EventName::Search => "Search",
            _ => return None,
        })
    }
}

impl serde::Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_names_round_trip() {
        for (s, n) in STANDARD.iter() {
            assert_eq!(EventName::parse(s).unwrap(), *n);
            assert_eq!(n.as_str(), *s);
        }
    }

    #[test]
    fn custom_rules() {
        assert!(EventName::parse("quiz_completed").is_ok());
        for bad in ["_x", "1abc", "has space", "ga_thing", "Firebase_x", "a-b", &"a".repeat(41)] {
            assert!(EventName::parse(bad).is_err(), "{bad}");
        }
        for r in RESERVED {
            assert!(EventName::parse(r).is_err(), "{r}");
        }
    }

    #[test]
    fn platform_names() {
        assert_eq!(EventName::Purchase.meta_name(), "Purchase");
        assert_eq!(EventName::BeginCheckout.meta_name(), "InitiateCheckout");
        assert_eq!(EventName::ViewCart.meta_name(), "view_cart");
        assert_eq!(EventName::Purchase.tiktok_name(), Some("CompletePayment"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,60}") {
            if let Ok(n) = EventName::parse(&s) {
                prop_assert!(is_valid_ga4_name(n.as_str()));
            }
        }
    }
}
