//! ISO 4217 currency codes.

use crate::error::{Error, Result};
use crate::prelude::*;

/// Active ISO 4217 alphabetic codes that are money (2026 list), three
/// letters each, sorted: every code but [`NOT_MONEY`].
const ISO_4217: &str = "AEDAFNALLAMDAOAARSAUDAWGAZNBAMBBDBDTBGNBHDBIFBMDBNDBOBBOVBRLBSDBTNBWPBYNBZDCADCDFCHECHFCHWCLFCLPCNYCOPCOUCRCCUPCVECZKDJFDKKDOPDZDEGPERNETBEURFJDFKPGBPGELGHSGIPGMDGNFGTQGYDHKDHNLHTGHUFIDRILSINRIQDIRRISKJMDJODJPYKESKGSKHRKMFKPWKRWKWDKYDKZTLAKLBPLKRLRDLSLLYDMADMDLMGAMKDMMKMNTMOPMRUMURMVRMWKMXNMXVMYRMZNNADNGNNIONOKNPRNZDOMRPABPENPGKPHPPKRPLNPYGQARRONRSDRUBRWFSARSBDSCRSDGSEKSGDSHPSLESOSSRDSSPSTNSVCSYPSZLTHBTJSTMTTNDTOPTRYTTDTWDTZSUAHUGXUSDUSNUYIUYUUYWUZSVEDVESVNDVUVWSTXAFXCDXCGXOFXPFYERZARZMWZWG";

/// The active ISO 4217 codes that are not money (see [`Currency`]), sorted:
/// refused with their own reason.
const NOT_MONEY: &str = "XAGXAUXBAXBBXBCXBDXDRXPDXPTXSUXTSXUAXXX";

/// The codes whose minor unit is not 2 decimals, each followed by its number of
/// decimals, or `-` where ISO 4217 lists none ("N.A.": precious metals, funds,
/// testing codes). From the ISO 4217 list kept by its maintenance agency, SIX
/// (<https://www.six-group.com/en/products-services/financial-information/data-standards.html>).
const NOT_TWO_DECIMALS: &str = "BHD3BIF0CLF4CLP0DJF0GNF0IQD3ISK0JOD3JPY0KMF0KRW0KWD3LYD3OMR3PYG0RWF0TND3UGX0UYI0UYW4VND0VUV0XAF0XAG-XAU-XBA-XBB-XBC-XBD-XDR-XOF0XPD-XPF0XPT-XSU-XTS-XUA-XXX-";

