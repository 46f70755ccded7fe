//! Google normalisation: Google Ads enhanced conversions and GA4 Measurement
//! Protocol `user_data` (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>, <https://developers.google.com/google-ads/api/docs/conversions/upload-identifiers>).
//!
//! Email, phone, names and street are hashed afterwards; city, region,
//! postal code and country are sent plain, so their normalisers return
//! `None` for values that are already SHA-256 digests.

use super::common::{Spaces, country_alpha2, filter, international_digits, non_empty, prepare, split_email};
use crate::hash::{is_prehashed, nfc};
use crate::prelude::*;

/// Google's email form: trimmed, lowercased, all whitespace removed; for
/// `gmail.com` and `googlemail.com` the `+suffix` and every `.` of the local
/// part are dropped. Other domains keep dots and `+`.
///
/// `None` unless the value has exactly one `@` with text on both sides.
///
/// ```
/// use tally_core::normalize::google_email;
/// assert_eq!(
///     google_email("cloudy.sanfrancisco+shopping@gmail.com").as_deref(),
///     Some("cloudysanfrancisco@gmail.com")
/// );
/// assert_eq!(
///     google_email("user.name+NYC@Example.com").as_deref(),
///     Some("user.name+nyc@example.com")
/// );
/// ```
pub fn google_email(raw: &str) -> Option<String> {
    let e: String = prepare(raw).chars().filter(|c| !c.is_whitespace()).collect();
    let (local, domain) = split_email(&e)?;
    let mut out = String::with_capacity(e.len());
    if domain == "gmail.com" || domain == "googlemail.com" {
        let base = local.split('+').next().unwrap_or_default();
        out.extend(base.chars().filter(|&c| c != '.'));
        if out.is_empty() {
            return None;
        }
    } else {
        out.push_str(local);
    }
    out.push('@');
    out.push_str(domain);
    // Removing characters can leave combining marks out of canonical order.
    Some(nfc(&out))
}

/// Google's phone form, E.164: `+` and 8 to 15 digits (`+16505551212`).
///
/// Non-digits are removed. A leading `+` or `00` marks an international
/// number. A national number gets `default_country_calling_code` (e.g. `"1"`,
/// `"+44"`): its trunk zeros are dropped and the code is prepended, unless it
/// already starts with that code and is long enough to include it
/// (`16505551212` with `"1"`). Without a default code a national number is
/// taken as already international, except one starting with `0` (→ `None`).
/// Extensions (`x12`, `ext. 5`, `#5`) are dropped.
///
/// A national trunk `0` written in parentheses after the country code is
/// dropped (`+44 (0)20 7031 3000` → `+442070313000`, `+49 (0)30 …` → `+4930…`),
/// except for Italy and San Marino, where the leading zero is part of the
/// number (`+39 06 …` and `+39 (0)6 …` → `+3906…`).
///
/// This is not libphonenumber: no per-country length or trunk-prefix rules
/// beyond Italy and San Marino keeping their leading zero.
///
/// ```
/// use tally_core::normalize::google_phone;
/// assert_eq!(google_phone("(800)555-0100", Some("1")).as_deref(), Some("+18005550100"));
/// assert_eq!(google_phone("+1 800 5550102", None).as_deref(), Some("+18005550102"));
/// assert_eq!(google_phone("020 7031 3000", Some("44")).as_deref(), Some("+442070313000"));
/// assert_eq!(google_phone("+44 (0)20 7031 3000", None).as_deref(), Some("+442070313000"));
/// ```
pub fn google_phone(raw: &str, default_country_calling_code: Option<&str>) -> Option<String> {
    let digits = international_digits(raw, default_country_calling_code)?;
    if !(8..=15).contains(&digits.len()) {
        return None;
    }
    let mut out = String::with_capacity(digits.len() + 1);
    out.push('+');
    out.push_str(&digits);
    Some(out)
}

/// Google's name form (first or last name): trimmed, lowercased, digits and
/// symbols removed, letters of every script kept, inner whitespace collapsed
/// to one space (`"  Mary-Jane  O'Brien "` → `"maryjane obrien"`).
pub fn google_name(raw: &str) -> Option<String> {
    non_empty(filter(&prepare(raw), false, Spaces::Collapse))
}

