//! Consent Mode v2 signals and the one policy that says what each destination may receive.

use serde::{Deserialize, Serialize};

/// One consent signal. `Unknown` (no decision yet) is never treated as granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentSignal {
    /// The user agreed.
    Granted,
    /// The user refused.
    Denied,
    /// No decision yet.
    #[default]
    Unknown,
}

impl ConsentSignal {
    /// True only for `Granted`.
    pub fn is_granted(self) -> bool {
        self == ConsentSignal::Granted
    }

    /// Parses `granted` / `denied` / `unknown` (any case; Google's `GRANTED`/`DENIED` too).
    pub fn parse(raw: &str) -> Option<ConsentSignal> {
        match raw.trim() {
            s if s.eq_ignore_ascii_case("granted") => Some(ConsentSignal::Granted),
            s if s.eq_ignore_ascii_case("denied") => Some(ConsentSignal::Denied),
            s if s.eq_ignore_ascii_case("unknown") || s.is_empty() => Some(ConsentSignal::Unknown),
            _ => None,
        }
    }

    /// The lower-case wire form used by gtag and the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSignal::Granted => "granted",
            ConsentSignal::Denied => "denied",
            ConsentSignal::Unknown => "unknown",
        }
    }

    /// Google's enum form for GA4 MP and the Ads API. Unknown is sent as
    /// `DENIED`: absent a decision, nothing is granted.
    pub fn google_enum(self) -> &'static str {
        if self.is_granted() { "GRANTED" } else { "DENIED" }
    }
}

/// The four Consent Mode v2 signals.
///
/// ```
/// use tally_core::{ConsentState, ConsentSignal, ConsentUpdate};
/// let mut c = ConsentState::default();
/// assert!(!c.is_decided());
/// c.apply(&ConsentUpdate { analytics_storage: Some(ConsentSignal::Granted), ..Default::default() });
/// assert!(c.analytics_storage.is_granted());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsentState {
    /// Storage (cookies) for advertising: click-id cookies, `_fbp`/`_fbc`.
    #[serde(default)]
    pub ad_storage: ConsentSignal,
    /// Storage for analytics: the client id, the visitor id, session cookies.
    #[serde(default)]
    pub analytics_storage: ConsentSignal,
    /// Sending user data (hashed email, phone, address) for advertising.
    #[serde(default)]
    pub ad_user_data: ConsentSignal,
    /// Personalised advertising (remarketing).
    #[serde(default)]
    pub ad_personalization: ConsentSignal,
}

/// A partial change to a [`ConsentState`]; absent keys keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentUpdate {
    /// New `ad_storage`, if changing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_storage: Option<ConsentSignal>,
    /// New `analytics_storage`, if changing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_storage: Option<ConsentSignal>,
    /// New `ad_user_data`, if changing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_user_data: Option<ConsentSignal>,
    /// New `ad_personalization`, if changing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_personalization: Option<ConsentSignal>,
}

impl ConsentState {
    /// Everything granted: what a site that handles consent itself (`consentMode: 'off'`) runs with.
    pub const ALL_GRANTED: ConsentState = ConsentState {
        ad_storage: ConsentSignal::Granted,
        analytics_storage: ConsentSignal::Granted,
        ad_user_data: ConsentSignal::Granted,
        ad_personalization: ConsentSignal::Granted,
    };
    /// Everything denied.
    pub const ALL_DENIED: ConsentState = ConsentState {
        ad_storage: ConsentSignal::Denied,
        analytics_storage: ConsentSignal::Denied,
        ad_user_data: ConsentSignal::Denied,
        ad_personalization: ConsentSignal::Denied,
    };

    /// Applies the keys present in `u`.
    pub fn apply(&mut self, u: &ConsentUpdate) {
        if let Some(v) = u.ad_storage {
            self.ad_storage = v;
        }
        if let Some(v) = u.analytics_storage {
            self.analytics_storage = v;
        }
        if let Some(v) = u.ad_user_data {
            self.ad_user_data = v;
        }
        if let Some(v) = u.ad_personalization {
            self.ad_personalization = v;
        }
    }

    /// True once any signal has a decision (granted or denied).
    pub fn is_decided(&self) -> bool {
        [self.ad_storage, self.analytics_storage, self.ad_user_data, self.ad_personalization]
            .iter()
            .any(|s| *s != ConsentSignal::Unknown)
    }

    /// Whether a storage purpose may be written or read in the browser.
    pub fn allows_storage(&self, purpose: StoragePurpose) -> bool {
        match purpose {
            StoragePurpose::Analytics => self.analytics_storage.is_granted(),
            StoragePurpose::Advertising => self.ad_storage.is_granted(),
        }
    }