/// A validated ISO 4217 currency code, stored upper case (`USD`).
///
/// The ISO 4217 codes that are not money a sale can be paid in are refused.
/// They are exactly the codes for which ISO 4217 lists no minor unit ("N.A."):
///
/// * `XXX`, "no currency involved", and `XTS`, "reserved for testing";
/// * the precious metals, priced per troy ounce: `XAU` gold, `XAG` silver,
///   `XPD` palladium, `XPT` platinum;
/// * units of account that no buyer pays in: `XDR` (the IMF's Special Drawing
///   Right), `XSU` (SUCRE), `XUA` (the African Development Bank's unit) and
///   the European bond-market units `XBA`, `XBB`, `XBC`, `XBD`.
///
/// None of them is a currency the ad platforms take for a conversion value:
/// Google Ads (<https://developers.google.com/google-ads/api/docs/reference/data/codes-formats#currency-codes>),
/// GA4 (<https://support.google.com/analytics/answer/9796179>) and Meta
/// (<https://developers.facebook.com/docs/marketing-api/currencies>) list
/// circulating currencies only, so a value in them would be dropped or
/// mis-converted there, and they mean nothing in a shop's books. The X-codes
/// that *are* circulating currencies stay valid: `XAF` and `XOF` (CFA francs),
/// `XCD` (East Caribbean dollar), `XCG` (Caribbean guilder), `XPF` (CFP franc).
///
/// Currencies are never converted into each other anywhere in Tally: sums and
/// reconciliation reports are kept per currency.
///
/// ```
/// use tally_core::Currency;
/// let eur = Currency::parse("eur").unwrap();
/// assert_eq!(eur.as_str(), "EUR");
/// assert!(Currency::parse("EURO").is_err());
/// // "No currency" is a valid ISO 4217 code, but not money.
/// assert!(Currency::parse("XXX").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code, accepting any letter case and surrounding spaces.
    /// Unknown codes and codes that are not money (`XXX`, `XTS`, `XAU`, `XDR`,
    /// …) are refused with [`Error::Invalid`] naming the field `currency`.
    pub fn parse(raw: &str) -> Result<Currency> {
        let t = raw.trim().as_bytes();
        if t.is_empty() {
            return Err(Error::Missing { field: "currency" });
        }
        if t.len() != 3 || !t.iter().all(u8::is_ascii_alphabetic) {
            return Err(Error::Invalid { field: "currency", reason: "expected a 3-letter ISO 4217 code such as USD" });
        }
        let code = [t[0].to_ascii_uppercase(), t[1].to_ascii_uppercase(), t[2].to_ascii_uppercase()];
        let listed = |list: &str| list.as_bytes().chunks_exact(3).any(|c| c == code);
        if !listed(ISO_4217) {
            let reason = if listed(NOT_MONEY) {
                "not money (XXX, XTS, metals, units of account): send the sale's currency"
            } else {
                "not an ISO 4217 currency code"
            };
            return Err(Error::Invalid { field: "currency", reason });
        }
        Ok(Currency(code))
    }

    /// The upper-case code.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII letters by construction.
        core::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// The number of decimals of the currency's minor unit per ISO 4217: 2 for
    /// `EUR` (cents), 0 for `JPY`, 3 for `KWD`. ISO 4217 lists none for the
    /// codes [`Currency::parse`] refuses as not money, so it is `Some` for
    /// every parsed currency.
    ///
    /// ```
    /// use tally_core::Currency;
    /// assert_eq!(Currency::parse("EUR").unwrap().minor_units(), Some(2));
    /// assert_eq!(Currency::parse("JPY").unwrap().minor_units(), Some(0));
    /// assert_eq!(Currency::parse("KWD").unwrap().minor_units(), Some(3));
    /// assert_eq!(Currency::parse("XOF").unwrap().minor_units(), Some(0));
    /// ```
    pub fn minor_units(&self) -> Option<u8> {
        match NOT_TWO_DECIMALS.as_bytes().chunks_exact(4).find(|c| c[..3] == self.0) {
            None => Some(2),
            Some(c) if c[3].is_ascii_digit() => Some(c[3] - b'0'),
            Some(_) => None,
        }
    }

    /// The lower-case code (Meta's SDKs send currency lower-cased).
    pub fn to_lowercase(&self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

impl core::fmt::Debug for Currency {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Display for Currency {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_listed_codes(s in ".{0,8}") {
            if let Ok(c) = Currency::parse(&s) {
                prop_assert_eq!(c.as_str().len(), 3);
                prop_assert!(ISO_4217.as_bytes().chunks(3).any(|k| k == c.as_str().as_bytes()));
            }
        }
    }

    #[test]
    fn list_is_sorted_and_whole() {
        let codes: Vec<&[u8]> = ISO_4217.as_bytes().chunks(3).collect();
        assert!(codes.iter().all(|c| c.len() == 3));
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "list must stay sorted");
        assert!(codes.len() > 160);
        let not_money: Vec<&[u8]> = NOT_MONEY.as_bytes().chunks(3).collect();
        assert!(not_money.windows(2).all(|w| w[0] < w[1]), "list must stay sorted");
        assert!(not_money.iter().all(|c| !codes.contains(c)), "a code is either money or not");
    }

    #[test]
    fn parses_and_upper_cases() {
        assert_eq!(Currency::parse(" usd ").unwrap().as_str(), "USD");
        assert_eq!(Currency::parse("JPY").unwrap().to_lowercase(), "jpy");
    }

    #[test]
    fn minor_unit_table_is_sorted_and_lists_only_known_codes() {
        let rows: Vec<&[u8]> = NOT_TWO_DECIMALS.as_bytes().chunks(4).collect();
        assert!(rows.iter().all(|r| r.len() == 4 && (r[3].is_ascii_digit() || r[3] == b'-')));
        assert!(rows.windows(2).all(|w| w[0][..3] < w[1][..3]), "table must stay sorted");
        for r in &rows {
            let listed = |list: &str| list.as_bytes().chunks(3).any(|c| c == &r[..3]);
            assert!(listed(ISO_4217) || listed(NOT_MONEY), "{:?} is not in the ISO 4217 list", &r[..3]);
        }
        for (code, units) in [("USD", Some(2)), ("CLP", Some(0)), ("CLF", Some(4)), ("TND", Some(3)), ("XPF", Some(0))]
        {
            assert_eq!(Currency::parse(code).unwrap().minor_units(), units, "{code}");
        }
    }

    #[test]
    fn codes_that_are_not_money_are_refused_naming_the_field() {
        for code in ["XXX", "XTS", "XAU", "XAG", "XPD", "XPT", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD", " xxx "]
        {
            let err = Currency::parse(code).unwrap_err();
            assert_eq!(err.field(), "currency", "{code}");
            assert!(err.to_string().starts_with("currency is invalid: not money"), "{code}: {err}");
        }
        // The X-codes that are circulating currencies stay valid.
        for code in ["XAF", "XOF", "XCD", "XCG", "XPF"] {
            assert!(Currency::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn the_codes_without_a_minor_unit_are_the_ones_documented_as_not_money() {
        let no_minor_unit: Vec<&str> = NOT_TWO_DECIMALS
            .as_bytes()
            .chunks(4)
            .filter(|r| r[3] == b'-')
            .map(|r| core::str::from_utf8(&r[..3]).unwrap())
            .collect();
        assert_eq!(
            no_minor_unit,
            ["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"]
        );
        let not_money: Vec<&str> = NOT_MONEY.as_bytes().chunks(3).map(|c| core::str::from_utf8(c).unwrap()).collect();
        assert_eq!(not_money, no_minor_unit);
    }

    #[test]
    fn rejects_bad_codes() {
        for bad in ["", "US", "USDT", "U1D", "ABC", "€", "usd\u{0}"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Currency::parse(""), Err(Error::Missing { field: "currency" }));
    }
}
