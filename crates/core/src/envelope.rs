//! The context envelope v1: the browser's state, carried to the server.
//!
//! A page calls `exportContext()` at checkout and posts the result with the
//! order (a form field, a header, a column on the order row). Later, a
//! payment webhook hands it to `ServerTracker::from_context`, and the server's
//! events stitch to the same visitor, session and click.
//!
//! The JSON is a superset of Trackbridge's v1 envelope, so a Trackbridge
//! browser context parses too:
//!
//! ```json
//! {"v":1,"createdAt":1777700000000,"clientId":"1234567890.1777000000","sessionId":"1777699000",
//!  "userId":"user_42","visitorId":"anon-abc123","clickIds":{"gclid":"Cj0KCQ","fbc":"fb.1.1.x"},
//!  "consent":{"ad_storage":"granted","ad_user_data":"granted","ad_personalization":"denied","analytics_storage":"granted"},
//!  "hashedUserData":{"google":{"sha256_email_address":["…"]}},
//!  "pageUrl":"https://shop.example/checkout","referrer":"https://google.com/","eventIds":["…"]}
//! ```

use crate::click_ids::ClickIds;
use crate::client_id::ClientId;
use crate::consent::ConsentState;
#[cfg(feature = "serde_json")]
use crate::error::{Error, Result};
use crate::event_id::EventId;
use crate::ids::{UserId, VisitorId};
use crate::json::ObjectWriter;
use crate::prelude::*;
use crate::user_data::{HashedUserData, UserData};

/// Largest envelope accepted, in bytes of JSON.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;
/// Most browser event ids an envelope lists.
pub const MAX_EVENT_IDS: usize = 50;
/// Longest page URL or referrer kept (GA4's `page_location` limit).
pub const MAX_URL: usize = 1000;

/// The envelope, version 1.
///
/// ```
/// use tally_core::ContextEnvelope;
/// let env = ContextEnvelope::parse_json(r#"{"v":1,"createdAt":1,"clientId":"123.456"}"#).unwrap();
/// assert_eq!(env.client_id.unwrap().as_str(), "123.456");
/// let again = ContextEnvelope::parse_base64url(&ContextEnvelope::default().to_base64url()).unwrap();
/// assert_eq!(again, ContextEnvelope::default());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextEnvelope {
    /// When the browser exported it, Unix ms.
    pub created_at_ms: i64,
    /// GA4 client id.
    pub client_id: Option<ClientId>,
    /// GA4 session id.
    pub session_id: Option<String>,
    /// GA4 session number.
    pub session_number: Option<u32>,
    /// The signed-in user.
    pub user_id: Option<UserId>,
    /// The site's visitor id (`setVisitor`).
    pub visitor_id: Option<VisitorId>,
    /// Click ids.
    pub click_ids: ClickIds,
    /// Consent at export time.
    pub consent: ConsentState,
    /// User data hashed in the browser (the default form).
    pub hashed_user_data: Option<HashedUserData>,
    /// Raw user data: only when the caller opted in, or from a Trackbridge envelope.
    pub raw_user_data: Option<UserData>,
    /// The page the envelope was exported on.
    pub page_url: Option<String>,
    /// That page's referrer.
    pub referrer: Option<String>,
    /// Ids of events the browser already sent, so the server can report them as duplicates.
    pub event_ids: Vec<EventId>,
}

