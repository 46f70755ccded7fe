//! Identifiers the site controls: the transaction id, the visitor id and the user id.

use crate::error::{Result, bounded_text};
use crate::event_id::EventId;
use crate::event_name::EventName;
use crate::prelude::*;

/// Longest transaction id accepted (GA4 caps parameter values at 100 characters).
pub const MAX_TRANSACTION_ID: usize = 100;
/// Longest visitor or user id accepted (GA4 caps `user_id` at 256).
pub const MAX_USER_ID: usize = 256;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates: non-empty after trimming, bounded, no control characters.
            pub fn parse(raw: &str) -> Result<$name> {
                bounded_text($field, raw, $max).map($name)
            }

            /// The id as given (trimmed).
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// The shop's order or transaction id. Required for purchases and refunds;
/// never generated: an empty one is an error, because a made-up id could not
/// deduplicate against the other side.
///
/// ```
/// use tally_core::TransactionId;
/// assert!(TransactionId::parse("ORD-1001").is_ok());
/// assert!(TransactionId::parse("  ").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    id: String,
    /// Derived from `id` once, at parse time: every destination refers to the
    /// order by it.
    order_key: EventId,
}

impl TransactionId {
    /// Validates: non-empty after trimming, bounded, no control characters.
    pub fn parse(raw: &str) -> Result<TransactionId> {
        let id = bounded_text("transactionId", raw, MAX_TRANSACTION_ID)?;
        let order_key = EventId::derive(&EventName::Purchase, &id);
        Ok(TransactionId { id, order_key })
    }

    /// The id as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The key the order is known by at every destination: the id of its
    /// purchase event ([`EventId::order_key`]).
    ///
    /// ```
    /// use tally_core::{EventId, EventName, TransactionId};
    /// let t = TransactionId::parse("ORD-1001").unwrap();
    /// assert_eq!(t.order_key(), &EventId::for_transaction(&EventName::Purchase, &t));
    /// ```
    pub fn order_key(&self) -> &EventId {
        &self.order_key
    }
}

impl serde::Serialize for TransactionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

/// How the shop's order id is written into a destination's order or
/// transaction id field (GA4 `transaction_id`, Google Ads `orderId` /
/// `transactionId`, the gtag calls).
///
/// The browser and the server must use the same form, so that GA4 and Google
/// Ads pair the two reports of one order.
///
/// ```
/// use tally_core::{OrderIdForm, TransactionId};
/// let t = TransactionId::parse("ORD-1001").unwrap();
/// assert_eq!(t.sent_as(OrderIdForm::AsGiven), "ORD-1001");
/// assert_eq!(t.sent_as(OrderIdForm::Hashed), t.order_key().as_str());
/// assert_eq!(OrderIdForm::parse("hashed"), Ok(OrderIdForm::Hashed));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OrderIdForm {
    /// The order id as the shop gave it (`ORD-1001`), so destination reports
    /// line up with the shop's own order export. The default.
    #[default]
    AsGiven,
    /// The order key instead: a UUID derived from the SHA-256 of the order id
    /// ([`TransactionId::order_key`]), for shops whose order numbers must not
    /// appear in ad and analytics reports. A hash of a short sequential
    /// number can be recovered by trying every number: it keeps order numbers
    /// out of reports, it does not make them secret.
    Hashed,
}

impl OrderIdForm {
    /// `as_given` or `hashed` (also `asGiven`, as the browser option is spelt).
    pub fn parse(raw: &str) -> Result<OrderIdForm> {
        match raw.trim() {
            "as_given" | "asGiven" => Ok(OrderIdForm::AsGiven),
            "hashed" => Ok(OrderIdForm::Hashed),
            _ => Err(crate::error::Error::Invalid { field: "orderId", reason: "must be as_given or hashed" }),
        }
    }
}

impl TransactionId {
    /// The id as a destination's order field carries it, in `form`.
    pub fn sent_as(&self, form: OrderIdForm) -> &str {
        match form {
            OrderIdForm::AsGiven => &self.id,
            OrderIdForm::Hashed => self.order_key.as_str(),
        }
    }
}

text_id!(
    /// A visitor id the site sets (`setVisitor`), stitching browser and server
    /// events of one visitor without relying on GA's cookie.
    VisitorId,
    "visitorId",
    MAX_USER_ID
);

text_id!(
    /// The signed-in user's id (`identifyUser`), GA4's `user_id`.
    UserId,
    "userId",
    MAX_USER_ID
);

text_id!(
    /// The shop's own id of one refund (Shopify's refund id, Stripe's `re_…`):
    /// when a refund carries one, it is the refund's deduplication key, so two
    /// refunds of the same order are two events and the same refund reported
    /// twice is one. See [`EventId::for_refund`].
    RefundId,
    "refundId",
    MAX_TRANSACTION_ID
);
