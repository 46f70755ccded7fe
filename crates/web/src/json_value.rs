//! JSON text read into the core's [`Value`], for a shell that hands the rules
//! strings (`JSON.stringify` in the browser) instead of JavaScript objects.
//!
//! Small on purpose: no `str::parse::<f64>` (its tables are ~9 KB of wasm),
//! no error type beyond `None`, a depth limit instead of recursion without end.
//! Deeper objects and arrays are skipped and read as [`Value::Other`], which
//! the rules refuse or ignore like any value of the wrong type: an input never
//! fails to read because a field nests too deeply.

use alloc::{string::String, vec::Vec};

use tally_core::browser::input::Value;

/// How deep objects and arrays are read; deeper ones are [`Value::Other`].
pub const MAX_DEPTH: u8 = 8;

/// Reads one JSON value (surrounding whitespace allowed); `None` for anything
/// that is not exactly one JSON value. Objects and arrays deeper than
/// [`MAX_DEPTH`] are skipped, without recursion, and read as [`Value::Other`].
///
/// Numbers are correctly rounded when they have at most 15 significant digits
/// and a decimal exponent within ±22 (Clinger's fast path: every amount a shop
/// sends); others are within a few units in the last place, except magnitudes
/// below about 1e-290, which may read as 0 (the power of ten they divide by
/// overflows; no amount, quantity or index is that small, and reading them
/// exactly would cost the package bytes).
///
/// ```
/// use tally_core::browser::input::Value;
/// use tally_web::json_value::parse;
/// let v = parse(r#"{"value": 12.5, "items": [{"id": "A\u00e9"}]}"#).unwrap();
/// assert_eq!(v.get("value"), &Value::Num(12.5));
/// assert_eq!(parse("[1,]"), None);
/// // Read down to MAX_DEPTH; what nests deeper is one `Value::Other`.
/// let deep = "[".repeat(1000) + &"]".repeat(1000);
/// assert_eq!(parse(&format!(r#"{{"a": 1, "b": {deep}}}"#)).unwrap().get("a"), &Value::Num(1.0));
/// ```
pub fn parse(text: &str) -> Option<Value> {
    let mut r = Reader { b: text.as_bytes(), i: 0 };
    let v = r.value(MAX_DEPTH)?;
    r.ws();
    (r.i == r.b.len()).then_some(v)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let hit = self.b.get(self.i) == Some(&c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn word(&mut self, w: &[u8], v: Value) -> Option<Value> {
        let end = self.i + w.len();
        (self.b.get(self.i..end) == Some(w)).then(|| {
            self.i = end;
            v
        })
    }

    fn value(&mut self, depth: u8) -> Option<Value> {
        self.ws();
        match *self.b.get(self.i)? {
            b'{' | b'[' if depth == 0 => self.skip_nested(),
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let k = self.string()?;
                        if !self.eat(b':') {
                            return None;
                        }
                        m.push((k, self.value(depth - 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Some(Value::Map(m))
            }
            b'[' => {
                self.i += 1;
                let mut l = Vec::new();
                if !self.eat(b']') {
                    loop {
                        l.push(self.value(depth - 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Some(Value::List(l))
            }
            b'"' => self.string().map(Value::Str),
            b't' => self.word(b"true", Value::Bool(true)),
            b'f' => self.word(b"false", Value::Bool(false)),
            b'n' => self.word(b"null", Value::Absent),
            _ => self.number().map(Value::Num),
        }
    }

    /// Skips the object or array at `self.i`, however deep, with a counter
    /// instead of recursion (strings are read whole, so their brackets do not count).
    fn skip_nested(&mut self) -> Option<Value> {
        let mut open = 0u32;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => open += 1,
                b'}' | b']' => {
                    open -= 1;
                    if open == 0 {
                        self.i += 1;
                        return Some(Value::Other);
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let d = char::from(*self.b.get(self.i)?).to_digit(16)?;
            n = n * 16 + d;
            self.i += 1;
        }
        Some(n)
    }

    /// A string at `self.i` (which must be `"`).
    fn string(&mut self) -> Option<String> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut s = String::new();
        loop {
            let start = self.i;
            while self.b.get(self.i).is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            s.push_str(core::str::from_utf8(self.b.get(start..self.i)?).ok()?);
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(s);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    self.i += 2;
                    s.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            // A lone surrogate (which JSON.stringify escapes) becomes U+FFFD.
                            char::from_u32(cp).unwrap_or('\u{fffd}')
                        }
                        _ => return None,
                    });
                }
                // A raw control character.
                _ => return None,
            }
        }
    }

    fn digits(&mut self, m: &mut u64, e: &mut i32, fraction: bool) -> usize {
        let start = self.i;
        while let Some(d) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
            if *m < 100_000_000_000_000_000 {
                *m = *m * 10 + u64::from(d - b'0');
                *e -= i32::from(fraction);
            } else {
                *e += i32::from(!fraction);
            }
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<f64> {
        let neg = self.b.get(self.i) == Some(&b'-');
        self.i += usize::from(neg);
        let (mut m, mut e) = (0u64, 0i32);
        let lead = self.b.get(self.i).copied();
        let n = self.digits(&mut m, &mut e, false);
        if n == 0 || (lead == Some(b'0') && n > 1) {
            return None;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits(&mut m, &mut e, true) == 0 {
                return None;
            }
        }
        if self.b.get(self.i).is_some_and(|c| *c == b'e' || *c == b'E') {
            self.i += 1;
            let minus = self.b.get(self.i) == Some(&b'-');
            self.i += usize::from(minus || self.b.get(self.i) == Some(&b'+'));
            let (mut x, mut ignored) = (0u64, 0i32);
            if self.digits(&mut x, &mut ignored, false) == 0 {
                return None;
            }
            let x = i32::try_from(x.min(1000)).unwrap_or(1000);
            e += if minus { -x } else { x };
        }
        let mut scale = 1.0f64;
        for _ in 0..e.unsigned_abs().min(400) {
            scale *= 10.0;
        }
        let f = if e < 0 { m as f64 / scale } else { m as f64 * scale };
        Some(if neg { -f } else { f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{borrow::ToOwned, vec};

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    #[test]
    fn reads_what_json_stringify_writes() {
        let v =
            parse(r#" {"a":[1,-2.5,3e2,0.1,1E-2,true,false,null],"b":{"c":"x\"\\\/\n\u00e9\ud83d\ude00"}} "#).unwrap();
        let a = match v.get("a") {
            Value::List(l) => l.clone(),
            _ => panic!("a"),
        };
        assert_eq!(
            a,
            vec![
                Value::Num(1.0),
                Value::Num(-2.5),
                Value::Num(300.0),
                Value::Num(0.1),
                Value::Num(0.01),
                Value::Bool(true),
                Value::Bool(false),
                Value::Absent
            ]
        );
        assert_eq!(v.get("b").get("c"), &s("x\"\\/\né😀"));
        assert_eq!(parse("{}"), Some(Value::Map(vec![])));
        assert_eq!(parse("[]"), Some(Value::List(vec![])));
        assert_eq!(parse(r#""\ud800""#), Some(s("\u{fffd}")));
    }

    #[test]
    fn tiny_magnitudes_read_as_documented() {
        // Within a few units in the last place, as for every exponent past ±22.
        for (t, want) in [("1.5e-290", 1.5e-290), ("-2e-300", -2e-300), ("7e300", 7e300)] {
            let Some(Value::Num(f)) = parse(t) else { panic!("{t}") };
            assert!((f - want).abs() <= 1e-14 * want.abs(), "{t} read as {f}");
        }
        assert_eq!(parse("3.721340815080242e-309"), Some(Value::Num(0.0)), "documented: may read as 0");
    }

    #[test]
    fn amounts_are_correctly_rounded() {
        for t in ["12.5", "19.99", "0.3", "1234567.891", "99999999.99", "0.000001", "42"] {
            let want: f64 = t.parse().unwrap();
            assert_eq!(parse(t), Some(Value::Num(want)), "{t}");
        }
    }

    #[test]
    fn refuses_what_is_not_one_json_value() {
        for bad in [
            "",
            "[1,]",
            "{\"a\":}",
            "{\"a\" 1}",
            "{a:1}",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"a\nb\"",
            "[1]x",
            "{\"a\":1,}",
            "\"\\ud83d\\u0041\"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_and_what_is_deeper_reads_as_other() {
        let n = usize::from(MAX_DEPTH);
        let ok = "[".repeat(n) + &"]".repeat(n);
        let mut v = parse(&ok).unwrap();
        for _ in 1..n {
            let Value::List(mut l) = v else { panic!("{v:?}") };
            v = l.pop().unwrap();
        }
        assert_eq!(v, Value::List(vec![]));
        // 10,000 levels: no recursion, no stack overflow; the rest of the input still reads.
        let deep = "[".repeat(10_000) + r#""]]\"{""# + &"]".repeat(10_000);
        // Read down to the depth limit, then one `Other` for the rest.
        fn innermost(v: &Value) -> (usize, &Value) {
            match v {
                Value::List(l) if l.len() == 1 => {
                    let (n, w) = innermost(&l[0]);
                    (n + 1, w)
                }
                w => (0, w),
            }
        }
        let v = parse(&format!(r#"{{"deep": {deep}, "after": "ok", "x": [1, {{"y": [[2]]}}]}}"#)).unwrap();
        assert_eq!(innermost(v.get("deep")), (n - 1, &Value::Other));
        assert_eq!(v.get("after"), &Value::Str("ok".into()));
        // A string inside the skipped part is not taken for brackets, and the skip ends where the value does.
        let Some(Value::List(l)) = parse(&format!("[{deep}, 3]")) else { panic!() };
        assert_eq!((innermost(&l[0]), &l[1]), ((n - 1, &Value::Other), &Value::Num(3.0)));
        // Still one value: garbage after a skipped part is refused.
        assert_eq!(parse(&format!("{deep} x")), None);
    }

    mod generated {
        use super::super::*;
        use alloc::string::ToString;
        use proptest::prelude::*;
        use serde_json::Value as Json;

        /// JSON as `JSON.stringify` writes it, nested less deep than [`MAX_DEPTH`].
        fn json() -> impl Strategy<Value = Json> {
            let leaf = prop_oneof![
                Just(Json::Null),
                any::<bool>().prop_map(Json::Bool),
                any::<i32>().prop_map(Json::from),
                (-1e15f64..1e15).prop_map(Json::from),
                // Any finite number but the tiny ones `parse` documents as possibly 0.
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite() && (*f == 0.0 || f.abs() >= 1e-290))
                    .prop_map(Json::from),
                any::<String>().prop_map(Json::String),
            ];
            leaf.prop_recursive(6, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                    prop::collection::vec((any::<String>(), inner), 0..6)
                        .prop_map(|kv| Json::Object(kv.into_iter().collect())),
                ]
            })
        }

        /// `ours` is what serde_json read from the same text; numbers within a
        /// few units in the last place (the reader's documented precision).
        fn same(ours: &Value, theirs: &Json) -> bool {
            match (ours, theirs) {
                (Value::Absent, Json::Null) => true,
                (Value::Bool(a), Json::Bool(b)) => a == b,
                (Value::Num(a), Json::Number(b)) => {
                    let b = b.as_f64().unwrap_or(f64::NAN);
                    a == &b || (a - b).abs() <= 1e-14 * b.abs()
                }
                (Value::Str(a), Json::String(b)) => a == b,
                (Value::List(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
                (Value::Map(a), Json::Object(b)) => a.len() == b.len() && b.iter().all(|(k, v)| same(ours.get(k), v)),
                _ => false,
            }
        }

        proptest! {
            #[test]
            fn reads_every_value_serde_json_reads_the_same(v in json()) {
                let text = serde_json::to_string(&v).unwrap();
                let ours = parse(&text);
                prop_assert!(ours.as_ref().is_some_and(|o| same(o, &v)), "{text} read as {ours:?}");
                // Pretty-printed (whitespace between every token) reads the same.
                let pretty = serde_json::to_string_pretty(&v).unwrap();
                prop_assert_eq!(parse(&pretty), ours);
            }

            /// Every amount a shop sends (up to 15 significant digits) reads back exactly.
            #[test]
            fn amounts_read_back_exactly(cents in 0u64..999_999_999_999_999, scale in 0u32..6, negative: bool) {
                let a = cents as f64 / 10f64.powi(scale as i32) * if negative { -1.0 } else { 1.0 };
                let text = serde_json::to_string(&a).unwrap();
                prop_assert_eq!(parse(&text), Some(Value::Num(a)), "{}", text);
            }

            /// Broken input (a valid text cut short or with a byte changed) never panics,
            /// and what it accepts is JSON serde_json accepts too.
            #[test]
            fn broken_input_never_panics(v in json(), cut in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), c in any::<char>()) {
                let text = serde_json::to_string(&v).unwrap();
                let ends: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
                let short = &text[..ends[cut.index(ends.len())]];
                let mut changed = text.clone();
                let i = ends[at.index(ends.len())];
                changed.insert(i, c);
                for t in [short, changed.as_str()] {
                    if parse(t).is_some() {
                        // Lone surrogates and out-of-range numbers are read leniently, on purpose.
                        let lenient = t.contains("\\u") || t.contains('e') || t.contains('E');
                        prop_assert!(lenient || serde_json::from_str::<Json>(t).is_ok(), "accepted {:?}", t);
                    }
                }
            }

            #[test]
            fn any_text_never_panics(t in any::<String>()) {
                let _ = parse(&t).map(|v| v.get("a").to_owned());
                let _ = parse(&t.to_string());
            }
        }
    }
}
