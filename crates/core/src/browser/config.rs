//! `createBrowserTracker(config)`: every option checked, with a message that
//! says what to fix, into a [`BrowserConfig`].

use super::input::Value;
use super::queue::{DEFAULT_BATCH_EVENTS, DEFAULT_MAX_QUEUE_BYTES};
use crate::prelude::*;

/// A config problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// An option with a bad value: the option and what to do about it.
    Bad {
        /// The option, e.g. `endpoint`.
        field: &'static str,
        /// What to fix, e.g. `must be a domain name such as 'example.com'`.
        fix: &'static str,
    },
    /// An option the tracker does not know (a typo, usually).
    Unknown(String),
}

impl ConfigError {
    /// `[tally] createBrowserTracker: <field> <fix>` (or the unknown option and the list).
    pub fn message(&self) -> String {
        let mut s = String::with_capacity(96);
        s.push_str("[tally] createBrowserTracker: ");
        match self {
            ConfigError::Bad { field, fix } => {
                s.push_str(field);
                s.push(' ');
                s.push_str(fix);
            }
            ConfigError::Unknown(k) => {
                s.push_str("unknown option '");
                s.push_str(k);
                s.push_str("'; the options are ");
                for (i, k) in CONFIG_KEYS.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(k);
                }
            }
        }
        s
    }

    /// The option the error is about.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Bad { field, .. } => field,
            ConfigError::Unknown(k) => k,
        }
    }
}

fn err(field: &'static str, fix: &'static str) -> ConfigError {
    ConfigError::Bad { field, fix }
}

fn all_bytes(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(ok)
}

/// `endpoint`: an absolute `http(s)://` URL or a same-origin path starting with `/`.
pub fn check_endpoint(v: &str) -> Result<(), ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(err("endpoint", "is required: pass your first-party collect URL, e.g. endpoint: '/tally/collect'"));
    }
    let ok = !t.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && match t.strip_prefix("https://").or_else(|| t.strip_prefix("http://")) {
            Some(rest) => !rest.is_empty() && !rest.starts_with('/'),
            None => t.starts_with('/') && !t.starts_with("//"),
        };
    if ok {
        Ok(())
    } else {
        Err(err(
            "endpoint",
            "must be your first-party collect URL: an absolute http(s):// URL or a path starting with / (e.g. '/tally/collect')",
        ))
    }
}

/// `siteKey`: 1–64 characters of `[A-Za-z0-9_.-]`.
pub fn check_site_key(v: &str) -> Result<(), ConfigError> {
    if all_bytes(v, 64, |b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        Ok(())
    } else {
        Err(err("siteKey", "must be 1-64 letters, digits, '_', '.' or '-'"))
    }
}

/// `ga4MeasurementId`: `G-` followed by upper-case letters and digits.
pub fn check_measurement_id(v: &str) -> Result<(), ConfigError> {
    let rest = v.strip_prefix("G-").unwrap_or_default();
    if all_bytes(rest, 20, |b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(err("ga4MeasurementId", "must look like 'G-ABC123XYZ' (your GA4 web stream's measurement id)"))
    }
}

/// `adsConversionId`: `AW-` followed by 5–15 digits.
pub fn check_ads_id(v: &str) -> Result<(), ConfigError> {
    let rest = v.strip_prefix("AW-").unwrap_or_default();
    if rest.len() >= 5 && all_bytes(rest, 15, |b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(err("adsConversionId", "must look like 'AW-123456789' (Google Ads conversion id)"))
    }
}

/// A gtag conversion label: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn check_label(v: &str) -> Result<(), ConfigError> {
    if all_bytes(v, 64, |b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
        Ok(())
    } else {
        Err(err(
            "conversionLabels",
            "values must be gtag conversion labels such as 'AbC-D_efG123' (the part after the '/' in send_to)",
        ))
    }
}

