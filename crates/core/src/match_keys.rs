//! Match-key coverage: which identifiers a delivery to a destination carried.
//!
//! These are the inputs of Meta's Event Match Quality
//! (<https://www.facebook.com/business/help/765081237991954>) and of Google
//! Ads' match rate for enhanced conversions
//! (<https://support.google.com/google-ads/answer/9888656>). The server counts
//! them per delivered purchase (`tally_match_keys_total{destination,key}`), so
//! an operator sees, say, that only 40 % of Meta purchases carried `fbc`.
//!
//! [`sent_match_keys`] answers from what the payload builders send *under
//! consent* ([`crate::policy`]), not from what the browser had: a click id the
//! shopper did not allow `ad_storage` for is not counted, because it was not
//! sent. The rules mirror each builder in [`crate::destinations`]; the tests
//! here check both against the same contexts.

use crate::DestinationKind;
use crate::GoogleClick;
use crate::destinations::{DeliveryContext, data_manager, is_hex64};

/// One identifier a destination can match a conversion on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MatchKey {
    /// Google click id (`gclid`).
    Gclid,
    /// Google app-to-web click id on iOS (`gbraid`).
    Gbraid,
    /// Google web-to-app click id on iOS (`wbraid`).
    Wbraid,
    /// Meta click id cookie (`_fbc`).
    Fbc,
    /// Meta browser id cookie (`_fbp`).
    Fbp,
    /// TikTok click id (`ttclid`).
    Ttclid,
    /// A hashed e-mail address.
    Email,
    /// A hashed phone number.
    Phone,
    /// A hashed name or postal address (Meta's `fn`/`ln`/`ct`/`st`/`zp`/`country`, GA4's address).
    Address,
    /// The visitor's IP address.
    Ip,
    /// The visitor's browser user agent.
    UserAgent,
}

impl MatchKey {
    /// Every key, in a stable order.
    pub const ALL: [MatchKey; 11] = [
        MatchKey::Gclid,
        MatchKey::Gbraid,
        MatchKey::Wbraid,
        MatchKey::Fbc,
        MatchKey::Fbp,
        MatchKey::Ttclid,
        MatchKey::Email,
        MatchKey::Phone,
        MatchKey::Address,
        MatchKey::Ip,
        MatchKey::UserAgent,
    ];

