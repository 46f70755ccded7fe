//! Small string measures shared by the validators, written so the browser's
//! wasm carries no more of `core::str` than it needs.

/// The number of Unicode scalar values in `s` (what `s.chars().count()`
/// returns), counted as the bytes that do not continue a UTF-8 sequence: a
/// loop of a few instructions where `Chars::count` ships a kilobyte of SWAR
/// code to the browser.
pub(crate) fn char_count(s: &str) -> usize {
    s.bytes().filter(|b| b & 0xC0 != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::char_count;

    #[test]
    fn counts_scalar_values_like_chars_count() {
        for s in ["", "abc", "Zoë", "日本語テキスト", "🛒🛒 cart", "a\u{0301}"] {
            assert_eq!(char_count(s), s.chars().count(), "{s}");
        }
    }
}
