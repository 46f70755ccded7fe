//! Per-destination normalisation of user data before hashing.
//!
//! Google, Meta and TikTok normalise the same raw value differently
//! (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>): Google removes gmail dots and writes phones as
//! E.164 with `+`; Meta keeps gmail dots, writes phones as digits without `+`
//! and hashes city, state, zip and country, which Google wants plain. Each
//! rule is one function here returning the normalised value, or `None` when
//! nothing usable survives. [`UserData::hashed`] applies them all and hashes
//! with [`crate::hash`].
//!
//! Every text normaliser starts with trim → NFC ([`crate::hash::nfc`]) →
//! lowercase (Unicode, locale-independent: `İ` → `i̇`). "Symbols" are judged
//! with `core`'s Unicode properties and a fixed table, independent of the
//! `unicode` feature, so the browser and the server agree.

use crate::prelude::*;

mod common;
pub mod google;
pub mod meta;
pub mod tiktok;

pub use google::{
    google_city, google_country, google_email, google_name, google_phone, google_postal, google_region, google_street,
};
pub use meta::{
    meta_city, meta_country, meta_dob, meta_email, meta_external_id, meta_gender, meta_name, meta_phone, meta_state,
    meta_zip,
};
pub use tiktok::{tiktok_email, tiktok_external_id, tiktok_phone};

use crate::hash::{is_prehashed, nfc, sha256_hex};
use crate::user_data::{GoogleAddress, GoogleUserData, HashedUserData, MetaUserData, UserData};

/// Options for [`UserData::hashed`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Calling code for phone numbers given in national form (`"1"`, `"+44"`, `"49"`).
    /// `None`: national numbers are taken as already international, and those
    /// starting with a trunk `0` are dropped.
    pub default_calling_code: Option<String>,
}

/// The hash of one field: a raw value that is already a SHA-256 digest is
/// passed through lowercased; otherwise the normalised value (if any) is hashed in NFC.
fn hash_field(raw: Option<&str>, normalise: impl FnOnce(&str) -> Option<String>) -> Option<String> {
    let raw = raw?;
    if is_prehashed(raw) {
        return Some(raw.trim().to_ascii_lowercase());
    }
    normalise(raw).map(|n| sha256_hex(&nfc(&n)))
}

/// A plain (unhashed) field; the normalisers return `None` for digests.
fn plain_field(raw: Option<&str>, normalise: impl FnOnce(&str) -> Option<String>) -> Option<String> {
    raw.and_then(normalise)
}