impl ContextEnvelope {
    /// The compact JSON form.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        let mut w = ObjectWriter::new(&mut out);
        w.int("v", 1).int("createdAt", self.created_at_ms);
        w.opt_str("clientId", self.client_id.as_ref().map(ClientId::as_str))
            .opt_str("sessionId", self.session_id.as_deref());
        if let Some(n) = self.session_number {
            w.int("sessionNumber", i64::from(n));
        }
        w.opt_str("userId", self.user_id.as_ref().map(UserId::as_str))
            .opt_str("visitorId", self.visitor_id.as_ref().map(VisitorId::as_str));
        {
            let o = w.key("clickIds");
            let mut cw = ObjectWriter::new(o);
            for (k, v) in self.click_ids.slots() {
                cw.opt_str(k, v.as_deref());
            }
            cw.finish();
        }
        {
            let o = w.key("consent");
            let c = &self.consent;
            let mut cw = ObjectWriter::new(o);
            cw.str("ad_storage", c.ad_storage.as_str())
                .str("analytics_storage", c.analytics_storage.as_str())
                .str("ad_user_data", c.ad_user_data.as_str())
                .str("ad_personalization", c.ad_personalization.as_str());
            cw.finish();
        }
        if let Some(h) = self.hashed_user_data.as_ref().filter(|h| !h.is_empty()) {
            h.write_json(w.key("hashedUserData"));
        }
        if let Some(raw) = &self.raw_user_data {
            write_raw_user_data(raw, w.key("userData"));
        }
        w.opt_str("pageUrl", self.page_url.as_deref()).opt_str("referrer", self.referrer.as_deref());
        if !self.event_ids.is_empty() {
            let o = w.key("eventIds");
            o.push('[');
            for (i, id) in self.event_ids.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                crate::json::push_str(o, id.as_str());
            }
            o.push(']');
        }
        w.finish();
        out
    }

    /// The base64url form (no padding) for headers and cookies.
    pub fn to_base64url(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.to_json())
    }
}

fn write_raw_user_data(u: &UserData, out: &mut String) {
    let mut w = ObjectWriter::new(out);
    w.opt_str("email", u.email.as_deref())
        .opt_str("phone", u.phone.as_deref())
        .opt_str("firstName", u.first_name.as_deref())
        .opt_str("lastName", u.last_name.as_deref())
        .opt_str("dateOfBirth", u.date_of_birth.as_deref())
        .opt_str("gender", u.gender.as_deref())
        .opt_str("externalId", u.external_id.as_deref());
    if let Some(a) = &u.address {
        let o = w.key("address");
        let mut aw = ObjectWriter::new(o);
        aw.opt_str("street", a.street.as_deref())
            .opt_str("city", a.city.as_deref())
            .opt_str("region", a.region.as_deref())
            .opt_str("postalCode", a.postal_code.as_deref())
            .opt_str("country", a.country.as_deref());
        aw.finish();
    }
    w.finish();
}

#[cfg(feature = "serde_json")]
mod parse {
    use super::*;
    use crate::consent::ConsentSignal;
    use crate::session::GaSession;
    use serde_json::{Map, Value};

