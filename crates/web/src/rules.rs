//! Rules the browser tracker needs that `tally-core` does not have yet.
//!
//! **Everything in this module is pure and belongs in the core**; it lives here
//! only until it is moved (the list is in the crate's hand-over notes). Nothing
//! here touches the browser, so it is tested natively with `cargo test -p tally-web`.
//!
//! * config validation (endpoint, GA4/Ads/Meta ids, labels, cookie domain, expiry);
//! * the browser consent gate for the first-party collector and the envelope stripping;
//! * the `Set-Cookie`-style string written to `document.cookie`;
//! * gtag / fbq parameter objects (GA4 event params, Ads conversion, Meta custom data);
//! * the collector wire contract: batch body, reply statuses, HTTP outcome, backoff.

use tally_core::consent::{ConsentSignal, ConsentState, DestinationKind, StoragePurpose};
use tally_core::event::ParamValue;
use tally_core::json::{ObjectWriter, push_str};
use tally_core::{ContextEnvelope, Event, EventName};

// ---------------------------------------------------------------- config

/// A config problem: the option and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option, e.g. `endpoint`.
    pub field: &'static str,
    /// What to fix, e.g. `use an absolute http(s) URL or a path starting with /`.
    pub fix: &'static str,
}

impl ConfigError {
    /// `[tally] createBrowserTracker: <field> <fix>`.
    pub fn message(&self) -> String {
        let mut s = String::with_capacity(80);
        s.push_str("[tally] createBrowserTracker: ");
        s.push_str(self.field);
        s.push(' ');
        s.push_str(self.fix);
        s
    }
}

fn err(field: &'static str, fix: &'static str) -> ConfigError {
    ConfigError { field, fix }
}

/// `endpoint`: an absolute `http(s)://` URL or a same-origin path starting with `/`.
pub fn check_endpoint(v: &str) -> Result<(), ConfigError> {
    let bad = err(
        "endpoint",
        "must be your first-party collect URL: an absolute http(s):// URL or a path starting with / (e.g. '/tally/collect')",
    );
    let t = v.trim();
    if t.is_empty() {
        return Err(err(
            "endpoint",
            "is required: pass your first-party collect URL, e.g. endpoint: '/tally/collect'",
        ));
    }
    if t.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad);
    }
    let ok = if let Some(rest) = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
    {
        !rest.is_empty() && !rest.starts_with('/')
    } else {
        t.starts_with('/') && !t.starts_with("//")
    };
    if ok { Ok(()) } else { Err(bad) }
}

/// `siteKey`: 1–64 characters of `[A-Za-z0-9_.-]`.
pub fn check_site_key(v: &str) -> Result<(), ConfigError> {
    if !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Ok(())
    } else {
        Err(err(
            "siteKey",
            "must be 1-64 letters, digits, '_', '.' or '-'",
        ))
    }
}

fn upper_alnum(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `ga4MeasurementId`: `G-` followed by upper-case letters and digits.
pub fn check_measurement_id(v: &str) -> Result<(), ConfigError> {
    match v.strip_prefix("G-") {
        Some(rest) if upper_alnum(rest) => Ok(()),
        _ => Err(err(
            "ga4MeasurementId",
            "must look like 'G-ABC123XYZ' (your GA4 web stream's measurement id)",
        )),
    }
}

/// `adsConversionId`: `AW-` followed by digits.
pub fn check_ads_id(v: &str) -> Result<(), ConfigError> {
    match v.strip_prefix("AW-") {
        Some(rest) if digits(rest, 5, 15) => Ok(()),
        _ => Err(err(
            "adsConversionId",
            "must look like 'AW-123456789' (Google Ads conversion id)",
        )),
    }
}

/// A gtag conversion label: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn check_label(v: &str) -> Result<(), ConfigError> {
    if !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
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
    if digits(v, 5, 20) {
        Ok(())
    } else {
        Err(err(
            "metaPixelId",
            "must be the digits of your Meta pixel id, e.g. '123456789012345'",
        ))
    }
}

