//! Golden vectors for normalisation and hashing, from
//! <https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.google.com/google-ads/api/docs/conversions/upload-identifiers>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters> and <https://github.com/trackbridge/sdk>
//! (data in `tests/data/hash_vectors.json`).

use base64::Engine as _;
use serde_json::Value;
use tally_core::UserData;
use tally_core::hash::{hash_normalized, is_prehashed, sha256_hex};
use tally_core::normalize::*;
use tally_core::user_data::HashedUserData;

const DATA: &str = include_str!("data/hash_vectors.json");

fn data() -> Value {
    serde_json::from_str(DATA).expect("hash_vectors.json parses")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().unwrap_or_else(|| panic!("{key} is an array"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

fn opt<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Runs the named normaliser. `cc` is the default calling code for phones,
/// `country` the country for `meta_zip`.
fn run(name: &str, input: &str, cc: Option<&str>, country: Option<&str>) -> Option<String> {
    match name {
        "identity" => Some(input.to_owned()),
        "google_email" => google_email(input),
        "google_phone" => google_phone(input, cc),
        "google_name" => google_name(input),
        "google_street" => google_street(input),
        "google_city" => google_city(input),
        "google_region" => google_region(input),
        "google_postal" => google_postal(input),
        "google_country" => google_country(input),
        "meta_email" => meta_email(input),
        "meta_phone" => meta_phone(input, cc),
        "meta_name" => meta_name(input),
        "meta_city" => meta_city(input),
        "meta_state" => meta_state(input),
        "meta_zip" => meta_zip(input, country),
        "meta_country" => meta_country(input),
        "meta_gender" => meta_gender(input),
        "meta_dob" => meta_dob(input),
        "meta_external_id" => meta_external_id(input),
        "tiktok_email" => tiktok_email(input),
        "tiktok_phone" => tiktok_phone(input, cc),
        "tiktok_external_id" => tiktok_external_id(input),
        other => panic!("unknown normaliser {other}"),
    }
}

#[test]
fn sha256_of_normalised_values() {
    let d = data();
    let hashes = list(&d, "hashes");
    assert!(hashes.len() >= 50);
    for v in hashes {
        let (value, want) = (s(v, "value"), s(v, "sha256"));
        assert_eq!(sha256_hex(value), want, "sha256_hex({value:?}) — {}", v["source"]);
        assert_eq!(hash_normalized(value), want, "hash_normalized({value:?})");
        if let Some(b64) = opt(v, "base64") {
            let bytes: Vec<u8> = (0..64).step_by(2).map(|i| u8::from_str_radix(&want[i..i + 2], 16).unwrap()).collect();
            assert_eq!(base64::engine::general_purpose::STANDARD.encode(bytes), b64);
        }
    }
}

#[test]
fn normalisers_match_the_vectors() {
    let d = data();
    let cases = list(&d, "normalize");
    assert!(cases.len() >= 60);
    for v in cases {
        let (name, input) = (s(v, "fn"), s(v, "input"));
        let got = run(name, input, opt(v, "cc"), opt(v, "country"));
        let want = opt(v, "normalized");
        assert_eq!(got.as_deref(), want, "{name}({input:?}) — {}", v["source"]);
        if let (Some(n), Some(h)) = (want, opt(v, "sha256")) {
            assert_eq!(hash_normalized(n), h, "hash of {name}({input:?})");
        }
    }
}

#[test]
fn wrong_forms_are_not_produced() {
    let d = data();
    for v in list(&d, "not_produced") {
        let (name, input, bad) = (s(v, "fn"), s(v, "input"), s(v, "sha256"));
        // The bad digest is what the wrong rule gives ...
        let got = run(name, input, opt(v, "cc"), None).unwrap_or_else(|| panic!("{name}({input:?}) normalises"));
        // ... and not what Tally gives.
        assert_ne!(hash_normalized(&got), bad, "{name}({input:?}): {}", v["why"]);
    }
}

#[test]
fn python_example_phone_is_not_e164() {
    // https://developers.google.com/google-ads/api/docs/conversions/upload-identifiers: google-ads-python hashes "+1 800 5550102" with its spaces.
    let wrong = "5b0ab2d6e32d4073681bf36498ad2d32f7a1289629710fe0052f300af19646dc";
    assert_eq!(sha256_hex("+1 800 5550102"), wrong);
    let ours = google_phone("+1 800 5550102", None).unwrap();
    assert_eq!(ours, "+18005550102");
    assert_ne!(hash_normalized(&ours), wrong);
    assert_eq!(hash_normalized(&ours), "c5383c2eeada28210d27f011bc127d4f9562cf38ff0c9bba33dd45ae79b9fe7c");
}

#[test]
fn variants_collapse_to_one_value() {
    let d = data();
    for v in list(&d, "collapse") {
        let name = s(v, "fn");
        let (want, h) = (s(v, "normalized"), s(v, "sha256"));
        let inputs = list(v, "inputs");
        assert!(inputs.len() >= 5);
        for i in inputs {
            let input = i.as_str().unwrap();
            let got = run(name, input, opt(v, "cc"), None);
            assert_eq!(got.as_deref(), Some(want), "{name}({input:?})");
            assert_eq!(hash_normalized(want), h);
        }
    }
}

#[cfg(feature = "unicode")]
#[test]
fn nfc_and_nfd_inputs_give_the_same_digest() {
    use tally_core::hash::nfc;
    let d = data();
    for v in list(&d, "nfc_equivalence") {
        let name = s(v, "fn");
        let (composed, decomposed) = (s(v, "nfc"), s(v, "nfd"));
        assert_ne!(composed, decomposed);
        assert_eq!(nfc(decomposed), composed);
        let (want, h) = (s(v, "normalized"), s(v, "sha256"));
        for input in [composed, decomposed] {
            let got = run(name, input, None, None).unwrap();
            assert_eq!(hash_normalized(&got), h, "{name}({input:?})");
            if name != "identity" {
                assert_eq!(got, want, "{name}({input:?})");
            }
        }
        if let Some(prefix) = opt(v, "nfd_raw_sha256_prefix") {
            // What a hasher without NFC would send (https://developers.google.com/analytics/devguides/collection/ga4/uid-data, https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters).
            let lowered = decomposed.to_lowercase();
            assert!(sha256_hex(&lowered).starts_with(prefix));
            assert_ne!(sha256_hex(&lowered), h);
        }
    }
}

#[cfg(feature = "unicode")]
#[test]
fn valery_nfd_hashes_like_nfc_through_meta_name() {
    // "Valéry" typed with a combining acute accent (U+0301).
    let got = meta_name("Vale\u{301}ry").unwrap();
    assert_eq!(got, "val\u{e9}ry");
    assert_eq!(hash_normalized(&got), "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c");
}

#[cfg(not(feature = "unicode"))]
#[test]
fn without_unicode_the_caller_passes_nfc() {
    // The browser build normalises with String.prototype.normalize('NFC') first.
    let got = meta_name("Val\u{e9}ry").unwrap();
    assert_eq!(hash_normalized(&got), "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c");
    // NFD is kept as given (marks are not stripped), so it is the caller's job.
    assert_eq!(meta_name("Vale\u{301}ry").as_deref(), Some("vale\u{301}ry"));
}

#[test]
fn turkish_dotted_capital_i_is_lowercased_without_locale() {
    // https://github.com/trackbridge/sdk locale pins: str::to_lowercase gives i + U+0307.
    assert_eq!(google_city("\u{130}STANBUL").as_deref(), Some("i\u{307}stanbul"));
    assert_eq!(meta_city("\u{130}STANBUL").as_deref(), Some("i\u{307}stanbul"));
    assert_eq!(google_name("AYDIN").as_deref(), Some("aydin"));
    assert_eq!(hash_normalized("i\u{307}stanbul"), "4a4df120f7d1f3c286f58651abfcec2aade892ace635f96f02b946c96e6e1f86");
    assert_ne!(hash_normalized("i\u{307}stanbul"), hash_normalized("istanbul"));
}

#[test]
fn prehashed_values_pass_through() {
    let upper = "  973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B\n";
    assert!(is_prehashed(upper));
    assert_eq!(hash_normalized(upper), "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b");
}

#[test]
fn user_data_hashed_matches_the_vectors() {
    let d = data();
    let cases = list(&d, "user_data");
    assert!(!cases.is_empty());
    for v in cases {
        let input: UserData = serde_json::from_value(v["input"].clone()).unwrap();
        let opts = NormalizeOptions { default_calling_code: opt(v, "defaultCallingCode").map(str::to_owned) };
        let want: HashedUserData = serde_json::from_value(v["expected"].clone()).unwrap();
        let got = input.hashed(&opts);
        assert_eq!(got, want, "{}", v["source"]);
        // The hand-written JSON (browser path) agrees with serde.
        let mut json = String::new();
        got.write_json(&mut json);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), v["expected"]);
    }
}
