//! Browser I/O through a handful of JavaScript imports: properties and method
//! calls go through `Reflect`, so the module needs no per-API glue. Every
//! function degrades to a no-op (or `None`) when the API is missing or throws
//! (private mode, sandboxed iframes, storage disabled).

use alloc::{boxed::Box, string::String};

use js_sys::{Array, JsString};
use tally_core::browser::input::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Date, js_name = now)]
    fn date_now() -> f64;
    #[wasm_bindgen(js_namespace = Math, js_name = random)]
    fn math_random() -> f64;
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = JSON, js_name = parse, catch)]
    fn json_parse(s: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = Object, js_name = entries, catch)]
    fn object_entries(o: &JsValue) -> Result<Array, JsValue>;
    #[wasm_bindgen(js_namespace = Array, js_name = isArray)]
    fn is_array(v: &JsValue) -> bool;
    #[wasm_bindgen(js_namespace = Reflect, js_name = get, catch)]
    fn reflect_get(o: &JsValue, k: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_namespace = Reflect, js_name = set, catch)]
    fn reflect_set(o: &JsValue, k: &str, v: &JsValue) -> Result<JsValue, JsValue>;
    // `globalThis.globalThis` is the global object: read through a static
    // getter, without the thread-local cache (and its 2.6 KB of wasm) that a
    // `static` import brings.
    type GlobalScope;
    #[wasm_bindgen(static_method_of = GlobalScope, js_class = "globalThis", getter = globalThis)]
    fn global_this() -> JsValue;
    #[wasm_bindgen(js_namespace = Reflect, js_name = apply, catch)]
    fn reflect_apply(f: &JsValue, this: &JsValue, args: &Array) -> Result<JsValue, JsValue>;
}

/// The global object (`window` in a page).
pub fn global() -> JsValue {
    GlobalScope::global_this()
}

/// Current time, Unix ms (`SystemTime` panics on wasm32).
pub fn now_ms() -> i64 {
    date_now() as i64
}

/// `N` random bytes from `crypto.getRandomValues` (falls back to `Math.random`).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if get_random_values(&mut b).is_err() {
        for x in b.iter_mut() {
            *x = (math_random() * 256.0) as u8;
        }
    }
    b
}

/// A random `u32`.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}

/// `obj[key]`; `undefined` when absent, when it throws, or when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    reflect_get(obj, key).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[key]` as a string.
pub fn get_str(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}

/// `obj[key] = value` (ignored when it throws).
pub fn set(obj: &JsValue, key: &str, value: &JsValue) {
    let _ = reflect_set(obj, key, value);
}

/// Calls `f(...args)` with `this`; `None` when `f` is not a function or throws
/// (a broken tag must not break tracking).
pub fn apply(f: &JsValue, this: &JsValue, args: &[JsValue]) -> Option<JsValue> {
    if !f.is_function() {
        return None;
    }
    let arr = Array::new();
    for a in args {
        arr.push(a);
    }
    reflect_apply(f, this, &arr).ok()
}

/// `obj.name(...args)`.
pub fn invoke(obj: &JsValue, name: &str, args: &[JsValue]) -> Option<JsValue> {
    apply(&get(obj, name), obj, args)
}

/// A global function such as `window.gtag` called as a function.
pub fn call_global(name: &str, args: &[JsValue]) -> Option<JsValue> {
    apply(&get(&global(), name), &JsValue::UNDEFINED, args)
}

/// `document` (undefined outside a page).
pub fn document() -> JsValue {
    get(&global(), "document")
}

/// `location[part]` (`href`, `search`, `hostname`, `protocol`); empty when unavailable.
pub fn location(part: &str) -> String {
    get_str(&get(&global(), "location"), part).unwrap_or_default()
}

/// `document.cookie` (empty when unavailable).
pub fn cookies() -> String {
    get_str(&document(), "cookie").unwrap_or_default()
}

/// Assigns one cookie string to `document.cookie`.
pub fn set_cookie(s: &str) {
    set(&document(), "cookie", &JsValue::from_str(s));
}

fn storage() -> JsValue {
    get(&global(), "localStorage")
}

/// Whether `localStorage` can be used at all.
pub fn storage_available() -> bool {
    storage().is_object()
}

/// `localStorage.getItem`.
pub fn storage_get(key: &str) -> Option<String> {
    invoke(&storage(), "getItem", &[key.into()])?.as_string()
}

/// `localStorage.setItem`; false when it failed (quota, disabled).
pub fn storage_set(key: &str, value: &str) -> bool {
    invoke(&storage(), "setItem", &[key.into(), value.into()]).is_some()
}

/// `localStorage.removeItem`.
pub fn storage_remove(key: &str) {
    invoke(&storage(), "removeItem", &[key.into()]);
}

/// Parses JSON into a JS value (`undefined` on error).
pub fn parse_json(s: &str) -> JsValue {
    json_parse(s).unwrap_or(JsValue::UNDEFINED)
}

/// How [`value`] reads strings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// As they are.
    Raw,
    /// In NFC (`normalize('NFC')`).
    Nfc,
    /// In NFC, lowercased, in NFC again: what the core's `prepare` step does,
    /// done by the JS engine (the `js-lowercase` feature of `tally-core`).
    Lower,
}

