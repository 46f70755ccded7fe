//! Character classes and helpers shared by the per-destination normalisers.
//!
//! The classes use only `core`'s own Unicode properties (`is_alphabetic`,
//! `is_numeric`, `is_whitespace`) plus a fixed table of punctuation and
//! symbol ranges. They do not depend on the `unicode` feature, so the browser
//! build and the server build normalise the same input to the same string.

use crate::hash::nfc;
use crate::prelude::*;

/// What a character is, for the "remove digits and symbols" rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A letter, or a mark or other non-punctuation character that belongs to a word
    /// (combining marks such as U+0307 or Devanagari virama are kept).
    Letter,
    /// Any numeric character (ASCII or not).
    Digit,
    /// Whitespace (Unicode `White_Space`).
    Space,
    /// ZERO WIDTH (NON-)JOINER: kept only between two letters.
    Joiner,
    /// Punctuation, symbols, emoji, controls, invisible format characters.
    Symbol,
}

/// Non-ASCII, non-alphanumeric, non-whitespace code point ranges treated as
/// punctuation or symbols. Letters and numbers inside these ranges are
/// classified before this table is consulted, so the ranges can be broad.
const SYMBOL_RANGES: &[(u32, u32)] = &[
    (0x00A0, 0x00BF), // Latin-1 punctuation and symbols (soft hyphen included)
    (0x00D7, 0x00D7), // ×
    (0x00F7, 0x00F7), // ÷
    (0x02C2, 0x02C5),
    (0x02D2, 0x02DF),
    (0x02E5, 0x02EB),
    (0x02ED, 0x02ED),
    (0x02EF, 0x02FF),
    (0x0375, 0x0375),
    (0x037E, 0x037E),
    (0x0384, 0x0385),
    (0x0387, 0x0387),
    (0x03F6, 0x03F6),
    (0x0482, 0x0482),
    (0x055A, 0x055F),
    (0x0589, 0x058A),
    (0x058D, 0x058F),
    (0x05BE, 0x05BE),
    (0x05C0, 0x05C0),
    (0x05C3, 0x05C3),
    (0x05C6, 0x05C6),
    (0x05F3, 0x05F4),
    (0x0600, 0x060F),
    (0x061B, 0x061F),
    (0x066A, 0x066D),
    (0x06D4, 0x06D4),
    (0x06DD, 0x06DE),
    (0x06E9, 0x06E9),
    (0x06FD, 0x06FE),
    (0x0964, 0x0965),
    (0x0970, 0x0970),
    (0x0E3F, 0x0E3F),
    (0x0E4F, 0x0E4F),
    (0x0E5A, 0x0E5B),
    (0x104A, 0x104F),
    (0x10FB, 0x10FB),
    (0x1360, 0x1368),
    (0x166D, 0x166E),
    (0x17D4, 0x17D6),
    (0x17D8, 0x17DB),
    (0x1800, 0x180A),
    (0x180E, 0x180E),
    (0x1FBD, 0x1FBD),
    (0x1FBF, 0x1FC1),
    (0x1FCD, 0x1FCF),
    (0x1FDD, 0x1FDF),
    (0x1FED, 0x1FEF),
    (0x1FFD, 0x1FFE),
    (0x2000, 0x200B), // spaces, ZERO WIDTH SPACE
    (0x200E, 0x2BFF), // general punctuation .. miscellaneous symbols and arrows
    (0x2CF9, 0x2CFF),
    (0x2E00, 0x2FFF), // supplemental punctuation, CJK radicals
    (0x3000, 0x303F), // CJK symbols and punctuation
    (0x309B, 0x309C),
    (0x30A0, 0x30A0),
    (0x30FB, 0x30FB), // katakana middle dot
    (0x3190, 0x319F),
    (0x31C0, 0x31EF),
    (0x3200, 0x33FF),
    (0x4DC0, 0x4DFF),
    (0xA490, 0xA4CF),
    (0xA4FE, 0xA4FF),
    (0xA60D, 0xA60F),
    (0xA673, 0xA673),
    (0xA67E, 0xA67E),
    (0xA6F2, 0xA6F7),
    (0xA700, 0xA721),
    (0xA789, 0xA78A),
    (0xA828, 0xA82B),
    (0xA830, 0xA839),
    (0xA874, 0xA877),
    (0xA8CE, 0xA8CF),
    (0xA8F8, 0xA8FA),
    (0xA8FC, 0xA8FC),
    (0xA92E, 0xA92F),
    (0xA95F, 0xA95F),
    (0xA9C1, 0xA9CD),
    (0xA9DE, 0xA9DF),
    (0xAA5C, 0xAA5F),
    (0xAA77, 0xAA79),
    (0xAADE, 0xAADF),
    (0xAAF0, 0xAAF1),
    (0xAB5B, 0xAB5B),
    (0xAB6A, 0xAB6B),
    (0xABEB, 0xABEB),
    (0xE000, 0xF8FF), // private use
    (0xFB29, 0xFB29),
    (0xFD3E, 0xFD3F),
    (0xFDFC, 0xFDFF),
    (0xFE00, 0xFE19), // variation selectors, vertical forms
    (0xFE30, 0xFE6F),
    (0xFEFF, 0xFEFF),
    (0xFF01, 0xFF0F),
    (0xFF1A, 0xFF20),
    (0xFF3B, 0xFF40),
    (0xFF5B, 0xFF65),
    (0xFFE0, 0xFFFF),
    (0x1D000, 0x1D24F),  // musical symbols
    (0x1F000, 0x1FBFF),  // emoji, pictographs, playing cards, legacy computing
    (0xE0000, 0xE0FFF),  // tags, variation selectors supplement
    (0xF0000, 0x10FFFF), // private use planes
];