    fn opt_str<'a>(o: &'a Map<String, Value>, key: &str, field: &'static str) -> Result<Option<&'a str>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::Invalid { field, reason: "expected a string" }),
        }
    }

    fn opt_object<'a>(
        o: &'a Map<String, Value>,
        key: &str,
        field: &'static str,
    ) -> Result<Option<&'a Map<String, Value>>> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Error::Invalid { field, reason: "expected an object" }),
        }
    }

    fn url(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<String>> {
        match opt_str(o, key, field)? {
            None => Ok(None),
            Some(s) if crate::text::char_count(s) > MAX_URL => Err(Error::TooLong { field, max: MAX_URL }),
            Some(s) if s.chars().any(char::is_control) => {
                Err(Error::Invalid { field, reason: "contains control characters" })
            }
            Some(s) => Ok(Some(s.to_owned())),
        }
    }

    fn click_ids(m: &Map<String, Value>) -> Result<ClickIds> {
        let mut ids = ClickIds::default();
        for ((key, slot), kind) in ids.slots_mut().into_iter().zip(&crate::click_ids::CLICK_IDS) {
            *slot = opt_str(m, key, kind.field)?.map(|s| s.trim().to_owned());
        }
        ids.validate()?;
        Ok(ids)
    }

    /// The wire form of a consent signal is one of three strings, exactly as
    /// the OpenAPI document (`Consent`) says and as both trackers send it:
    /// `"granted"`, `"denied"` or `"unknown"` (or absent / `null`: unknown).
    /// Booleans, numbers and other spellings are refused, naming the field: a
    /// consent decision is a legal signal, so the collector does not guess
    /// what `true`, `1` or `"yes"` meant (the JavaScript trackers' APIs take
    /// booleans and send the strings).
    fn consent(m: &Map<String, Value>) -> Result<ConsentState> {
        let sig = |k: &str, field: &'static str| -> Result<ConsentSignal> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(ConsentSignal::Unknown),
                Some(Value::String(s)) if s == "granted" => Ok(ConsentSignal::Granted),
                Some(Value::String(s)) if s == "denied" => Ok(ConsentSignal::Denied),
                Some(Value::String(s)) if s == "unknown" => Ok(ConsentSignal::Unknown),
                Some(_) => Err(Error::Invalid {
                    field,
                    reason: "expected the string \"granted\", \"denied\" or \"unknown\" (not a boolean)",
                }),
            }
        };
        Ok(ConsentState {
            ad_storage: sig("ad_storage", "consent.ad_storage")?,
            analytics_storage: sig("analytics_storage", "consent.analytics_storage")?,
            ad_user_data: sig("ad_user_data", "consent.ad_user_data")?,
            ad_personalization: sig("ad_personalization", "consent.ad_personalization")?,
        })
    }

    fn all_strings_bounded(v: &Value, max: usize) -> bool {
        match v {
            Value::String(s) => s.len() <= max,
            Value::Array(a) => a.len() <= 10 && a.iter().all(|x| all_strings_bounded(x, max)),
            Value::Object(o) => o.len() <= 16 && o.values().all(|x| all_strings_bounded(x, max)),
            Value::Null => true,
            _ => false,
        }
    }

    impl ContextEnvelope {
        /// Parses the JSON form strictly: at most [`MAX_ENVELOPE_BYTES`], `v` must be 1,
        /// every field type- and length-checked, unknown fields ignored; the error names
        /// the field.
        pub fn parse_json(json: &str) -> Result<ContextEnvelope> {
            if json.len() > MAX_ENVELOPE_BYTES {
                return Err(Error::TooLarge { field: "envelope", max: MAX_ENVELOPE_BYTES });
            }
            let v: Value = serde_json::from_str(json)
                .map_err(|_| Error::Invalid { field: "envelope", reason: "malformed JSON" })?;
            ContextEnvelope::from_value(&v)
        }

        /// Parses an already-decoded JSON value; see [`ContextEnvelope::parse_json`].
        pub fn from_value(v: &Value) -> Result<ContextEnvelope> {
            let o = v.as_object().ok_or(Error::Invalid { field: "envelope", reason: "expected a JSON object" })?;
            match o.get("v") {
                Some(Value::Number(n)) if n.as_i64() == Some(1) => {}
                Some(Value::Number(n)) => {
                    return Err(Error::UnsupportedVersion { found: n.as_i64().unwrap_or(-1) });
                }
                None => return Err(Error::Missing { field: "v" }),
                Some(_) => {
                    return Err(Error::Invalid { field: "v", reason: "expected the number 1" });
                }
            }
            let created_at_ms = match o.get("createdAt") {
                Some(Value::Number(n)) => n
                    .as_i64()
                    .filter(|t| *t >= 0)
                    .ok_or(Error::Invalid { field: "createdAt", reason: "expected Unix milliseconds" })?,
                None | Some(Value::Null) => return Err(Error::Missing { field: "createdAt" }),
                Some(_) => {
                    return Err(Error::Invalid { field: "createdAt", reason: "expected Unix milliseconds" });
                }
            };
            let mut env = ContextEnvelope { created_at_ms, ..ContextEnvelope::default() };
            env.client_id = opt_str(o, "clientId", "clientId")?.map(ClientId::parse).transpose()?;
            env.session_id = opt_str(o, "sessionId", "sessionId")?.map(GaSession::parse_id).transpose()?;
            env.session_number = match o.get("sessionNumber") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(Error::Invalid { field: "sessionNumber", reason: "expected a positive integer" })?,
                ),
                Some(_) => {
                    return Err(Error::Invalid { field: "sessionNumber", reason: "expected a positive integer" });
                }
            };
            env.user_id = opt_str(o, "userId", "userId")?.map(UserId::parse).transpose()?;
            env.visitor_id = opt_str(o, "visitorId", "visitorId")?.map(VisitorId::parse).transpose()?;
            if let Some(m) = opt_object(o, "clickIds", "clickIds")? {
                env.click_ids = click_ids(m)?;
            }
            if let Some(m) = opt_object(o, "consent", "consent")? {
                env.consent = consent(m)?;
            }
            if let Some(h) = o.get("hashedUserData").filter(|v| !v.is_null()) {
                if !all_strings_bounded(h, 128) {
                    return Err(Error::Invalid {
                        field: "hashedUserData",
                        reason: "expected google/meta objects of short string lists",
                    });
                }
                let parsed: HashedUserData = serde_json::from_value(h.clone()).map_err(|_| Error::Invalid {
                    field: "hashedUserData",
                    reason: "expected google/meta objects of short string lists",
                })?;
                env.hashed_user_data = Some(parsed);
            }
            if let Some(u) = o.get("userData").filter(|v| !v.is_null()) {
                if !all_strings_bounded(u, 256) {
                    return Err(Error::Invalid { field: "userData", reason: "expected an object of short strings" });
                }
                let parsed: UserData = serde_json::from_value(u.clone()).map_err(|_| Error::Invalid {
                    field: "userData",
                    reason: "expected email/phone/firstName/lastName/address strings",
                })?;
                env.raw_user_data = Some(parsed);
            }
            env.page_url = url(o, "pageUrl", "pageUrl")?;
            env.referrer = url(o, "referrer", "referrer")?;
            match o.get("eventIds") {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    if a.len() > MAX_EVENT_IDS {
                        return Err(Error::TooMany { field: "eventIds", max: MAX_EVENT_IDS });
                    }
                    for id in a {
                        let s = id.as_str().ok_or(Error::Invalid { field: "eventIds", reason: "expected strings" })?;
                        env.event_ids.push(EventId::parse(s)?);
                    }
                }
                Some(_) => {
                    return Err(Error::Invalid { field: "eventIds", reason: "expected an array of strings" });
                }
            }
            Ok(env)
        }

        /// Parses the base64url form (padding optional).
        pub fn parse_base64url(s: &str) -> Result<ContextEnvelope> {
            use base64::Engine;
            let t = s.trim().trim_end_matches('=');
            if t.len() > MAX_ENVELOPE_BYTES * 4 / 3 + 4 {
                return Err(Error::TooLarge { field: "envelope", max: MAX_ENVELOPE_BYTES });
            }
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .map_err(|_| Error::Invalid { field: "envelope", reason: "not base64url" })?;
            let json =
                String::from_utf8(bytes).map_err(|_| Error::Invalid { field: "envelope", reason: "not UTF-8" })?;
            ContextEnvelope::parse_json(&json)
        }

        /// Parses either form: JSON when it starts with `{`, base64url otherwise.
        pub fn parse(s: &str) -> Result<ContextEnvelope> {
            if s.trim_start().starts_with('{') {
                ContextEnvelope::parse_json(s)
            } else {
                ContextEnvelope::parse_base64url(s)
            }
        }
    }
}

