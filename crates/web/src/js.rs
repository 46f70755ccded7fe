//! Browser I/O through web-sys and js-sys, and the page's input read with a
//! serde visitor ([`value`]). Every function degrades to a no-op (or `None`) when
//! the API is missing or throws (private mode, sandboxed iframes, storage
//! disabled, a worker).

use js_sys::{Array, Function, JsString, Promise, Reflect};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tally_core::browser::input::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlDocument, RequestCredentials, RequestInit, Response, Storage, Window};

/// The global object (`window` in a page), typed as a window without an
/// `instanceof` check: in a worker, or in Node for `check.js`, it has only
/// some of a window's properties, and each use below copes with a missing one.
pub fn global() -> Window {
    js_sys::global().unchecked_into()
}

/// `document` (`None` outside a page).
pub fn document() -> Option<HtmlDocument> {
    let d = Reflect::get(&global(), &"document".into()).ok()?;
    (d.is_object()).then(|| d.unchecked_into())
}

/// Current time, Unix ms (`SystemTime` panics on wasm32).
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// `N` random bytes from `crypto.getRandomValues` (falls back to `Math.random`).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let filled = global().crypto().is_ok_and(|c| c.get_random_values_with_u8_array(&mut b).is_ok());
    if !filled {
        for x in b.iter_mut() {
            *x = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    b
}

/// A random `u32` (32 random bits: a minted client id takes it whole).
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}

/// `obj[key]`; `undefined` when absent, when it throws, or when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() && !obj.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Calls `f(...args)` as a plain function; `None` when `f` is not a function
/// or throws (a broken tag must not break tracking).
pub fn apply(f: &JsValue, args: &[JsValue]) -> Option<JsValue> {
    let f = f.dyn_ref::<Function>()?;
    f.apply(&JsValue::UNDEFINED, &args.iter().collect::<Array>()).ok()
}

/// A global function such as `window.gtag` called as a function.
pub fn call_global(name: &str, args: &[JsValue]) -> Option<JsValue> {
    apply(&get(&global(), name), args)
}

/// `location.href`, `.search`, `.hostname`, `.protocol`; empty when unavailable.
pub fn location(part: &str) -> String {
    let Ok(l) = Reflect::get(&global(), &"location".into()) else { return String::new() };
    if !l.is_object() {
        return String::new();
    }
    let l: web_sys::Location = l.unchecked_into();
    match part {
        "href" => l.href(),
        "search" => l.search(),
        "hostname" => l.hostname(),
        _ => l.protocol(),
    }
    .unwrap_or_default()
}

/// `document.cookie` (empty when unavailable).
pub fn cookies() -> String {
    document().and_then(|d| d.cookie().ok()).unwrap_or_default()
}

/// Assigns one cookie string to `document.cookie`.
pub fn set_cookie(s: &str) {
    if let Some(d) = document() {
        let _ = d.set_cookie(s);
    }
}

/// `document.referrer` (empty outside a page).
pub fn referrer() -> String {
    document().map(|d| d.referrer()).unwrap_or_default()
}

/// `document.title` (empty outside a page).
pub fn title() -> String {
    document().map(|d| d.title()).unwrap_or_default()
}

fn storage() -> Option<Storage> {
    global().local_storage().ok().flatten()
}

/// Whether `localStorage` can be used at all.
pub fn storage_available() -> bool {
    storage().is_some()
}

/// `localStorage.getItem`.
pub fn storage_get(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
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

/// Parses JSON into a JS value (`undefined` on error).
pub fn parse_json(s: &str) -> JsValue {
    js_sys::JSON::parse(s).unwrap_or(JsValue::UNDEFINED)
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

/// Most entries of one object or array [`value`] reads.
const MAX_ENTRIES: usize = 1000;

/// Reads a JS value for the core, strings as `text` says: JSON's kinds as
/// such, a function as [`Value::Func`], anything else (`NaN`, ±`Infinity`, a
/// symbol, a bigint, an iterable that is not an array, an object nested deeper
/// than `depth`) as [`Value::Other`], which the rules refuse by name where a
/// value is expected. Entries past the 1000th are not read.
///
/// serde walks the value: `ValueSeed` is a `Deserialize` visitor that
/// accepts any JS value, driven by [`JsInput`], a deserializer with
/// `deserialize_any` alone. serde-wasm-bindgen's deserializer was measured
/// here: with it the package was 19.7 KB gzip larger (101,619 against
/// 81,945 B before the first `track`), because its `deserialize_any` ends in
/// a typed-mismatch error that formats `Unexpected::Float`, which links in
/// the float printer (`<f64 as Display>`, 13.6 KB raw) and serde's message
/// formatting, whatever the visitor accepts.
pub fn value(v: &JsValue, text: Text, depth: u8) -> Value {
    ValueSeed.deserialize(JsInput { value: v.clone(), text, depth }).unwrap_or(Value::Other)
}

/// Why [`JsInput`] could not read a value. serde's messages are dropped
/// unformatted: what cannot be read is [`Value::Other`], which the rules
/// name to the user with the field it was in.
#[derive(Debug)]
pub struct Unreadable;

impl core::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str("a JS value the tracker cannot read")
    }
}