/// `metaPixelId`: 5–20 digits.
pub fn check_pixel_id(v: &str) -> Result<(), ConfigError> {
    if v.len() >= 5 && all_bytes(v, 20, |b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(err("metaPixelId", "must be the digits of your Meta pixel id, e.g. '123456789012345'"))
    }
}

/// `cookieDomain`: a domain the page's host is in (`example.com` for
/// `shop.example.com`). An empty `hostname` (unknown) accepts any well-formed domain.
pub fn check_cookie_domain(v: &str, hostname: &str) -> Result<(), ConfigError> {
    let d = v.trim_start_matches('.');
    if !all_bytes(d, 253, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(err("cookieDomain", "must be a domain name such as 'example.com'"));
    }
    let h = hostname.to_ascii_lowercase();
    let d = d.to_ascii_lowercase();
    let inside = h == d || h.strip_suffix(d.as_str()).is_some_and(|head| head.ends_with('.'));
    if hostname.is_empty() || inside {
        Ok(())
    } else {
        Err(err(
            "cookieDomain",
            "must be the page's host or a parent of it (browsers ignore cookies for other domains)",
        ))
    }
}

/// Longest cookie lifetime browsers honour (Chrome caps at 400 days).
pub const MAX_COOKIE_DAYS: f64 = 400.0;

const EXPIRY_FIX: &str = "must be a number of days between 1 and 400 (default 90)";

/// `cookieExpiryDays`: a number of days in `(0, 400]`.
pub fn check_expiry_days(v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= MAX_COOKIE_DAYS { Ok(()) } else { Err(err("cookieExpiryDays", EXPIRY_FIX)) }
}

/// Where click ids are kept (`clickIdStorage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickIdStorage {
    /// Read and write Tally's first-party cookies (default).
    Cookie,
    /// Capture from the URL and platform cookies; never read or write Tally cookies.
    Memory,
    /// Capture nothing.
    None,
}

impl ClickIdStorage {
    /// Parses `'cookie' | 'memory' | 'none'`.
    pub fn parse(v: &str) -> Result<ClickIdStorage, ConfigError> {
        match v {
            "cookie" => Ok(ClickIdStorage::Cookie),
            "memory" => Ok(ClickIdStorage::Memory),
            "none" => Ok(ClickIdStorage::None),
            _ => Err(err("clickIdStorage", "must be 'cookie', 'memory' or 'none'")),
        }
    }
}

/// Parses `consentMode`: `'v2'` → true (wait for a decision), `'off'` → false.
pub fn parse_consent_mode(v: &str) -> Result<bool, ConfigError> {
    match v {
        "v2" => Ok(true),
        "off" => Ok(false),
        _ => {
            Err(err("consentMode", "must be 'v2' (wait for updateConsent) or 'off' (the site handles consent itself)"))
        }
    }
}

/// The config options, for the unknown-option check.
pub const CONFIG_KEYS: [&str; 15] = [
    "endpoint",
    "siteKey",
    "ga4MeasurementId",
    "adsConversionId",
    "conversionLabels",
    "metaPixelId",
    "consentMode",
    "cookieDomain",
    "cookieExpiryDays",
    "clickIdStorage",
    "debug",
    "onDrop",
    "maxQueueBytes",
    "batchSize",
    "orderId",
];

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BrowserConfig {
    /// The collector URL.
    pub endpoint: String,
    /// The site key sent with every batch.
    pub site_key: Option<String>,
    /// `G-…`.
    pub ga4: Option<String>,
    /// `AW-…`.
    pub ads: Option<String>,
    /// `(helper key, gtag label)`.
    pub labels: Vec<(String, String)>,
    /// Meta pixel id.
    pub pixel: Option<String>,
    /// `consentMode: 'v2'`: wait for a decision.
    pub consent_v2: bool,
    /// `cookieDomain`, without leading dots.
    pub cookie_domain: Option<String>,
    /// Cookie lifetime, seconds.
    pub cookie_secs: i64,
    /// `clickIdStorage`.
    pub click_storage: ClickIdStorage,
    /// `debug` (the page URL's `?tally_debug=` overrides it: [`debug_switch`]).
    pub debug: bool,
    /// Persisted queue cap, bytes.
    pub max_queue_bytes: usize,
    /// Events per request.
    pub batch_size: usize,
    /// `orderId`: how the order id fills gtag's `transaction_id` (`'asGiven'`,
    /// the default, or `'hashed'`; the server's `order_id` setting must match).
    pub order_id: crate::ids::OrderIdForm,
}

