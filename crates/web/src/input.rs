//! Reading JavaScript objects (config, event inputs, user data, consent) into
//! the core's types with `Reflect`, without serde. Every error names the
//! option or field so the caller knows what to fix.

use js_sys::{Array, JsString, Object};
use tally_core::consent::{ConsentSignal, ConsentUpdate};
use tally_core::user_data::Address;
use tally_core::{
    Amount, Currency, Error, Event, EventId, EventName, Item, ParamValue, TransactionId, UserData,
};
use wasm_bindgen::prelude::*;

use crate::js::{self, get};
use crate::queue::{DEFAULT_BATCH_EVENTS, DEFAULT_MAX_QUEUE_BYTES};
use crate::rules::{self, ClickIdStorage, ConfigError};

/// The validated tracker configuration.
pub struct Config {
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
    /// `consentMode: 'v2'`.
    pub consent_v2: bool,
    /// `cookieDomain`.
    pub cookie_domain: Option<String>,
    /// Cookie lifetime, seconds.
    pub cookie_secs: i64,
    /// `clickIdStorage`.
    pub click_storage: ClickIdStorage,
    /// `debug`.
    pub debug: bool,
    /// `onDrop(drop)`.
    pub on_drop: Option<js_sys::Function>,
    /// Persisted queue cap, bytes.
    pub max_queue_bytes: usize,
    /// Events per request.
    pub batch_size: usize,
}

impl Config {
    /// The gtag label configured for a helper key or a custom conversion key.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn cfg_err(field: &'static str, fix: &'static str) -> JsValue {
    js::error(&ConfigError { field, fix }.message())
}