fn in_symbol_ranges(c: char) -> bool {
    let cp = u32::from(c);
    SYMBOL_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                core::cmp::Ordering::Less
            } else if lo > cp {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Classifies one character.
pub(crate) fn kind(c: char) -> Kind {
    if c.is_whitespace() {
        Kind::Space
    } else if c.is_alphabetic() {
        Kind::Letter
    } else if c.is_numeric() {
        Kind::Digit
    } else if c == '\u{200C}' || c == '\u{200D}' {
        Kind::Joiner
    } else if c.is_ascii() || c.is_control() || in_symbol_ranges(c) {
        Kind::Symbol
    } else {
        // Combining marks and the like: part of the word they follow.
        Kind::Letter
    }
}

/// How [`filter`] treats whitespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spaces {
    /// Runs of whitespace become one ASCII space; none at either end.
    Collapse,
    /// All whitespace is removed.
    Remove,
}

/// Keeps letters (and digits when `digits`), applies the whitespace rule,
/// drops everything else. ZWJ/ZWNJ survive only between two kept letters.
pub(crate) fn filter(s: &str, digits: bool, spaces: Spaces) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    let mut last_was_letter = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let k = kind(c);
        let keep = match k {
            Kind::Letter => true,
            Kind::Digit => digits,
            Kind::Joiner => last_was_letter && !pending_space && chars.peek().is_some_and(|&n| kind(n) == Kind::Letter),
            Kind::Space => {
                if spaces == Spaces::Collapse && !out.is_empty() {
                    pending_space = true;
                }
                false
            }
            Kind::Symbol => false,
        };
        if keep {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
            last_was_letter = k == Kind::Letter;
        } else if k == Kind::Space {
            last_was_letter = false;
        }
    }
    // Removing a symbol can leave a base letter next to a combining mark.
    nfc(&out)
}

/// Trim, NFC, lowercase (and NFC again, in case lowercasing decomposed
/// something): the first steps of every text normaliser.
pub(crate) fn prepare(raw: &str) -> String {
    nfc(&lowercase(&nfc(raw.trim())))
}

/// Unicode lowercasing (locale-independent).
#[cfg(any(not(feature = "js-lowercase"), feature = "unicode"))]
fn lowercase(s: &str) -> String {
    s.to_lowercase()
}