/// A string option, trimmed; absent → `None`.
fn opt_str(o: &Value, key: &'static str) -> Result<Option<String>, ConfigError> {
    match o.get(key) {
        Value::Absent => Ok(None),
        Value::Str(s) => Ok(Some(s.trim().to_owned())),
        _ => Err(err(key, "must be a string")),
    }
}

fn checked(
    o: &Value,
    key: &'static str,
    check: fn(&str) -> Result<(), ConfigError>,
) -> Result<Option<String>, ConfigError> {
    let v = opt_str(o, key)?;
    if let Some(v) = &v {
        check(v)?;
    }
    Ok(v)
}

fn opt_num(o: &Value, key: &'static str, fix: &'static str) -> Result<Option<f64>, ConfigError> {
    match o.get(key) {
        Value::Absent => Ok(None),
        Value::Num(n) => Ok(Some(*n)),
        _ => Err(err(key, fix)),
    }
}

fn in_range(
    o: &Value,
    key: &'static str,
    range: (f64, f64),
    fixes: (&'static str, &'static str),
) -> Result<Option<usize>, ConfigError> {
    match opt_num(o, key, fixes.0)? {
        Some(n) if !(n >= range.0 && n <= range.1) => Err(err(key, fixes.1)),
        n => Ok(n.map(|n| n as usize)),
    }
}

impl BrowserConfig {
    /// Reads and checks the options object. `hostname` is the page's
    /// (`location.hostname`) for the `cookieDomain` check.
    pub fn from_value(o: &Value, hostname: &str) -> Result<BrowserConfig, ConfigError> {
        let Value::Map(m) = o else {
            return Err(err("config", "must be an object such as { endpoint: '/tally/collect' }"));
        };
        if let Some((k, _)) = m.iter().find(|(k, _)| !CONFIG_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::Unknown(k.clone()));
        }
        let endpoint = opt_str(o, "endpoint")?.unwrap_or_default();
        check_endpoint(&endpoint)?;
        let ads = checked(o, "adsConversionId", check_ads_id)?;
        let mut labels = Vec::new();
        match o.get("conversionLabels") {
            Value::Absent => {}
            Value::Map(pairs) => {
                for (k, v) in pairs.iter().filter(|(_, v)| !v.is_absent()) {
                    let v = v.as_str().unwrap_or_default();
                    check_label(v)?;
                    labels.push((k.clone(), v.to_owned()));
                }
            }
            _ => {
                return Err(err("conversionLabels", "must be an object such as { purchase: 'AbC123' }"));
            }
        }
        if !labels.is_empty() && ads.is_none() {
            return Err(err(
                "conversionLabels",
                "needs adsConversionId ('AW-…') so labels can be sent as send_to 'AW-…/label'",
            ));
        }
        let consent_v2 = match opt_str(o, "consentMode")? {
            Some(m) => parse_consent_mode(&m)?,
            None => true,
        };
        let cookie_domain = opt_str(o, "cookieDomain")?;
        if let Some(d) = &cookie_domain {
            check_cookie_domain(d, hostname)?;
        }
        let days = opt_num(o, "cookieExpiryDays", EXPIRY_FIX)?.unwrap_or(90.0);
        check_expiry_days(days)?;
        let click_storage = match opt_str(o, "clickIdStorage")? {
            Some(s) => ClickIdStorage::parse(&s)?,
            None => ClickIdStorage::Cookie,
        };
        let debug = match o.get("debug") {
            Value::Absent => false,
            Value::Bool(b) => *b,
            _ => return Err(err("debug", "must be true or false")),
        };
        if !matches!(o.get("onDrop"), Value::Absent | Value::Func) {
            return Err(err("onDrop", "must be a function"));
        }
        let max_queue_bytes = in_range(
            o,
            "maxQueueBytes",
            (4096.0, 4_194_304.0),
            ("must be a number of bytes", "must be between 4096 and 4194304"),
        )?;
        let batch_size =
            in_range(o, "batchSize", (1.0, 100.0), ("must be a number of events", "must be between 1 and 100"))?;
        let order_id = match opt_str(o, "orderId")? {
            None => crate::ids::OrderIdForm::AsGiven,
            Some(s) => {
                crate::ids::OrderIdForm::parse(&s).map_err(|_| err("orderId", "must be 'asGiven' or 'hashed'"))?
            }
        };
        Ok(BrowserConfig {
            endpoint,
            site_key: checked(o, "siteKey", check_site_key)?,
            ga4: checked(o, "ga4MeasurementId", check_measurement_id)?,
            ads,
            labels,
            pixel: checked(o, "metaPixelId", check_pixel_id)?,
            consent_v2,
            cookie_domain: cookie_domain.map(|d| d.trim_start_matches('.').to_owned()),
            cookie_secs: (days * 86_400.0) as i64,
            click_storage,
            debug,
            max_queue_bytes: max_queue_bytes.unwrap_or(DEFAULT_MAX_QUEUE_BYTES),
            batch_size: batch_size.unwrap_or(DEFAULT_BATCH_EVENTS),
            order_id,
        })
    }

    /// The gtag label configured for a helper key (`purchase`, `addToCart` …) or
    /// a custom `trackConversion` key.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The page URL's debug switch: `?tally_debug=1` (or `true`) turns logging on,
