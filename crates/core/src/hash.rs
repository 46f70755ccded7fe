//! SHA-256 hashing of normalised values (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>).
//!
//! Every destination wants the SHA-256 of the UTF-8 bytes of the normalised
//! value, as 64 lowercase hex characters. Values that already look like a
//! SHA-256 digest are passed through (lowercased) instead of being hashed twice.
//!
//! Unicode: values are hashed in NFC form, so composed (`é`, U+00E9) and
//! decomposed (`e` + U+0301) input give the same digest. With the `unicode`
//! feature (on by default) [`nfc`] normalises with `unicode-normalization`.
//! Without it (the browser build, which saves the tables) [`nfc`] returns its
//! input unchanged: the caller must pass NFC text, which the browser gets for
//! free from `String.prototype.normalize('NFC')` before handing values to the core.

use crate::prelude::*;
use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of the SHA-256 of the UTF-8 bytes of `s`, exactly as given (no trimming, no NFC).
///
/// ```
/// assert_eq!(
///     tally_core::hash::sha256_hex("test@example.com"),
///     "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
/// );
/// ```
pub fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// True when `s`, trimmed, is 64 hex digits (either case): a value the caller already hashed.
///
/// Such values are passed through, lowercased, rather than hashed again
/// (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>: `^[0-9a-fA-F]{64}$` after trimming).
pub fn is_prehashed(s: &str) -> bool {
    let t = s.trim();
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The Unicode NFC form of `s`.
///
/// With the `unicode` feature this is real canonical composition.
#[cfg(feature = "unicode")]
pub fn nfc(s: &str) -> String {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        return s.to_owned();
    }
    s.nfc().collect()
}

/// The Unicode NFC form of `s`.
///
/// Built without the `unicode` feature, this returns `s` unchanged: the input
/// is assumed to be NFC already (the browser normalises with
/// `String.prototype.normalize('NFC')` before calling the core).
#[cfg(not(feature = "unicode"))]
pub fn nfc(s: &str) -> String {
    s.to_owned()
}

/// Hashes a value that is already normalised for its destination.
///
/// If `s` is already a SHA-256 digest ([`is_prehashed`]) it is returned
/// trimmed and lowercased; otherwise the result is `sha256_hex(nfc(s))`.
///
/// ```
/// use tally_core::hash::hash_normalized;
/// assert_eq!(
///     hash_normalized("john"),
///     "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"
/// );
/// // Already hashed: passed through, lowercased.
/// let h = "96D9632F363564CC3032521409CF22A852F2032EEC099ED5967C0D000CEC607A";
/// assert_eq!(hash_normalized(h), h.to_ascii_lowercase());
/// ```
pub fn hash_normalized(s: &str) -> String {
    if is_prehashed(s) {
        return s.trim().to_ascii_lowercase();
    }
    sha256_hex(&nfc(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_lower_hex64(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn sha256_known_values() {
        // https://github.com/trackbridge/sdk
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("jane@example.com"), "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d");
        assert_eq!(sha256_hex("caf\u{e9}"), "850f7dc43910ff890f8879c0ed26fe697c93a067ad93a7d50f466a7028a9bf4e");
        assert_eq!(sha256_hex("+15551234567"), "8a59780bb8cd2ba022bfa5ba2ea3b6e07af17a7d8b30c1f9b3390e36f69019e4");
    }

    #[test]
    fn sha256_hex_does_not_normalise() {
        // The raw hasher hashes the bytes it is given: NFD differs from NFC.
        assert_ne!(sha256_hex("cafe\u{301}"), sha256_hex("caf\u{e9}"));
    }

    #[test]
    fn prehashed_detection() {
        let h = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        assert!(is_prehashed(h));
        assert!(is_prehashed(&h.to_ascii_uppercase()));
        assert!(is_prehashed(&[" ", h, "\n"].concat()));
        assert!(!is_prehashed(&h[..63]));
        assert!(!is_prehashed(&[h, "0"].concat()));
        assert!(!is_prehashed(&h.replace('f', "g")));
        // 32-hex MD5 is not treated as a SHA-256 digest.
        assert!(!is_prehashed("d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!is_prehashed(""));
        // Inner whitespace is not trimmed away.
        assert!(!is_prehashed(&[&h[..32], " ", &h[32..]].concat()));
    }

    #[test]
    fn hash_normalized_passes_prehashed_through_lowercased() {
        let upper = "  973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B ";
        assert_eq!(hash_normalized(upper), "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b");
    }

    #[test]
    fn hash_normalized_hashes_everything_else() {
        assert_eq!(
            hash_normalized("test@example.com"),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
        // Not trimmed: the normalisers trim, the hasher does not second-guess them.
        assert_ne!(hash_normalized(" test@example.com"), hash_normalized("test@example.com"));
    }

    #[cfg(feature = "unicode")]
    #[test]
    fn nfc_composes() {
        assert_eq!(nfc("cafe\u{301}"), "caf\u{e9}");
        assert_eq!(nfc("Vale\u{301}ry"), "Val\u{e9}ry");
        assert_eq!(nfc("plain ascii"), "plain ascii");
        // Already NFC, non-ASCII: unchanged.
        assert_eq!(nfc("\u{c815}"), "\u{c815}");
        // NFD input hashes like NFC input (https://developers.google.com/analytics/devguides/collection/ga4/uid-data, https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters, https://github.com/trackbridge/sdk).
        assert_eq!(hash_normalized("cafe\u{301}"), "850f7dc43910ff890f8879c0ed26fe697c93a067ad93a7d50f466a7028a9bf4e");
        assert_eq!(
            hash_normalized("vale\u{301}ry"),
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
        );
    }

    #[cfg(not(feature = "unicode"))]
    #[test]
    fn nfc_is_identity_without_unicode_feature() {
        assert_eq!(nfc("cafe\u{301}"), "cafe\u{301}");
    }

    proptest! {
        #[test]
        fn outputs_are_lower_hex64(s in "\\PC{0,80}") {
            prop_assert!(is_lower_hex64(&sha256_hex(&s)));
            prop_assert!(is_lower_hex64(&hash_normalized(&s)));
        }

        #[test]
        fn hash_normalized_is_idempotent_on_digests(s in "\\PC{0,40}") {
            let once = hash_normalized(&s);
            prop_assert_eq!(hash_normalized(&once), once.clone());
        }

        #[test]
        fn nfc_is_idempotent(s in "\\PC{0,40}") {
            let once = nfc(&s);
            prop_assert_eq!(nfc(&once), once.clone());
        }
    }
}
