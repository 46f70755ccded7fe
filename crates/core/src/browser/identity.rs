//! Who the browser is: the GA4 client id and session, the site's visitor id,
//! the click ids, and Tally's own first-party cookies that keep them.
//!
//! Reading goes through the core's parsers ([`ClientId`], [`GaSession`],
//! [`ClickIds`], [`crate::cookie`]); this module decides which cookie wins and
//! which Tally cookies to write or delete when consent changes.

use super::config::ClickIdStorage;
use crate::click_ids::{ClickIds, tally_cookie_name};
use crate::client_id::{ClientId, client_id_from_cookie_header};
use crate::consent::{ConsentSignal, ConsentState};
use crate::cookie;
use crate::ids::VisitorId;
use crate::prelude::*;
use crate::session::{GaSession, session_cookie_name};

/// Tally's own client id cookie (`_ga` format), used when gtag.js has not set `_ga`.
pub const CID_COOKIE: &str = "_tally_cid";
/// The visitor id from `setVisitor`.
pub const VID_COOKIE: &str = "_tally_vid";

/// The client id in a cookie string: `_ga` when gtag.js set it, else Tally's
/// `_tally_cid`. `_ga` is never written by Tally.
pub fn client_id_from_jar(jar: &str) -> Option<ClientId> {
    client_id_from_cookie_header(jar)
        .or_else(|| cookie::values(jar, CID_COOKIE).find_map(|v| ClientId::from_ga_cookie(v).ok()))
}

/// The GA4 session from `_ga_<stream>` of the measurement id `G-…`.
pub fn session_from_jar(jar: &str, measurement_id: &str) -> Option<GaSession> {
    let name = session_cookie_name(measurement_id);
    cookie::values(jar, &name).find_map(|v| GaSession::from_cookie(v).ok())
}

/// The visitor id kept in `_tally_vid`.
pub fn visitor_from_jar(jar: &str) -> Option<VisitorId> {
    cookie::values(jar, VID_COOKIE).filter_map(cookie::percent_decode).find_map(|v| VisitorId::parse(&v).ok())
}

/// The click ids of a landing page: the URL's (`search`), then the platforms'
/// cookies (`_gcl_aw`, `_gcl_gb`, `_fbc`, `_fbp`), then Tally's own (only with
/// [`ClickIdStorage::Cookie`]). Returns everything captured and, apart, what
/// came from the URL (those are written to Tally's cookies once `ad_storage` allows).
pub fn landing_click_ids(storage: ClickIdStorage, search: &str, jar: &str, now_ms: i64) -> (ClickIds, ClickIds) {
    if storage == ClickIdStorage::None {
        return Default::default();
    }
    let url = ClickIds::from_query(search, now_ms);
    let mut all = url.clone();
    all.fill_from(&if storage == ClickIdStorage::Cookie {
        ClickIds::from_cookie_header(jar)
    } else {
        ClickIds::from_platform_cookies(jar)
    });
    (all, url)
}

/// The click ids to send now: those captured at landing, completed by platform
/// cookies set since (`_fbp` / `_gcl_aw` appear when the platforms' tags load).
pub fn current_click_ids(captured: &ClickIds, storage: ClickIdStorage, jar: &str) -> ClickIds {
    let mut ids = captured.clone();
    if storage != ClickIdStorage::None {
        ids.fill_from(&ClickIds::from_platform_cookies(jar));
    }
    ids
}

/// The click ids as the JSON object `getClickIdentifiers()` returns.
pub fn click_ids_json(ids: &ClickIds) -> String {
    let mut out = String::with_capacity(64);
    let mut w = crate::json::ObjectWriter::new(&mut out);
    for (k, v) in ids.slots() {
        w.opt_str(k, v.as_deref());
    }
    w.finish();
    out
}

/// A cookie to write (`Some(value)`) or delete (`None`).
pub type CookieChange = (String, Option<String>);

/// Tally's click-id cookies (`_tally_gclid` …) for the ids that are set.
pub fn click_cookie_writes(ids: &ClickIds) -> Vec<CookieChange> {
    ids.slots().into_iter().filter_map(|(name, v)| Some((tally_cookie_name(name), Some(v.clone()?)))).collect()
}

/// What Tally knows that its cookies keep, for [`consent_cookie_changes`].
#[derive(Clone, Copy, Debug)]
pub struct Kept<'a> {
    /// A client id minted on this page (when there is no `_ga`).
    pub minted: Option<&'a ClientId>,
    /// The visitor id.
    pub visitor: Option<&'a VisitorId>,
    /// Click ids from the landing URL.
    pub url_clicks: &'a ClickIds,
    /// `clickIdStorage`.
    pub storage: ClickIdStorage,
}

/// Tally's cookies follow their purpose when consent changes from `before` to
/// `after`: with analytics storage the minted client id (unless `_ga` exists)
/// and the visitor id are written, with it denied they are deleted; with ad
/// storage newly granted the landing click ids are written, with it denied
/// Tally's click-id cookies are deleted. `_ga`, `_gcl_*`, `_fbp` are never touched.
pub fn consent_cookie_changes(
    before: &ConsentState,
    after: &ConsentState,
    jar: &str,
    kept: Kept<'_>,
) -> Vec<CookieChange> {
    let mut out = Vec::new();
    let delete = |name: String, out: &mut Vec<CookieChange>| {
        if cookie::get(jar, &name).is_some() {
            out.push((name, None));
        }
    };
    if super::consent_gate::may_store_analytics(after) {
        if let Some(id) = kept.minted.filter(|_| client_id_from_cookie_header(jar).is_none()) {
            out.push((CID_COOKIE.to_owned(), Some(id.to_ga_cookie(1))));
        }
        if let Some(v) = kept.visitor {
            out.push((VID_COOKIE.to_owned(), Some(v.as_str().to_owned())));
        }
    } else if after.analytics_storage == ConsentSignal::Denied {
        delete(CID_COOKIE.to_owned(), &mut out);
        delete(VID_COOKIE.to_owned(), &mut out);
    }
    if kept.storage == ClickIdStorage::Cookie {
        if after.ad_storage.is_granted() {
            if !before.ad_storage.is_granted() {
                out.extend(click_cookie_writes(kept.url_clicks));
            }
        } else if after.ad_storage == ConsentSignal::Denied {
            for (name, _) in ClickIds::default().slots() {
                delete(tally_cookie_name(name), &mut out);
            }
        }
    }
    out
}

