//! Reading cookie headers (`Cookie:` on the server, `document.cookie` in the browser).

use crate::prelude::*;

/// All values of cookie `name` in a cookie string, trimmed, in order.
/// Empty values are skipped; nothing here can fail.
pub fn values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim() == name && !v.is_empty()).then_some(v)
    })
}

/// The first value of cookie `name`.
pub fn get<'a>(header: &'a str, name: &'a str) -> Option<&'a str> {
    values(header, name).next()
}

/// Decodes `%XX` escapes (what `encodeURIComponent` writes). Returns `None`
/// for malformed escapes or invalid UTF-8, so a bad cookie is skipped rather than fatal.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

/// Decodes a query-string component (`application/x-www-form-urlencoded`):
/// `+` is a space, then `%XX` escapes as [`percent_decode`].
pub fn form_decode(s: &str) -> Option<String> {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    // Byte searches: `str::contains(char)` would pull in the substring searcher.
    if !(b.contains(&b'%') || plus_is_space && b.contains(&b'+')) {
        return Some(s.to_owned());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a value for a cookie or a URL component, like `encodeURIComponent`.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_values() {
        let h = " a=1; b = two ;c=; a=3;junk";
        assert_eq!(values(h, "a").collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(get(h, "b"), Some("two"));
        assert_eq!(get(h, "c"), None);
        assert_eq!(get(h, "junk"), None);
    }

    #[test]
    fn percent_round_trip() {
        for s in ["plain", "a b+c/é", "100%"] {
            assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("a+b%2B"), Some("a+b+".to_owned()), "a cookie keeps its plus signs");
        assert_eq!(form_decode("a+b%2B"), Some("a b+".to_owned()), "a query's plus is a space, an escaped one a plus");
        assert_eq!(form_decode("plain"), Some("plain".to_owned()));
        assert_eq!(form_decode("x+%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    proptest! {
        #[test]
        fn never_panics(h in ".{0,120}", n in "[a-z_]{1,6}") {
            let _ = values(&h, &n).count();
            let _ = percent_decode(&h);
        }
    }
}