/// Reads a JS value for the core, strings as `text` says.
/// Objects nested deeper than `depth` and entries past the 1000th are not read.
pub fn value(v: &JsValue, text: Text, depth: u8) -> Value {
    if v.is_undefined() || v.is_null() {
        Value::Absent
    } else if let Some(b) = v.as_bool() {
        Value::Bool(b)
    } else if let Some(n) = v.as_f64() {
        Value::Num(n)
    } else if let Some(s) = v.dyn_ref::<JsString>() {
        Value::Str(match text {
            Text::Raw => s.into(),
            Text::Nfc => s.normalize("NFC").into(),
            Text::Lower => s.normalize("NFC").to_lower_case().normalize("NFC").into(),
        })
    } else if v.is_function() {
        Value::Func
    } else if depth == 0 || !v.is_object() {
        Value::Other
    } else {
        let entries = object_entries(v).unwrap_or_else(|_| Array::new());
        let pairs = entries.iter().take(1000).map(|pair| {
            let pair: Array = pair.unchecked_into();
            (pair.get(0).as_string().unwrap_or_default(), value(&pair.get(1), text, depth - 1))
        });
        if is_array(v) { Value::List(pairs.map(|(_, v)| v).collect()) } else { Value::Map(pairs.collect()) }
    }
}

/// User data for the core's browser build: strings in NFC and lowercased
/// ([`Text::Lower`]), except `address.postalCode`, whose case Google keeps.
pub fn user_data(ud: &JsValue) -> Value {
    let mut v = value(ud, Text::Lower, 2);
    // The postal code keeps its case, as Google wants it.
    if let Value::Map(m) = &mut v
        && let Some((_, Value::Map(address))) = m.iter_mut().find(|(k, _)| k == "address")
        && let Some((_, postal)) = address.iter_mut().find(|(k, _)| k == "postalCode")
    {
        *postal = value(&get(&get(ud, "address"), "postalCode"), Text::Nfc, 0);
    }
    v
}

/// `console.warn` / `console.log` with the `[tally]` prefix.
pub fn log(warn: bool, msg: &str, detail: &JsValue) {
    invoke(
        &get(&global(), "console"),
        if warn { "warn" } else { "log" },
        &["[tally]".into(), msg.into(), detail.clone()],
    );
}

/// Runs `f` after `ms` milliseconds.
pub fn set_timeout(ms: i32, f: impl FnOnce() + 'static) {
    let cb = once(Box::new(move |_| f()));
    invoke(&global(), "setTimeout", &[cb, ms.into()]);
}

/// A JS function that runs `f` once (every callback of the module has this one
/// shape, so the glue has one closure adapter).
fn once(f: Box<dyn FnOnce(JsValue)>) -> JsValue {
    Closure::once_into_js(move |v: JsValue| f(v))
}

/// Adds a listener for the page's lifetime on `window` or `document`.
pub fn listen(on_document: bool, event: &str, mut f: impl FnMut() + 'static) {
    let target = if on_document { document() } else { global() };
    let cb = Closure::wrap(Box::new(move |_: JsValue| f()) as Box<dyn FnMut(JsValue)>);
    invoke(&target, "addEventListener", &[event.into(), cb.as_ref().clone()]);
    cb.forget();
}

/// True when the page is hidden.
pub fn is_hidden() -> bool {
    get_str(&document(), "visibilityState").as_deref() == Some("hidden")
}

/// `navigator.sendBeacon(url, body)` with a string body (sent as `text/plain`,
/// a CORS-simple request).
pub fn send_beacon(url: &str, body: &str) -> bool {
    invoke(&get(&global(), "navigator"), "sendBeacon", &[url.into(), body.into()])
        .and_then(|r| r.as_bool())
        .unwrap_or(false)
}

/// Calls `f` once `p` settles, with the value or the rejection reason.
fn then(p: JsValue, f: impl FnOnce(JsValue) + 'static) {
    let cb = once(Box::new(f));
    let p = invoke(&get(&global(), "Promise"), "resolve", &[p]).unwrap_or_default();
    invoke(&p, "then", &[cb.clone(), cb]);
}

/// POSTs JSON with credentials (`keepalive` when asked), then calls `done`
/// with the HTTP status (0 on a network error) and the response text.
pub fn post_json(url: &str, body: &str, keepalive: bool, done: impl FnOnce(u16, String) + 'static) {
    let init = parse_json(if keepalive {
        r#"{"method":"POST","credentials":"include","keepalive":true,"headers":{"Content-Type":"application/json"}}"#
    } else {
        r#"{"method":"POST","credentials":"include","headers":{"Content-Type":"application/json"}}"#
    });
    set(&init, "body", &body.into());
    let Some(p) = call_global("fetch", &[url.into(), init]) else {
        return done(0, String::new());
    };
    then(p, move |resp| match get(&resp, "status").as_f64() {
        None => done(0, String::new()),
        Some(status) => match invoke(&resp, "text", &[]) {
            Some(text) => then(text, move |t| done(status as u16, t.as_string().unwrap_or_default())),
            None => done(status as u16, String::new()),
        },
    });
}

/// The JS `Error` a tracker method throws.
pub fn error(msg: &str) -> JsValue {
    js_sys::Error::new(msg).into()
}