/// The string assigned to `document.cookie` to set a first-party cookie for
/// `max_age_secs` (0 deletes it), `SameSite=Lax`, `Secure` on https pages.
pub fn cookie_string(name: &str, value: &str, max_age_secs: i64, domain: Option<&str>, secure: bool) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 64);
    s.push_str(name);
    s.push('=');
    s.push_str(&cookie::percent_encode(value));
    s.push_str("; Max-Age=");
    crate::json::push_i64(&mut s, max_age_secs.max(0));
    s.push_str("; Path=/");
    if let Some(d) = domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    s.push_str("; SameSite=Lax");
    if secure {
        s.push_str("; Secure");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentSignal::*;

    #[test]
    fn identity_from_cookies() {
        let jar = "_tally_cid=GA1.1.5.6; _ga=GA1.1.1.2; _ga_ABC=GS2.1.s1757409568$o3$g0; _tally_vid=v%201";
        assert_eq!(client_id_from_jar(jar).unwrap().as_str(), "1.2");
        assert_eq!(client_id_from_jar("_tally_cid=GA1.1.5.6").unwrap().as_str(), "5.6");
        assert_eq!(client_id_from_jar("x=1"), None);
        let s = session_from_jar(jar, "G-ABC").unwrap();
        assert_eq!((s.session_id.as_str(), s.session_number), ("1757409568", Some(3)));
        assert_eq!(visitor_from_jar(jar).unwrap().as_str(), "v 1");
    }

    #[test]
    fn click_ids_by_storage() {
        let jar = "_gcl_aw=GCL.1.FROMCOOKIE; _tally_wbraid=W1";
        let (all, url) = landing_click_ids(ClickIdStorage::Cookie, "?gclid=U&x=1", jar, 1);
        assert_eq!(all.gclid.as_deref(), Some("U"));
        assert_eq!(all.wbraid.as_deref(), Some("W1"));
        assert_eq!(url.wbraid, None);
        let (all, _) = landing_click_ids(ClickIdStorage::Memory, "", jar, 1);
        assert_eq!(all.gclid.as_deref(), Some("FROMCOOKIE"));
        assert_eq!(all.wbraid, None, "memory mode never reads Tally's cookies");
        let (all, _) = landing_click_ids(ClickIdStorage::None, "?gclid=U", jar, 1);
        assert!(all.is_empty());
        assert_eq!(click_ids_json(&url), r#"{"gclid":"U"}"#);
        let now = current_click_ids(&ClickIds::default(), ClickIdStorage::Memory, "_fbp=fb.1.2.3");
        assert_eq!(now.fbp.as_deref(), Some("fb.1.2.3"));
        assert!(current_click_ids(&ClickIds::default(), ClickIdStorage::None, "_fbp=fb.1.2.3").is_empty());
    }

    #[test]
    fn cookies_follow_consent() {
        let minted = ClientId::mint(7, 100);
        let visitor = VisitorId::parse("v1").unwrap();
        let url = ClickIds { gclid: Some("G".into()), ..Default::default() };
        let kept =
            Kept { minted: Some(&minted), visitor: Some(&visitor), url_clicks: &url, storage: ClickIdStorage::Cookie };
        let granted = consent_cookie_changes(&ConsentState::default(), &ConsentState::ALL_GRANTED, "", kept);
        assert_eq!(
            granted,
            vec![
                ("_tally_cid".into(), Some("GA1.1.7.100".into())),
                ("_tally_vid".into(), Some("v1".into())),
                ("_tally_gclid".into(), Some("G".into())),
            ]
        );
        let with_ga =
            consent_cookie_changes(&ConsentState::ALL_GRANTED, &ConsentState::ALL_GRANTED, "_ga=GA1.1.1.2", kept);
        assert_eq!(with_ga, vec![("_tally_vid".into(), Some("v1".into()))]);
        let denied = consent_cookie_changes(
            &ConsentState::ALL_GRANTED,
            &ConsentState::ALL_DENIED,
            "_tally_cid=GA1.1.7.100; _tally_gclid=G; _ga=GA1.1.1.2",
            kept,
        );
        assert_eq!(denied, vec![("_tally_cid".into(), None), ("_tally_gclid".into(), None)]);
        let unknown = ConsentState { ad_personalization: Denied, ..Default::default() };
        assert!(consent_cookie_changes(&unknown, &unknown, "_tally_cid=x", kept).is_empty());
    }

    #[test]
    fn cookie_strings() {
        assert_eq!(
            cookie_string("_tally_cid", "GA1.1.1.2", 7_776_000, None, false),
            "_tally_cid=GA1.1.1.2; Max-Age=7776000; Path=/; SameSite=Lax"
        );
        assert_eq!(
            cookie_string("a", "x y", 0, Some("example.com"), true),
            "a=x%20y; Max-Age=0; Path=/; Domain=example.com; SameSite=Lax; Secure"
        );
    }
}