    /// The consent each destination receives, decided once here for every side.
    pub fn policy(&self, destination: DestinationKind) -> DestinationPolicy {
        policy(destination, self)
    }
}

/// What a browser-side value is stored for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoragePurpose {
    /// Client id, visitor id, session, the event queue.
    Analytics,
    /// Click ids and ad cookies.
    Advertising,
}

/// Declares [`DestinationKind`], its [`ALL`](DestinationKind::ALL) and its
/// names from one list, so a kind cannot be missing from either.
macro_rules! destination_kinds {
    ($($(#[doc = $doc:literal])* $kind:ident => $name:literal,)+) => {
        /// The kinds of destination Tally delivers to.
        ///
        /// Deliberately exhaustive: a new kind fails to compile wherever a
        /// `match` (its consent policy, its lane defaults …) has not decided
        /// what it means.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum DestinationKind {
            $($(#[doc = $doc])* $kind,)+
        }

        impl DestinationKind {
            /// Every kind, in a stable order.
            pub const ALL: [DestinationKind; [$($name),+].len()] = [$(DestinationKind::$kind),+];

            /// The snake_case name used in results, metrics and idempotency keys.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DestinationKind::$kind => $name,)+
                }
            }
        }
    };
}

destination_kinds! {
    /// GA4 Measurement Protocol.
    Ga4 => "ga4",
    /// Google Ads conversion upload.
    GoogleAds => "google_ads",
    /// Meta Conversions API.
    Meta => "meta",
    /// Rokt Event API.
    Rokt => "rokt",
    /// TikTok Events API.
    TikTok => "tiktok",
    /// A Servoki-style server-events endpoint (first-party analytics).
    Servoki => "servoki",
    /// Pinterest Conversions API.
    Pinterest => "pinterest",
    /// The shop's own webhook or warehouse sink.
    Webhook => "webhook",
}

impl DestinationKind {
    /// True for advertising destinations (they need ad consent).
    pub fn is_advertising(self) -> bool {
        match self {
            DestinationKind::GoogleAds
            | DestinationKind::Meta
            | DestinationKind::Rokt
            | DestinationKind::TikTok
            | DestinationKind::Pinterest => true,
            DestinationKind::Ga4 | DestinationKind::Servoki | DestinationKind::Webhook => false,
        }
    }
}

/// Why consent stopped an event from going to a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentDenial {
    /// `analytics_storage` is not granted, and the destination is an analytics one.
    AnalyticsStorage,
    /// `ad_user_data` is not granted, and the destination cannot work without user data.
    AdUserData,
    /// Neither a click id (`ad_storage`) nor user data (`ad_user_data`) may be sent,
    /// so an advertising destination has nothing to attribute with.
    NoAdSignal,
}

impl ConsentDenial {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentDenial::AnalyticsStorage => "analytics_storage_not_granted",
            ConsentDenial::AdUserData => "ad_user_data_not_granted",
            ConsentDenial::NoAdSignal => "ad_storage_and_ad_user_data_not_granted",
        }
    }
}

/// What one destination may receive under a consent state (<https://developers.google.com/tag-platform/security/concepts/consent-mode>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// `Err` when nothing may be sent, with the reason.
    pub send: Result<(), ConsentDenial>,
    /// Cookie-derived analytics identifiers (client id, session id, visitor id).
    pub analytics_ids: bool,
    /// Click ids and ad cookies (every id of [`crate::click_ids::CLICK_IDS`]: gclid, fbc/fbp, ttclid, msclkid …).
    pub click_ids: bool,
    /// Hashed user data (email, phone, names, address) and the user id for ads.
    pub user_data: bool,
    /// Personalised advertising allowed (sent as a signal where the API has one).
    pub personalization: bool,
}

impl DestinationPolicy {
    /// True when the event may go at all.
    pub fn may_send(&self) -> bool {
        self.send.is_ok()
    }
}

