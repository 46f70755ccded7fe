//! What becomes of an event the page just tracked: the tracker's first two
//! decisions, before any browser I/O.
//!
//! [`admit`] runs when a `track*` call has built its event: a purchase or
//! refund this browser already reported is not reported again; with Consent
//! Mode v2 and no decision yet the event waits in a bounded buffer in memory
//! (nothing is stored or sent before the decision); otherwise it is released.
//! [`enqueue`] runs on release: consent that allows the collector nothing, or
//! an event over [`MAX_EVENT_BYTES`], drops it with the reason `onDrop`
//! reports; everything else becomes an outbox [`Entry`].

use crate::prelude::*;

use super::consent_gate::collector_may_send;
use super::queue::{DropReason, Entry, MAX_EVENT_BYTES, MAX_PENDING, eviction_index, sent_contains};
use crate::{ConsentState, Event};

/// An event waiting for the consent decision, with the conversion label
/// its Google Ads call needs once released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffered {
    /// The event as tracked.
    pub event: Event,
    /// `trackConversion`'s label, if any.
    pub label: Option<String>,
}

/// The outcome of [`admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A purchase or refund this browser already sent or holds: not sent again.
    Duplicate,
    /// No decision yet: the event joins the buffer. When the buffer is full,
    /// `evict` is the index of the buffered event to drop first (reported as
    /// [`DropReason::ConsentBufferFull`]): the oldest that is not a purchase or
    /// refund, else the oldest.
    Wait {
        /// The buffered event to drop to make room.
        evict: Option<usize>,
    },
    /// On to [`enqueue`] now.
    Release,
}

/// Decides what becomes of `e`. `sent` reads the browser's sent-once list
/// ([`super::queue::sent_add`]; called only for a purchase or refund, since
/// it reads storage), `buffer` is what already waits for consent,
/// `consent_v2` whether the page runs Consent Mode v2.
pub fn admit(
    e: &Event,
    sent: impl FnOnce() -> String,
    buffer: &[Buffered],
    consent_v2: bool,
    consent: &ConsentState,
) -> Admission {
    if e.transaction_id.is_some()
        && (buffer.iter().any(|b| b.event.id == e.id) || sent_contains(&sent(), e.id.as_str()))
    {
        return Admission::Duplicate;
    }
    if consent_v2 && !consent.is_decided() {
        let evict = (buffer.len() >= MAX_PENDING).then(|| eviction_index(buffer, |b| b.event.transaction_id.is_some()));
        return Admission::Wait { evict };
    }
    Admission::Release
}

/// The outbox entry for a released event, or why it is dropped.
pub fn enqueue(e: &Event, consent: &ConsentState) -> Result<Entry, DropReason> {
    if !collector_may_send(consent) {
        return Err(DropReason::ConsentDenied);
    }
    let entry = Entry::of(e);
    if entry.json.len() > MAX_EVENT_BYTES { Err(DropReason::TooLarge) } else { Ok(entry) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConsentSignal, ConsentUpdate, EventId, EventName, TransactionId};

    fn purchase(order: &str) -> Event {
        Event::transactional(EventName::Purchase, TransactionId::parse(order).unwrap(), 1_757_409_591_000)
    }

    fn view(n: u8) -> Event {
        Event::new(EventName::PageView, EventId::random_v7(1_757_409_591_000, [n; 10]), 1_757_409_591_000)
    }

    fn buffered(e: Event) -> Buffered {
        Buffered { event: e, label: None }
    }

    fn granted() -> ConsentState {
        let mut c = ConsentState::default();
        c.apply(&ConsentUpdate { analytics_storage: Some(ConsentSignal::Granted), ..ConsentUpdate::default() });
        c
    }

    #[test]
    fn a_purchase_is_admitted_once_per_browser() {
        let p = purchase("ORD-1");
        assert_eq!(admit(&p, String::new, &[], false, &granted()), Admission::Release);
        let sent = super::super::queue::sent_add("", p.id.as_str());
        assert_eq!(admit(&p, || sent.clone(), &[], false, &granted()), Admission::Duplicate);
        // Other events never read the list.
        assert_eq!(admit(&view(1), || unreachable!(), &[], false, &granted()), Admission::Release);
        // Held in the buffer counts as reported too.
        assert_eq!(
            admit(&p, String::new, &[buffered(purchase("ORD-1"))], true, &ConsentState::default()),
            Admission::Duplicate
        );
        // Other events are never deduplicated here (each has its own id).
        assert_eq!(admit(&view(1), String::new, &[buffered(view(1))], false, &granted()), Admission::Release);
    }

    #[test]
    fn before_a_decision_events_wait_and_a_full_buffer_evicts_a_non_purchase_first() {
        let undecided = ConsentState::default();
        assert_eq!(admit(&view(1), String::new, &[], true, &undecided), Admission::Wait { evict: None });
        // Without Consent Mode v2 there is no waiting.
        assert_eq!(admit(&view(1), String::new, &[], false, &undecided), Admission::Release);
        let mut full: Vec<Buffered> = (0..MAX_PENDING).map(|i| buffered(purchase(&i.to_string()))).collect();
        full[7] = buffered(view(9));
        assert_eq!(admit(&view(2), String::new, &full, true, &undecided), Admission::Wait { evict: Some(7) });
        let all_purchases: Vec<Buffered> = (0..MAX_PENDING).map(|i| buffered(purchase(&i.to_string()))).collect();
        assert_eq!(admit(&view(2), String::new, &all_purchases, true, &undecided), Admission::Wait { evict: Some(0) });
        assert_eq!(admit(&view(2), String::new, &full[1..], true, &undecided), Admission::Wait { evict: None });
        assert_eq!(admit(&view(2), String::new, &full, true, &granted()), Admission::Release, "decided: no buffer");
    }

    #[test]
    fn enqueue_drops_what_consent_or_size_forbids() {
        let denied = {
            let mut c = ConsentState::default();
            c.apply(&ConsentUpdate {
                analytics_storage: Some(ConsentSignal::Denied),
                ad_storage: Some(ConsentSignal::Denied),
                ad_user_data: Some(ConsentSignal::Denied),
                ad_personalization: Some(ConsentSignal::Denied),
            });
            c
        };
        assert_eq!(enqueue(&view(1), &denied), Err(DropReason::ConsentDenied));
        let entry = enqueue(&purchase("ORD-2"), &granted()).unwrap();
        assert!(entry.transactional && entry.json.contains("ORD-2"));
        let mut big = view(3);
        big.set_text("page_title", "x".repeat(MAX_EVENT_BYTES));
        assert_eq!(enqueue(&big, &granted()), Err(DropReason::TooLarge));
    }
}
