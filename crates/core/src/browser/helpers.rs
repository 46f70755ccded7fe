//! The tracker's e-commerce helpers (`trackViewItem` … `trackLead`): which
//! event each builds, which `conversionLabels` key sends it to Google Ads, and
//! what it reads beyond the fields every helper shares.
//!
//! The npm package's tracker runs its `track*` helpers from this table; the
//! method names are the errors' prefixes.
//!
//! ```
//! use tally_core::browser::helpers::HELPERS;
//! use tally_core::browser::input::{event, Value};
//! use tally_core::EventName;
//!
//! let purchase = &HELPERS[6];
//! assert_eq!((purchase.method, &purchase.name), ("trackPurchase", &EventName::Purchase));
//! // A purchase without a transaction id is refused, naming the field.
//! let e = event(purchase.name.clone(), &Value::Map(vec![]), &purchase.extra, 0, [0; 10]);
//! assert_eq!(e.unwrap_err().field(), "transactionId");
//! ```

use crate::EventName;
use crate::browser::input::{Extra, NO_EXTRA};

/// One helper of the table.
#[derive(Debug)]
// `repr(C)` in this field order: of the orders measured it gives the smallest
// package (gzip, `cargo xtask pkg`): 73,815 B against 73,818-73,852 B.
#[repr(C)]
pub struct Helper {
    /// The `conversionLabels` key whose label the gtag bridge sends it to, if any.
    pub label: Option<&'static str>,
    /// The JS method (`trackAddToCart`), which prefixes its errors.
    pub method: &'static str,
    /// The event it builds.
    pub name: EventName,
    /// What it reads beyond the common fields.
    pub extra: Extra,
}

const fn helper(method: &'static str, name: EventName, label: Option<&'static str>, extra: Extra) -> Helper {
    Helper { extra, label, name, method }
}

/// The helpers, numbered as the npm package's `call(op, …)` numbers them
/// (`pkg/index.js`, `METHODS`): 0 `trackViewItem` … 9 `trackLead`.
pub static HELPERS: [Helper; 10] = [
    helper("trackViewItem", EventName::ViewItem, Some("viewItem"), NO_EXTRA),
    helper("trackAddToCart", EventName::AddToCart, Some("addToCart"), NO_EXTRA),
    helper("trackRemoveFromCart", EventName::RemoveFromCart, Some("removeFromCart"), NO_EXTRA),
    helper("trackBeginCheckout", EventName::BeginCheckout, Some("beginCheckout"), NO_EXTRA),
    helper(
        "trackAddShippingInfo",
        EventName::AddShippingInfo,
        Some("addShippingInfo"),
        Extra { params: &[("shippingTier", "shipping_tier")], txn_required: false },
    ),
    helper(
        "trackAddPaymentInfo",
        EventName::AddPaymentInfo,
        Some("addPaymentInfo"),
        Extra { params: &[("paymentType", "payment_type")], txn_required: false },
    ),
    helper("trackPurchase", EventName::Purchase, Some("purchase"), Extra { params: &[], txn_required: true }),
    helper("trackRefund", EventName::Refund, None, Extra { params: &[], txn_required: true }),
    helper(
        "trackSignUp",
        EventName::SignUp,
        Some("signUp"),
        Extra { params: &[("method", "method")], txn_required: false },
    ),
    helper("trackLead", EventName::GenerateLead, Some("lead"), NO_EXTRA),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::input::{Value, event};
    use crate::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> Value {
        Value::Map(pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::Str((*v).to_owned()))).collect())
    }

    #[test]
    fn each_helper_builds_its_own_event_and_only_purchase_and_refund_need_a_transaction_id() {
        for h in &HELPERS {
            assert!(h.method.starts_with("track"), "{}", h.method);
            let bare = event(h.name.clone(), &Value::Absent, &h.extra, 1, [3; 10]);
            let needs_txn = matches!(h.name, EventName::Purchase | EventName::Refund);
            match bare {
                Ok(e) => assert!(!needs_txn && e.name == h.name, "{}", h.method),
                Err(e) => assert_eq!(e.field() == "transactionId", needs_txn, "{}: {e:?}", h.method),
            }
        }
        // Refunds reach Google Ads as adjustments from the server, never as a gtag conversion.
        assert!(HELPERS.iter().all(|h| h.label.is_some() == (h.name != EventName::Refund)));
    }

    #[test]
    fn a_helpers_own_fields_become_ga4_params() {
        let cases = [(4, "shippingTier", "shipping_tier"), (5, "paymentType", "payment_type"), (8, "method", "method")];
        for (i, key, param) in cases {
            let h = &HELPERS[i];
            let e = event(h.name.clone(), &map(&[(key, "Ground")]), &h.extra, 1, [3; 10]).unwrap();
            assert!(e.to_json().contains(&["\"", param, "\":\"Ground\""].concat()), "{}: {}", h.method, e.to_json());
            // Another helper ignores the key.
            let other = &HELPERS[1];
            let e = event(other.name.clone(), &map(&[(key, "Ground")]), &other.extra, 1, [3; 10]).unwrap();
            assert!(!e.to_json().contains(param), "{}", e.to_json());
        }
    }
}
