//! TikTok Events API normalisation (<https://developers.google.com/analytics/devguides/collection/ga4/uid-data>, <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters>, <https://business-api.tiktok.com/portal/docs?id=1771100865818625>): email as
//! Meta does it (trim, lowercase, no gmail rules), phone as Google does it
//! (E.164 with `+`), `external_id` trimmed and lowercased. All hashed afterwards.

use super::{google_phone, meta_email, meta_external_id};
use crate::prelude::*;

/// TikTok's email form: the same as [`meta_email`].
pub fn tiktok_email(raw: &str) -> Option<String> {
    meta_email(raw)
}

/// TikTok's phone form, E.164 with `+`: the same as [`google_phone`].
pub fn tiktok_phone(raw: &str, default_country_calling_code: Option<&str>) -> Option<String> {
    google_phone(raw, default_country_calling_code)
}

/// TikTok's `external_id` form: the same as [`meta_external_id`].
pub fn tiktok_external_id(raw: &str) -> Option<String> {
    meta_external_id(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_meta_email_and_google_phone() {
        assert_eq!(tiktok_email(" Jane.Doe@Gmail.com ").as_deref(), Some("jane.doe@gmail.com"));
        assert_eq!(tiktok_email("nope"), None);
        assert_eq!(tiktok_phone("(650) 555-1212", Some("1")).as_deref(), Some("+16505551212"));
        assert_eq!(tiktok_phone("+44 (0)20 7031 3000", None).as_deref(), Some("+442070313000"));
        assert_eq!(tiktok_phone("12", None), None);
        assert_eq!(tiktok_external_id(" ABC ").as_deref(), Some("abc"));
    }
}