impl std::error::Error for Unreadable {}

impl de::Error for Unreadable {
    fn custom<T: core::fmt::Display>(_: T) -> Self {
        Unreadable
    }
}

/// A JS value as a serde data source, strings read as `text` says, objects
/// nested `depth` levels at most. `deserialize_any` is its only entry point;
/// a function and the kinds serde has no word for (symbol, bigint, binary
/// data, other iterables, too deep an object) come as bytes naming their kind.
pub struct JsInput {
    value: JsValue,
    text: Text,
    depth: u8,
}

impl JsInput {
    fn entry(&self, value: JsValue) -> JsInput {
        JsInput { value, text: self.text, depth: self.depth.saturating_sub(1) }
    }
}

impl<'de> Deserializer<'de> for JsInput {
    type Error = Unreadable;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unreadable> {
        let v = &self.value;
        if v.is_undefined() || v.is_null() {
            return visitor.visit_unit();
        }
        if let Some(b) = v.as_bool() {
            return visitor.visit_bool(b);
        }
        if let Some(n) = v.as_f64() {
            return visitor.visit_f64(n);
        }
        if let Some(s) = v.dyn_ref::<JsString>() {
            return visitor.visit_string(match self.text {
                Text::Raw => s.into(),
                Text::Nfc => s.normalize("NFC").into(),
                Text::Lower => s.normalize("NFC").to_lower_case().normalize("NFC").into(),
            });
        }
        if v.is_function() {
            return visitor.visit_bytes(b"function");
        }
        if !v.is_object() || self.depth == 0 {
            return visitor.visit_bytes(b"other");
        }
        if let Some(a) = v.dyn_ref::<Array>() {
            let len = a.length();
            return visitor.visit_seq(JsSeq { items: a.clone(), at: 0, len, of: self });
        }
        if js_sys::Symbol::iterator().js_in(v) {
            return visitor.visit_bytes(b"other");
        }
        let entries = js_sys::Object::entries(v.unchecked_ref());
        let len = entries.length();
        visitor.visit_map(JsSeq { items: entries, at: 0, len, of: self })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// An array's items, or an object's `[key, value]` entries, one by one.
struct JsSeq {
    items: Array,
    at: u32,
    len: u32,
    of: JsInput,
}

impl JsSeq {
    fn next(&mut self) -> Option<JsValue> {
        (self.at < self.len).then(|| {
            self.at += 1;
            self.items.get(self.at - 1)
        })
    }
}

impl<'de> SeqAccess<'de> for JsSeq {
    type Error = Unreadable;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Unreadable> {
        match self.next() {
            Some(v) => seed.deserialize(self.of.entry(v)).map(Some),
            None => Ok(None),
        }
    }
}

impl<'de> MapAccess<'de> for JsSeq {
    type Error = Unreadable;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Unreadable> {
        match self.items.get(self.at) {
            v if self.at < self.len => {
                let key = JsInput { value: v.unchecked_into::<Array>().get(0), text: Text::Raw, depth: 0 };
                seed.deserialize(key).map(Some)
            }
            _ => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Unreadable> {
        let entry = self.next().unwrap_or(JsValue::UNDEFINED);
        let value = if entry.is_undefined() { entry } else { entry.unchecked_into::<Array>().get(1) };
        seed.deserialize(self.of.entry(value))
    }
}

/// The visitor that reads any JS value as the core's [`Value`].
#[derive(Clone, Copy)]
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str("any JS value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Absent)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        // NaN and ±Infinity are no amount, count or parameter a shop means:
        // read as what JSON cannot carry, for the rules to refuse by name.
        Ok(if n.is_finite() { Value::Num(n) } else { Value::Other })
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.into()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_bytes<E: de::Error>(self, kind: &[u8]) -> Result<Value, E> {
        Ok(if kind == b"function" { Value::Func } else { Value::Other })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while list.len() < MAX_ENTRIES {
            match seq.next_element_seed(self)? {
                Some(v) => list.push(v),
                None => break,
            }
        }
        Ok(Value::List(list))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut pairs = Vec::new();
        while pairs.len() < MAX_ENTRIES {
            match map.next_key_seed(ValueSeed)? {
                Some(k) => {
                    let v = map.next_value_seed(self)?;
                    let Value::Str(k) = k else { continue };
                    pairs.push((k, v));
                }
                None => break,
            }
        }
        Ok(Value::Map(pairs))
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
    let msg = JsValue::from_str(&["[tally] ", msg].concat());
    if warn {
        web_sys::console::warn_2(&msg, detail);
    } else {
        web_sys::console::log_2(&msg, detail);
    }
}

/// Runs `f` after `ms` milliseconds.
pub fn set_timeout(ms: i32, f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    let _ = global().set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), ms);
}

/// Adds a listener for the page's lifetime on `window` or `document`.
pub fn listen(on_document: bool, event: &str, f: impl FnMut() + 'static) {
    let target: web_sys::EventTarget = if on_document {
        match document() {
            Some(d) => d.unchecked_into(),
            None => return,
        }
    } else {
        global().unchecked_into()
    };
    let cb = Closure::<dyn FnMut()>::new(f);
    // In a worker (no `addEventListener` on some globals) there is nothing to listen to.
    if Reflect::has(&target, &"addEventListener".into()).unwrap_or(false) {
        let _ = target.add_event_listener_with_callback(event, cb.as_ref().unchecked_ref());
    }
    cb.forget();
}

/// True when the page is hidden.
pub fn is_hidden() -> bool {
    document().is_some_and(|d| d.hidden())
}

/// `navigator.sendBeacon(url, body)` with a string body (sent as `text/plain`,
/// a CORS-simple request); false when refused or missing.
pub fn send_beacon(url: &str, body: &str) -> bool {
    global().navigator().send_beacon_with_opt_str(url, Some(body)).unwrap_or(false)
}

#[wasm_bindgen]
extern "C" {
    /// A promise as `then` sees it.
    type Thenable;
    /// `promise.then(onFulfilled, onRejected)` with plain functions.
    #[wasm_bindgen(method, js_name = then)]
    fn then_both(this: &Thenable, fulfilled: &Function, rejected: &Function) -> JsValue;
}

/// Calls `f` once `p` settles, with the value or the rejection reason.
fn then(p: &Promise, f: impl FnOnce(JsValue) + 'static) {
    let cb: Function = Closure::once_into_js(f).unchecked_into();
    let _ = p.unchecked_ref::<Thenable>().then_both(&cb, &cb);
}

/// POSTs JSON with credentials (`keepalive` when asked), then calls `done`
/// with the HTTP status (0 on a network error) and the response text.
pub fn post_json(url: &str, body: &str, keepalive: bool, done: impl FnOnce(u16, String) + 'static) {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_credentials(RequestCredentials::Include);
    // `keepalive` (the request may outlive the page) is not in web-sys's RequestInit yet.
    let _ = Reflect::set(&init, &"keepalive".into(), &keepalive.into());
    init.set_body(&body.into());
    let headers = js_sys::Object::new();
    let _ = Reflect::set(&headers, &"Content-Type".into(), &"application/json".into());
    init.set_headers(&headers);
    let p = global().fetch_with_str_and_init(url, &init);
    then(&p, move |resp| match resp.dyn_into::<Response>() {
        Err(_) => done(0, String::new()),
        Ok(r) => {
            let status = r.status();
            match r.text() {
                Ok(text) => then(&text, move |t| done(status, t.as_string().unwrap_or_default())),
                Err(_) => done(status, String::new()),
            }
        }
    });
}

/// The JS `Error` a tracker method throws.
pub fn error(msg: &str) -> JsValue {
    js_sys::Error::new(msg).into()
}
