//! Meta Conversions API normalisation of customer information parameters
//! (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>, <https://github.com/facebook/facebook-nodejs-business-sdk>). Every Meta field is hashed
//! afterwards. No gmail rules for Meta.

use super::common::{
    Kind, Spaces, country_alpha2, filter, international_digits, kind, non_empty, prepare, split_email,
};
use crate::hash::nfc;
use crate::prelude::*;

/// Characters allowed in the local part of an email besides letters and digits (RFC 5322 `atext` and `.`).
const LOCAL_EXTRA: &str = "!#$%&'*+/=?^_`{|}~.-";

/// Meta's email form (`em`): trimmed and lowercased, nothing else changed
/// (no gmail rules), then validated.
///
/// Valid means: exactly one `@`; a local part of letters, digits and RFC 5322
/// specials (`_ . + -` and `! # $ % & ' * / = ? ^ ` { | } ~`); a domain of at
/// least two dot-separated labels of letters, digits and `-`. Letters of any
/// script are accepted (internationalised addresses), which is broader than
/// Meta's Python SDK regex `^[a-z0-9_.+-]+@[a-z0-9-]+\.[a-z0-9-.]+$`.
///
/// ```
/// use tally_core::normalize::meta_email;
/// assert_eq!(meta_email(" John_Smith@gmail.com ").as_deref(), Some("john_smith@gmail.com"));
/// assert_eq!(meta_email("Jane.Doe@gmail.com").as_deref(), Some("jane.doe@gmail.com"));
/// assert_eq!(meta_email("1234"), None);
/// ```
pub fn meta_email(raw: &str) -> Option<String> {
    let e = prepare(raw);
    let (local, domain) = split_email(&e)?;
    let word = |c: char| matches!(kind(c), Kind::Letter | Kind::Digit);
    if !local.chars().all(|c| word(c) || (c.is_ascii() && LOCAL_EXTRA.as_bytes().contains(&(c as u8)))) {
        return None;
    }
    let mut labels = 0usize;
    for label in domain.split('.') {
        if label.is_empty() || !label.chars().all(|c| word(c) || c == '-') {
            return None;
        }
        labels += 1;
    }
    if labels < 2 {
        return None;
    }
    Some(e)
}

/// Meta's phone form (`ph`): digits only, with the country code, no `+`,
/// no leading zeros, 7 to 15 digits (`"(650)555-1212"` with `"1"` → `"16505551212"`).
///
/// Same number rules as [`google_phone`](super::google_phone) (international
/// marks, default calling code for national numbers, a parenthesised trunk `0`
/// after the country code dropped, extensions dropped):
/// `"+44 (0)20 7031 3000"` → `"442070313000"`.
pub fn meta_phone(raw: &str, default_country_calling_code: Option<&str>) -> Option<String> {
    let digits = international_digits(raw, default_country_calling_code)?;
    if (7..=15).contains(&digits.len()) { Some(digits) } else { None }
}

/// Meta's first/last name form (`fn`, `ln`): lowercased, whitespace,
/// punctuation and symbols removed, letters of every script (and digits)
/// kept, as Meta's parameter builder does (`"Mary Ann"` → `"maryann"`,
/// `"  Eg  "` → `"eg"`, `"Valéry"` → `"valéry"`).
pub fn meta_name(raw: &str) -> Option<String> {
    non_empty(filter(&prepare(raw), true, Spaces::Remove))
}

/// Meta's city form (`ct`): lowercased, spaces, punctuation, symbols and
/// digits removed, letters of every script kept (`"New York"` → `"newyork"`).
pub fn meta_city(raw: &str) -> Option<String> {
    non_empty(filter(&prepare(raw), false, Spaces::Remove))
}

