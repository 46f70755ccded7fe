//! Event ids: deterministic for transactions, time-ordered and random for the rest.

use crate::prelude::*;
use sha2::{Digest, Sha256};

use crate::amount::Amount;
use crate::error::{Error, Result};
use crate::event_name::EventName;
use crate::ids::{RefundId, TransactionId};

/// An event id: the deduplication key every destination shares.
///
/// For a transactional event (one with a transaction id) it is derived from
/// the event name and the transaction id, so the browser and the server
/// compute the same id without talking to each other. A refund's id also
/// names which refund of the order it is ([`EventId::for_refund`]): the
/// shop's refund id, else what remains of the order after it. It is a UUIDv8
/// (RFC 9562 custom format) built from SHA-256, 36 characters, which fits
/// Rokt's `clientEventId` limit and carries no personal data.
///
/// The same id is Meta's `event_id`, Rokt's `clientEventId` and the
/// deduplication key of every other destination; GA4's `transaction_id` and
/// Google Ads' `orderId` carry the shop's order id instead (or the order key,
/// [`EventId::order_key`], with [`OrderIdForm::Hashed`](crate::OrderIdForm::Hashed)).
/// It prints as its 36 characters (`{}`, [`EventId::as_str`]).
///
/// ```
/// use tally_core::{EventId, EventName, TransactionId};
/// let t = TransactionId::parse("ORD-1001").unwrap();
/// let a = EventId::for_transaction(&EventName::Purchase, &t);
/// let b = EventId::for_transaction(&EventName::Purchase, &t);
/// assert_eq!(a, b);
/// assert_eq!(a.as_str().len(), 36);
/// assert_ne!(a, EventId::for_transaction(&EventName::Refund, &t));
/// assert_eq!(format!("event {a}"), format!("event {}", a.as_str()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl core::fmt::Display for EventId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest event id accepted from outside (Rokt's `clientEventId` limit).
pub const MAX_EVENT_ID: usize = 36;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}

impl EventId {
    /// The deterministic id of `name` for transaction `txn`.
    pub fn for_transaction(name: &EventName, txn: &TransactionId) -> EventId {
        if *name == EventName::Purchase {
            return txn.order_key().clone();
        }
        EventId::derive(name, txn.as_str())
    }

    /// The deterministic id of one refund of `txn`: each refund of an order
    /// is its own event, and the same refund reported twice (a webhook
    /// retried, the browser and the server both) has the same id.
    ///
    /// Which refund it is: the shop's `refund_id` when it gives one; else what
    /// `remaining` of the order after it (for one order, the same thing as
    /// the amount refunded so far), so a second partial refund, or the final
    /// refund of the rest, differs from the first. The refund that leaves
    /// nothing, without a refund id, keeps the id every Tally version derived
    /// for a refund of `txn` ([`EventId::for_transaction`]).
    ///
    /// ```
    /// use tally_core::{Amount, EventId, EventName, RefundId, TransactionId};
    /// let t = TransactionId::parse("ORD-1001").unwrap();
    /// let left = |v: &str| EventId::for_refund(&t, None, Amount::parse(v).unwrap());
    /// assert_ne!(left("80"), left("50"), "two partial refunds, two events");
    /// assert_eq!(left("50"), left("50.00"), "the same refund twice, one event");
    /// assert_eq!(left("0"), EventId::for_transaction(&EventName::Refund, &t));
    /// let rf = RefundId::parse("RF-1").unwrap();
    /// assert_ne!(EventId::for_refund(&t, Some(&rf), Amount::ZERO), left("0"));
    /// ```
    pub fn for_refund(txn: &TransactionId, refund_id: Option<&RefundId>, remaining: Amount) -> EventId {
        let mut which = String::new();
        match refund_id {
            Some(r) => {
                which.push_str("refund_id\0");
                which.push_str(r.as_str());
            }
            None if remaining == Amount::ZERO => return EventId::derive(&EventName::Refund, txn.as_str()),
            None => {
                which.push_str("remaining\0");
                remaining.write_decimal(&mut which);
            }
        }
        EventId::hashed(&[EventName::Refund.as_str(), txn.as_str(), &which])
    }

    /// The id of `name` for the (already validated) transaction id `txn`.
    pub(crate) fn derive(name: &EventName, txn: &str) -> EventId {
        EventId::hashed(&[name.as_str(), txn])
    }

    /// SHA-256 of the parts, NUL-separated after a version tag, as a UUIDv8.
    fn hashed(parts: &[&str]) -> EventId {
        let mut h = Sha256::new();
        h.update(b"tally.event-id.v1");
        for p in parts {
            h.update(b"\0");
            h.update(p.as_bytes());
        }
        let digest = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // version 8
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
        EventId(format_uuid(&b))
    }