/// Google's street form: trimmed, lowercased, symbols removed (letters,
/// digits and single inner spaces kept): `"123 Main St., Apt 4"` → `"123 main st apt 4"`.
pub fn google_street(raw: &str) -> Option<String> {
    non_empty(filter(&prepare(raw), true, Spaces::Collapse))
}

/// Google's plain (unhashed) city: digits and symbols removed, lowercased,
/// trimmed, inner whitespace collapsed (`"São Paulo"` → `"são paulo"`).
/// `None` for an already hashed value, which Google cannot use here.
pub fn google_city(raw: &str) -> Option<String> {
    if is_prehashed(raw) {
        return None;
    }
    non_empty(filter(&prepare(raw), false, Spaces::Collapse))
}

/// Google's plain (unhashed) region, same rules as [`google_city`] (`" TX "` → `"tx"`).
pub fn google_region(raw: &str) -> Option<String> {
    google_city(raw)
}

/// Google's plain (unhashed) postal code: trimmed, `.` and `~` (and control
/// characters) removed, case kept (`"94043"`, `"SW1A 1AA"`).
/// `None` for an already hashed value.
pub fn google_postal(raw: &str) -> Option<String> {
    if is_prehashed(raw) {
        return None;
    }
    let kept: String = nfc(raw.trim()).chars().filter(|&c| c != '.' && c != '~' && !c.is_control()).collect();
    non_empty(nfc(kept.trim()))
}

