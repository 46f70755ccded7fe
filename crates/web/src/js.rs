//! Browser I/O: cookies, `localStorage`, time, randomness, the network, timers
//! and the console. Every function degrades to a no-op (or `None`) when the API
//! is missing or throws (private mode, sandboxed iframes, storage disabled).

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlDocument, Storage, Window};

/// The global `window`, when there is one.
pub fn window() -> Option<Window> {
    web_sys::window()
}

/// Current time, Unix ms (`SystemTime` panics on wasm32).
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// `n` random bytes from `crypto.getRandomValues` (falls back to `Math.random`).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let ok = window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut b).is_ok());
    if !ok {
        for x in b.iter_mut() {
            *x = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    b
}

/// A random `u32`.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}

fn html_document() -> Option<HtmlDocument> {
    window()?.document()?.dyn_into::<HtmlDocument>().ok()
}

/// `document.cookie` (empty when unavailable).
pub fn cookies() -> String {
    html_document()
        .and_then(|d| d.cookie().ok())
        .unwrap_or_default()
}

/// Assigns one cookie string to `document.cookie`.
pub fn set_cookie(s: &str) {
    if let Some(d) = html_document() {
        let _ = d.set_cookie(s);
    }
}

/// `location.search`, `location.href`, `location.hostname`, `location.protocol`.
pub fn location(part: u8) -> String {
    let Some(l) = window().map(|w| w.location()) else {
        return String::new();
    };
    match part {
        b's' => l.search(),
        b'h' => l.href(),
        b'n' => l.hostname(),
        _ => l.protocol(),
    }
    .unwrap_or_default()
}

/// `document.referrer` and `document.title`.
pub fn document_text(referrer: bool) -> String {
    let Some(d) = window().and_then(|w| w.document()) else {
        return String::new();
    };
    if referrer { d.referrer() } else { d.title() }
}

/// True when the page is hidden.
pub fn is_hidden() -> bool {
    window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Hidden)
}

fn storage() -> Option<Storage> {
    window()?.local_storage().ok()?
}

/// `localStorage.getItem`.
pub fn storage_get(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

/// `localStorage.setItem`; false when it failed (quota, disabled).
pub fn storage_set(key: &str, value: &str) -> bool {
    storage().is_some_and(|s| s.set_item(key, value).is_ok())
}

/// `localStorage.removeItem`.
pub fn storage_remove(key: &str) {
    if let Some(s) = storage() {
        let _ = s.remove_item(key);
    }
}

/// `obj[key]`, `undefined` when absent or when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[key] = value` on a plain object.
pub fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// A global function such as `window.gtag`, if the page defines one.
pub fn global_fn(name: &str) -> Option<Function> {
    get(&window()?.into(), name).dyn_into::<Function>().ok()
}

/// Calls `f(...args)`, swallowing what it throws (a broken tag must not break tracking).
pub fn call(f: &Function, args: &[JsValue]) -> bool {
    let arr: js_sys::Array = args.iter().collect();
    f.apply(&JsValue::UNDEFINED, &arr).is_ok()
}

/// Parses JSON written by the core into a JS value (`undefined` on error).
pub fn parse_json(s: &str) -> JsValue {
    js_sys::JSON::parse(s).unwrap_or(JsValue::UNDEFINED)
}

/// `console.warn` / `console.log` with the `[tally]` prefix.
pub fn log(warn: bool, msg: &str, detail: &JsValue) {
    let m = JsValue::from_str(msg);
    let p = JsValue::from_str("[tally]");
    if warn {
        web_sys::console::warn_3(&p, &m, detail);
    } else {
        web_sys::console::log_3(&p, &m, detail);
    }
}

/// Runs `f` after `ms` milliseconds.
pub fn set_timeout(ms: i32, f: impl FnOnce() + 'static) {
    if let Some(w) = window() {
        let cb = Closure::once_into_js(f);
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms);
    }
}

/// Adds a listener for the page's lifetime (`target` is `window` or `document`).
pub fn listen(on_document: bool, event: &str, f: impl FnMut() + 'static) {
    let Some(w) = window() else { return };
    let cb = Closure::<dyn FnMut()>::new(f);
    let target: web_sys::EventTarget = if on_document {
        match w.document() {
            Some(d) => d.into(),
            None => return,
        }
    } else {
        w.into()
    };
    let _ = target.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
    cb.forget();
}

/// `navigator.sendBeacon(url, body)` with a string body (sent as `text/plain`,
/// a CORS-simple request).
pub fn send_beacon(url: &str, body: &str) -> bool {
    window().is_some_and(|w| {
        w.navigator()
            .send_beacon_with_opt_str(url, Some(body))
            .unwrap_or(false)
    })
}

/// POSTs JSON with credentials, `keepalive` when `keepalive`. Resolves to the
/// HTTP status (0 on a network error) and the response text.
pub async fn post_json(url: &str, body: &str, keepalive: bool) -> (u16, String) {
    let Some(w) = window() else {
        return (0, String::new());
    };
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    init.set_credentials(web_sys::RequestCredentials::Include);
    let headers = Object::new();
    set(
        &headers,
        "Content-Type",
        &JsValue::from_str("application/json"),
    );
    init.set_headers(&headers);
    if keepalive {
        set(init.as_ref(), "keepalive", &JsValue::TRUE);
    }
    let Ok(resp) =
        wasm_bindgen_futures::JsFuture::from(w.fetch_with_str_and_init(url, &init)).await
    else {
        return (0, String::new());
    };
    let Ok(resp) = resp.dyn_into::<web_sys::Response>() else {
        return (0, String::new());
    };
    let text = match resp.text() {
        Ok(p) => wasm_bindgen_futures::JsFuture::from(p)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    (resp.status(), text)
}

/// The JS `Error` a tracker method throws.
pub fn error(msg: &str) -> JsValue {
    js_sys::Error::new(msg).into()
}