    /// The key an order is known by at Google (GA4 `transaction_id`, Ads
    /// `orderId`): the id of its purchase event. Refunds and Ads adjustments
    /// use it so they match the purchase they correct.
    pub fn order_key(txn: &TransactionId) -> EventId {
        txn.order_key().clone()
    }

    /// A random, time-ordered UUIDv7 from the time in Unix ms and 10 random bytes.
    /// The caller supplies both: the core does no I/O.
    pub fn random_v7(unix_ms: u64, random: [u8; 10]) -> EventId {
        let mut b = [0u8; 16];
        let ms = unix_ms & 0xffff_ffff_ffff;
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&random);
        b[6] = (b[6] & 0x0f) | 0x70; // version 7
        b[8] = (b[8] & 0x3f) | 0x80;
        EventId(format_uuid(&b))
    }

    /// Accepts an id from outside (a browser, a webhook): 1–36 characters of
    /// `[A-Za-z0-9._:-]`.
    pub fn parse(raw: &str) -> Result<EventId> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(Error::Missing { field: "eventId" });
        }
        if t.len() > MAX_EVENT_ID {
            return Err(Error::TooLong { field: "eventId", max: MAX_EVENT_ID });
        }
        if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) {
            return Err(Error::Invalid { field: "eventId", reason: "use letters, digits and . _ : - only" });
        }
        Ok(EventId(t.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deterministic_vector() {
        // Pinned so a change to the derivation (which would break dedup between
        // an old browser bundle and a new server) fails loudly. Cross-checked with
        // Python: sha256(b"tally.event-id.v1\0purchase\0T_12345")[:16], v8 bits set.
        let t = TransactionId::parse("T_12345").unwrap();
        let id = EventId::for_transaction(&EventName::Purchase, &t);
        assert_eq!(id.as_str(), "54de189e-77b5-88e0-9311-ea73ac8286ab");
        assert_eq!(id, EventId::order_key(&t));
        assert_eq!(&id.as_str()[14..15], "8");
    }

    #[test]
    fn refund_vectors() {
        // Pinned like the purchase's: a browser bundle and a server of
        // different versions must give one refund the same id. Cross-checked
        // with Python: sha256(b"tally.event-id.v1\0refund\0T_12345\0remaining\x0050")[:16].
        let t = TransactionId::parse("T_12345").unwrap();
        let at = |v: &str| EventId::for_refund(&t, None, Amount::parse(v).unwrap());
        assert_eq!(at("50").as_str(), "a11191aa-de83-8626-aa95-0562882e6866");
        assert_eq!(at("0"), EventId::for_transaction(&EventName::Refund, &t), "the full refund keeps its id");
        let rf = RefundId::parse("RF-1").unwrap();
        assert_eq!(EventId::for_refund(&t, Some(&rf), Amount::ZERO).as_str(), "5f514043-0932-8674-96e5-8fed32b64ab2");
        assert_ne!(at("50"), at("80"));
        assert_ne!(EventId::for_refund(&t, Some(&rf), Amount::ZERO), EventId::for_refund(&t, None, Amount::ZERO));
    }

    #[test]
    fn v7_layout() {
        let id = EventId::random_v7(0x0190_0000_0000, [0xff; 10]);
        assert_eq!(id.as_str(), "01900000-0000-7fff-bfff-ffffffffffff");
        let later = EventId::random_v7(0x0190_0000_0001, [0; 10]);
        assert!(later > id, "time-ordered");
    }

    #[test]
    fn parse_rules() {
        assert!(EventId::parse("evt_1:a.b-c").is_ok());
        assert_eq!(EventId::parse("").unwrap_err(), Error::Missing { field: "eventId" });
        assert!(EventId::parse(&"a".repeat(37)).is_err());
        assert!(EventId::parse("a b").is_err());
    }

    proptest! {
        #[test]
        fn distinct_transactions_distinct_ids(a in "[a-zA-Z0-9]{1,20}", b in "[a-zA-Z0-9]{1,20}") {
            prop_assume!(a != b);
            let ta = TransactionId::parse(&a).unwrap();
            let tb = TransactionId::parse(&b).unwrap();
            prop_assert_ne!(EventId::order_key(&ta), EventId::order_key(&tb));
            let id = EventId::order_key(&ta);
            prop_assert!(EventId::parse(id.as_str()).is_ok());
        }

        #[test]
        fn parse_never_panics(s in ".{0,60}") {
            let _ = EventId::parse(&s);
        }
    }
}
