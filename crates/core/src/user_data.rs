//! User-provided data (email, phone, name, address), raw and hashed per destination.
//!
//! Raw data is what a site hands over; it never leaves the browser or the
//! server unhashed unless the caller opts in. [`UserData::hashed`] turns it
//! into one [`HashedUserData`] holding each destination family's own
//! normalisation (Google and Meta differ: <https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>).

use crate::prelude::*;
use serde::{Deserialize, Serialize};

use crate::json::ObjectWriter;

/// A postal address, raw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Address {
    /// Street and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Region or state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country, ISO 3166-1 alpha-2 or a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// User data as the site has it (Trackbridge's `UserData` shape, plus Meta's extra fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserData {
    /// Email address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number, ideally with country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Date of birth (`YYYY-MM-DD`, `YYYYMMDD` or `M/D/YYYY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Gender (`f`, `m`, `female`, `male`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// The shop's own id for this customer (Meta `external_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Postal address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// Google's enhanced-conversions form (GA4 MP `user_data`, Ads `userIdentifiers`):
/// email, phone, names and street hashed; city, region, postal code and country plain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GoogleUserData {
    /// SHA-256 of the Google-normalised email (gmail dots and `+tag` removed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sha256_email_address: Vec<String>,
    /// SHA-256 of the E.164 phone (`+16505551212`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sha256_phone_number: Vec<String>,
    /// Addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub address: Vec<GoogleAddress>,
}

/// One address in Google's form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GoogleAddress {
    /// Hashed given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_first_name: Option<String>,
    /// Hashed family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_last_name: Option<String>,
    /// Hashed street.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_street: Option<String>,
    /// City, plain, normalised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Region, plain, normalised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code, plain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case, plain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Meta's customer-information form: every field hashed, each a list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetaUserData {
    /// Email.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub em: Vec<String>,
    /// Phone, digits only with country code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ph: Vec<String>,
    /// First name.
    #[serde(rename = "fn", skip_serializing_if = "Vec::is_empty")]
    pub first_name: Vec<String>,
    /// Last name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ln: Vec<String>,
    /// Date of birth `YYYYMMDD`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub db: Vec<String>,
    /// Gender `f`/`m`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ge: Vec<String>,
    /// City.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ct: Vec<String>,
    /// State.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub st: Vec<String>,
    /// Zip.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zp: Vec<String>,
    /// Country.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// External id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_id: Vec<String>,
}

/// User data hashed for every destination family at once, as the envelope carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HashedUserData {
    /// Google's form (GA4 MP, Google Ads; TikTok reuses the phone hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleUserData>,
    /// Meta's form (Meta CAPI; Rokt and TikTok reuse the email hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaUserData>,
}

impl GoogleUserData {
    /// True when nothing survived normalisation.
    pub fn is_empty(&self) -> bool {
        self.sha256_email_address.is_empty() && self.sha256_phone_number.is_empty() && self.address.is_empty()
    }
}

impl MetaUserData {
    /// The hashed fields with their Meta keys.
    pub fn fields(&self) -> [(&'static str, &Vec<String>); 11] {
        [
            ("em", &self.em),
            ("ph", &self.ph),
            ("fn", &self.first_name),
            ("ln", &self.ln),
            ("db", &self.db),
            ("ge", &self.ge),
            ("ct", &self.ct),
            ("st", &self.st),
            ("zp", &self.zp),
            ("country", &self.country),
            ("external_id", &self.external_id),
        ]
    }

    /// True when nothing survived normalisation.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }
}

impl HashedUserData {
    /// True when no family has data.
    pub fn is_empty(&self) -> bool {
        self.google.as_ref().is_none_or(GoogleUserData::is_empty)
            && self.meta.as_ref().is_none_or(MetaUserData::is_empty)
    }

    /// Appends the JSON form (same as serde's) without `serde_json`, for the browser.
    pub fn write_json(&self, out: &mut String) {
        fn list(w: &mut ObjectWriter<'_>, k: &str, v: &[String]) {
            if v.is_empty() {
                return;
            }
            let o = w.key(k);
            o.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                crate::json::push_str(o, s);
            }
            o.push(']');
        }
        let mut w = ObjectWriter::new(out);
        if let Some(g) = &self.google {
            let o = w.key("google");
            let mut gw = ObjectWriter::new(o);
            list(&mut gw, "sha256_email_address", &g.sha256_email_address);
            list(&mut gw, "sha256_phone_number", &g.sha256_phone_number);
            if !g.address.is_empty() {
                let o = gw.key("address");
                o.push('[');
                for (i, a) in g.address.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let mut aw = ObjectWriter::new(o);
                    aw.opt_str("sha256_first_name", a.sha256_first_name.as_deref())
                        .opt_str("sha256_last_name", a.sha256_last_name.as_deref())
                        .opt_str("sha256_street", a.sha256_street.as_deref())
                        .opt_str("city", a.city.as_deref())
                        .opt_str("region", a.region.as_deref())
                        .opt_str("postal_code", a.postal_code.as_deref())
                        .opt_str("country", a.country.as_deref());
                    aw.finish();
                }
                o.push(']');
            }
            gw.finish();
        }
        if let Some(m) = &self.meta {
            let o = w.key("meta");
            let mut mw = ObjectWriter::new(o);
            for (k, v) in m.fields() {
                list(&mut mw, k, v);
            }
            mw.finish();
        }
        w.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_json_matches_serde() {
        let h = HashedUserData {
            google: Some(GoogleUserData {
                sha256_email_address: vec!["a".repeat(64)],
                sha256_phone_number: vec![],
                address: vec![GoogleAddress {
                    sha256_first_name: Some("b".repeat(64)),
                    city: Some("austin".into()),
                    country: Some("US".into()),
                    ..Default::default()
                }],
            }),
            meta: Some(MetaUserData {
                em: vec!["c".repeat(64)],
                first_name: vec!["d".repeat(64)],
                ..Default::default()
            }),
        };
        let mut s = String::new();
        h.write_json(&mut s);
        assert_eq!(s, serde_json::to_string(&h).unwrap());
        let back: HashedUserData = serde_json::from_str(&s).unwrap();
        assert_eq!(back, h);
    }
}