/// any other value off; `None` without the parameter.
pub fn debug_switch(search: &str) -> Option<bool> {
    crate::click_ids::query_pairs(search)
        .filter(|(k, _)| k == "tally_debug")
        .map(|(_, v)| v == "1" || v == "true")
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, Value)]) -> Result<BrowserConfig, ConfigError> {
        let m = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        BrowserConfig::from_value(&Value::Map(m), "shop.example.com")
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn endpoint_rules() {
        for ok in ["/tally/collect", "https://shop.example/c", "http://127.0.0.1:8080/collect"] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in ["", "  ", "collect", "//evil.example/c", "ftp://x", "https://", "/a b", "javascript:alert(1)"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_endpoint("").unwrap_err().message().contains("endpoint is required"));
    }

    #[test]
    fn id_rules() {
        assert!(check_measurement_id("G-ABC123").is_ok());
        assert!(check_measurement_id("UA-1").is_err());
        assert!(check_measurement_id("G-abc").is_err());
        assert!(check_ads_id("AW-123456789").is_ok());
        assert!(check_ads_id("AW-12x").is_err());
        assert!(check_ads_id("AW-1234").is_err());
        assert!(check_label("AbC-D_efG123").is_ok());
        assert!(check_label("a/b").is_err());
        assert!(check_pixel_id("123456789012345").is_ok());
        assert!(check_pixel_id("12ab").is_err());
        assert!(check_site_key("shop_1").is_ok());
        assert!(check_site_key("").is_err());
        assert!(check_expiry_days(90.0).is_ok());
        for bad in [0.0, -1.0, 401.0, f64::NAN] {
            assert!(check_expiry_days(bad).is_err());
        }
        assert_eq!(ClickIdStorage::parse("memory"), Ok(ClickIdStorage::Memory));
        assert!(ClickIdStorage::parse("local").is_err());
        assert_eq!(parse_consent_mode("off"), Ok(false));
        assert!(parse_consent_mode("v1").is_err());
    }

    #[test]
    fn cookie_domain_must_contain_host() {
        assert!(check_cookie_domain("example.com", "shop.example.com").is_ok());
        assert!(check_cookie_domain(".example.com", "example.com").is_ok());
        assert!(check_cookie_domain("ample.com", "shop.example.com").is_err());
        assert!(check_cookie_domain("other.com", "shop.example.com").is_err());
        assert!(check_cookie_domain("bad domain", "x").is_err());
        assert!(check_cookie_domain("example.com", "").is_ok());
    }

    #[test]
    fn whole_config() {
        let c = cfg(&[
            ("endpoint", s(" /tally/collect ")),
            ("adsConversionId", s("AW-123456789")),
            ("conversionLabels", Value::Map(vec![("purchase".into(), s("AbC")), ("lead".into(), Value::Absent)])),
            ("cookieDomain", s(".example.com")),
            ("cookieExpiryDays", Value::Num(1.0)),
            ("clickIdStorage", s("memory")),
            ("onDrop", Value::Func),
            ("batchSize", Value::Num(5.0)),
            ("orderId", s("hashed")),
        ])
        .unwrap();
        assert_eq!(c.order_id, crate::ids::OrderIdForm::Hashed);
        assert_eq!(cfg(&[("endpoint", s("/c"))]).unwrap().order_id, crate::ids::OrderIdForm::AsGiven);
        assert_eq!(c.endpoint, "/tally/collect");
        assert_eq!(c.label("purchase"), Some("AbC"));
        assert_eq!(c.label("lead"), None);
        assert_eq!(c.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(c.cookie_secs, 86_400);
        assert_eq!(c.click_storage, ClickIdStorage::Memory);
        assert!(c.consent_v2 && !c.debug);
        assert_eq!((c.batch_size, c.max_queue_bytes), (5, DEFAULT_MAX_QUEUE_BYTES));
    }

    #[test]
    fn config_errors_say_what_to_fix() {
        let msg = |pairs: &[(&str, Value)]| cfg(pairs).unwrap_err().message();
        assert!(msg(&[]).contains("endpoint is required"));
        assert!(
            msg(&[("endpoint", s("/c")), ("consentmode", s("v2"))])
                .contains("unknown option 'consentmode'; the options are endpoint, siteKey")
        );
        assert!(
            msg(&[("endpoint", s("/c")), ("conversionLabels", Value::Map(vec![("purchase".into(), s("abc"))]))])
                .contains("needs adsConversionId")
        );
        assert!(msg(&[("endpoint", Value::Num(1.0))]).contains("endpoint must be a string"));
        assert!(msg(&[("endpoint", s("/c")), ("debug", s("yes"))]).contains("debug must be true"));
        assert!(msg(&[("endpoint", s("/c")), ("onDrop", s("f"))]).contains("onDrop must be"));
        assert!(
            msg(&[("endpoint", s("/c")), ("batchSize", Value::Num(0.0))])
                .contains("batchSize must be between 1 and 100")
        );
        assert!(
            msg(&[("endpoint", s("/c")), ("orderId", s("uuid"))]).contains("orderId must be 'asGiven' or 'hashed'")
        );
        assert!(
            msg(&[("endpoint", s("/c")), ("maxQueueBytes", s("1"))])
                .contains("maxQueueBytes must be a number of bytes")
        );
        assert!(
            msg(&[("endpoint", s("/c")), ("cookieDomain", s("other.com"))])
                .contains("cookieDomain must be the page's host")
        );
        assert_eq!(BrowserConfig::from_value(&Value::Absent, "").unwrap_err().field(), "config");
    }

    #[test]
    fn debug_from_the_url() {
        assert_eq!(debug_switch("?a=1&tally_debug=1"), Some(true));
        assert_eq!(debug_switch("?tally_debug=0"), Some(false));
        assert_eq!(debug_switch("?x=1"), None);
    }
}
