//! The core's normalise-and-hash rules, exported for sites that want to check
//! what the tracker will send (`hashUserData`, `normalizeAndHash`, `sha256Hex`).
//! Strings are put in NFC by the browser first (`String.prototype.normalize`).

use js_sys::JsString;
use tally_core::normalize::NormalizeOptions;
use tally_core::user_data::Address;
use tally_core::{Error, UserData};
use wasm_bindgen::prelude::*;

use crate::input::{self, method_error};
use crate::js;

/// Normalises and hashes user data for every destination family:
/// `{ google: { sha256_email_address, sha256_phone_number, address }, meta: { em, ph, fn, … } }`.
#[wasm_bindgen(js_name = hashUserData)]
pub fn hash_user_data(user_data: JsValue) -> Result<JsValue, JsValue> {
    let u = input::user_data(&user_data).map_err(|e| method_error("hashUserData", &e))?;
    let mut out = String::new();
    u.hashed(&NormalizeOptions::default()).write_json(&mut out);
    Ok(js::parse_json(&out))
}

/// Normalises one value the way `destination` (`'google'`, the default, or
/// `'meta'`) wants it and hashes it. `kind` is a `userData` key: `email`,
/// `phone`, `firstName`, `lastName`, `street`, `city`, `region`, `postalCode`,
/// `country`, `dateOfBirth`, `gender`, `externalId`. Returns `undefined` when
/// nothing usable survives (or the destination has no such field). Google's
/// `city`, `region`, `postalCode` and `country` are sent plain, so they come
/// back normalised but not hashed.
#[wasm_bindgen(js_name = normalizeAndHash)]
pub fn normalize_and_hash(kind: &str, value: JsValue, destination: Option<String>) -> Result<Option<String>, JsValue> {
    let fail = |e: Error| method_error("normalizeAndHash", &e);
    let v = input::nfc(&value).ok_or(Error::Invalid {
        field: "value",
        reason: "expected a string",
    });
    let v = v.map_err(fail)?;
    let mut u = UserData::default();
    let mut a = Address::default();
    let slot = match kind {
        "email" => &mut u.email,
        "phone" => &mut u.phone,
        "firstName" => &mut u.first_name,
        "lastName" => &mut u.last_name,
        "dateOfBirth" => &mut u.date_of_birth,
        "gender" => &mut u.gender,
        "externalId" => &mut u.external_id,
        "street" => &mut a.street,
        "city" => &mut a.city,
        "region" => &mut a.region,
        "postalCode" => &mut a.postal_code,
        "country" => &mut a.country,
        _ => {
            return Err(fail(Error::Invalid {
                field: "kind",
                reason: "expected email, phone, firstName, lastName, street, city, region, postalCode, country, dateOfBirth, gender or externalId",
            }));
        }
    };
    *slot = Some(v);
    u.address = Some(a);
    let h = u.hashed(&NormalizeOptions::default());
    let first = |l: Vec<String>| l.into_iter().next();
    Ok(match destination.as_deref().unwrap_or("google") {
        "google" => {
            let g = h.google.unwrap_or_default();
            let addr = g.address.into_iter().next().unwrap_or_default();
            match kind {
                "email" => first(g.sha256_email_address),
                "phone" => first(g.sha256_phone_number),
                "firstName" => addr.sha256_first_name,
                "lastName" => addr.sha256_last_name,
                "street" => addr.sha256_street,
                "city" => addr.city,
                "region" => addr.region,
                "postalCode" => addr.postal_code,
                "country" => addr.country,
                _ => None,
            }
        }
        "meta" => {
            let m = h.meta.unwrap_or_default();
            let key = match kind {
                "email" => "em",
                "phone" => "ph",
                "firstName" => "fn",
                "lastName" => "ln",
                "dateOfBirth" => "db",
                "gender" => "ge",
                "city" => "ct",
                "region" => "st",
                "postalCode" => "zp",
                "country" => "country",
                "externalId" => "external_id",
                _ => "",
            };
            m.fields().into_iter().find(|(k, _)| *k == key).and_then(|(_, l)| l.first().cloned())
        }
        _ => {
            return Err(fail(Error::Invalid {
                field: "destination",
                reason: "expected 'google' or 'meta'",
            }));
        }
    })
}

/// Lowercase hex SHA-256 of a string's UTF-8 bytes in NFC, exactly as given otherwise.
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(value: &JsString) -> String {
    let s: String = value.normalize("NFC").into();
    tally_core::hash::sha256_hex(&s)
}