#[cfg(all(test, feature = "serde_json"))]
mod tests {
    use super::*;
    use crate::consent::ConsentSignal;
    use crate::user_data::GoogleUserData;
    use proptest::prelude::*;

    fn full() -> ContextEnvelope {
        ContextEnvelope {
            created_at_ms: 1_777_700_000_000,
            client_id: Some(ClientId::parse("1234567890.1777000000").unwrap()),
            session_id: Some("1777699000".into()),
            session_number: Some(3),
            user_id: Some(UserId::parse("user_42").unwrap()),
            visitor_id: Some(VisitorId::parse("anon-abc123").unwrap()),
            click_ids: ClickIds {
                gclid: Some("Cj0KCQ".into()),
                fbc: Some("fb.1.1554763741205.IwAR2F4".into()),
                fbp: Some("fb.1.1596403881668.1116446470".into()),
                rtid: Some("qjkp3xy7dtf9wvneazc5r2bh8ls1m06g".into()),
                ..Default::default()
            },
            consent: ConsentState { ad_personalization: ConsentSignal::Denied, ..ConsentState::ALL_GRANTED },
            hashed_user_data: Some(HashedUserData {
                google: Some(GoogleUserData { sha256_email_address: vec!["a".repeat(64)], ..Default::default() }),
                meta: None,
            }),
            raw_user_data: None,
            page_url: Some("https://shop.example/checkout?x=\"1\"".into()),
            referrer: Some("https://google.com/".into()),
            event_ids: vec![EventId::parse("0190c0de-0000-7000-8000-000000000001").unwrap()],
        }
    }