/// `cookieDomain`: a domain the page's host is in (`example.com` for `shop.example.com`).
pub fn check_cookie_domain(v: &str, hostname: &str) -> Result<(), ConfigError> {
    let d = v.trim_start_matches('.');
    let syntax = !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !syntax {
        return Err(err(
            "cookieDomain",
            "must be a domain name such as 'example.com'",
        ));
    }
    let h = hostname.to_ascii_lowercase();
    let d = d.to_ascii_lowercase();
    let inside =
        h == d || (h.ends_with(&d) && h.as_bytes().get(h.len() - d.len() - 1) == Some(&b'.'));
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

/// `cookieExpiryDays`: a number of days in `(0, 400]`.
pub fn check_expiry_days(v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= MAX_COOKIE_DAYS {
        Ok(())
    } else {
        Err(err(
            "cookieExpiryDays",
            "must be a number of days between 1 and 400 (default 90)",
        ))
    }
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
            _ => Err(err(
                "clickIdStorage",
                "must be 'cookie', 'memory' or 'none'",
            )),
        }
    }
}

/// Parses `consentMode`: `'v2'` → true (wait for a decision), `'off'` → false.
pub fn parse_consent_mode(v: &str) -> Result<bool, ConfigError> {
    match v {
        "v2" => Ok(true),
        "off" => Ok(false),
        _ => Err(err(
            "consentMode",
            "must be 'v2' (wait for updateConsent) or 'off' (the site handles consent itself)",
        )),
    }
}

/// The config options, for the unknown-option check.
pub const CONFIG_KEYS: [&str; 14] = [
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
];

// ---------------------------------------------------------------- consent in the browser

/// Whether the first-party collector may receive events at all.
///
/// Before a decision (every signal unknown) nothing is sent. After it, events
/// go when at least one purpose that needs them is granted (analytics, ad
/// storage or ad user data); identifiers are stripped per purpose by
/// [`strip_envelope`], and the server applies [`tally_core::policy`] per destination.
/// With every purpose denied the events are discarded.
pub fn collector_may_send(c: &ConsentState) -> bool {
    c.analytics_storage.is_granted() || c.ad_storage.is_granted() || c.ad_user_data.is_granted()
}

/// Whether the persisted queue, the visitor id and the minted client id may be stored.
pub fn may_store_analytics(c: &ConsentState) -> bool {
    c.allows_storage(StoragePurpose::Analytics)
}

/// Removes from an envelope what its consent does not allow to leave the page:
/// analytics ids without `analytics_storage`, click ids without `ad_storage`,
/// hashed user data without `ad_user_data` (the core's policy for the shop's own sink).
pub fn strip_envelope(env: &mut ContextEnvelope) {
    let p = env.consent.policy(DestinationKind::Webhook);
    if !p.analytics_ids {
        env.client_id = None;
        env.session_id = None;
        env.session_number = None;
        env.visitor_id = None;
        env.user_id = None;
    }
    if !p.click_ids {
        env.click_ids = Default::default();
    }
    if !p.user_data {
        env.hashed_user_data = None;
    }
    env.raw_user_data = None;
    env.page_url = env.page_url.as_deref().map(redact_url);
    env.referrer = env.referrer.as_deref().map(redact_url);
}

/// Query parameters that carry ad click ids (or GA's linker, which embeds them).
pub const CLICK_PARAMS: [&str; 10] = [
    "gclid", "gbraid", "wbraid", "fbclid", "ttclid", "rtid", "dclid", "msclkid", "gclsrc", "_gl",
];

/// A URL without its click-id parameters: click ids travel only in `clickIds`,
/// where consent governs them, never hidden in a page URL.
pub fn redact_url(url: &str) -> String {
    let (head, frag) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let Some((base, query)) = head.split_once('?') else {
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(base);
    let mut first = true;
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if pair.is_empty() || CLICK_PARAMS.contains(&key) {
            continue;
        }
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(pair);
    }
    out.push_str(frag);
    out
}

/// The consent decision as stored between pages: four letters `g`/`d`/`u` in
/// the order ad_storage, analytics_storage, ad_user_data, ad_personalization.
pub fn encode_consent(c: &ConsentState) -> String {
    [
        c.ad_storage,
        c.analytics_storage,
        c.ad_user_data,
        c.ad_personalization,
    ]
    .iter()
    .map(|s| match s {
        ConsentSignal::Granted => 'g',
        ConsentSignal::Denied => 'd',
        ConsentSignal::Unknown => 'u',
    })
    .collect()
}

/// Reads [`encode_consent`]; `None` for anything else.
pub fn decode_consent(s: &str) -> Option<ConsentState> {
    let b = s.as_bytes();
    if b.len() != 4 {
        return None;
    }
    let sig = |c: u8| match c {
        b'g' => Some(ConsentSignal::Granted),
        b'd' => Some(ConsentSignal::Denied),
        b'u' => Some(ConsentSignal::Unknown),
        _ => None,
    };
    Some(ConsentState {
        ad_storage: sig(b[0])?,
        analytics_storage: sig(b[1])?,
        ad_user_data: sig(b[2])?,
        ad_personalization: sig(b[3])?,
    })
}