impl UserData {
    /// Normalises and hashes this user data for every destination family.
    ///
    /// * `google`: email ([`google_email`]), phone ([`google_phone`], E.164)
    ///   hashed; one address holding the hashed names ([`google_name`]) and
    ///   street ([`google_street`]) and the plain city, region, postal code
    ///   and country, present only if one of those survived.
    /// * `meta`: `em`, `ph`, `fn`, `ln`, `db`, `ge`, `ct`, `st`, `zp`,
    ///   `country`, `external_id`, all hashed with the `meta_*` normalisers.
    ///
    /// A family is `None` when nothing survived. Raw values that are already
    /// SHA-256 digests (64 hex digits) are passed through lowercased into every
    /// hashed field they belong to (the caller chose their normalisation), and
    /// dropped from Google's plain fields. Every hashed value is 64 lowercase hex.
    ///
    /// ```
    /// use tally_core::UserData;
    /// use tally_core::normalize::NormalizeOptions;
    ///
    /// let u = UserData { email: Some("Jane.Doe@gmail.com".into()), ..Default::default() };
    /// let h = u.hashed(&NormalizeOptions::default());
    /// // Google drops gmail dots, Meta does not.
    /// assert_eq!(
    ///     h.google.unwrap().sha256_email_address,
    ///     ["d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"]
    /// );
    /// assert_eq!(
    ///     h.meta.unwrap().em,
    ///     ["831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982"]
    /// );
    /// ```
    pub fn hashed(&self, opts: &NormalizeOptions) -> HashedUserData {
        let cc = opts.default_calling_code.as_deref();
        let email = self.email.as_deref();
        let phone = self.phone.as_deref();
        let first = self.first_name.as_deref();
        let last = self.last_name.as_deref();
        let addr = self.address.as_ref();
        let street = addr.and_then(|a| a.street.as_deref());
        let city = addr.and_then(|a| a.city.as_deref());
        let region = addr.and_then(|a| a.region.as_deref());
        let postal = addr.and_then(|a| a.postal_code.as_deref());
        let country = addr.and_then(|a| a.country.as_deref());

        let mut google = GoogleUserData::default();
        google.sha256_email_address.extend(hash_field(email, google_email));
        google.sha256_phone_number.extend(hash_field(phone, |p| google_phone(p, cc)));
        let address = GoogleAddress {
            sha256_first_name: hash_field(first, google_name),
            sha256_last_name: hash_field(last, google_name),
            sha256_street: hash_field(street, google_street),
            city: plain_field(city, google_city),
            region: plain_field(region, google_region),
            postal_code: plain_field(postal, google_postal),
            country: plain_field(country, google_country),
        };
        if address != GoogleAddress::default() {
            google.address.push(address);
        }

        let meta = MetaUserData {
            em: hash_field(email, meta_email).into_iter().collect(),
            ph: hash_field(phone, |p| meta_phone(p, cc)).into_iter().collect(),
            first_name: hash_field(first, meta_name).into_iter().collect(),
            ln: hash_field(last, meta_name).into_iter().collect(),
            db: hash_field(self.date_of_birth.as_deref(), meta_dob).into_iter().collect(),
            ge: hash_field(self.gender.as_deref(), meta_gender).into_iter().collect(),
            ct: hash_field(city, meta_city).into_iter().collect(),
            st: hash_field(region, meta_state).into_iter().collect(),
            zp: hash_field(postal, |z| meta_zip(z, country)).into_iter().collect(),
            country: hash_field(country, meta_country).into_iter().collect(),
            external_id: hash_field(self.external_id.as_deref(), meta_external_id).into_iter().collect(),
        };

        HashedUserData {
            google: if google.is_empty() { None } else { Some(google) },
            meta: if meta.is_empty() { None } else { Some(meta) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_data::Address;
    use proptest::prelude::*;

    fn h(s: &str) -> String {
        sha256_hex(s)
    }

    fn is_lower_hex64(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    fn full() -> UserData {
        UserData {
            email: Some("  Jane.Doe+promo@Gmail.com ".into()),
            phone: Some("(650) 555-1212".into()),
            first_name: Some(" Jane ".into()),
            last_name: Some("Doe".into()),
            date_of_birth: Some("2/16/1997".into()),
            gender: Some("Female".into()),
            external_id: Some(" Cust-42 ".into()),
            address: Some(Address {
                street: Some("  123 Main St. ".into()),
                city: Some("New York".into()),
                region: Some("New York".into()),
                postal_code: Some("10001-1234".into()),
                country: Some("United States".into()),
            }),
        }
    }

    #[test]
    fn empty_user_data_gives_no_family() {
        let out = UserData::default().hashed(&NormalizeOptions::default());
        assert_eq!(out, HashedUserData::default());
        assert!(out.is_empty());
        let junk = UserData {
            email: Some("not an email".into()),
            phone: Some("call me".into()),
            address: Some(Address { street: Some(" ... ".into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(junk.hashed(&NormalizeOptions::default()), HashedUserData::default());
    }

    #[test]
    fn full_user_data_both_families() {
        let opts = NormalizeOptions { default_calling_code: Some("1".into()) };
        let out = full().hashed(&opts);
        let g = out.google.clone().unwrap();
        assert_eq!(g.sha256_email_address, [h("janedoe@gmail.com")]);
        assert_eq!(g.sha256_phone_number, [h("+16505551212")]);
        assert_eq!(
            g.address,
            [GoogleAddress {
                sha256_first_name: Some(h("jane")),
                sha256_last_name: Some(h("doe")),
                sha256_street: Some(h("123 main st")),
                city: Some("new york".into()),
                region: Some("new york".into()),
                postal_code: Some("10001-1234".into()),
                country: Some("US".into()),
            }]
        );
        let m = out.meta.unwrap();
        assert_eq!(m.em, [h("jane.doe+promo@gmail.com")]);
        assert_eq!(m.ph, [h("16505551212")]);
        assert_eq!(m.first_name, [h("jane")]);
        assert_eq!(m.ln, [h("doe")]);
        assert_eq!(m.db, [h("19970216")]);
        assert_eq!(m.ge, [h("f")]);
        assert_eq!(m.ct, [h("newyork")]);
        assert_eq!(m.st, [h("ny")]);
        assert_eq!(m.zp, [h("10001")]);
        assert_eq!(m.country, [h("us")]);
        assert_eq!(m.external_id, [h("cust-42")]);
    }

    #[test]
    fn google_address_only_when_something_survives() {
        let only_country = UserData {
            address: Some(Address { country: Some("de".into()), ..Default::default() }),
            ..Default::default()
        };
        let out = only_country.hashed(&NormalizeOptions::default());
        let g = out.google.unwrap();
        assert_eq!(g.address.len(), 1);
        assert_eq!(g.address[0].country.as_deref(), Some("DE"));
        assert_eq!(out.meta.unwrap().country, [h("de")]);

        let only_email =
            UserData { email: Some("a@example.com".into()), address: Some(Address::default()), ..Default::default() };
        let g = only_email.hashed(&NormalizeOptions::default()).google.unwrap();
        assert!(g.address.is_empty());

        // A name alone makes a Google address entry.
        let only_name = UserData { first_name: Some("Mary".into()), ..Default::default() };
        let g = only_name.hashed(&NormalizeOptions::default()).google.unwrap();
        assert_eq!(g.address[0].sha256_first_name, Some(h("mary")));
    }

    #[test]
    fn prehashed_values_pass_through() {
        let digest = "973DFE463EC85785F5F95AF5BA3906EEDB2D931C24E69824A89EA65DBA4E813B";
        let one = vec![digest.to_ascii_lowercase()];
        let u = UserData {
            email: Some([" ", digest, " "].concat()),
            phone: Some(digest.into()),
            external_id: Some(digest.into()),
            address: Some(Address {
                city: Some(digest.into()),
                postal_code: Some(digest.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = u.hashed(&NormalizeOptions::default());
        let g = out.google.unwrap();
        assert_eq!(g.sha256_email_address, one);
        assert_eq!(g.sha256_phone_number, one);
        // Google's plain fields cannot use a digest.
        assert!(g.address.is_empty());
        let m = out.meta.unwrap();
        assert_eq!(m.em, one);
        assert_eq!(m.ph, one);
        assert_eq!(m.ct, one);
        assert_eq!(m.zp, one);
        assert_eq!(m.external_id, one);
    }

    #[test]
    fn national_phone_needs_calling_code_for_trunk_zero() {
        let u = UserData { phone: Some("0151 2345678".into()), ..Default::default() };
        assert_eq!(u.hashed(&NormalizeOptions::default()), HashedUserData::default());
        let out = u.hashed(&NormalizeOptions { default_calling_code: Some("+49".into()) });
        assert_eq!(out.google.unwrap().sha256_phone_number, [h("+491512345678")]);
        assert_eq!(out.meta.unwrap().ph, [h("491512345678")]);
    }

    #[test]
    fn hashed_json_round_trips() {
        let out = full().hashed(&NormalizeOptions::default());
        let mut s = String::new();
        out.write_json(&mut s);
        assert_eq!(serde_json::from_str::<HashedUserData>(&s).unwrap(), out);
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "\\PC{0,40}".prop_map(Some),
            "[ -~]{0,40}".prop_map(Some),
            "[0-9+() .-]{0,20}".prop_map(Some),
            "[0-9a-fA-F]{64}".prop_map(Some),
            any::<String>().prop_map(Some),
        ]
    }

    fn user_data() -> impl Strategy<Value = UserData> {
        ((text(), text(), text(), text()), (text(), text(), text()), (text(), text(), text(), text(), text())).prop_map(
            |(
                (email, phone, first_name, last_name),
                (date_of_birth, gender, external_id),
                (street, city, region, postal_code, country),
            )| {
                UserData {
                    email,
                    phone,
                    first_name,
                    last_name,
                    date_of_birth,
                    gender,
                    external_id,
                    address: Some(Address { street, city, region, postal_code, country }),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn normalisers_never_panic(s in any::<String>(), t in "\\PC{0,60}", cc in proptest::option::of("[+0-9a-z]{0,5}")) {
            for v in [s.as_str(), t.as_str()] {
                let cc = cc.as_deref();
                let _ = google_email(v);
                let _ = google_phone(v, cc);
                let _ = google_name(v);
                let _ = google_street(v);
                let _ = google_city(v);
                let _ = google_region(v);
                let _ = google_postal(v);
                let _ = google_country(v);
                let _ = meta_email(v);
                let _ = meta_phone(v, cc);
                let _ = meta_name(v);
                let _ = meta_city(v);
                let _ = meta_state(v);
                let _ = meta_zip(v, Some(v));
                let _ = meta_zip(v, None);
                let _ = meta_country(v);
                let _ = meta_gender(v);
                let _ = meta_dob(v);
                let _ = meta_external_id(v);
                let _ = tiktok_email(v);
                let _ = tiktok_phone(v, cc);
                let _ = tiktok_external_id(v);
            }
        }

        #[test]
        fn normalisers_are_idempotent(t in "\\PC{0,40}") {
            for f in [google_email, google_name, google_street, google_city, google_postal, google_country,
                      meta_email, meta_name, meta_city, meta_state, meta_country, meta_gender, meta_dob,
                      meta_external_id] {
                if let Some(once) = f(&t) {
                    prop_assert_eq!(f(&once), Some(once.clone()), "{:?}", t);
                }
            }
            if let Some(once) = meta_zip(&t, None) {
                prop_assert_eq!(meta_zip(&once, None), Some(once.clone()));
            }
            if let Some(once) = meta_phone(&t, Some("44")) {
                // Meta's form is already international: no calling code needed again.
                prop_assert_eq!(meta_phone(&once, None), Some(once.clone()));
            }
            if let Some(once) = google_phone(&t, Some("44")) {
                prop_assert_eq!(google_phone(&once, Some("44")), Some(once.clone()));
            }
        }

        #[test]
        fn phone_outputs_are_well_formed(t in "[0-9+() .x-]{0,24}", cc in proptest::option::of("[0-9]{1,3}")) {
            if let Some(p) = google_phone(&t, cc.as_deref()) {
                let d = p.strip_prefix('+').unwrap();
                prop_assert!((8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!d.starts_with('0'));
            }
            if let Some(p) = meta_phone(&t, cc.as_deref()) {
                prop_assert!((7..=15).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!p.starts_with('0'));
            }
        }

        #[test]
        fn hashed_fields_are_always_lower_hex64(u in user_data(), cc in proptest::option::of("[+0-9]{0,4}")) {
            let out = u.hashed(&NormalizeOptions { default_calling_code: cc });
            if let Some(g) = &out.google {
                prop_assert!(!g.is_empty());
                for v in g.sha256_email_address.iter().chain(&g.sha256_phone_number) {
                    prop_assert!(is_lower_hex64(v), "{}", v);
                }
                for a in &g.address {
                    prop_assert!(*a != GoogleAddress::default());
                    for v in [&a.sha256_first_name, &a.sha256_last_name, &a.sha256_street].into_iter().flatten() {
                        prop_assert!(is_lower_hex64(v), "{}", v);
                    }
                    for v in [&a.city, &a.region, &a.postal_code, &a.country].into_iter().flatten() {
                        prop_assert!(!v.is_empty() && !is_prehashed(v), "{}", v);
                    }
                }
            }
            if let Some(m) = &out.meta {
                prop_assert!(!m.is_empty());
                for (_, list) in m.fields() {
                    prop_assert!(list.len() <= 1);
                    for v in list {
                        prop_assert!(is_lower_hex64(v), "{}", v);
                    }
                }
            }
        }
    }
}