    #[test]
    fn json_round_trip() {
        let e = full();
        assert_eq!(ContextEnvelope::parse_json(&e.to_json()).unwrap(), e);
        assert_eq!(ContextEnvelope::parse_base64url(&e.to_base64url()).unwrap(), e);
        assert_eq!(ContextEnvelope::parse(&e.to_base64url()).unwrap(), e);
    }

    #[test]
    fn trackbridge_envelope_parses() {
        // https://docs.trackbridge.dev/sdk/concepts/context-envelope/
        let tb = r#"{ "v": 1, "createdAt": 1777700000000, "clientId": "1234567890.1777000000", "sessionId": "1777699000",
          "userId": "user_42", "clickIds": { "gclid": "Cj0KCQ..." },
          "consent": { "ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "denied", "analytics_storage": "granted" },
          "userData": { "email": "jane@example.com", "phone": "+1 (555) 123-4567" } }"#;
        let env = ContextEnvelope::parse_json(tb).unwrap();
        assert_eq!(env.client_id.unwrap().as_str(), "1234567890.1777000000");
        assert_eq!(env.click_ids.gclid.as_deref(), Some("Cj0KCQ..."));
        assert_eq!(env.consent.ad_personalization, ConsentSignal::Denied);
        assert_eq!(env.raw_user_data.unwrap().email.as_deref(), Some("jane@example.com"));
    }