    /// The snake_case name used as the `key` label.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKey::Gclid => "gclid",
            MatchKey::Gbraid => "gbraid",
            MatchKey::Wbraid => "wbraid",
            MatchKey::Fbc => "fbc",
            MatchKey::Fbp => "fbp",
            MatchKey::Ttclid => "ttclid",
            MatchKey::Email => "email",
            MatchKey::Phone => "phone",
            MatchKey::Address => "address",
            MatchKey::Ip => "ip",
            MatchKey::UserAgent => "user_agent",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`MatchKey`]s (a bit set: no allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MatchKeys(u16);

impl MatchKeys {
    /// Adds `key` when `present`.
    fn with(self, key: MatchKey, present: bool) -> MatchKeys {
        if present { MatchKeys(self.0 | key.bit()) } else { self }
    }

    /// Whether `key` is in the set.
    pub fn contains(self, key: MatchKey) -> bool {
        self.0 & key.bit() != 0
    }

    /// True when no key is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The keys in the set, in [`MatchKey::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = MatchKey> {
        MatchKey::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

fn any_hash(v: &[alloc::string::String]) -> bool {
    v.iter().any(|s| is_hex64(s))
}

fn present(v: &Option<alloc::string::String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// The match keys a delivery of a purchase to `destination` with `ctx` carried,
/// after consent ([`crate::policy`]) removed what the shopper did not allow.
/// Empty when consent refuses the destination altogether.
///
/// ```
/// use tally_core::destinations::DeliveryContext;
/// use tally_core::match_keys::{MatchKey, sent_match_keys};
/// use tally_core::{ClickIds, ConsentState, DestinationKind};
///
/// let ctx = DeliveryContext {
///     click_ids: ClickIds { fbp: Some("fb.1.1558571054389.1098115397".into()), ..ClickIds::default() },
///     user_agent: Some("Mozilla/5.0".into()),
///     consent: ConsentState::ALL_GRANTED,
///     ..DeliveryContext::default()
/// };
/// let keys = sent_match_keys(DestinationKind::Meta, &ctx);
/// assert!(keys.contains(MatchKey::Fbp) && keys.contains(MatchKey::UserAgent));
/// assert!(!keys.contains(MatchKey::Email));
/// ```
pub fn sent_match_keys(destination: DestinationKind, ctx: &DeliveryContext) -> MatchKeys {
    let policy = ctx.consent.policy(destination);
    if policy.send.is_err() {
        return MatchKeys::default();
    }
    let ids = if policy.click_ids { ctx.click_ids.clone().validated() } else { crate::ClickIds::default() };
    let hashed = ctx.user_data.as_ref().filter(|_| policy.user_data);
    let meta = hashed.and_then(|h| h.meta.as_ref());
    let google = hashed.and_then(|h| h.google.as_ref());
    let meta_email = meta.is_some_and(|m| any_hash(&m.em));
    let google_phone = google.is_some_and(|g| any_hash(&g.sha256_phone_number));
    let ip = policy.user_data && present(&ctx.ip_address);
    let ua = policy.user_data && present(&ctx.user_agent);
    let none = MatchKeys::default();
    match destination {
        DestinationKind::Meta => {
            let address = meta.is_some_and(|m| {
                [&m.first_name, &m.ln, &m.ct, &m.st, &m.zp, &m.country].into_iter().any(|v| any_hash(v))
            });
            none.with(MatchKey::Fbc, ids.fbc.is_some())
                .with(MatchKey::Fbp, ids.fbp.is_some())
                .with(MatchKey::Email, meta_email)
                .with(MatchKey::Phone, meta.is_some_and(|m| any_hash(&m.ph)))
                .with(MatchKey::Address, address)
                .with(MatchKey::Ip, ip)
                .with(MatchKey::UserAgent, ua)
        }
        DestinationKind::GoogleAds => {
            // The Data Manager API (the default): one click id, user
            // identifiers beside any of them, an address only when complete,
            // and the device's IP (when it is one) and user agent.
            let click = ids.primary_google();
            let address = google.is_some_and(|g| g.address.iter().any(|a| data_manager::address_info(a).is_some()));
            let ip_address = ip && data_manager::usable_ip(ctx).is_some();

            none.with(MatchKey::Gclid, matches!(click, Some(GoogleClick::Gclid(_))))
                .with(MatchKey::Gbraid, matches!(click, Some(GoogleClick::Gbraid(_))))
                .with(MatchKey::Wbraid, matches!(click, Some(GoogleClick::Wbraid(_))))
                .with(MatchKey::Email, google.is_some_and(|g| any_hash(&g.sha256_email_address)))
                .with(MatchKey::Phone, google.is_some_and(|g| any_hash(&g.sha256_phone_number)))
                .with(MatchKey::Address, address)
                .with(MatchKey::Ip, ip_address)
                .with(MatchKey::UserAgent, ua)
        }
        DestinationKind::TikTok => none
            .with(MatchKey::Ttclid, ids.valid_ttclid().is_some())
            .with(MatchKey::Email, meta_email)
            .with(MatchKey::Phone, google_phone)
            .with(MatchKey::Ip, ip)
            .with(MatchKey::UserAgent, ua),
        DestinationKind::Ga4 => {
            // GA4 takes user data only for a signed-in user.
            let google = google.filter(|g| ctx.user_id.is_some() && !g.is_empty());
            none.with(MatchKey::Email, google.is_some_and(|g| !g.sha256_email_address.is_empty()))
                .with(MatchKey::Phone, google.is_some_and(|g| !g.sha256_phone_number.is_empty()))
                .with(MatchKey::Address, google.is_some_and(|g| !g.address.is_empty()))
        }
        DestinationKind::Rokt => none.with(MatchKey::Email, meta_email),
        // Pinterest's `click_id` (epik) has no match key of its own.
        DestinationKind::Pinterest => none
            .with(MatchKey::Email, meta_email)
            .with(MatchKey::Phone, meta.is_some_and(|m| any_hash(&m.ph)))
            .with(MatchKey::Ip, ip)
            .with(MatchKey::UserAgent, ua),
        DestinationKind::Webhook => {
            let google_email = google.is_some_and(|g| any_hash(&g.sha256_email_address));
            let address = google.is_some_and(|g| !g.address.is_empty());
            none.with(MatchKey::Gclid, ids.gclid.is_some())
                .with(MatchKey::Gbraid, ids.gbraid.is_some())
                .with(MatchKey::Wbraid, ids.wbraid.is_some())
                .with(MatchKey::Fbc, ids.fbc.is_some())
                .with(MatchKey::Fbp, ids.fbp.is_some())
                .with(MatchKey::Ttclid, ids.valid_ttclid().is_some())
                .with(MatchKey::Email, meta_email || google_email)
                .with(MatchKey::Phone, google_phone || meta.is_some_and(|m| any_hash(&m.ph)))
                .with(MatchKey::Address, address)
                .with(MatchKey::Ip, ip)
                .with(MatchKey::UserAgent, ua)
        }
        // First-party analytics: no advertising match keys.
        DestinationKind::Servoki => none,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientId;
    use crate::destinations::{ga4, meta, tiktok};
    use crate::user_data::{GoogleUserData, HashedUserData, MetaUserData};
    use crate::{ClickIds, ConsentSignal, ConsentState, Event, EventName, TransactionId, UserId};

    const H: &str = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3";

    fn full() -> DeliveryContext {
        DeliveryContext {
            click_ids: ClickIds {
                gclid: Some("Cj0KCQjw".into()),
                fbc: Some("fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890".into()),
                fbp: Some("fb.1.1558571054389.1098115397".into()),
                ttclid: Some("E.C.P.abc".into()),
                ..ClickIds::default()
            },
            user_data: Some(HashedUserData {
                google: Some(GoogleUserData {
                    sha256_email_address: vec![H.into()],
                    sha256_phone_number: vec![H.into()],
                    ..GoogleUserData::default()
                }),
                meta: Some(MetaUserData {
                    em: vec![H.into()],
                    ph: vec![H.into()],
                    zp: vec![H.into()],
                    ..Default::default()
                }),
            }),
            ip_address: Some("203.0.113.0".into()),
            user_agent: Some("Mozilla/5.0".into()),
            page_url: Some("https://shop.example/thanks".into()),
            user_id: Some(UserId::parse("u-1").unwrap()),
            consent: ConsentState::ALL_GRANTED,
            client_id: Some(ClientId::parse("123.456").unwrap()),
            now_ms: 1_757_409_591_000,
            ..DeliveryContext::default()
        }
    }

    fn names(k: MatchKeys) -> Vec<&'static str> {
        k.iter().map(MatchKey::as_str).collect()
    }

    fn purchase() -> Event {
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1").unwrap(), 1_757_409_590_000);
        e.value = Some(crate::Amount::parse("10").unwrap());
        e.currency = Some(crate::Currency::parse("EUR").unwrap());
        e
    }

    #[test]
    fn every_key_of_each_destination_with_full_consent() {
        let c = full();
        assert_eq!(
            names(sent_match_keys(DestinationKind::Meta, &c)),
            ["fbc", "fbp", "email", "phone", "address", "ip", "user_agent"]
        );
        assert_eq!(
            names(sent_match_keys(DestinationKind::GoogleAds, &c)),
            ["gclid", "email", "phone", "ip", "user_agent"]
        );
        assert_eq!(
            names(sent_match_keys(DestinationKind::TikTok, &c)),
            ["ttclid", "email", "phone", "ip", "user_agent"]
        );
        assert_eq!(names(sent_match_keys(DestinationKind::Ga4, &c)), ["email", "phone"]);
        assert_eq!(names(sent_match_keys(DestinationKind::Rokt, &c)), ["email"]);
        assert!(sent_match_keys(DestinationKind::Servoki, &c).is_empty());
    }

    #[test]
    fn what_consent_withholds_is_not_counted() {
        let mut c = full();
        c.consent.ad_storage = ConsentSignal::Denied;
        // Meta still goes (ad_user_data), without its cookies.
        assert_eq!(
            names(sent_match_keys(DestinationKind::Meta, &c)),
            ["email", "phone", "address", "ip", "user_agent"]
        );
        assert_eq!(names(sent_match_keys(DestinationKind::GoogleAds, &c)), ["email", "phone", "ip", "user_agent"]);
        c.consent.ad_user_data = ConsentSignal::Denied;
        assert!(sent_match_keys(DestinationKind::Meta, &c).is_empty(), "Meta is not sent at all");
        assert!(sent_match_keys(DestinationKind::GoogleAds, &c).is_empty());
        c.consent = ConsentState::ALL_GRANTED;
        c.consent.ad_user_data = ConsentSignal::Unknown;
        assert_eq!(names(sent_match_keys(DestinationKind::GoogleAds, &c)), ["gclid"]);
        assert_eq!(names(sent_match_keys(DestinationKind::TikTok, &c)), ["ttclid"]);
    }

    #[test]
    fn a_braid_travels_with_the_user_identifiers_to_google_ads() {
        let mut c = full();
        c.click_ids.gclid = None;
        c.click_ids.gbraid = Some("0AAAAA-braid".into());
        assert_eq!(
            names(sent_match_keys(DestinationKind::GoogleAds, &c)),
            ["gbraid", "email", "phone", "ip", "user_agent"]
        );
    }

    #[test]
    fn malformed_ids_and_blank_values_are_not_counted() {
        let mut c = full();
        c.click_ids.fbc = Some("not a cookie".into());
        c.user_agent = Some("  ".into());
        c.user_data = Some(HashedUserData {
            meta: Some(MetaUserData { em: vec!["plain@example.com".into()], ..Default::default() }),
            google: None,
        });
        assert_eq!(names(sent_match_keys(DestinationKind::Meta, &c)), ["fbp", "ip"]);
    }

    /// The rules agree with what the builders put in the payload.
    #[test]
    fn agrees_with_the_payload_builders() {
        let e = purchase();
        for consent in [ConsentState::ALL_GRANTED, {
            let mut c = ConsentState::ALL_GRANTED;
            c.ad_storage = ConsentSignal::Denied;
            c
        }] {
            let mut c = full();
            c.consent = consent;
            let keys = sent_match_keys(DestinationKind::Meta, &c);
            let b = meta::build(core::slice::from_ref(&e), &c, &meta::MetaOptions::default()).unwrap();
            let u = &b.requests[0].data[0].user_data;
            assert_eq!(keys.contains(MatchKey::Fbc), u.fbc.is_some());
            assert_eq!(keys.contains(MatchKey::Fbp), u.fbp.is_some());
            assert_eq!(keys.contains(MatchKey::Ip), u.client_ip_address.is_some());
            assert_eq!(keys.contains(MatchKey::UserAgent), u.client_user_agent.is_some());
            assert_eq!(keys.contains(MatchKey::Email), !u.hashed.em.is_empty());

            let keys = sent_match_keys(DestinationKind::TikTok, &c);
            let t = tiktok::build(
                core::slice::from_ref(&e),
                &c,
                &tiktok::TikTokOptions { pixel_code: "PIXEL".into(), ..Default::default() },
            )
            .unwrap();
            let user = &t.requests[0].data[0].user;
            assert_eq!(keys.contains(MatchKey::Ttclid), user.ttclid.is_some());
            assert_eq!(keys.contains(MatchKey::Email), user.email.is_some());
            assert_eq!(keys.contains(MatchKey::Phone), user.phone.is_some());
            assert_eq!(keys.contains(MatchKey::Ip), user.ip.is_some());

            let keys = sent_match_keys(DestinationKind::GoogleAds, &c);
            let target = data_manager::DmTarget::new("1234567890", "555").unwrap();
            let d = data_manager::build_many(&[(core::slice::from_ref(&e), &c)], &target).unwrap();
            let ev = &d.requests[0].events[0];
            let ids = ev.user_data.as_ref().map(|u| u.user_identifiers.as_slice()).unwrap_or_default();
            let ad = ev.ad_identifiers.clone().unwrap_or_default();
            let device = ev.event_device_info.clone().unwrap_or_default();
            assert_eq!(keys.contains(MatchKey::Gclid), ad.gclid.is_some());
            assert_eq!(keys.contains(MatchKey::Email), ids.iter().any(|i| i.email_address.is_some()));
            assert_eq!(keys.contains(MatchKey::Phone), ids.iter().any(|i| i.phone_number.is_some()));
            assert_eq!(keys.contains(MatchKey::Address), ids.iter().any(|i| i.address.is_some()));
            assert_eq!(keys.contains(MatchKey::Ip), device.ip_address.is_some());
            assert_eq!(keys.contains(MatchKey::UserAgent), device.user_agent.is_some());

            let keys = sent_match_keys(DestinationKind::Ga4, &c);
            let g = ga4::build(core::slice::from_ref(&e), &c).unwrap();
            assert_eq!(keys.contains(MatchKey::Email), g.requests[0].user_data.is_some());
        }
    }
}