// ---------------------------------------------------------------- cookies

/// The string assigned to `document.cookie` to set a first-party cookie.
/// `max_age_secs == 0` deletes it.
pub fn cookie_string(
    name: &str,
    value: &str,
    max_age_secs: i64,
    domain: Option<&str>,
    secure: bool,
) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 64);
    s.push_str(name);
    s.push('=');
    s.push_str(&tally_core::cookie::percent_encode(value));
    s.push_str("; Max-Age=");
    tally_core::json::push_i64(&mut s, max_age_secs.max(0));
    s.push_str("; Path=/");
    if let Some(d) = domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    s.push_str("; SameSite=Lax");
    if secure {
        s.push_str("; Secure");
    }
    s
}

// ---------------------------------------------------------------- gtag / fbq parameters

fn write_amount(w: &mut ObjectWriter<'_>, k: &str, v: Option<tally_core::Amount>) {
    if let Some(v) = v {
        v.write_decimal(w.key(k));
    }
}

/// The id Google knows the event by (`transaction_id`): the order key for
/// purchases and refunds (so a refund matches its purchase), the event id otherwise.
pub fn google_transaction_id(e: &Event) -> &str {
    e.id.as_str()
}

/// GA4 event parameters for `gtag('event', name, params)`, as JSON (same
/// fields as the core's GA4 Measurement Protocol builder, snake_case items).
pub fn ga4_params_json(e: &Event, send_to: Option<&str>) -> String {
    let mut out = String::with_capacity(256);
    let mut w = ObjectWriter::new(&mut out);
    w.opt_str("send_to", send_to);
    if matches!(e.name, EventName::Purchase | EventName::Refund) {
        if let Some(k) = e.order_key() {
            w.str("transaction_id", k.as_str());
        }
    }
    w.opt_str("currency", e.currency.as_ref().map(|c| c.as_str()));
    write_amount(&mut w, "value", e.value);
    write_amount(&mut w, "shipping", e.shipping);
    write_amount(&mut w, "tax", e.tax);
    w.opt_str("coupon", e.coupon.as_deref())
        .opt_str("affiliation", e.affiliation.as_deref());
    for (k, v) in &e.params {
        match v {
            ParamValue::Text(s) => {
                w.str(k, s);
            }
            ParamValue::Number(a) => a.write_decimal(w.key(k)),
            ParamValue::Bool(b) => {
                w.bool(k, *b);
            }
        }
    }
    if !e.items.is_empty() {
        let o = w.key("items");
        o.push('[');
        for (i, item) in e.items.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let mut iw = ObjectWriter::new(o);
            for (k, v) in item.text_fields() {
                iw.opt_str(k, v);
            }
            iw.opt_str("creative_slot", item.creative_slot.as_deref());
            write_amount(&mut iw, "price", item.price);
            write_amount(&mut iw, "discount", item.discount);
            if let Some(q) = item.quantity {
                iw.int("quantity", i64::from(q));
            }
            if let Some(ix) = item.index {
                iw.int("index", i64::from(ix));
            }
            iw.finish();
        }
        o.push(']');
    }
    w.finish();
    out
}

/// Google Ads conversion parameters for `gtag('event', 'conversion', params)`.
pub fn ads_conversion_json(e: &Event, ads_id: &str, label: &str) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::new(&mut out);
    let o = w.key("send_to");
    let mut st = String::with_capacity(ads_id.len() + label.len() + 1);
    st.push_str(ads_id);
    st.push('/');
    st.push_str(label);
    push_str(o, &st);
    let txn = match (&e.name, e.order_key()) {
        (EventName::Purchase | EventName::Refund, Some(k)) => k,
        _ => e.id.clone(),
    };
    w.str("transaction_id", txn.as_str());
    write_amount(&mut w, "value", e.value);
    w.opt_str("currency", e.currency.as_ref().map(|c| c.as_str()));
    w.finish();
    out
}

/// Whether Meta has a standard event for this name (`fbq('track', …)`);
/// otherwise it goes as `fbq('trackCustom', …)`. Refunds are not sent to Meta.
pub fn meta_call(name: &EventName) -> Option<&'static str> {
    match name {
        EventName::Refund => None,
        n if n.meta_name() != n.as_str() => Some("track"),
        _ => Some("trackCustom"),
    }
}