    #[test]
    fn every_click_id_round_trips() {
        let json = r#"{"v":1,"createdAt":1,"clickIds":{"gclid":"G","msclkid":"M","twclid":"T","li_fat_id":"L","ScCid":"S","epik":"E","rdt_cid":"R","dclid":"D"}}"#;
        let env = ContextEnvelope::parse_json(json).unwrap();
        assert_eq!(env.click_ids.msclkid.as_deref(), Some("M"));
        assert_eq!(env.click_ids.sc_cid.as_deref(), Some("S"));
        assert_eq!(env.click_ids.dclid.as_deref(), Some("D"));
        assert!(env.to_json().contains(r#""clickIds":{"gclid":"G","msclkid":"M","twclid":"T","li_fat_id":"L","ScCid":"S","epik":"E","rdt_cid":"R","dclid":"D"}"#));
        assert_eq!(ContextEnvelope::parse_json(&env.to_json()).unwrap(), env);
        let bad = r#"{"v":1,"createdAt":1,"clickIds":{"li_fat_id":"a;b"}}"#;
        assert_eq!(ContextEnvelope::parse_json(bad).unwrap_err().field(), "clickIds.li_fat_id");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"createdAt":1}"#, "v"),
            (r#"{"v":2,"createdAt":1}"#, "v"),
            (r#"{"v":"1","createdAt":1}"#, "v"),
            (r#"{"v":1}"#, "createdAt"),
            (r#"{"v":1,"createdAt":-5}"#, "createdAt"),
            (r#"{"v":1,"createdAt":1,"clientId":"nope"}"#, "clientId"),
            (r#"{"v":1,"createdAt":1,"clientId":5}"#, "clientId"),
            (r#"{"v":1,"createdAt":1,"sessionId":"s1"}"#, "sessionId"),
            (r#"{"v":1,"createdAt":1,"clickIds":[]}"#, "clickIds"),
            (r#"{"v":1,"createdAt":1,"clickIds":{"gclid":"a b"}}"#, "clickIds.gclid"),
            (r#"{"v":1,"createdAt":1,"clickIds":{"fbc":"nonsense"}}"#, "clickIds.fbc"),
            (r#"{"v":1,"createdAt":1,"consent":{"ad_storage":"maybe"}}"#, "consent.ad_storage"),
            // Consent is one of the three strings the OpenAPI document lists: no booleans, no other spelling.
            (r#"{"v":1,"createdAt":1,"consent":{"ad_storage":true}}"#, "consent.ad_storage"),
            (r#"{"v":1,"createdAt":1,"consent":{"analytics_storage":false}}"#, "consent.analytics_storage"),
            (r#"{"v":1,"createdAt":1,"consent":{"ad_user_data":"GRANTED"}}"#, "consent.ad_user_data"),
            (r#"{"v":1,"createdAt":1,"consent":{"ad_personalization":1}}"#, "consent.ad_personalization"),
            (r#"{"v":1,"createdAt":1,"eventIds":["ok","has space"]}"#, "eventId"),
            (r#"{"v":1,"createdAt":1,"userData":{"email":["x"]}}"#, "userData"),
            (r#"{"v":1,"createdAt":1,"pageUrl":7}"#, "pageUrl"),
            ("not json", "envelope"),
        ];
        for (json, field) in cases {
            let err = ContextEnvelope::parse_json(json).unwrap_err();
            assert_eq!(err.field(), field, "{json}: {err}");
        }
        assert_eq!(
            ContextEnvelope::parse_json(r#"{"v":2,"createdAt":1}"#).unwrap_err(),
            Error::UnsupportedVersion { found: 2 }
        );
    }

    #[test]
    fn bounded() {
        let big = format!(r#"{{"v":1,"createdAt":1,"pageUrl":"{}"}}"#, "a".repeat(MAX_ENVELOPE_BYTES));
        assert_eq!(ContextEnvelope::parse_json(&big).unwrap_err().field(), "envelope");
        let many = format!(r#"{{"v":1,"createdAt":1,"eventIds":[{}]}}"#, vec!["\"a\""; 51].join(","));
        assert_eq!(ContextEnvelope::parse_json(&many).unwrap_err().field(), "eventIds");
        let unknown = r#"{"v":1,"createdAt":1,"future":{"x":[1,2,3]}}"#;
        assert!(ContextEnvelope::parse_json(unknown).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = ContextEnvelope::parse(&s);
            let _ = ContextEnvelope::parse_base64url(&s);
        }

        #[test]
        fn arbitrary_field_values_never_panic(k in "[a-zA-Z]{1,12}", v in ".{0,40}", n in proptest::num::i64::ANY) {
            let j = serde_json::json!({"v":1,"createdAt":n,"clientId":v,"sessionId":v,"clickIds":{k.clone():v},"consent":{k.clone():v},"eventIds":[v],"userData":{k:v}});
            let _ = ContextEnvelope::from_value(&j);
        }
    }
}
