//! Consent in the browser: what may be stored, what may leave the page, and
//! the decision as it is remembered between pages.
//!
//! The per-destination rules are the core's [`policy`](crate::policy); this
//! module applies them to the browser's own two sinks: `localStorage` /
//! Tally's cookies, and the first-party collector.

use crate::consent::{ConsentSignal, ConsentState, DestinationKind, StoragePurpose};
use crate::envelope::ContextEnvelope;
use crate::prelude::*;

/// Whether the first-party collector may receive events at all.
///
/// Before a decision (every signal unknown) nothing is sent. After it, events
/// go when at least one purpose that needs them is granted (analytics, ad
/// storage or ad user data); identifiers are stripped per purpose by
/// [`strip_envelope`], and the server applies [`crate::policy`] per destination.
/// With every purpose denied the events are discarded.
pub fn collector_may_send(c: &ConsentState) -> bool {
    c.analytics_storage.is_granted() || c.ad_storage.is_granted() || c.ad_user_data.is_granted()
}

/// Whether the persisted queue, the visitor id and the minted client id may be stored.
pub fn may_store_analytics(c: &ConsentState) -> bool {
    c.allows_storage(StoragePurpose::Analytics)
}

/// Whether the Meta pixel may be called: the core's Meta policy (ad user
/// data) and, because the pixel sets and sends `_fbp`/`_fbc` itself, ad storage.
pub fn meta_pixel_allowed(c: &ConsentState) -> bool {
    c.policy(DestinationKind::Meta).may_send() && c.ad_storage.is_granted()
}

/// What to forward to `fbq('consent', …)`: `grant` when the pixel is allowed, else `revoke`.
pub fn fbq_consent(c: &ConsentState) -> &'static str {
    if meta_pixel_allowed(c) { "grant" } else { "revoke" }
}

/// Removes from an envelope what its consent does not allow to leave the page:
/// analytics ids without `analytics_storage`, click ids without `ad_storage`,
/// hashed user data without `ad_user_data` (the core's policy for the shop's
/// own sink); raw user data never; page URLs lose their click ids ([`redact_url`]).
pub fn strip_envelope(env: &mut ContextEnvelope) {
    let p = env.consent.policy(DestinationKind::Webhook);
    if !p.analytics_ids {
        env.client_id = None;
        env.session_id = None;
        env.session_number = None;
        env.visitor_id = None;
        env.user_id = None;
    }
    if !p.click_ids {
        env.click_ids = Default::default();
    }
    if !p.user_data {
        env.hashed_user_data = None;
    }
    env.raw_user_data = None;
    env.page_url = env.page_url.as_deref().map(redact_url);
    env.referrer = env.referrer.as_deref().map(redact_url);
}

/// A URL without its click-id parameters (those of
/// [`is_click_id_param`](crate::click_ids::is_click_id_param), and GA's linker
/// `_gl`, which embeds them; any case) and
/// without empty `&&` pairs: click ids travel only in `clickIds`, where consent
/// governs them, never hidden in a page URL. The fragment is kept.
///
/// ```
/// use tally_core::browser::consent_gate::redact_url;
/// assert_eq!(redact_url("https://s.example/p?a=1&gclid=X&FBCLID=y#top"), "https://s.example/p?a=1#top");
/// assert_eq!(redact_url("https://s.example/p?gclid=X"), "https://s.example/p");
/// ```
pub fn redact_url(url: &str) -> String {
    // `get` instead of `split_at`: no panic path (and no slice-error code in the wasm).
    let (head, frag) = match url.find('#') {
        Some(i) => (url.get(..i).unwrap_or(url), url.get(i..).unwrap_or_default()),
        None => (url, ""),
    };
    let Some((base, query)) = head.split_once('?') else {
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    let mut sep = '?';
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if pair.is_empty() || crate::click_ids::is_click_id_param(key) || key.eq_ignore_ascii_case("_gl") {
            continue;
        }
        out.push(sep);
        sep = '&';
        out.push_str(pair);
    }
    out.push_str(frag);
    out
}

/// The four signals as the JSON object `getConsent()` returns
/// (`{"ad_storage":"granted",…}`, the envelope's spelling).
pub fn consent_json(c: &ConsentState) -> String {
    let mut out = String::with_capacity(96);
    let mut w = crate::json::ObjectWriter::new(&mut out);
    for (k, v) in CONSENT_NAMES.iter().zip(signals(c)) {
        w.str(k, v.as_str());
    }
    w.finish();
    out
}

/// The signals' names, in the order of [`encode_consent`].
pub const CONSENT_NAMES: [&str; 4] = ["ad_storage", "analytics_storage", "ad_user_data", "ad_personalization"];

const SIGNALS: [(ConsentSignal, u8); 3] =
    [(ConsentSignal::Granted, b'g'), (ConsentSignal::Denied, b'd'), (ConsentSignal::Unknown, b'u')];

fn signals(c: &ConsentState) -> [ConsentSignal; 4] {
    [c.ad_storage, c.analytics_storage, c.ad_user_data, c.ad_personalization]
}

