//! Ad click identifiers: Google (gclid, gbraid, wbraid, dclid), Meta (fbc, fbp), TikTok (ttclid), Rokt (rtid),
//! Microsoft (msclkid), X (twclid), LinkedIn (li_fat_id), Snapchat (ScCid), Pinterest (epik), Reddit (rdt_cid).
//! One table, [`CLICK_IDS`], lists them all.

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest click id accepted; real ones are well under this.
pub const MAX_CLICK_ID_LEN: usize = 512;

/// Declares [`ClickIds`] and [`CLICK_IDS`] from one list, so that every click
/// id is captured, stored, validated, carried and forwarded the same way.
macro_rules! click_id_table {
    ($($(#[doc = $doc:literal])* $field:ident = $key:literal, url $url:literal;)*) => {
        /// Click identifiers captured in the browser and carried in the envelope.
        ///
        /// Every field is optional. Values are validated on the way in
        /// ([`ClickIds::validated`]) so a malformed cookie never reaches a destination.
        /// The envelope, `getClickIdentifiers()`, webhooks and the warehouse sink
        /// name each id by its URL parameter ([`CLICK_IDS`]).
        ///
        /// ```
        /// use tally_core::ClickIds;
        /// let ids = ClickIds::from_query("?utm_source=x&gclid=Cj0KCQ&fbclid=IwAR2F4&msclkid=m1", 1554763741205);
        /// assert_eq!(ids.gclid.as_deref(), Some("Cj0KCQ"));
        /// assert_eq!(ids.fbc.as_deref(), Some("fb.1.1554763741205.IwAR2F4"));
        /// assert_eq!(ids.msclkid.as_deref(), Some("m1"));
        /// ```
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct ClickIds {
            $($(#[doc = $doc])*
            #[serde(rename = $key, default, skip_serializing_if = "Option::is_none")]
            pub $field: Option<String>,)*
        }

        /// Every click id Tally knows, in a stable order: its name in the
        /// envelope and in Tally's cookie (`_tally_<key>`), the URL parameter
        /// it is captured from (`""` for none), and the field named in errors.
        pub const CLICK_IDS: [ClickIdKind; click_id_table!(@count $($key)*)] =
            [$(ClickIdKind { key: $key, url_param: $url, field: concat!("clickIds.", $key) },)*];

        impl ClickIds {
            /// `(name, value)` pairs in [`CLICK_IDS`] order, for cookies and payloads.
            pub fn slots(&self) -> [(&'static str, &Option<String>); CLICK_IDS.len()] {
                [$(($key, &self.$field),)*]
            }

            /// The same pairs, writable.
            pub(crate) fn slots_mut(&mut self) -> [(&'static str, &mut Option<String>); CLICK_IDS.len()] {
                [$(($key, &mut self.$field),)*]
            }
        }
    };
    (@count $($k:literal)*) => { 0 $(+ click_id_table!(@one $k))* };
    (@one $k:literal) => { 1 };
}

/// One row of [`CLICK_IDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClickIdKind {
    /// The name in the envelope's `clickIds`, in `getClickIdentifiers()`, in
    /// webhook payloads and in Tally's cookie `_tally_<key>`.
    pub key: &'static str,
    /// The landing-page URL parameter it is captured from (`fbclid` for `fbc`;
    /// empty when it never comes from a URL).
    pub url_param: &'static str,
    /// The field named in validation errors (`clickIds.<key>`).
    pub field: &'static str,
}

click_id_table! {
    /// Google click id (`gclid` URL parameter or `_gcl_aw`).
    gclid = "gclid", url "gclid";
    /// Google app-campaign click id on iOS (`gbraid`, `_gcl_gb`).
    gbraid = "gbraid", url "gbraid";
    /// Google web click id on iOS (`wbraid`).
    wbraid = "wbraid", url "wbraid";
    /// Meta click id in cookie form `fb.1.<ms>.<fbclid>`.
    fbc = "fbc", url "fbclid";
    /// Meta browser id (`_fbp`), passed through unchanged.
    fbp = "fbp", url "";
    /// TikTok click id (`ttclid`).
    ttclid = "ttclid", url "ttclid";
    /// Rokt click id (`rtid`, Rokt's `passbackconversiontrackingid`).
    rtid = "rtid", url "rtid";
    /// Microsoft Advertising click id (`msclkid`).
    msclkid = "msclkid", url "msclkid";
    /// X (Twitter) click id (`twclid`).
    twclid = "twclid", url "twclid";
    /// LinkedIn first-party ad tracking id (`li_fat_id`).
    li_fat_id = "li_fat_id", url "li_fat_id";
    /// Snapchat click id (`ScCid`, case as Snap writes it).
    sc_cid = "ScCid", url "ScCid";
    /// Pinterest click id (`epik`).
    epik = "epik", url "epik";
    /// Reddit click id (`rdt_cid`).
    rdt_cid = "rdt_cid", url "rdt_cid";
    /// Google Campaign Manager / Display & Video 360 click id (`dclid`).
    dclid = "dclid", url "dclid";
}

/// Whether `key` is a URL parameter that carries a click id ([`CLICK_IDS`],
/// plus `gclsrc`, the source of a gclid), compared in any case.
pub fn is_click_id_param(key: &str) -> bool {
    key.eq_ignore_ascii_case("gclsrc")
        || CLICK_IDS.iter().any(|k| !k.url_param.is_empty() && key.eq_ignore_ascii_case(k.url_param))
}

/// The one Google click id sent with a conversion (the Ads API takes exactly one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoogleClick<'a> {
    /// A gclid.
    Gclid(&'a str),
    /// A wbraid (web, iOS).
    Wbraid(&'a str),
    /// A gbraid (app, iOS).
    Gbraid(&'a str),
}

/// A token is printable ASCII without separators that would break a cookie,
/// a header or a query string.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLICK_ID_LEN
        && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b',' | b';' | b'\\' | b'<' | b'>'))
}

fn check_token(field: &'static str, v: &str) -> Result<()> {
    if v.len() > MAX_CLICK_ID_LEN {
        return Err(Error::TooLong { field, max: MAX_CLICK_ID_LEN });
    }
    if is_token(v) {
        Ok(())
    } else {
        Err(Error::Invalid {
            field,
            reason: "click ids are printable ASCII without spaces, quotes, commas or semicolons",
        })
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether click id `name` (`"gclid"`, `"fbc"` …) has a usable value.
fn well_formed(name: &str, v: &str) -> bool {
    is_token(v) && (!(name == "fbc" || name == "fbp") || is_meta_cookie(v))
}

/// Checks the Meta cookie shape `fb.<subdomain>.<ms>.<value>[.<appendix>]`
/// (the optional fifth segment is the Parameter Builder appendix).
fn is_meta_cookie(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some("fb"), Some(version), Some(time), Some(value)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let appendix = parts.next();
    parts.next().is_none()
        && all_digits(version)
        && all_digits(time)
        && !value.is_empty()
        && appendix.is_none_or(|a| !a.is_empty())
}

/// Builds `fbc` from a raw `fbclid` and the time it was first seen (Unix ms).
/// The fbclid is case-sensitive and kept exactly.
pub fn fbc_from_fbclid(fbclid: &str, seen_at_ms: i64) -> Result<String> {
    check_token("fbclid", fbclid)?;
    let mut s = String::with_capacity(fbclid.len() + 20);
    s.push_str("fb.1.");
    crate::json::push_i64(&mut s, seen_at_ms.max(0));
    s.push('.');
    s.push_str(fbclid);
    Ok(s)
}

/// Reads a Google `_gcl_aw` / `_gcl_gb` value `GCL.<unix seconds>.<id>`:
/// returns the id (everything after the second dot) and the click time.
pub fn parse_gcl_cookie(value: &str) -> Option<(&str, i64)> {
    let mut p = value.trim().splitn(3, '.');
    if p.next()? != "GCL" {
        return None;
    }
    let ts = p.next()?;
    let id = p.next()?;
    if !all_digits(ts) || ts.len() > 12 || !is_token(id) {
        return None;
    }
    Some((id, ts.parse().ok()?))
}

/// Splits a query string into decoded `(key, value)` pairs; undecodable pairs are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let q = query.trim_start_matches('?');
    let q = q.split('#').next().unwrap_or_default();
    q.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = crate::cookie::form_decode(k)?;
        let v = crate::cookie::form_decode(v)?;
        Some((k, v))
    })
}

impl ClickIds {
    /// Captures click ids from a landing-page query string. `fbclid` becomes
    /// `fbc` stamped with `now_ms`. Malformed values are ignored.
    pub fn from_query(query: &str, now_ms: i64) -> ClickIds {
        let mut ids = ClickIds::default();
        for (k, v) in query_pairs(query) {
            let v = v.trim();
            if !is_token(v) {
                continue;
            }
            for ((name, slot), kind) in ids.slots_mut().into_iter().zip(&CLICK_IDS) {
                if slot.is_none() && !kind.url_param.is_empty() && k == kind.url_param {
                    *slot = if name == "fbc" { fbc_from_fbclid(v, now_ms).ok() } else { Some(v.to_owned()) };
                }
            }
        }
        ids
    }

    /// Reads the ad platforms' own cookies: `_gcl_aw` (gclid), `_gcl_gb`
    /// (gbraid), `_fbc`, `_fbp`, `_ttp` is not a click id and is ignored.
    pub fn from_platform_cookies(header: &str) -> ClickIds {
        let gcl = |name| crate::cookie::values(header, name).find_map(parse_gcl_cookie).map(|(id, _)| id.to_owned());
        let meta = |name| crate::cookie::values(header, name).find(|v| is_meta_cookie(v)).map(str::to_owned);
        ClickIds {
            gclid: gcl("_gcl_aw"),
            gbraid: gcl("_gcl_gb"),
            fbc: meta("_fbc"),
            fbp: meta("_fbp"),
            ..ClickIds::default()
        }
    }

    /// Reads Tally's own first-party click-id cookies (`_tally_gclid` …).
    pub fn from_tally_cookies(header: &str) -> ClickIds {
        let mut ids = ClickIds::default();
        for (name, slot) in ids.slots_mut() {
            let cookie = tally_cookie_name(name);
            *slot =
                crate::cookie::values(header, &cookie).filter_map(crate::cookie::percent_decode).find(|v| is_token(v));
        }
        ids.validated()
    }

    /// Everything Tally can read from a cookie header, in priority order:
    /// the platform cookies, then Tally's own.
    pub fn from_cookie_header(header: &str) -> ClickIds {
        let mut ids = ClickIds::from_platform_cookies(header);
        ids.fill_from(&ClickIds::from_tally_cookies(header));
        ids
    }

    /// Fills the fields that are empty here from `other` (lower priority).
    pub fn fill_from(&mut self, other: &ClickIds) {
        for ((_, mine), (_, theirs)) in self.slots_mut().into_iter().zip(other.slots()) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
    }

    /// Checks every present field; the first bad one is reported by name.
    pub fn validate(&self) -> Result<()> {
        for ((name, v), kind) in self.slots().into_iter().zip(&CLICK_IDS) {
            let Some(v) = v else { continue };
            let field = kind.field;
            check_token(field, v)?;
            if (name == "fbc" || name == "fbp") && !is_meta_cookie(v) {
                return Err(Error::Invalid { field, reason: "expected fb.<subdomain>.<ms>.<value>" });
            }
        }
        Ok(())
    }

    /// A copy with every malformed field dropped.
    pub fn validated(mut self) -> ClickIds {
        for (name, slot) in self.slots_mut() {
            if !slot.as_deref().is_some_and(|v| well_formed(name, v)) {
                *slot = None;
            }
        }
        self
    }

    /// The `ttclid` when present and well formed (what [`validated`](Self::validated) keeps).
    pub fn valid_ttclid(&self) -> Option<&str> {
        self.ttclid.as_deref().filter(|v| well_formed("ttclid", v))
    }

    /// The `rtid` when present and well formed (what [`validated`](Self::validated) keeps).
    pub fn valid_rtid(&self) -> Option<&str> {
        self.rtid.as_deref().filter(|v| well_formed("rtid", v))
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(|(_, v)| v.is_none())
    }

    /// The single Google click id to send: gclid, else wbraid, else gbraid.
    pub fn primary_google(&self) -> Option<GoogleClick<'_>> {
        if let Some(g) = self.gclid.as_deref() {
            Some(GoogleClick::Gclid(g))
        } else if let Some(w) = self.wbraid.as_deref() {
            Some(GoogleClick::Wbraid(w))
        } else {
            self.gbraid.as_deref().map(GoogleClick::Gbraid)
        }
    }
}

/// The name of Tally's own cookie for a click id: `gclid` → `_tally_gclid`.
pub fn tally_cookie_name(click_id: &str) -> String {
    let mut s = String::with_capacity(7 + click_id.len());
    s.push_str("_tally_");
    s.push_str(click_id);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GCLID: &str = "CjwKCAjwvO7CBhAqEiwA9q2YJUtEa_C_DUIbD6Eai9dlcPvLXw6aHiIntlZ9Ofl5M3VdVHF2FiIiwRoCDmQQAvD_BwE";

    #[test]
    fn gcl_aw_vector() {
        let v = "GCL.1750842800.".to_owned() + GCLID;
        assert_eq!(parse_gcl_cookie(&v), Some((GCLID, 1_750_842_800)));
        assert_eq!(parse_gcl_cookie("GCL.x.abc"), None);
        assert_eq!(parse_gcl_cookie("1.1.123.456"), None);
    }

    #[test]
    fn fbc_vector() {
        let fbclid = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk";
        assert_eq!(
            fbc_from_fbclid(fbclid, 1_554_763_741_205).unwrap(),
            "fb.1.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
        );
    }

    #[test]
    fn meta_cookies_pass_through_including_appendix() {
        let h = "_fbp=fb.2.1750842798656.75452712527328085; _fbc=fb.1.1554763741205.abc.AQQCAQMB";
        let ids = ClickIds::from_platform_cookies(h);
        assert_eq!(ids.fbp.as_deref(), Some("fb.2.1750842798656.75452712527328085"));
        assert_eq!(ids.fbc.as_deref(), Some("fb.1.1554763741205.abc.AQQCAQMB"));
        assert!(ids.validate().is_ok());
        let bad = ClickIds::from_platform_cookies("_fbp=fb.x.1.2; _fbc=nonsense");
        assert!(bad.fbp.is_none() && bad.fbc.is_none());
    }

    #[test]
    fn url_wins_then_google_cookie_then_tally_cookie() {
        let header = "_gcl_aw=GCL.1750842800.FROMCOOKIE; _tally_gclid=FROMTALLY; _tally_wbraid=W1; _gcl_gb=GCL.1.GB1";
        let mut ids = ClickIds::from_query("?gclid=FROMURL", 1);
        ids.fill_from(&ClickIds::from_cookie_header(header));
        assert_eq!(ids.gclid.as_deref(), Some("FROMURL"));
        assert_eq!(ids.wbraid.as_deref(), Some("W1"));
        assert_eq!(ids.gbraid.as_deref(), Some("GB1"));
        let only_cookies = ClickIds::from_cookie_header(header);
        assert_eq!(only_cookies.gclid.as_deref(), Some("FROMCOOKIE"));
        let only_tally = ClickIds::from_cookie_header("_tally_gclid=FROMTALLY");
        assert_eq!(only_tally.gclid.as_deref(), Some("FROMTALLY"));
    }

    #[test]
    fn one_google_click_id() {
        let ids = ClickIds {
            gclid: Some("G".into()),
            gbraid: Some("B".into()),
            wbraid: Some("W".into()),
            ..Default::default()
        };
        assert_eq!(ids.primary_google(), Some(GoogleClick::Gclid("G")));
        let ids = ClickIds { gbraid: Some("B".into()), wbraid: Some("W".into()), ..Default::default() };
        assert_eq!(ids.primary_google(), Some(GoogleClick::Wbraid("W")));
    }

    #[test]
    fn query_capture_ignores_bad_values() {
        let ids = ClickIds::from_query("gclid=a%20b&ttclid=E.C.P.x&rtid=abc123&gbraid=%zz", 5);
        assert_eq!(ids.gclid, None);
        assert_eq!(ids.gbraid, None);
        assert_eq!(ids.ttclid.as_deref(), Some("E.C.P.x"));
        assert_eq!(ids.rtid.as_deref(), Some("abc123"));
    }

    #[test]
    fn validate_names_the_field() {
        let ids = ClickIds { fbc: Some("fb.1.x.y".into()), ..Default::default() };
        assert_eq!(ids.validate().unwrap_err().field(), "clickIds.fbc");
        let ids = ClickIds { gclid: Some("x".repeat(600)), ..Default::default() };
        assert_eq!(ids.validate().unwrap_err().field(), "clickIds.gclid");
    }

    /// Every id of the table travels the same way: captured from its URL
    /// parameter, written to and read back from Tally's cookie, named in errors.
    #[test]
    fn one_table_serves_every_click_id() {
        let q = "?msclkid=M1&twclid=T1&li_fat_id=L1&ScCid=S1&epik=E1&rdt_cid=R1&dclid=D1&sccid=lower";
        let ids = ClickIds::from_query(q, 1);
        let want = [
            ("msclkid", "M1"),
            ("twclid", "T1"),
            ("li_fat_id", "L1"),
            ("ScCid", "S1"),
            ("epik", "E1"),
            ("rdt_cid", "R1"),
            ("dclid", "D1"),
        ];
        let got: Vec<(&str, &str)> = ids.slots().into_iter().filter_map(|(k, v)| Some((k, v.as_deref()?))).collect();
        assert_eq!(got, want);
        let jar: String = want.iter().map(|(k, v)| format!("{}={v}; ", tally_cookie_name(k))).collect();
        assert_eq!(ClickIds::from_cookie_header(&jar), ids);
        assert_eq!(serde_json::to_value(&ids).unwrap()["ScCid"], "S1");
        for kind in &CLICK_IDS {
            let mut bad = ClickIds::default();
            for (k, slot) in bad.slots_mut() {
                if k == kind.key {
                    *slot = Some("a b".into());
                }
            }
            assert_eq!(bad.validate().unwrap_err().field(), kind.field);
        }
        assert!(is_click_id_param("MSCLKID") && is_click_id_param("fbclid") && is_click_id_param("gclsrc"));
        assert!(!is_click_id_param("fbp") && !is_click_id_param("utm_source"));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = ClickIds::from_query(&s, 0);
            let _ = ClickIds::from_cookie_header(&s);
            let _ = parse_gcl_cookie(&s);
            let _ = ClickIds { fbc: Some(s.clone()), gclid: Some(s.clone()), ..Default::default() }.validate();
        }
    }
}