/// US states, DC and Canadian provinces and territories, keyed like [`meta_city`] output.
const STATES: &[(&str, &str)] = &[
    ("alabama", "al"),
    ("alaska", "ak"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("districtofcolumbia", "dc"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("rhodeisland", "ri"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
    ("puertorico", "pr"),
    ("alberta", "ab"),
    ("britishcolumbia", "bc"),
    ("manitoba", "mb"),
    ("newbrunswick", "nb"),
    ("newfoundlandandlabrador", "nl"),
    ("newfoundland", "nl"),
    ("northwestterritories", "nt"),
    ("novascotia", "ns"),
    ("nunavut", "nu"),
    ("ontario", "on"),
    ("princeedwardisland", "pe"),
    ("quebec", "qc"),
    ("québec", "qc"),
    ("saskatchewan", "sk"),
    ("yukon", "yt"),
];

/// Meta's state form (`st`): a US state or Canadian province as its
/// 2-letter code in lower case (`"California"` → `"ca"`, `" TX "` → `"tx"`,
/// `"N.Y."` → `"ny"`); any other region lowercased without spaces,
/// punctuation, symbols or digits (`"Bayern"` → `"bayern"`).
pub fn meta_state(raw: &str) -> Option<String> {
    let key = filter(&prepare(raw), false, Spaces::Remove);
    if let Some((_, code)) = STATES.iter().find(|(name, _)| *name == key) {
        return Some((*code).to_owned());
    }
    non_empty(key)
}

/// Meta's zip form (`zp`): lowercased, whitespace removed, only the part
/// before the first `-`; at least 2 characters (`"M1 1AE"` → `"m11ae"`,
/// `"94035-1234"` → `"94035"`).
///
/// US codes keep their first 5 digits: when `country` (raw, any form
/// [`meta_country`] accepts) is the US, or when the value is 9 digits
/// (ZIP+4 without its dash).
pub fn meta_zip(raw: &str, country: Option<&str>) -> Option<String> {
    let all: String = prepare(raw).chars().filter(|c| !c.is_whitespace()).collect();
    let all = nfc(&all);
    let zip = all.split('-').next().unwrap_or_default();
    let is_us = country.and_then(country_alpha2).as_deref() == Some("US");
    let lead_digits = zip.bytes().take_while(u8::is_ascii_digit).count();
    let zip = if (is_us && lead_digits >= 5) || (lead_digits == 9 && zip.len() == 9) {
        zip.get(..5).unwrap_or(zip)
    } else {
        zip
    };
    if crate::text::char_count(zip) < 2 {
        return None;
    }
    Some(zip.to_owned())
}

/// Meta's country form (`country`): ISO 3166-1 alpha-2 in lower case
/// (`"United States"` → `"us"`, `"DE"` → `"de"`), `None` when not recognised.
pub fn meta_country(raw: &str) -> Option<String> {
    country_alpha2(raw).map(|c| c.to_ascii_lowercase())
}

/// Meta's gender form (`ge`): `"f"` from `f`/`female`, `"m"` from `m`/`male`
/// (any case, trimmed); `None` otherwise.
pub fn meta_gender(raw: &str) -> Option<String> {
    let g = raw.trim().to_ascii_lowercase();
    match g.as_str() {
        "f" | "female" => Some("f".to_owned()),
        "m" | "male" => Some("m".to_owned()),
        _ => None,
    }
}

fn parse_num(s: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if !(min_len..=max_len).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u32, |acc, b| acc.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// First year accepted for a date of birth.
pub const DOB_MIN_YEAR: u32 = 1900;
/// Last year accepted for a date of birth. The core has no clock, so "not in
/// the future" is not checked; callers that know today's date can check that.
pub const DOB_MAX_YEAR: u32 = 2100;

fn ymd(year: u32, month: u32, day: u32) -> Option<String> {
    if !(DOB_MIN_YEAR..=DOB_MAX_YEAR).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
    {
        return None;
    }
    let mut out = String::with_capacity(8);
    for (v, width) in [(year, 4u32), (month, 2), (day, 2)] {
        for p in (0..width).rev() {
            let d = (v / 10u32.pow(p)) % 10;
            out.push(char::from_digit(d, 10).unwrap_or('0'));
        }
    }
    Some(out)
}

/// Meta's date-of-birth form (`db`): `YYYYMMDD`.
///
/// Accepts `YYYY-MM-DD` (also with `/` or `.`), `YYYYMMDD`, US `M/D/YYYY`
/// (read as `D/M/YYYY` when the first number is over 12 and the second is
/// not, as Meta's parameter builder does) and European `D.M.YYYY`. Month and
/// day may have one or two digits. The date must exist (leap years checked)
/// and the year be in [`DOB_MIN_YEAR`]..=[`DOB_MAX_YEAR`].
///
/// ```
/// use tally_core::normalize::meta_dob;
/// assert_eq!(meta_dob("2/16/1997").as_deref(), Some("19970216"));
/// assert_eq!(meta_dob("1997-02-16").as_deref(), Some("19970216"));
/// assert_eq!(meta_dob("1997-02-30"), None);
/// ```
pub fn meta_dob(raw: &str) -> Option<String> {
    let s = raw.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let year = parse_num(s.get(..4)?, 4, 4)?;
        let month = parse_num(s.get(4..6)?, 2, 2)?;
        let day = parse_num(s.get(6..)?, 2, 2)?;
        return ymd(year, month, day);
    }
    let sep = s.chars().find(|c| matches!(c, '-' | '/' | '.'))?;
    let mut parts = s.split(sep);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    if a.len() == 4 {
        // Year first: YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD.
        return ymd(parse_num(a, 4, 4)?, parse_num(b, 1, 2)?, parse_num(c, 1, 2)?);
    }
    let (first, second, year) = (parse_num(a, 1, 2)?, parse_num(b, 1, 2)?, parse_num(c, 4, 4)?);
    match sep {
        // D.M.YYYY
        '.' => ymd(year, second, first),
        // M/D/YYYY, or D/M/YYYY when it can only be that.
        '/' if first > 12 && second <= 12 => ymd(year, second, first),
        '/' => ymd(year, first, second),
        _ => None,
    }
}

/// Meta's `external_id` form: trimmed and lowercased (then hashed, as the
/// 2026 Meta SDKs do; it must match the Pixel's `external_id`).
pub fn meta_external_id(raw: &str) -> Option<String> {
    non_empty(prepare(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert_eq!(meta_email("John_Smith@gmail.com").as_deref(), Some("john_smith@gmail.com"));
        // No gmail rules.
        assert_eq!(
            meta_email("cloudy.sanfrancisco+shopping@gmail.com").as_deref(),
            Some("cloudy.sanfrancisco+shopping@gmail.com")
        );
        assert_eq!(meta_email("  Jane@Example.COM ").as_deref(), Some("jane@example.com"));
        assert_eq!(meta_email("o'brien@example.co.uk").as_deref(), Some("o'brien@example.co.uk"));
        assert_eq!(meta_email("jos\u{e9}@caf\u{e9}.com").as_deref(), Some("jos\u{e9}@caf\u{e9}.com"));
        assert_eq!(meta_email("a-b@my-host.example").as_deref(), Some("a-b@my-host.example"));
        for bad in [
            "",
            "1234",
            "jane",
            "jane@example",
            "jane@@example.com",
            "ja ne@example.com",
            "jane@exa mple.com",
            "jane@.com",
            "jane@example..com",
            "jane@example.com.",
            "@example.com",
            "jane@",
            "jane(x)@example.com",
            "jane@ex_ample.com",
        ] {
            assert_eq!(meta_email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phone_rules() {
        assert_eq!(meta_phone("(650)555-1212", Some("1")).as_deref(), Some("16505551212"));
        assert_eq!(meta_phone("+1 (650) 555-1212", None).as_deref(), Some("16505551212"));
        assert_eq!(meta_phone("16505551212", Some("1")).as_deref(), Some("16505551212"));
        assert_eq!(meta_phone("0049 151 2345678", None).as_deref(), Some("491512345678"));
        assert_eq!(meta_phone("0151 2345678", Some("49")).as_deref(), Some("491512345678"));
        assert_eq!(meta_phone("+44 (0)20 7031 3000", None).as_deref(), Some("442070313000"));
        assert_eq!(meta_phone("+49 (0)30 1234567", None).as_deref(), Some("49301234567"));
        assert_eq!(meta_phone("+39 06 1234 5678", None).as_deref(), Some("390612345678"));
        assert_eq!(meta_phone("+1234567", None).as_deref(), Some("1234567"));
        assert_eq!(meta_phone("+123456", None), None);
        assert_eq!(meta_phone("+1234567890123456", None), None);
        assert_eq!(meta_phone("", Some("1")), None);
    }

    #[test]
    fn name_rules() {
        assert_eq!(meta_name("Mary").as_deref(), Some("mary"));
        assert_eq!(meta_name("  Eg  ").as_deref(), Some("eg"));
        assert_eq!(meta_name("Mary Ann").as_deref(), Some("maryann"));
        assert_eq!(meta_name("O'Brien-Smith").as_deref(), Some("obriensmith"));
        assert_eq!(meta_name("\u{c815}").as_deref(), Some("\u{c815}"));
        assert_eq!(meta_name("Val\u{e9}ry").as_deref(), Some("val\u{e9}ry"));
        assert_eq!(meta_name("\u{130}STANBUL").as_deref(), Some("i\u{307}stanbul"));
        assert_eq!(meta_name(" .,- "), None);
    }

    #[test]
    fn city_state_zip_country() {
        assert_eq!(meta_city("New York").as_deref(), Some("newyork"));
        assert_eq!(meta_city(" Paris ").as_deref(), Some("paris"));
        assert_eq!(meta_city("St. Louis 2").as_deref(), Some("stlouis"));
        assert_eq!(meta_city("S\u{e3}o Paulo").as_deref(), Some("s\u{e3}opaulo"));
        assert_eq!(meta_city("123"), None);

        assert_eq!(meta_state("CA").as_deref(), Some("ca"));
        assert_eq!(meta_state("California").as_deref(), Some("ca"));
        assert_eq!(meta_state("new york").as_deref(), Some("ny"));
        assert_eq!(meta_state("N.Y.").as_deref(), Some("ny"));
        assert_eq!(meta_state("Ontario").as_deref(), Some("on"));
        assert_eq!(meta_state("Qu\u{e9}bec").as_deref(), Some("qc"));
        assert_eq!(meta_state("Bayern").as_deref(), Some("bayern"));
        assert_eq!(meta_state("Rh\u{f4}ne-Alpes").as_deref(), Some("rh\u{f4}nealpes"));
        assert_eq!(meta_state(" - "), None);

        assert_eq!(meta_zip("94035", None).as_deref(), Some("94035"));
        assert_eq!(meta_zip("94035-1234", None).as_deref(), Some("94035"));
        assert_eq!(meta_zip("940351234", None).as_deref(), Some("94035"));
        assert_eq!(meta_zip("940351234", Some("us")).as_deref(), Some("94035"));
        assert_eq!(meta_zip("94035 1234", Some("United States")).as_deref(), Some("94035"));
        assert_eq!(meta_zip("M1 1AE", Some("GB")).as_deref(), Some("m11ae"));
        assert_eq!(meta_zip("1987", Some("AU")).as_deref(), Some("1987"));
        assert_eq!(meta_zip("75018", Some("FR")).as_deref(), Some("75018"));
        assert_eq!(meta_zip("110001", Some("IN")).as_deref(), Some("110001"));
        assert_eq!(meta_zip("1", None), None);
        assert_eq!(meta_zip("-123", None), None);

        assert_eq!(meta_country("United States").as_deref(), Some("us"));
        assert_eq!(meta_country("US").as_deref(), Some("us"));
        assert_eq!(meta_country("United Kingdom").as_deref(), Some("gb"));
        assert_eq!(meta_country("Mars"), None);
    }

    #[test]
    fn gender_rules() {
        for (raw, want) in [("f", "f"), ("F", "f"), (" Female ", "f"), ("m", "m"), ("MALE", "m")] {
            assert_eq!(meta_gender(raw).as_deref(), Some(want));
        }
        for bad in ["", "x", "fem", "woman", "males"] {
            assert_eq!(meta_gender(bad), None);
        }
    }

    #[test]
    fn dob_rules() {
        let ok = [
            ("2/16/1997", "19970216"),
            ("02/16/1997", "19970216"),
            ("16/2/1997", "19970216"),
            ("1997-02-16", "19970216"),
            ("1997-2-6", "19970206"),
            ("1997/02/16", "19970216"),
            ("19970216", "19970216"),
            ("16.02.1997", "19970216"),
            (" 2000-02-29 ", "20000229"),
            ("1900-01-01", "19000101"),
        ];
        for (raw, want) in ok {
            assert_eq!(meta_dob(raw).as_deref(), Some(want), "{raw:?}");
        }
        let bad = [
            "",
            "1997",
            "1997-13-01",
            "1997-00-10",
            "1997-02-29",
            "1900-02-29",
            "1899-12-31",
            "2101-01-01",
            "13/13/1997",
            "2/30/1997",
            "1997-02-16-01",
            "97-02-16",
            "2-16-1997",
            "abcdefgh",
            "1997021",
            "１９９７0216",
            "1997-02-1x",
            "0/10/1997",
        ];
        for raw in bad {
            assert_eq!(meta_dob(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn external_id_rules() {
        assert_eq!(meta_external_id("  User-42 ").as_deref(), Some("user-42"));
        assert_eq!(meta_external_id("  "), None);
    }
}