fn cfg_str(o: &JsValue, key: &'static str) -> Result<Option<String>, JsValue> {
    let v = get(o, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(|s| Some(s.trim().to_owned()))
        .ok_or_else(|| cfg_err(key, "must be a string"))
}

fn checked(
    o: &JsValue,
    key: &'static str,
    check: fn(&str) -> Result<(), ConfigError>,
) -> Result<Option<String>, JsValue> {
    match cfg_str(o, key)? {
        Some(v) => check(&v)
            .map(|()| Some(v))
            .map_err(|e| js::error(&e.message())),
        None => Ok(None),
    }
}

fn cfg_num(o: &JsValue, key: &'static str, fix: &'static str) -> Result<Option<f64>, JsValue> {
    let v = get(o, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_f64().map(Some).ok_or_else(|| cfg_err(key, fix))
}

/// Reads and validates `createBrowserTracker(config)`.
pub fn config(o: &JsValue) -> Result<Config, JsValue> {
    if !o.is_object() {
        return Err(cfg_err(
            "config",
            "must be an object such as { endpoint: '/tally/collect' }",
        ));
    }
    for k in Object::keys::<JsValue>(o.unchecked_ref()).iter() {
        let k = k.as_string().unwrap_or_default();
        if !rules::CONFIG_KEYS.contains(&k.as_str()) {
            let mut m = String::from("[tally] createBrowserTracker: unknown option '");
            m.push_str(&k);
            m.push_str("'; the options are ");
            m.push_str(&rules::CONFIG_KEYS.join(", "));
            return Err(js::error(&m));
        }
    }
    let endpoint = cfg_str(o, "endpoint")?.unwrap_or_default();
    rules::check_endpoint(&endpoint).map_err(|e| js::error(&e.message()))?;
    let ads = checked(o, "adsConversionId", rules::check_ads_id)?;
    let mut labels = Vec::new();
    let lv = get(o, "conversionLabels");
    if !lv.is_undefined() && !lv.is_null() {
        if !lv.is_object() {
            return Err(cfg_err(
                "conversionLabels",
                "must be an object such as { purchase: 'AbC123' }",
            ));
        }
        for pair in Object::entries(lv.unchecked_ref()).iter() {
            let pair: Array = pair.unchecked_into();
            let k = pair.get(0).as_string().unwrap_or_default();
            let v = pair.get(1);
            if v.is_undefined() || v.is_null() {
                continue;
            }
            let v = v.as_string().unwrap_or_default();
            rules::check_label(&v).map_err(|e| js::error(&e.message()))?;
            labels.push((k, v));
        }
        if !labels.is_empty() && ads.is_none() {
            return Err(cfg_err(
                "conversionLabels",
                "needs adsConversionId ('AW-…') so labels can be sent as send_to 'AW-…/label'",
            ));
        }
    }
    let consent_v2 = match cfg_str(o, "consentMode")? {
        Some(m) => rules::parse_consent_mode(&m).map_err(|e| js::error(&e.message()))?,
        None => true,
    };
    let cookie_domain = cfg_str(o, "cookieDomain")?;
    if let Some(d) = &cookie_domain {
        rules::check_cookie_domain(d, &js::location(b'n')).map_err(|e| js::error(&e.message()))?;
    }
    let days = cfg_num(
        o,
        "cookieExpiryDays",
        "must be a number of days between 1 and 400 (default 90)",
    )?
    .unwrap_or(90.0);
    rules::check_expiry_days(days).map_err(|e| js::error(&e.message()))?;
    let click_storage = match cfg_str(o, "clickIdStorage")? {
        Some(s) => ClickIdStorage::parse(&s).map_err(|e| js::error(&e.message()))?,
        None => ClickIdStorage::Cookie,
    };
    let debug_v = get(o, "debug");
    if !debug_v.is_undefined() && !debug_v.is_null() && debug_v.as_bool().is_none() {
        return Err(cfg_err("debug", "must be true or false"));
    }
    let on_drop = get(o, "onDrop");
    let on_drop = if on_drop.is_undefined() || on_drop.is_null() {
        None
    } else {
        Some(
            on_drop
                .dyn_into::<js_sys::Function>()
                .map_err(|_| cfg_err("onDrop", "must be a function"))?,
        )
    };
    let max_queue = cfg_num(o, "maxQueueBytes", "must be a number of bytes")?;
    if max_queue.is_some_and(|b| !(4096.0..=4_194_304.0).contains(&b)) {
        return Err(cfg_err("maxQueueBytes", "must be between 4096 and 4194304"));
    }
    let batch = cfg_num(o, "batchSize", "must be a number of events")?;
    if batch.is_some_and(|b| !(1.0..=100.0).contains(&b)) {
        return Err(cfg_err("batchSize", "must be between 1 and 100"));
    }
    Ok(Config {
        endpoint,
        site_key: checked(o, "siteKey", rules::check_site_key)?,
        ga4: checked(o, "ga4MeasurementId", rules::check_measurement_id)?,
        ads,
        labels,
        pixel: checked(o, "metaPixelId", rules::check_pixel_id)?,
        consent_v2,
        cookie_domain: cookie_domain.map(|d| d.trim_start_matches('.').to_owned()),
        cookie_secs: (days * 86_400.0) as i64,
        click_storage,
        debug: debug_v.as_bool().unwrap_or(false),
        on_drop,
        max_queue_bytes: max_queue.map_or(DEFAULT_MAX_QUEUE_BYTES, |b| b as usize),
        batch_size: batch.map_or(DEFAULT_BATCH_EVENTS, |b| b as usize),
    })
}

// ---------------------------------------------------------------- values

/// A method's error: `[tally] <method>: <what is wrong>`.
pub fn method_error(method: &str, e: &Error) -> JsValue {
    let mut m = String::from("[tally] ");
    m.push_str(method);
    m.push_str(": ");
    m.push_str(&e.describe());
    js::error(&m)
}

fn absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// A string field (`undefined`/`null` → `None`).
pub fn opt_str(o: &JsValue, key: &str, field: &'static str) -> Result<Option<String>, Error> {
    let v = get(o, key);
    if absent(&v) {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or(Error::Invalid {
        field,
        reason: "expected a string",
    })
}

/// A number or decimal string.
fn opt_amount(o: &JsValue, key: &str, field: &'static str) -> Result<Option<Amount>, Error> {
    let v = get(o, key);
    if absent(&v) {
        return Ok(None);
    }
    let r = if let Some(f) = v.as_f64() {
        Amount::from_f64(f)
    } else if let Some(s) = v.as_string() {
        Amount::parse(&s)
    } else {
        return Err(Error::Invalid {
            field,
            reason: "expected a number such as 12.5",
        });
    };
    r.map(Some).map_err(|_| Error::Invalid {
        field,
        reason: "expected a finite decimal number such as 12.5",
    })
}

fn opt_u32(v: &JsValue, field: &'static str) -> Result<Option<u32>, Error> {
    if absent(v) {
        return Ok(None);
    }
    match v.as_f64() {
        Some(f) if f >= 0.0 && f <= f64::from(u32::MAX) && f.fract() == 0.0 => Ok(Some(f as u32)),
        _ => Err(Error::Invalid {
            field,
            reason: "expected a whole number",
        }),
    }
}

fn item(o: &JsValue) -> Result<Item, Error> {
    if !o.is_object() {
        return Err(Error::Invalid {
            field: "items[]",
            reason: "expected objects such as { itemId: 'SKU_1', price: 10, quantity: 1 }",
        });
    }
    let mut it = Item::default();
    for k in Object::keys::<JsValue>(o.unchecked_ref()).iter() {
        let Some(k) = k.as_string() else { continue };
        let v = get(o, &k);
        let slot = match k.as_str() {
            "itemId" | "item_id" | "id" => &mut it.item_id,
            "itemName" | "item_name" | "name" => &mut it.item_name,
            "affiliation" => &mut it.affiliation,
            "coupon" => &mut it.coupon,
            "itemBrand" | "item_brand" => &mut it.item_brand,
            "itemCategory" | "item_category" => &mut it.item_category,
            "itemCategory2" | "item_category2" => &mut it.item_category2,
            "itemCategory3" | "item_category3" => &mut it.item_category3,
            "itemCategory4" | "item_category4" => &mut it.item_category4,
            "itemCategory5" | "item_category5" => &mut it.item_category5,
            "itemListId" | "item_list_id" => &mut it.item_list_id,
            "itemListName" | "item_list_name" => &mut it.item_list_name,
            "itemVariant" | "item_variant" => &mut it.item_variant,
            "locationId" | "location_id" => &mut it.location_id,
            "promotionId" | "promotion_id" => &mut it.promotion_id,
            "promotionName" | "promotion_name" => &mut it.promotion_name,
            "creativeName" | "creative_name" => &mut it.creative_name,
            "creativeSlot" | "creative_slot" => &mut it.creative_slot,
            "price" => {
                it.price = opt_amount(o, &k, "items[].price")?;
                continue;
            }
            "discount" => {
                it.discount = opt_amount(o, &k, "items[].discount")?;
                continue;
            }
            "quantity" => {
                it.quantity = opt_u32(&v, "items[].quantity")?;
                continue;
            }
            "index" => {
                it.index = opt_u32(&v, "items[].index")?;
                continue;
            }
            _ => continue,
        };
        *slot = if absent(&v) {
            None
        } else if let Some(f) = v.as_f64() {
            // Numeric SKUs are common; keep them as text.
            let mut s = String::new();
            tally_core::json::push_i64(&mut s, f as i64);
            (f.fract() == 0.0).then_some(s)
        } else {
            v.as_string()
        };
    }
    Ok(it)
}

fn param_value(v: &JsValue, field: &'static str) -> Result<ParamValue, Error> {
    if let Some(s) = v.as_string() {
        Ok(ParamValue::Text(s))
    } else if let Some(b) = v.as_bool() {
        Ok(ParamValue::Bool(b))
    } else if let Some(f) = v.as_f64() {
        Amount::from_f64(f)
            .map(ParamValue::Number)
            .map_err(|_| Error::Invalid {
                field,
                reason: "numbers must be finite",
            })
    } else {
        Err(Error::Invalid {
            field,
            reason: "values must be strings, numbers or booleans",
        })
    }
}

/// What a helper reads beyond the common fields.
pub struct Extra {
    /// `(input key, GA4 param)` pairs copied as text params (`method`, `paymentType` …).
    pub params: &'static [(&'static str, &'static str)],
    /// `transactionId` required (purchase, refund).
    pub txn_required: bool,
}

/// Builds the core event for a helper from its JS input.
pub fn event(name: EventName, o: &JsValue, extra: &Extra, now_ms: i64) -> Result<Event, Error> {
    if !absent(o) && !o.is_object() {
        return Err(Error::Invalid {
            field: "input",
            reason: "expected an object",
        });
    }
    let txn = opt_str(o, "transactionId", "transactionId")?;
    let txn = match txn {
        Some(t) => Some(TransactionId::parse(&t)?),
        None if extra.txn_required => {
            return Err(Error::Missing {
                field: "transactionId",
            });
        }
        None => None,
    };
    let mut e = match txn {
        Some(t) => Event::transactional(name, t, now_ms),
        None => {
            let id = match opt_str(o, "eventId", "eventId")? {
                Some(id) => EventId::parse(&id)?,
                None => EventId::random_v7(now_ms.max(0) as u64, js::random_bytes::<10>()),
            };
            Event::new(name, id, now_ms)
        }
    };
    e.value = opt_amount(o, "value", "value")?;
    e.shipping = opt_amount(o, "shipping", "shipping")?;
    e.tax = opt_amount(o, "tax", "tax")?;
    e.original_value = opt_amount(o, "originalValue", "originalValue")?;
    e.currency = opt_str(o, "currency", "currency")?
        .map(|c| Currency::parse(&c))
        .transpose()?;
    e.coupon = opt_str(o, "coupon", "coupon")?;
    e.affiliation = opt_str(o, "affiliation", "affiliation")?;
    let items = get(o, "items");
    if !absent(&items) {
        if !Array::is_array(&items) {
            return Err(Error::Invalid {
                field: "items",
                reason: "expected an array of items",
            });
        }
        for v in Array::from(&items).iter() {
            e.items.push(item(&v)?);
        }
    }
    for (key, param) in extra.params {
        if let Some(v) = opt_str(o, key, "params")? {
            e.set_text(param, v);
        }
    }
    let params = get(o, "params");
    if !absent(&params) {
        if !params.is_object() {
            return Err(Error::Invalid {
                field: "params",
                reason: "expected an object of strings, numbers or booleans",
            });
        }
        for k in Object::keys::<JsValue>(params.unchecked_ref()).iter() {
            let Some(k) = k.as_string() else { continue };
            let v = get(&params, &k);
            if !absent(&v) {
                e.params.insert(k, param_value(&v, "params")?);
            }
        }
    }
    e.validate()?;
    Ok(e)
}

// ---------------------------------------------------------------- user data and consent

/// NFC form of a JS string (`String.prototype.normalize('NFC')`), trimmed of nothing.
pub fn nfc(v: &JsValue) -> Option<String> {
    let s: &JsString = v.dyn_ref()?;
    Some(s.normalize("NFC").into())
}

fn nfc_field(o: &JsValue, key: &str, field: &'static str) -> Result<Option<String>, Error> {
    let v = get(o, key);
    if absent(&v) {
        return Ok(None);
    }
    nfc(&v).map(Some).ok_or(Error::Invalid {
        field,
        reason: "expected a string",
    })
}

/// Reads `{ email, phone, firstName, lastName, dateOfBirth, gender, externalId, address }`,
/// every string in NFC (the core's browser build expects NFC input).
pub fn user_data(o: &JsValue) -> Result<UserData, Error> {
    if !o.is_object() {
        return Err(Error::Invalid {
            field: "userData",
            reason: "expected an object such as { email, phone, firstName, lastName, address }",
        });
    }
    let a = get(o, "address");
    let address = if absent(&a) {
        None
    } else {
        Some(Address {
            street: nfc_field(&a, "street", "userData.address.street")?,
            city: nfc_field(&a, "city", "userData.address.city")?,
            region: nfc_field(&a, "region", "userData.address.region")?,
            postal_code: nfc_field(&a, "postalCode", "userData.address.postalCode")?,
            country: nfc_field(&a, "country", "userData.address.country")?,
        })
    };
    Ok(UserData {
        email: nfc_field(o, "email", "userData.email")?,
        phone: nfc_field(o, "phone", "userData.phone")?,
        first_name: nfc_field(o, "firstName", "userData.firstName")?,
        last_name: nfc_field(o, "lastName", "userData.lastName")?,
        date_of_birth: nfc_field(o, "dateOfBirth", "userData.dateOfBirth")?,
        gender: nfc_field(o, "gender", "userData.gender")?,
        external_id: nfc_field(o, "externalId", "userData.externalId")?,
        address,
    })
}

/// The consent keys, their camelCase aliases, and the core's field names.
const CONSENT_KEYS: [(&str, &str, &str); 4] = [
    ("ad_storage", "adStorage", "consent.ad_storage"),
    (
        "analytics_storage",
        "analyticsStorage",
        "consent.analytics_storage",
    ),
    ("ad_user_data", "adUserData", "consent.ad_user_data"),
    (
        "ad_personalization",
        "adPersonalization",
        "consent.ad_personalization",
    ),
];

/// Reads a consent update (`'granted' | 'denied'`, or booleans; snake_case as
/// gtag spells it, camelCase accepted). Returns the update and the object to
/// forward to `gtag('consent', 'update', …)` (other gtag keys pass through).
pub fn consent_update(o: &JsValue) -> Result<(ConsentUpdate, Object), Error> {
    if !o.is_object() {
        return Err(Error::Invalid {
            field: "consent",
            reason: "expected an object such as { ad_storage: 'granted', analytics_storage: 'denied' }",
        });
    }
    let fwd = Object::assign(&Object::new(), o.unchecked_ref());
    let mut u = ConsentUpdate::default();
    for (i, (snake, camel, field)) in CONSENT_KEYS.iter().enumerate() {
        let mut v = get(o, snake);
        if absent(&v) {
            v = get(o, camel);
        }
        if absent(&v) {
            continue;
        }
        let _ = js_sys::Reflect::delete_property(&fwd, &JsValue::from_str(camel));
        let sig = match (v.as_bool(), v.as_string()) {
            (Some(true), _) => Some(ConsentSignal::Granted),
            (Some(false), _) => Some(ConsentSignal::Denied),
            (_, Some(s)) => ConsentSignal::parse(&s),
            _ => None,
        };
        let Some(sig) = sig else {
            return Err(Error::Invalid {
                field,
                reason: "expected 'granted' or 'denied'",
            });
        };
        js::set(&fwd, snake, &JsValue::from_str(sig.as_str()));
        let slot = match i {
            0 => &mut u.ad_storage,
            1 => &mut u.analytics_storage,
            2 => &mut u.ad_user_data,
            _ => &mut u.ad_personalization,
        };
        *slot = Some(sig);
    }
    Ok((u, fwd))
}

/// The consent state as `{ ad_storage: 'granted', … }`.
pub fn consent_object(c: &tally_core::ConsentState) -> Object {
    let o = Object::new();
    for (k, v) in [
        ("ad_storage", c.ad_storage),
        ("analytics_storage", c.analytics_storage),
        ("ad_user_data", c.ad_user_data),
        ("ad_personalization", c.ad_personalization),
    ] {
        js::set(&o, k, &JsValue::from_str(v.as_str()));
    }
    o
}
