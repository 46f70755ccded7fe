//! Exact monetary amounts.

use crate::Currency;
use crate::error::{Error, Result};
use crate::prelude::*;

/// Fixed-point scale: amounts are whole millionths of a currency unit.
const SCALE: i64 = 1_000_000;
/// The largest magnitude accepted: a trillion units keeps every sum of
/// 10 million such amounts inside `i64`.
const MAX_UNITS: i64 = 1_000_000_000_000;

/// A monetary amount held exactly, as an integer number of millionths.
///
/// Floats drift when 10,000 orders are summed; `Amount` does not. Values that
/// come in as JavaScript numbers are rounded once, to six decimals, at the
/// edge; every sum after that is exact.
///
/// ```
/// use tally_core::Amount;
/// let total: Amount = (0..10_000).map(|_| Amount::from_f64(0.1).unwrap()).sum();
/// assert_eq!(total, Amount::parse("1000").unwrap());
/// assert_eq!(Amount::parse("30.03").unwrap().to_string(), "30.03");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// From whole millionths.
    pub fn from_micros(micros: i64) -> Result<Amount> {
        if micros.unsigned_abs() > (MAX_UNITS * SCALE) as u64 {
            return Err(Error::Invalid { field: "value", reason: "amount out of range" });
        }
        Ok(Amount(micros))
    }

    /// From minor units with the given number of decimals (cents: 2).
    pub fn from_minor(minor: i64, decimals: u32) -> Result<Amount> {
        if decimals > 6 {
            return Err(Error::Invalid { field: "value", reason: "at most 6 decimals" });
        }
        let factor = 10i64.pow(6 - decimals);
        minor
            .checked_mul(factor)
            .ok_or(Error::Invalid { field: "value", reason: "amount out of range" })
            .and_then(Amount::from_micros)
    }

    /// From a float (a JavaScript number), rounded half away from zero to six decimals.
    pub fn from_f64(v: f64) -> Result<Amount> {
        if !v.is_finite() {
            return Err(Error::Invalid { field: "value", reason: "must be a finite number" });
        }
        if v.abs() > MAX_UNITS as f64 {
            return Err(Error::Invalid { field: "value", reason: "amount out of range" });
        }
        Amount::from_micros(round_half_away(v * SCALE as f64))
    }

    /// Parses a plain decimal string (`"30.03"`, `"-5"`, `"0.000001"`) exactly.
    pub fn parse(raw: &str) -> Result<Amount> {
        let bad = Error::Invalid { field: "value", reason: "expected a decimal number such as 12.50" };
        let s = raw.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 6
            || int.len() > 13
        {
            return Err(bad);
        }
        let mut micros: i64 = 0;
        for b in int.bytes() {
            micros = micros * 10 + i64::from(b - b'0');
        }
        micros *= SCALE;
        let mut f: i64 = 0;
        for b in frac.bytes() {
            f = f * 10 + i64::from(b - b'0');
        }
        f *= 10i64.pow(6 - frac.len() as u32);
        let v = micros + f;
        Amount::from_micros(if neg { -v } else { v })
    }

    /// Whole millionths.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// As a float, for JSON number fields of destination APIs.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    /// True when below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Exact sum, `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// Exact difference, `None` on overflow.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Exact product with a quantity, `None` on overflow.
    pub fn checked_mul_qty(self, qty: u32) -> Option<Amount> {
        self.0.checked_mul(i64::from(qty)).map(Amount)
    }

    /// Appends the shortest exact decimal form (`30.03`, `5`, `-0.5`).
    pub fn write_decimal(self, out: &mut String) {
        self.write_fixed(0, out);
    }

    /// Appends the exact decimal form with at least `min_decimals` decimals
    /// (at most 6): `158.9` with 2 is `158.90`, `5` with 0 is `5`. Digits the
    /// amount has beyond `min_decimals` are kept, never rounded away.
    ///
    /// ```
    /// use tally_core::Amount;
    /// let mut s = String::new();
    /// Amount::parse("158.9").unwrap().write_fixed(2, &mut s);
    /// assert_eq!(s, "158.90");
    /// ```
    pub fn write_fixed(self, min_decimals: u32, out: &mut String) {
        if self.0 < 0 {
            out.push('-');
        }
        let abs = self.0.unsigned_abs();
        crate::json::push_u64(out, abs / SCALE as u64);
        let mut frac = abs % SCALE as u64;
        let mut digits = 6;
        while digits > min_decimals.min(6) && frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        if digits > 0 {
            out.push('.');
            let mut s = String::new();
            crate::json::push_u64(&mut s, frac);
            for _ in s.len()..digits as usize {
                out.push('0');
            }
            out.push_str(&s);
        }
    }

    /// The amount as money in `currency`: with the currency's minor unit
    /// (`158.90 EUR`, `1200 JPY`, `1.250 KWD`), exact, followed by the code.
    ///
    /// ```
    /// use tally_core::{Amount, Currency};
    /// let eur = Currency::parse("EUR").unwrap();
    /// assert_eq!(Amount::parse("10").unwrap().to_money(eur), "10.00 EUR");
    /// assert_eq!(Amount::parse("1200").unwrap().to_money(Currency::parse("JPY").unwrap()), "1200 JPY");
    /// ```
    pub fn to_money(self, currency: Currency) -> String {
        let mut s = String::new();
        self.write_fixed(u32::from(currency.minor_units().unwrap_or(0)), &mut s);
        s.push(' ');
        s.push_str(currency.as_str());
        s
    }

    /// The amount in the currency's minor units (cents for `EUR`, yen for
    /// `JPY`, fils for `KWD`; whole units for codes without a minor unit, as
    /// [`Amount::to_money`] writes them), rounded half away from zero. Integer
    /// arithmetic only: the production counters sum these exactly.
    ///
    /// ```
    /// use tally_core::{Amount, Currency};
    /// let eur = Currency::parse("EUR").unwrap();
    /// assert_eq!(Amount::parse("30.03").unwrap().to_minor_units(eur), 3003);
    /// assert_eq!(Amount::parse("0.005").unwrap().to_minor_units(eur), 1);
    /// assert_eq!(Amount::parse("-0.005").unwrap().to_minor_units(eur), -1);
    /// assert_eq!(Amount::parse("1200").unwrap().to_minor_units(Currency::parse("JPY").unwrap()), 1200);
    /// assert_eq!(Amount::parse("1.2345").unwrap().to_minor_units(Currency::parse("KWD").unwrap()), 1235);
    /// ```
    pub fn to_minor_units(self, currency: Currency) -> i64 {
        let decimals = u32::from(currency.minor_units().unwrap_or(0)).min(6);
        let factor = 10i64.pow(6 - decimals);
        let (whole, rest) = (self.0 / factor, self.0 % factor);
        if rest.unsigned_abs() * 2 >= factor.unsigned_abs() { whole + self.0.signum() } else { whole }
    }

    /// The percentage `self` is of `base` in basis points (1/100 of a percent), if `base` is non-zero.
    pub fn ratio_bp(self, base: Amount) -> Option<i64> {
        if base.0 == 0 {
            return None;
        }
        Some(((self.0 as i128) * 10_000 / base.0 as i128) as i64)
    }
}