/// With `js-lowercase` (the browser build) the JS engine has lowercased the
/// value already (`String.prototype.toLowerCase`, the same Unicode mapping);
/// only ASCII is lowered here, which keeps Unicode's case tables out of the wasm module.
#[cfg(all(feature = "js-lowercase", not(feature = "unicode")))]
fn lowercase(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// `Some(s)` unless `s` is empty.
pub(crate) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// The value of a decimal digit in any common script (ASCII, fullwidth,
/// Arabic-Indic, Devanagari, Bengali, Thai, ...), as an ASCII digit.
pub(crate) fn ascii_digit(c: char) -> Option<char> {
    if c.is_ascii_digit() {
        return Some(c);
    }
    // First code point (digit zero) of each Unicode decimal-digit block handled.
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
        0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0xFF10,
    ];
    let cp = u32::from(c);
    ZEROS.iter().find_map(|&z| if (z..z + 10).contains(&cp) { char::from_digit(cp - z, 10) } else { None })
}

/// Lowercase ASCII-and-letters key for table look-ups: lowercases and keeps
/// only alphabetic characters (`"United States"` → `"unitedstates"`, `"N.Y."` → `"ny"`).
pub(crate) fn letters_key(raw: &str) -> String {
    prepare(raw).chars().filter(|c| c.is_alphabetic()).collect()
}

/// Common country names (English and a few endonyms), as [`letters_key`]s, to ISO 3166-1 alpha-2.
const COUNTRY_NAMES: &[(&str, &str)] = &[
    ("argentina", "AR"),
    ("australia", "AU"),
    ("austria", "AT"),
    ("belgium", "BE"),
    ("belgique", "BE"),
    ("belgië", "BE"),
    ("brazil", "BR"),
    ("brasil", "BR"),
    ("bulgaria", "BG"),
    ("canada", "CA"),
    ("chile", "CL"),
    ("china", "CN"),
    ("colombia", "CO"),
    ("croatia", "HR"),
    ("czechia", "CZ"),
    ("czechrepublic", "CZ"),
    ("denmark", "DK"),
    ("danmark", "DK"),
    ("deutschland", "DE"),
    ("egypt", "EG"),
    ("england", "GB"),
    ("españa", "ES"),
    ("estonia", "EE"),
    ("finland", "FI"),
    ("france", "FR"),
    ("germany", "DE"),
    ("greatbritain", "GB"),
    ("greece", "GR"),
    ("hongkong", "HK"),
    ("hungary", "HU"),
    ("iceland", "IS"),
    ("india", "IN"),
    ("indonesia", "ID"),
    ("ireland", "IE"),
    ("israel", "IL"),
    ("italia", "IT"),
    ("italy", "IT"),
    ("japan", "JP"),
    ("korea", "KR"),
    ("latvia", "LV"),
    ("lithuania", "LT"),
    ("luxembourg", "LU"),
    ("malaysia", "MY"),
    ("mexico", "MX"),
    ("méxico", "MX"),
    ("morocco", "MA"),
    ("nederland", "NL"),
    ("netherlands", "NL"),
    ("thenetherlands", "NL"),
    ("newzealand", "NZ"),
    ("nigeria", "NG"),
    ("norge", "NO"),
    ("northernireland", "GB"),
    ("norway", "NO"),
    ("österreich", "AT"),
    ("pakistan", "PK"),
    ("peru", "PE"),
    ("philippines", "PH"),
    ("poland", "PL"),
    ("polska", "PL"),
    ("portugal", "PT"),
    ("romania", "RO"),
    ("russia", "RU"),
    ("russianfederation", "RU"),
    ("saudiarabia", "SA"),
    ("schweiz", "CH"),
    ("scotland", "GB"),
    ("serbia", "RS"),
    ("singapore", "SG"),
    ("slovakia", "SK"),
    ("slovenia", "SI"),
    ("southafrica", "ZA"),
    ("southkorea", "KR"),
    ("spain", "ES"),
    ("suisse", "CH"),
    ("sverige", "SE"),
    ("sweden", "SE"),
    ("switzerland", "CH"),
    ("taiwan", "TW"),
    ("thailand", "TH"),
    ("turkey", "TR"),
    ("türkiye", "TR"),
    ("uae", "AE"),
    ("ukraine", "UA"),
    ("unitedarabemirates", "AE"),
    ("unitedkingdom", "GB"),
    ("unitedstates", "US"),
    ("unitedstatesofamerica", "US"),
    ("usa", "US"),
    ("vietnam", "VN"),
    ("wales", "GB"),
];