/// Meta custom data for `fbq('track', name, data, { eventID })`.
pub fn meta_custom_data_json(e: &Event) -> String {
    let mut out = String::with_capacity(160);
    let mut w = ObjectWriter::new(&mut out);
    write_amount(&mut w, "value", e.value);
    w.opt_str("currency", e.currency.as_ref().map(|c| c.as_str()));
    if !e.items.is_empty() {
        let o = w.key("content_ids");
        o.push('[');
        let mut first = true;
        for id in e.items.iter().filter_map(|i| i.item_id.as_deref()) {
            if !first {
                o.push(',');
            }
            first = false;
            push_str(o, id);
        }
        o.push(']');
        let o = w.key("contents");
        o.push('[');
        for (i, item) in e.items.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let mut cw = ObjectWriter::new(o);
            cw.opt_str("id", item.item_id.as_deref().or(item.item_name.as_deref()));
            cw.int("quantity", i64::from(item.quantity.unwrap_or(1)));
            write_amount(&mut cw, "item_price", item.price);
            cw.finish();
        }
        o.push(']');
        w.str("content_type", "product");
        let n: u64 = e
            .items
            .iter()
            .map(|i| u64::from(i.quantity.unwrap_or(1)))
            .sum();
        w.int("num_items", i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Some(ParamValue::Text(s)) = e.params.get("search_term") {
        w.str("search_string", s);
    }
    w.finish();
    out
}

// ---------------------------------------------------------------- collector contract

/// Most bytes in one beacon or keepalive request (the browser's shared budget).
pub const MAX_BEACON_BYTES: usize = 64 * 1024;

/// The collector request body:
/// `{"siteKey":…,"sentAt":…,"context":{…},"events":[…]}`.
pub fn batch_body<'a>(
    site_key: Option<&str>,
    sent_at_ms: i64,
    context_json: &str,
    events: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut out = String::with_capacity(context_json.len() + 512);
    let mut w = ObjectWriter::new(&mut out);
    w.opt_str("siteKey", site_key)
        .int("sentAt", sent_at_ms)
        .raw("context", context_json);
    let o = w.key("events");
    o.push('[');
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(e);
    }
    o.push(']');
    w.finish();
    out
}

/// What to do with a batch after the collector answered with an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    /// 2xx: read the per-event results.
    Delivered,
    /// Network error (status 0), 408, 429 or 5xx: keep and retry later.
    Retry,
    /// Any other 4xx (or an unexpected status): the batch can never succeed; drop it.
    Drop,
}

/// Classifies an HTTP status (0 = network error).
pub fn http_outcome(status: u16) -> HttpOutcome {
    match status {
        200..=299 => HttpOutcome::Delivered,
        0 | 408 | 429 | 500..=599 => HttpOutcome::Retry,
        _ => HttpOutcome::Drop,
    }
}

/// Whether a per-event `status` in the collector's reply settles the event
/// (it leaves the queue). Unknown statuses are kept and retried.
pub fn status_settles(status: &str) -> bool {
    matches!(
        status,
        "accepted" | "duplicate" | "invalid" | "consent_denied"
    )
}