/// The policy function: per destination, what may be sent. Unknown is not granted.
///
/// * GA4: needs `analytics_storage` (the MP has no cookieless mode, so the event is
///   dropped without it); user data only with `ad_user_data`; the consent object
///   is always sent.
/// * Google Ads, TikTok, Rokt, Pinterest: click ids only with `ad_storage`, user data only with
///   `ad_user_data`; with neither there is nothing to attribute, so nothing is sent.
/// * Meta: every CAPI event carries customer information, so it needs `ad_user_data`;
///   `fbc`/`fbp` additionally need `ad_storage`.
/// * Servoki-style analytics: needs `analytics_storage`; forwards its own consent flag.
/// * Webhook / warehouse (the shop's own system): always receives the event, with
///   identifiers and user data stripped per the same purposes.
pub fn policy(destination: DestinationKind, c: &ConsentState) -> DestinationPolicy {
    let analytics = c.analytics_storage.is_granted();
    let ad_storage = c.ad_storage.is_granted();
    let ad_user_data = c.ad_user_data.is_granted();
    let personalization = c.ad_personalization.is_granted();
    let base = DestinationPolicy {
        send: Ok(()),
        analytics_ids: analytics,
        click_ids: ad_storage,
        user_data: ad_user_data,
        personalization,
    };
    match destination {
        DestinationKind::Ga4 | DestinationKind::Servoki => DestinationPolicy {
            send: if analytics { Ok(()) } else { Err(ConsentDenial::AnalyticsStorage) },
            click_ids: false,
            ..base
        },
        DestinationKind::GoogleAds | DestinationKind::TikTok | DestinationKind::Rokt | DestinationKind::Pinterest => {
            DestinationPolicy {
                send: if ad_storage || ad_user_data { Ok(()) } else { Err(ConsentDenial::NoAdSignal) },
                analytics_ids: false,
                ..base
            }
        }
        DestinationKind::Meta => DestinationPolicy {
            send: if ad_user_data { Ok(()) } else { Err(ConsentDenial::AdUserData) },
            analytics_ids: false,
            ..base
        },
        DestinationKind::Webhook => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentSignal::*;

    fn all_states() -> Vec<ConsentState> {
        let v = [Granted, Denied, Unknown];
        let mut out = Vec::new();
        for a in v {
            for b in v {
                for c in v {
                    for d in v {
                        out.push(ConsentState {
                            ad_storage: a,
                            analytics_storage: b,
                            ad_user_data: c,
                            ad_personalization: d,
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn unknown_is_never_granted() {
        for s in all_states() {
            for d in DestinationKind::ALL {
                let p = s.policy(d);
                if p.user_data {
                    assert_eq!(s.ad_user_data, Granted);
                }
                if p.click_ids {
                    assert_eq!(s.ad_storage, Granted);
                }
                if p.analytics_ids {
                    assert_eq!(s.analytics_storage, Granted);
                }
                if p.personalization {
                    assert_eq!(s.ad_personalization, Granted);
                }
            }
        }
    }

    #[test]
    fn default_state_sends_nothing_to_third_parties() {
        let s = ConsentState::default();
        for d in DestinationKind::ALL {
            let p = s.policy(d);
            if d == DestinationKind::Webhook {
                assert!(p.may_send());
                assert!(!p.user_data && !p.click_ids && !p.analytics_ids);
            } else {
                assert!(!p.may_send(), "{d:?}");
            }
        }
    }

    #[test]
    fn ga4_follows_analytics_storage() {
        let mut s = ConsentState::ALL_GRANTED;
        assert!(s.policy(DestinationKind::Ga4).may_send());
        s.analytics_storage = Denied;
        assert_eq!(s.policy(DestinationKind::Ga4).send, Err(ConsentDenial::AnalyticsStorage));
        let mut s = ConsentState::ALL_GRANTED;
        s.ad_user_data = Denied;
        let p = s.policy(DestinationKind::Ga4);
        assert!(p.may_send() && !p.user_data);
    }

    #[test]
    fn ads_denied_strips_click_ids_and_user_data() {
        let s = ConsentState { analytics_storage: Granted, ..ConsentState::ALL_DENIED };
        for d in [DestinationKind::GoogleAds, DestinationKind::Meta, DestinationKind::Rokt] {
            let p = s.policy(d);
            assert!(!p.may_send());
            assert!(!p.click_ids && !p.user_data);
        }
        // Ad storage only: Google Ads may attribute by click id, without user data.
        let s = ConsentState { ad_storage: Granted, ..ConsentState::ALL_DENIED };
        let p = s.policy(DestinationKind::GoogleAds);
        assert!(p.may_send() && p.click_ids && !p.user_data);
        assert_eq!(s.policy(DestinationKind::Meta).send, Err(ConsentDenial::AdUserData));
    }

    #[test]
    fn update_patches_only_present_keys() {
        let mut s = ConsentState::ALL_DENIED;
        s.apply(&ConsentUpdate { ad_user_data: Some(Granted), ..Default::default() });
        assert_eq!(s.ad_user_data, Granted);
        assert_eq!(s.ad_storage, Denied);
        assert!(s.is_decided());
    }

    #[test]
    fn signal_parsing() {
        assert_eq!(ConsentSignal::parse("GRANTED"), Some(Granted));
        assert_eq!(ConsentSignal::parse("denied"), Some(Denied));
        assert_eq!(ConsentSignal::parse(""), Some(Unknown));
        assert_eq!(ConsentSignal::parse("yes"), None);
        assert_eq!(Unknown.google_enum(), "DENIED");
    }
}