/// ISO 3166-1 alpha-2, upper case, from a 2-letter code or a known country name.
///
/// Two ASCII letters are accepted as a code without checking the ISO list,
/// except `UK`, which is mapped to `GB`. Known full names are mapped; anything else is `None`.
pub(crate) fn country_alpha2(raw: &str) -> Option<String> {
    if raw.chars().any(char::is_numeric) {
        return None;
    }
    let key = letters_key(raw);
    if key == "uk" {
        return Some("GB".to_owned());
    }
    if key.len() == 2 && key.bytes().all(|b| b.is_ascii_lowercase()) {
        return Some(key.to_ascii_uppercase());
    }
    COUNTRY_NAMES.iter().find(|(name, _)| *name == key).map(|(_, code)| (*code).to_owned())
}

/// Splits a normalised email at its only `@`; `None` unless there is exactly one
/// `@` with text on both sides.
pub(crate) fn split_email(e: &str) -> Option<(&str, &str)> {
    let (local, domain) = e.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.as_bytes().contains(&b'@') {
        None
    } else {
        Some((local, domain))
    }
}

/// The digits of a calling code (`"1"`, `"+44"`, `"0049"` → `"1"`, `"44"`, `"49"`),
/// or `None` when it is not 1 to 3 digits.
fn calling_code(cc: &str) -> Option<String> {
    let t = cc.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d = t.trim_start_matches('0');
    if (1..=3).contains(&d.len()) { Some(d.to_owned()) } else { None }
}

/// Countries whose national numbers keep their leading zero after the
/// calling code (Italy, San Marino): `06 1234 5678` → `+39 06 1234 5678`.
const KEEPS_LEADING_ZERO: &[&str] = &["39", "378"];

