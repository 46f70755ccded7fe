//! The context envelope a page sends: what the tracker knows of the visitor,
//! completed from the cookie jar and the page, then stripped to the consent.
//!
//! The browser reads `document.cookie`, `location.href` and `document.referrer`
//! and hands them over as a [`Page`]; the tracker's own state goes in as
//! [`Known`]. The same envelope rides on every collector batch and is what
//! `exportContext()` returns (with the ids of the events already sent).

use super::config::ClickIdStorage;
use super::{consent_gate, identity, queue, truncate_chars};
use crate::click_ids::ClickIds;
use crate::client_id::ClientId;
use crate::consent::ConsentState;
use crate::envelope::{ContextEnvelope, MAX_EVENT_IDS, MAX_URL};
use crate::event_id::EventId;
use crate::ids::{UserId, VisitorId};
use crate::prelude::*;
use crate::user_data::HashedUserData;

/// What the browser reads off the page for an envelope.
#[derive(Clone, Copy, Debug, Default)]
pub struct Page<'a> {
    /// `document.cookie`.
    pub jar: &'a str,
    /// `location.href`.
    pub href: &'a str,
    /// `document.referrer`.
    pub referrer: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// What the tracker holds about the visitor.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    /// The client id Tally minted, used when the jar has neither `_ga` nor `_tally_cid`.
    pub minted: Option<&'a ClientId>,
    /// `identifyUser`'s user id.
    pub user: Option<&'a UserId>,
    /// `setVisitor`'s visitor id.
    pub visitor: Option<&'a VisitorId>,
    /// The click ids captured at landing.
    pub clicks: &'a ClickIds,
    /// Where click ids are kept (`clickIdStorage`).
    pub click_storage: ClickIdStorage,
    /// `ga4MeasurementId`, to find the GA4 session cookie.
    pub ga4: Option<&'a str>,
    /// The consent now.
    pub consent: ConsentState,
    /// The user's hashed data.
    pub hashed: Option<&'a HashedUserData>,
    /// The sent-once list ([`queue::sent_add`]): its newest ids become the
    /// envelope's `eventIds` (`exportContext`); `None` on collector batches.
    pub sent: Option<&'a str>,
}