/// Google's plain country: ISO 3166-1 alpha-2, upper case.
///
/// Accepts any two letters (`"us"` → `"US"`; `"UK"` → `"GB"`) and common full
/// names (`"United States"`, `"United Kingdom"`, `"Germany"`, `"Deutschland"`, …);
/// `None` for anything else.
pub fn google_country(raw: &str) -> Option<String> {
    country_alpha2(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";

    #[test]
    fn email_rules() {
        let e = |s: &str| google_email(s);
        assert_eq!(e("John.Doe@gmail.com").as_deref(), Some("johndoe@gmail.com"));
        assert_eq!(e("Jane.Doe@GoogleMail.com").as_deref(), Some("janedoe@googlemail.com"));
        assert_eq!(e("j.a.n.e+x+y@gmail.com").as_deref(), Some("jane@gmail.com"));
        assert_eq!(e(" Test@Example.com ").as_deref(), Some("test@example.com"));
        assert_eq!(e("alex.2@example.com").as_deref(), Some("alex.2@example.com"));
        assert_eq!(e("jo hn @ex ample.com").as_deref(), Some("john@example.com"));
        assert_eq!(e("\tJane@Example.COM\n").as_deref(), Some("jane@example.com"));
        // Gmail rules only for exactly these domains.
        assert_eq!(e("a.b+c@gmail.co").as_deref(), Some("a.b+c@gmail.co"));
        assert_eq!(e("a.b+c@mail.gmail.com").as_deref(), Some("a.b+c@mail.gmail.com"));
        for bad in ["", "   ", "plain", "@example.com", "jane@", "a@b@c", "+tag@gmail.com", "...@gmail.com"] {
            assert_eq!(e(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phone_rules() {
        let p = |s: &str, cc: Option<&str>| google_phone(s, cc);
        assert_eq!(p("+1 (650) 555-1212", None).as_deref(), Some("+16505551212"));
        assert_eq!(p("(650) 555-1212", Some("1")).as_deref(), Some("+16505551212"));
        assert_eq!(p("6505551212", None).as_deref(), Some("+6505551212"));
        assert_eq!(p("+44 20 7031 3000", None).as_deref(), Some("+442070313000"));
        assert_eq!(p("0044 20 7031 3000", Some("1")).as_deref(), Some("+442070313000"));
        // A parenthesised trunk 0 after the country code is not part of E.164 ...
        assert_eq!(p("+44 (0)20 7031 3000", None).as_deref(), Some("+442070313000"));
        assert_eq!(p("+49 (0)30 1234567", Some("49")).as_deref(), Some("+49301234567"));
        // ... except in Italy, where the leading 0 is part of the number.
        assert_eq!(p("+39 06 1234 5678", None).as_deref(), Some("+390612345678"));
        assert_eq!(p("+39 (0)6 1234 5678", None).as_deref(), Some("+390612345678"));
        // Too short / too long.
        assert_eq!(p("+1 555 12", None), None);
        assert_eq!(p("+1234567", None), None);
        assert_eq!(p("+12345678", None).as_deref(), Some("+12345678"));
        assert_eq!(p("+123456789012345", None).as_deref(), Some("+123456789012345"));
        assert_eq!(p("+1234567890123456", None), None);
        assert_eq!(p("", None), None);
        assert_eq!(p("call me", Some("1")), None);
        assert_eq!(p(HASH, None), None);
    }

    #[test]
    fn name_rules() {
        assert_eq!(google_name("John").as_deref(), Some("john"));
        assert_eq!(google_name("  Mary-Jane  O'Brien ").as_deref(), Some("maryjane obrien"));
        assert_eq!(google_name("Jane2").as_deref(), Some("jane"));
        assert_eq!(google_name("\u{c815}").as_deref(), Some("\u{c815}"));
        assert_eq!(google_name("\u{418}\u{432}\u{430}\u{43d}").as_deref(), Some("\u{438}\u{432}\u{430}\u{43d}"));
        assert_eq!(google_name("AYDIN").as_deref(), Some("aydin"));
        assert_eq!(google_name("\u{130}STANBUL").as_deref(), Some("i\u{307}stanbul"));
        assert_eq!(google_name("123 !!"), None);
        assert_eq!(google_name(""), None);
    }

    #[cfg(feature = "unicode")]
    #[test]
    fn name_nfd_is_composed_first() {
        assert_eq!(google_name("Jose\u{301}").as_deref(), Some("jos\u{e9}"));
    }

    #[test]
    fn street_rules() {
        assert_eq!(google_street("  123 Main St. ").as_deref(), Some("123 main st"));
        assert_eq!(google_street("123 Main St., Apt #4").as_deref(), Some("123 main st apt 4"));
        assert_eq!(google_street("C\u{f4}te d'Azur").as_deref(), Some("c\u{f4}te dazur"));
        assert_eq!(google_street(" -- "), None);
    }

    #[test]
    fn plain_address_rules() {
        assert_eq!(google_city("Mountain View").as_deref(), Some("mountain view"));
        assert_eq!(google_city("AUSTIN").as_deref(), Some("austin"));
        assert_eq!(google_city("S\u{e3}o Paulo").as_deref(), Some("s\u{e3}o paulo"));
        assert_eq!(google_city("\u{130}STANBUL").as_deref(), Some("i\u{307}stanbul"));
        assert_eq!(google_city("AYDIN").as_deref(), Some("aydin"));
        assert_eq!(google_city("10115 Berlin").as_deref(), Some("berlin"));
        assert_eq!(google_city(HASH), None);
        assert_eq!(google_region(" TX ").as_deref(), Some("tx"));
        assert_eq!(google_region("N.Y.").as_deref(), Some("ny"));
        assert_eq!(google_postal(" 94043 ").as_deref(), Some("94043"));
        assert_eq!(google_postal("SW1A 1AA").as_deref(), Some("SW1A 1AA"));
        assert_eq!(google_postal("~1.2.3~").as_deref(), Some("123"));
        assert_eq!(google_postal(". ~"), None);
        assert_eq!(google_postal(HASH), None);
        assert_eq!(google_country("us").as_deref(), Some("US"));
        assert_eq!(google_country("United States").as_deref(), Some("US"));
        assert_eq!(google_country("France").as_deref(), Some("FR"));
        assert_eq!(google_country("Canada").as_deref(), Some("CA"));
        assert_eq!(google_country("Australia").as_deref(), Some("AU"));
        assert_eq!(google_country("germany").as_deref(), Some("DE"));
        assert_eq!(google_country("nowhere"), None);
    }
}