/// The full international number, digits only (no `+`), or `None`.
///
/// * An optional `tel:` prefix is ignored; a leading `+` (or fullwidth `＋`)
///   or a `00` prefix marks the number as international.
/// * Separators are ignored; decimal digits of any script count as digits.
///   Once a digit has been seen, a letter, `#`, `;` or `,` ends the number
///   (extensions such as `x123` or `ext. 5` are dropped).
/// * A national number (no `+`, no `00`) with `default_cc`:
///   - with a leading trunk `0`: the zeros are dropped (kept for Italy and
///     San Marino) and the calling code is prepended;
///   - already starting with the calling code and at least 8 digits longer
///     than it (`16505551212` with `1`): taken as already international;
///   - otherwise the calling code is prepended.
/// * A national number without `default_cc`: taken as already international
///   (Google's "remove non-digits, add `+`"), unless it starts with a trunk
///   `0`, which cannot start a country code: then `None`.
/// * An international number (`+` or `00`) whose country code (1 to 3 digits)
///   is followed by a parenthesised group starting with the national trunk
///   `0` (`+44 (0)20 7031 3000`, `+49 (0)30 …`, `0044 (020) …`): that group's
///   leading zeros are dropped, as dialling from abroad does (E.164 has no
///   trunk prefix: `442070313000`), except for Italy and San Marino, whose
///   leading zero is part of the number (`+39 (0)6 …` → `3906…`).
/// * The result must not start with `0`. The caller checks the length.
pub(crate) fn international_digits(raw: &str, default_cc: Option<&str>) -> Option<String> {
    let mut s = raw.trim();
    if let Some(head) = s.get(..4) {
        if head.eq_ignore_ascii_case("tel:") {
            s = s.get(4..).unwrap_or_default();
        }
    }
    let mut plus = false;
    let mut digits = String::with_capacity(s.len());
    // Where the first parenthesised group opened (in digits), until it closes.
    let mut group: Option<usize> = None;
    let mut seen_group = false;
    for c in s.chars() {
        if let Some(d) = ascii_digit(c) {
            if d == '0' && group == Some(digits.len()) && after_country_code(digits.as_bytes(), plus) {
                // A trunk 0 in brackets after the country code: +44 (0)20 … is +44 20 ….
                continue;
            }
            digits.push(d);
        } else if c == '+' || c == '\u{FF0B}' {
            if digits.is_empty() {
                plus = true;
            }
        } else if matches!(c, '(' | '\u{FF08}') {
            if !seen_group {
                seen_group = true;
                group = Some(digits.len());
            }
        } else if matches!(c, ')' | '\u{FF09}') {
            group = None;
        } else if !digits.is_empty() && (c.is_alphabetic() || matches!(c, '#' | ';' | ',')) {
            break;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let full = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        match default_cc.and_then(calling_code) {
            None => digits,
            Some(cc) => {
                let mut out = String::with_capacity(cc.len() + digits.len());
                if digits.starts_with('0') {
                    out.push_str(&cc);
                    if KEEPS_LEADING_ZERO.contains(&cc.as_str()) {
                        out.push_str(&digits);
                    } else {
                        out.push_str(digits.trim_start_matches('0'));
                    }
                } else if digits.starts_with(cc.as_str()) && digits.len() >= cc.len() + 8 {
                    out.push_str(&digits);
                } else {
                    out.push_str(&cc);
                    out.push_str(&digits);
                }
                out
            }
        }
    };
    if full.is_empty() || full.starts_with('0') { None } else { Some(full) }
}

/// Whether `digits`, read so far, are exactly the country code (1 to 3
/// digits) of a number marked international (`+`, or `00` before them), so
/// that a `0` opening the next parenthesised group is the national trunk
/// prefix, not dialled from abroad. Italy and San Marino keep theirs (it is
/// part of the number). Byte-wise, without indexing that could panic: the
/// browser build carries no panic formatting.
fn after_country_code(digits: &[u8], plus: bool) -> bool {
    let country_code = if plus { Some(digits) } else { digits.strip_prefix(b"00") };
    country_code.is_some_and(|cc| {
        (1..=3).contains(&cc.len())
            && cc.first() != Some(&b'0')
            && !KEEPS_LEADING_ZERO.iter().any(|k| k.as_bytes() == cc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_ranges_are_sorted_and_disjoint() {
        for w in SYMBOL_RANGES.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:x?}");
        }
    }

    #[test]
    fn classes() {
        assert_eq!(kind('a'), Kind::Letter);
        assert_eq!(kind('\u{c815}'), Kind::Letter); // 정
        assert_eq!(kind('\u{307}'), Kind::Letter); // combining dot above
        assert_eq!(kind('\u{94d}'), Kind::Letter); // Devanagari virama
        assert_eq!(kind('\u{e48}'), Kind::Letter); // Thai tone mark
        assert_eq!(kind('7'), Kind::Digit);
        assert_eq!(kind('\u{663}'), Kind::Digit); // Arabic-Indic three
        assert_eq!(kind('\u{b2}'), Kind::Digit); // superscript two
        assert_eq!(kind(' '), Kind::Space);
        assert_eq!(kind('\u{a0}'), Kind::Space);
        assert_eq!(kind('\u{3000}'), Kind::Space);
        for c in [
            '.',
            '\'',
            '-',
            '~',
            '\u{2019}',
            '\u{2013}',
            '\u{ab}',
            '\u{bf}',
            '\u{b7}',
            '\u{30fb}',
            '\u{3002}',
            '\u{ff01}',
            '\u{1f600}',
            '\u{20ac}',
            '\u{ad}',
            '\u{200b}',
            '\u{feff}',
            '\u{0}',
            '\u{7f}',
            '\u{fe0f}',
            '\u{e000}',
        ] {
            assert_eq!(kind(c), Kind::Symbol, "{c:?}");
        }
        assert_eq!(kind('\u{200d}'), Kind::Joiner);
        // Letters inside symbol blocks stay letters.
        assert_eq!(kind('\u{aa}'), Kind::Letter); // ª
        assert_eq!(kind('\u{2113}'), Kind::Letter); // ℓ
    }

    #[test]
    fn filter_rules() {
        assert_eq!(filter("  mary-jane  o'brien 3rd ", false, Spaces::Collapse), "maryjane obrien rd");
        assert_eq!(filter("123  main st., apt 4", true, Spaces::Collapse), "123 main st apt 4");
        assert_eq!(filter("new york", false, Spaces::Remove), "newyork");
        assert_eq!(filter(" ! ", true, Spaces::Collapse), "");
        // Joiners: kept inside a word, dropped at its edges.
        assert_eq!(filter("a\u{200c}b \u{200d}c\u{200d} d\u{200d}", false, Spaces::Collapse), "a\u{200c}b c d");
        assert_eq!(filter("jane \u{1f469}\u{200d}\u{1f4bb}", false, Spaces::Collapse), "jane");
    }

    #[test]
    fn digits_in_other_scripts() {
        assert_eq!(ascii_digit('7'), Some('7'));
        assert_eq!(ascii_digit('\u{663}'), Some('3'));
        assert_eq!(ascii_digit('\u{6f9}'), Some('9'));
        assert_eq!(ascii_digit('\u{966}'), Some('0'));
        assert_eq!(ascii_digit('\u{ff15}'), Some('5'));
        assert_eq!(ascii_digit('a'), None);
        assert_eq!(ascii_digit('\u{b2}'), None);
    }

    #[test]
    fn calling_codes() {
        assert_eq!(calling_code("1").as_deref(), Some("1"));
        assert_eq!(calling_code(" +44 ").as_deref(), Some("44"));
        assert_eq!(calling_code("0049").as_deref(), Some("49"));
        assert_eq!(calling_code("1234"), None);
        assert_eq!(calling_code("+"), None);
        assert_eq!(calling_code("00"), None);
        assert_eq!(calling_code("1a"), None);
    }

    #[test]
    fn international_number_rules() {
        let f = |raw: &str, cc: Option<&str>| international_digits(raw, cc);
        assert_eq!(f("+1 (650) 555-1212", None).as_deref(), Some("16505551212"));
        assert_eq!(f("tel:+1-650-555-1212", None).as_deref(), Some("16505551212"));
        assert_eq!(f("TEL:0044 20 7031 3000", None).as_deref(), Some("442070313000"));
        assert_eq!(f("(800)555-0100", Some("1")).as_deref(), Some("18005550100"));
        assert_eq!(f("1 800 555 0100", Some("1")).as_deref(), Some("18005550100"));
        assert_eq!(f("16505551212", Some("+1")).as_deref(), Some("16505551212"));
        assert_eq!(f("020 7031 3000", Some("44")).as_deref(), Some("442070313000"));
        assert_eq!(f("0151 2345 6789", Some("49")).as_deref(), Some("4915123456789"));
        assert_eq!(f("06 1234 5678", Some("39")).as_deref(), Some("390612345678"));
        assert_eq!(f("333 123 4567", Some("39")).as_deref(), Some("393331234567"));
        assert_eq!(f("8005550100", None).as_deref(), Some("8005550100"));
        assert_eq!(f("0151 2345 6789", None), None);
        assert_eq!(f("+0151", None), None);
        assert_eq!(f("", None), None);
        assert_eq!(f("no digits", Some("1")), None);
        assert_eq!(f("+1 650 555 1212 ext. 99", None).as_deref(), Some("16505551212"));
        assert_eq!(f("+1 650 555 1212 x99", None).as_deref(), Some("16505551212"));
        assert_eq!(f("+1 650 555 1212#99", None).as_deref(), Some("16505551212"));
        assert_eq!(f("Phone: +1 650 555 1212", None).as_deref(), Some("16505551212"));
        assert_eq!(f("\u{ff0b}\u{ff11}\u{ff16}\u{ff15}\u{ff10}", None).as_deref(), Some("1650"));
        assert_eq!(f("\u{660}\u{665}\u{660}\u{661}", Some("966")).as_deref(), Some("966501"));
        // A bad default calling code is ignored.
        assert_eq!(f("6505551212", Some("abc")).as_deref(), Some("6505551212"));
    }

    #[test]
    fn parenthesised_trunk_zero_after_the_country_code_is_dropped() {
        let f = |raw: &str, cc: Option<&str>| international_digits(raw, cc);
        // E.164 has no national trunk prefix: +44 (0)20 7031 3000 is +44 20 7031 3000.
        assert_eq!(f("+44 (0)20 7031 3000", None).as_deref(), Some("442070313000"));
        assert_eq!(f("+44(0)2070313000", None).as_deref(), Some("442070313000"));
        assert_eq!(f("+44 (0) 20 7031 3000", Some("1")).as_deref(), Some("442070313000"));
        assert_eq!(f("0044 (0)20 7031 3000", None).as_deref(), Some("442070313000"));
        assert_eq!(f("+44 (020) 7031 3000", None).as_deref(), Some("442070313000"));
        assert_eq!(f("+49 (0)30 1234567", None).as_deref(), Some("49301234567"));
        assert_eq!(f("+49 (0)151 2345 6789", None).as_deref(), Some("4915123456789"));
        assert_eq!(f("\u{ff0b}49\u{ff08}0\u{ff09}30 1234567", None).as_deref(), Some("49301234567"));
        // Italy and San Marino: the leading 0 is part of the number and stays.
        assert_eq!(f("+39 06 1234 5678", None).as_deref(), Some("390612345678"));
        assert_eq!(f("+39 (0)6 1234 5678", None).as_deref(), Some("390612345678"));
        assert_eq!(f("+378 (0549) 123456", None).as_deref(), Some("3780549123456"));
        // Only a group right after a 1-3 digit country code, starting with 0.
        assert_eq!(f("+1 (650) 555-1212", None).as_deref(), Some("16505551212"));
        assert_eq!(f("+44 20 (0)7031 3000", None).as_deref(), Some("4420070313000"));
        assert_eq!(f("+(0)44 20 7031 3000", None), None);
        // A national number's trunk zero goes with the default calling code, as before.
        assert_eq!(f("(0)20 7031 3000", Some("44")).as_deref(), Some("442070313000"));
        assert_eq!(f("(06) 1234 5678", Some("39")).as_deref(), Some("390612345678"));
    }

    #[test]
    fn countries() {
        assert_eq!(country_alpha2("us").as_deref(), Some("US"));
        assert_eq!(country_alpha2(" De ").as_deref(), Some("DE"));
        assert_eq!(country_alpha2("U.S.").as_deref(), Some("US"));
        assert_eq!(country_alpha2("U.S.A.").as_deref(), Some("US"));
        assert_eq!(country_alpha2("United States").as_deref(), Some("US"));
        assert_eq!(country_alpha2("united kingdom").as_deref(), Some("GB"));
        assert_eq!(country_alpha2("UK").as_deref(), Some("GB"));
        assert_eq!(country_alpha2("Deutschland").as_deref(), Some("DE"));
        assert_eq!(country_alpha2("ÖSTERREICH").as_deref(), Some("AT"));
        assert_eq!(country_alpha2("New Zealand").as_deref(), Some("NZ"));
        assert_eq!(country_alpha2("Atlantis"), None);
        assert_eq!(country_alpha2(""), None);
        assert_eq!(country_alpha2("1u2s"), None);
        assert_eq!(country_alpha2("x"), None);
        assert_eq!(country_alpha2("\u{e9}\u{e9}"), None);
    }
}