/// The consent decision as stored between pages: four letters `g`/`d`/`u` in
/// the order ad_storage, analytics_storage, ad_user_data, ad_personalization.
pub fn encode_consent(c: &ConsentState) -> String {
    signals(c).iter().filter_map(|s| SIGNALS.iter().find(|(x, _)| x == s)).map(|(_, b)| char::from(*b)).collect()
}

/// Reads [`encode_consent`]; `None` for anything else.
pub fn decode_consent(s: &str) -> Option<ConsentState> {
    let sig = |i: usize| {
        let b = *s.as_bytes().get(i)?;
        SIGNALS.iter().find(|(_, x)| *x == b).map(|(sig, _)| *sig)
    };
    if s.len() != 4 {
        return None;
    }
    Some(ConsentState {
        ad_storage: sig(0)?,
        analytics_storage: sig(1)?,
        ad_user_data: sig(2)?,
        ad_personalization: sig(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentSignal::*;
    use crate::{ClickIds, ClientId};

    #[test]
    fn consent_gate() {
        let mut c = ConsentState::default();
        assert!(!collector_may_send(&c));
        c.ad_storage = Denied;
        c.analytics_storage = Denied;
        c.ad_user_data = Denied;
        assert!(!collector_may_send(&c));
        c.analytics_storage = Granted;
        assert!(collector_may_send(&c) && may_store_analytics(&c));
        assert!(!meta_pixel_allowed(&c));
        assert_eq!(fbq_consent(&c), "revoke");
        assert!(meta_pixel_allowed(&ConsentState::ALL_GRANTED));
        assert_eq!(fbq_consent(&ConsentState::ALL_GRANTED), "grant");
        c.ad_user_data = Granted;
        assert!(!meta_pixel_allowed(&c), "the pixel also needs ad storage");
    }

    #[test]
    fn consent_codec() {
        let c = ConsentState { ad_storage: Granted, analytics_storage: Denied, ..Default::default() };
        assert_eq!(encode_consent(&c), "gduu");
        assert_eq!(
            consent_json(&c),
            r#"{"ad_storage":"granted","analytics_storage":"denied","ad_user_data":"unknown","ad_personalization":"unknown"}"#
        );
        assert_eq!(decode_consent("gduu"), Some(c));
        assert_eq!(decode_consent("gdu"), None);
        assert_eq!(decode_consent("gdux"), None);
        assert_eq!(decode_consent("gduué"), None);
    }

    #[test]
    fn stripping() {
        let mut env = ContextEnvelope {
            client_id: Some(ClientId::parse("1.2").unwrap()),
            click_ids: ClickIds { gclid: Some("G".into()), ..Default::default() },
            consent: ConsentState { analytics_storage: Granted, ad_storage: Denied, ..Default::default() },
            page_url: Some("https://s.example/?gclid=G".into()),
            ..Default::default()
        };
        strip_envelope(&mut env);
        assert!(env.client_id.is_some());
        assert!(env.click_ids.is_empty());
        assert_eq!(env.page_url.as_deref(), Some("https://s.example/"));
        env.consent = ConsentState::default();
        strip_envelope(&mut env);
        assert!(env.client_id.is_none());
    }

    #[test]
    fn urls_lose_click_ids() {
        assert_eq!(redact_url("https://s.example/p?gclid=G&a=1&fbclid=F#top"), "https://s.example/p?a=1#top");
        assert_eq!(redact_url("https://s.example/p?gclid=G"), "https://s.example/p");
        assert_eq!(redact_url("https://s.example/p?x=gclid&&_gl=1*abc"), "https://s.example/p?x=gclid");
        assert_eq!(redact_url("/p#a?gclid=1"), "/p#a?gclid=1");
        assert_eq!(redact_url("/p"), "/p");
    }

    /// The Measurement Protocol builder strips page URLs with
    /// `destinations::strip_click_ids`; both must agree wherever both apply.
    #[cfg(feature = "serde_json")]
    #[test]
    fn agrees_with_the_destination_stripping() {
        use proptest::prelude::*;
        let key =
            prop_oneof![Just("gclid".to_owned()), Just("FbClid".to_owned()), Just("msclkid".to_owned()), "[a-z]{1,6}",];
        let pairs = proptest::collection::vec((key, "[a-zA-Z0-9.]{0,5}"), 0..6);
        proptest!(|(path in "/[a-z/]{0,10}", pairs in pairs, frag in proptest::option::of("[a-z?=&]{0,6}"))| {
            let mut url = format!("https://s.example{path}");
            for (i, (k, v)) in pairs.iter().enumerate() {
                url.push(if i == 0 { '?' } else { '&' });
                url.push_str(&format!("{k}={v}"));
            }
            if let Some(f) = frag {
                url.push('#');
                url.push_str(&f);
            }
            prop_assert_eq!(redact_url(&url), crate::destinations::strip_click_ids(&url));
        });
    }
}
