//! The core's normalise-and-hash rules, exported for sites that want to check
//! what the tracker will send (`hashUserData`, `sha256Hex`; the package's
//! `normalizeAndHash(kind, value, destination)` picks one field out of
//! `hashUserData`). Strings are put in NFC by the browser first
//! (`String.prototype.normalize`).

use js_sys::JsString;
use tally_core::browser::input;
use tally_core::normalize::NormalizeOptions;
use wasm_bindgen::prelude::*;

use crate::js;

/// Normalises and hashes user data for every destination family:
/// `{ google: { sha256_email_address, sha256_phone_number, address }, meta: { em, ph, fn, … } }`.
#[wasm_bindgen(js_name = hashUserData)]
pub fn hash_user_data(user_data: JsValue) -> Result<JsValue, JsValue> {
    let u = input::user_data(&js::user_data(&user_data)).map_err(|e| {
        // `[tally] userData.email is invalid: expected a string`
        js::error(&["[tally] ", &e.describe()].concat())
    })?;
    let mut out = String::new();
    u.hashed(&NormalizeOptions::default()).write_json(&mut out);
    Ok(js::parse_json(&out))
}

/// Lowercase hex SHA-256 of a string's UTF-8 bytes in NFC, exactly as given otherwise.
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(value: &JsString) -> String {
    let s: String = value.normalize("NFC").into();
    tally_core::hash::sha256_hex(&s)
}