/// The envelope for `page` and `known`, with only what `known.consent` lets
/// leave the page ([`consent_gate::strip_envelope`]).
///
/// ```
/// use tally_core::browser::config::ClickIdStorage;
/// use tally_core::browser::page_context::{Known, Page, page_envelope};
/// use tally_core::{ClickIds, ConsentState};
///
/// let clicks = ClickIds::default();
/// let known = Known {
///     minted: None, user: None, visitor: None, clicks: &clicks,
///     click_storage: ClickIdStorage::Cookie, ga4: None,
///     consent: ConsentState::ALL_GRANTED, hashed: None, sent: None,
/// };
/// let page = Page { jar: "_ga=GA1.1.111.222", href: "https://s.example/?gclid=X", referrer: "", now_ms: 5 };
/// let env = page_envelope(&page, &known);
/// assert_eq!(env.client_id.unwrap().as_str(), "111.222");
/// assert_eq!(env.page_url.as_deref(), Some("https://s.example/"));
/// ```
pub fn page_envelope(page: &Page<'_>, known: &Known<'_>) -> ContextEnvelope {
    let session = known.ga4.and_then(|g| identity::session_from_jar(page.jar, g));
    let mut env = ContextEnvelope {
        created_at_ms: page.now_ms,
        client_id: identity::client_id_from_jar(page.jar).or_else(|| known.minted.cloned()),
        session_number: session.as_ref().and_then(|x| x.session_number),
        session_id: session.map(|x| x.session_id),
        user_id: known.user.cloned(),
        visitor_id: known.visitor.cloned(),
        click_ids: identity::current_click_ids(known.clicks, known.click_storage, page.jar),
        consent: known.consent,
        hashed_user_data: known.hashed.cloned(),
        raw_user_data: None,
        page_url: truncate_chars(page.href, MAX_URL),
        referrer: truncate_chars(page.referrer, MAX_URL),
        event_ids: Vec::new(),
    };
    if let Some(sent) = known.sent {
        env.event_ids =
            queue::sent_newest(sent, MAX_EVENT_IDS).into_iter().filter_map(|i| EventId::parse(i).ok()).collect();
    }
    consent_gate::strip_envelope(&mut env);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentSignal;

    fn known<'a>(clicks: &'a ClickIds, minted: Option<&'a ClientId>, consent: ConsentState) -> Known<'a> {
        Known {
            minted,
            user: None,
            visitor: None,
            clicks,
            click_storage: ClickIdStorage::Cookie,
            ga4: Some("G-ABC123"),
            consent,
            hashed: None,
            sent: None,
        }
    }

    #[test]
    fn ga_cookies_win_over_the_minted_id_and_give_the_session() {
        let clicks = ClickIds::default();
        let minted = ClientId::mint(7, 1_700_000_000);
        let jar = "_ga=GA1.1.111.222; _ga_ABC123=GS1.1.1700000000.4.1.1700000100.0.0.0";
        let page = Page { jar, href: "https://s.example/p", referrer: "https://r.example/", now_ms: 9 };
        let env = page_envelope(&page, &known(&clicks, Some(&minted), ConsentState::ALL_GRANTED));
        assert_eq!(env.client_id.as_ref().map(ClientId::as_str), Some("111.222"));
        assert_eq!(env.session_id.as_deref(), Some("1700000000"));
        assert_eq!(env.session_number, Some(4));
        assert_eq!(env.created_at_ms, 9);
        assert_eq!(env.referrer.as_deref(), Some("https://r.example/"));
        // Without `_ga` the minted id is used.
        let env = page_envelope(&Page { jar: "", ..page }, &known(&clicks, Some(&minted), ConsentState::ALL_GRANTED));
        assert_eq!(env.client_id.as_ref(), Some(&minted));
        assert_eq!(env.session_id, None);
    }

    #[test]
    fn what_consent_does_not_allow_stays_on_the_page() {
        let clicks = ClickIds::from_query("?gclid=Cj0KCQ", 1);
        let minted = ClientId::mint(7, 1_700_000_000);
        let consent = ConsentState { analytics_storage: ConsentSignal::Denied, ..ConsentState::ALL_GRANTED };
        let page = Page { jar: "_ga=GA1.1.111.222", href: "https://s.example/?gclid=Cj0KCQ&a=1", ..Page::default() };
        let env = page_envelope(&page, &known(&clicks, Some(&minted), consent));
        assert_eq!(env.client_id, None);
        assert_eq!(env.click_ids.gclid.as_deref(), Some("Cj0KCQ"));
        assert_eq!(env.page_url.as_deref(), Some("https://s.example/?a=1"));
        let consent = ConsentState { ad_storage: ConsentSignal::Denied, ..ConsentState::ALL_GRANTED };
        let env = page_envelope(&page, &known(&clicks, Some(&minted), consent));
        assert_eq!(env.click_ids, ClickIds::default());
        assert!(env.client_id.is_some());
    }

    #[test]
    fn sent_ids_only_when_asked_the_newest_fifty_oldest_first() {
        let clicks = ClickIds::default();
        let mut sent = String::new();
        let ids: Vec<String> =
            (0..60u8).map(|i| EventId::random_v7(u64::from(i), [i; 10]).as_str().to_owned()).collect();
        for id in &ids {
            sent = queue::sent_add(&sent, id);
        }
        let mut k = known(&clicks, None, ConsentState::ALL_GRANTED);
        assert!(page_envelope(&Page::default(), &k).event_ids.is_empty());
        k.sent = Some(&sent);
        let got = page_envelope(&Page::default(), &k).event_ids;
        assert_eq!(got.len(), MAX_EVENT_IDS);
        assert_eq!(got[0].as_str(), ids[10]);
        assert_eq!(got[MAX_EVENT_IDS - 1].as_str(), ids[59]);
    }
}