impl core::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        Amount(iter.map(|a| a.0).sum())
    }
}

impl core::fmt::Display for Amount {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = String::new();
        self.write_decimal(&mut s);
        f.write_str(&s)
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a number or a decimal string")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> core::result::Result<Amount, E> {
                Amount::from_f64(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> core::result::Result<Amount, E> {
                v.checked_mul(SCALE)
                    .ok_or_else(|| E::custom("amount out of range"))
                    .and_then(|m| Amount::from_micros(m).map_err(E::custom))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> core::result::Result<Amount, E> {
                i64::try_from(v).map_err(|_| E::custom("amount out of range")).and_then(|v| self.visit_i64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> core::result::Result<Amount, E> {
                Amount::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `f64::round` for values within ±2^63, without `std` (the browser build has no libm):
/// rounds half away from zero. The subtraction is exact: the truncated part and
/// `x` share an exponent range where every integer is representable.
fn round_half_away(x: f64) -> i64 {
    let whole = x as i64;
    let frac = x - whole as f64;
    if frac >= 0.5 {
        whole + 1
    } else if frac <= -0.5 {
        whole - 1
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_sums_where_floats_drift() {
        let float_sum: f64 = (0..10_000).map(|_| 19.99f64).sum();
        assert_ne!(float_sum, 199_900.0, "floats drift; the test input must show it");
        let exact: Amount = (0..10_000).map(|_| Amount::from_f64(19.99).unwrap()).sum();
        assert_eq!(exact, Amount::parse("199900").unwrap());
    }

    #[test]
    fn decimal_round_trip() {
        for s in ["0", "5", "30.03", "-0.5", "0.000001", "1234567.89"] {
            assert_eq!(Amount::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Amount::parse("1.50").unwrap().to_string(), "1.5");
        assert_eq!(Amount::from_minor(1999, 2).unwrap().to_string(), "19.99");
    }

    #[test]
    fn money_has_the_currency_minor_unit_and_stays_exact() {
        let cur = |c: &str| Currency::parse(c).unwrap();
        let cases = [
            ("10", "EUR", "10.00 EUR"),
            ("158.9", "EUR", "158.90 EUR"),
            ("-0.5", "USD", "-0.50 USD"),
            ("0", "EUR", "0.00 EUR"),
            ("1200", "JPY", "1200 JPY"),
            ("1.25", "KWD", "1.250 KWD"),
            ("2.5", "CLF", "2.5000 CLF"),
            ("10.005", "EUR", "10.005 EUR"),
            ("0.000001", "USD", "0.000001 USD"),
            ("12.5", "JPY", "12.5 JPY"),
            ("3.1", "XOF", "3.1 XOF"),
        ];
        for (amount, currency, want) in cases {
            assert_eq!(Amount::parse(amount).unwrap().to_money(cur(currency)), want, "{amount} {currency}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "-", ".", "1.2.3", "1e5", "abc", "1.0000001", "99999999999999"] {
            assert!(Amount::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Amount::from_f64(f64::NAN).is_err());
        assert!(Amount::from_f64(f64::INFINITY).is_err());
        assert!(Amount::from_f64(1e300).is_err());
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        let a: Amount = serde_json::from_str("30.03").unwrap();
        let b: Amount = serde_json::from_str("\"30.03\"").unwrap();
        let c: Amount = serde_json::from_str("30").unwrap();
        assert_eq!(a, b);
        assert_eq!(c.to_string(), "30");
        assert_eq!(serde_json::to_string(&a).unwrap(), "30.03");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Amount::parse(&s);
        }

        /// The no-std rounding used by `from_f64` agrees with `f64::round` over
        /// the whole accepted range, halves and negative values included.
        #[test]
        fn rounding_matches_std(v in -1e18f64..1e18f64, half in -1_000_000_000_000i64..1_000_000_000_000i64) {
            prop_assert_eq!(round_half_away(v), v.round() as i64);
            let h = half as f64 + 0.5;
            prop_assert_eq!(round_half_away(h), h.round() as i64);
            prop_assert_eq!(round_half_away(-h), (-h).round() as i64);
        }

        #[test]
        fn cents_round_trip_through_f64(c in -10_000_000_000i64..10_000_000_000i64) {
            let a = Amount::from_minor(c, 2).unwrap();
            prop_assert_eq!(Amount::from_f64(a.to_f64()).unwrap(), a);
        }
    }
}