/// Retry delay after `failures` consecutive failures: 1 s doubling to at most
/// 5 minutes, with ±50 % jitter from `random`.
pub fn backoff_ms(failures: u32, random: u32) -> u32 {
    let exp = failures.saturating_sub(1).min(9);
    let base = (1000u32 << exp).min(300_000);
    base / 2 + random % base.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::consent::ConsentSignal::*;
    use tally_core::{Amount, ClickIds, ClientId, Currency, Item, TransactionId};

    #[test]
    fn endpoint_rules() {
        for ok in [
            "/tally/collect",
            "https://shop.example/c",
            "http://127.0.0.1:8080/collect",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "  ",
            "collect",
            "//evil.example/c",
            "ftp://x",
            "https://",
            "/a b",
            "javascript:alert(1)",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert!(
            check_endpoint("")
                .unwrap_err()
                .message()
                .contains("endpoint is required")
        );
    }

    #[test]
    fn id_rules() {
        assert!(check_measurement_id("G-ABC123").is_ok());
        assert!(check_measurement_id("UA-1").is_err());
        assert!(check_measurement_id("G-abc").is_err());
        assert!(check_ads_id("AW-123456789").is_ok());
        assert!(check_ads_id("AW-12x").is_err());
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
    }

    #[test]
    fn consent_gate() {
        let mut c = ConsentState::default();
        assert!(!collector_may_send(&c));
        c.ad_storage = Denied;
        c.analytics_storage = Denied;
        c.ad_user_data = Denied;
        assert!(!collector_may_send(&c));
        c.analytics_storage = Granted;
        assert!(collector_may_send(&c) && may_store_analytics(&c));
    }

    #[test]
    fn consent_codec() {
        let c = ConsentState {
            ad_storage: Granted,
            analytics_storage: Denied,
            ..Default::default()
        };
        assert_eq!(encode_consent(&c), "gduu");
        assert_eq!(decode_consent("gduu"), Some(c));
        assert_eq!(decode_consent("gdu"), None);
        assert_eq!(decode_consent("gdux"), None);
    }

    #[test]
    fn stripping() {
        let mut env = ContextEnvelope {
            client_id: Some(ClientId::parse("1.2").unwrap()),
            click_ids: ClickIds {
                gclid: Some("G".into()),
                ..Default::default()
            },
            consent: ConsentState {
                analytics_storage: Granted,
                ad_storage: Denied,
                ..Default::default()
            },
            ..Default::default()
        };
        strip_envelope(&mut env);
        assert!(env.client_id.is_some());
        assert!(env.click_ids.is_empty());
    }

    #[test]
    fn urls_lose_click_ids() {
        assert_eq!(
            redact_url("https://s.example/p?gclid=G&a=1&fbclid=F#top"),
            "https://s.example/p?a=1#top"
        );
        assert_eq!(
            redact_url("https://s.example/p?gclid=G"),
            "https://s.example/p"
        );
        assert_eq!(
            redact_url("https://s.example/p?x=gclid"),
            "https://s.example/p?x=gclid"
        );
        assert_eq!(redact_url("/p"), "/p");
    }

    #[test]
    fn cookie_strings() {
        assert_eq!(
            cookie_string("_tally_cid", "GA1.1.1.2", 7776000, None, false),
            "_tally_cid=GA1.1.1.2; Max-Age=7776000; Path=/; SameSite=Lax"
        );
        assert_eq!(
            cookie_string("a", "x y", 0, Some("example.com"), true),
            "a=x%20y; Max-Age=0; Path=/; Domain=example.com; SameSite=Lax; Secure"
        );
    }

    fn purchase() -> Event {
        let mut e = Event::transactional(
            EventName::Purchase,
            TransactionId::parse("T_12345").unwrap(),
            1,
        );
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items
            .push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e
    }

    #[test]
    fn gtag_params() {
        let e = purchase();
        let j = ga4_params_json(&e, Some("G-X1"));
        assert_eq!(
            j,
            r#"{"send_to":"G-X1","transaction_id":"54de189e-77b5-88e0-9311-ea73ac8286ab","currency":"USD","value":30.03,"items":[{"item_id":"SKU_1","item_name":"Tee","price":10.01,"quantity":3}]}"#
        );
        let a = ads_conversion_json(&e, "AW-123", "lbl");
        assert_eq!(
            a,
            r#"{"send_to":"AW-123/lbl","transaction_id":"54de189e-77b5-88e0-9311-ea73ac8286ab","value":30.03,"currency":"USD"}"#
        );
        let m = meta_custom_data_json(&e);
        assert_eq!(
            m,
            r#"{"value":30.03,"currency":"USD","content_ids":["SKU_1"],"contents":[{"id":"SKU_1","quantity":3,"item_price":10.01}],"content_type":"product","num_items":3}"#
        );
        assert_eq!(meta_call(&EventName::Purchase), Some("track"));
        assert_eq!(meta_call(&EventName::ViewCart), Some("trackCustom"));
        assert_eq!(meta_call(&EventName::Refund), None);
    }

    #[test]
    fn body_and_outcomes() {
        let b = batch_body(Some("k"), 5, "{\"v\":1}", ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(
            b,
            r#"{"siteKey":"k","sentAt":5,"context":{"v":1},"events":[{"a":1},{"b":2}]}"#
        );
        assert_eq!(http_outcome(200), HttpOutcome::Delivered);
        assert_eq!(http_outcome(0), HttpOutcome::Retry);
        assert_eq!(http_outcome(503), HttpOutcome::Retry);
        assert_eq!(http_outcome(429), HttpOutcome::Retry);
        assert_eq!(http_outcome(400), HttpOutcome::Drop);
        assert!(status_settles("duplicate") && !status_settles("retry"));
    }

    #[test]
    fn backoff_grows_with_jitter() {
        assert!((500..1500).contains(&backoff_ms(1, 12345)));
        assert!((1000..3000).contains(&backoff_ms(2, 99)));
        for f in 1..40 {
            assert!(backoff_ms(f, u32::MAX) < 450_000);
        }
    }
}
