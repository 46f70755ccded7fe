//! What a consent update does to what the browser keeps: the tracker's
//! consent transition, before any storage is touched.
//!
//! The outbox and the sent-once list live in `localStorage` only while
//! analytics storage is granted (and storage works); otherwise in memory, gone
//! with the tab. So an update that grants storage moves them into it, one that
//! withdraws it moves them back out and removes the keys, one that leaves the
//! collector nothing to receive discards the queue (each event reported as
//! `consent_denied`), and any decision releases the events that waited for it.

use super::consent_gate::{collector_may_send, may_store_analytics};
use crate::ConsentState;

/// Whether the queue lives in `localStorage` (else in memory).
pub fn queue_in_storage(storage_ok: bool, c: &ConsentState) -> bool {
    storage_ok && may_store_analytics(c)
}

/// The effects of one consent update, for the shell to carry out in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsentChange {
    /// Store the decision itself (Consent Mode v2 with working storage): that
    /// is necessary storage, allowed whatever the decision.
    pub remember: bool,
    /// Storage was just allowed: the in-memory queue and sent-once list move into it.
    pub to_storage: bool,
    /// Storage was just withdrawn: the queue and sent-once list move into
    /// memory and their keys (and the drain lease) are removed.
    pub to_memory: bool,
    /// The decision allows the collector nothing: every queued event is dropped.
    pub discard: bool,
    /// A decision exists: the events waiting for one are released.
    pub release_buffer: bool,
}

/// What updating consent from `before` to `after` does.
pub fn consent_change(
    before: &ConsentState,
    after: &ConsentState,
    storage_ok: bool,
    consent_v2: bool,
) -> ConsentChange {
    let (was, now) = (queue_in_storage(storage_ok, before), queue_in_storage(storage_ok, after));
    ConsentChange {
        remember: consent_v2 && storage_ok,
        to_storage: !was && now,
        to_memory: was && !now,
        discard: after.is_decided() && !collector_may_send(after),
        release_buffer: after.is_decided(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConsentSignal, ConsentUpdate};

    fn state(analytics: ConsentSignal, ads: ConsentSignal) -> ConsentState {
        let mut c = ConsentState::default();
        c.apply(&ConsentUpdate {
            analytics_storage: Some(analytics),
            ad_storage: Some(ads),
            ad_user_data: Some(ads),
            ad_personalization: Some(ads),
        });
        c
    }

    use ConsentSignal::{Denied, Granted};

    #[test]
    fn granting_storage_moves_the_queue_in_and_withdrawing_moves_it_out() {
        let undecided = ConsentState::default();
        let granted = state(Granted, Denied);
        let change = consent_change(&undecided, &granted, true, true);
        assert_eq!(
            change,
            ConsentChange { remember: true, to_storage: true, to_memory: false, discard: false, release_buffer: true }
        );
        let back = consent_change(&granted, &state(Denied, Granted), true, true);
        assert!(back.to_memory && !back.to_storage && !back.discard, "ads only: kept in memory, still sent");
        // Nothing moves when storage does not work.
        let no_storage = consent_change(&undecided, &granted, false, true);
        assert!(!no_storage.to_storage && !no_storage.remember && no_storage.release_buffer);
        // Granted to granted: nothing to move.
        assert!(!consent_change(&granted, &granted, true, false).to_storage);
    }

    #[test]
    fn denying_everything_discards_and_no_decision_releases_nothing() {
        let denied = consent_change(&state(Granted, Granted), &state(Denied, Denied), true, true);
        assert!(denied.discard && denied.to_memory && denied.release_buffer);
        let undecided = ConsentState::default();
        let none = consent_change(&undecided, &undecided, true, true);
        assert!(!none.discard && !none.release_buffer && !none.to_storage && none.remember);
    }
}
