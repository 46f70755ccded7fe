//! The tracker in headless Chromium: cookies, consent before and after a
//! decision, click-id capture, queue persistence across "page loads", retry,
//! 4xx drops, the beacon flush and the gtag/fbq bridge.
//!
//! `fetch`, `navigator.sendBeacon`, `gtag` and `fbq` are replaced by recorders
//! (`window.__t`). All tests share one page, so each starts from a clean slate
//! and uses its own endpoint.
#![cfg(target_arch = "wasm32")]

use std::rc::Rc;

use js_sys::{Array, Reflect};
use tally_web::BrowserTracker;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const HARNESS: &str = r#"
(() => {
  const t = window.__t = { fetches: [], beacons: [], gtag: [], fbq: [], mode: 'ok', status: null, beaconOk: true };
  document.cookie.split(';').forEach(c => {
    const n = c.split('=')[0].trim();
    if (n) document.cookie = n + '=; Max-Age=0; Path=/';
  });
  localStorage.clear();
  delete window.gtag; delete window.fbq; delete window.dataLayer;
  history.replaceState(null, '', location.pathname);
  window.fetch = (url, init) => {
    t.fetches.push({ url: String(url), init, body: JSON.parse(init.body) });
    if (t.mode === 'down') return Promise.reject(new TypeError('Failed to fetch'));
    if (t.mode !== 'ok') return Promise.resolve(new Response('{}', { status: Number(t.mode) }));
    const events = JSON.parse(init.body).events;
    const results = events.map(e => Object.assign({ eventId: e.eventId, status: t.status || 'accepted' },
      t.status === 'invalid' ? { field: 'value', reason: 'too big' } : {}));
    return Promise.resolve(new Response(JSON.stringify({ results }), { status: 200 }));
  };
  navigator.sendBeacon = (url, body) => { t.beacons.push({ url: String(url), body: JSON.parse(body), raw: body }); return t.beaconOk; };
  return t;
})()
"#;

fn js(code: &str) -> JsValue {
    js_sys::eval(code).unwrap_or_else(|e| panic!("eval failed: {e:?}"))
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &k.into()).unwrap()
}

fn s(o: &JsValue, k: &str) -> Option<String> {
    get(o, k).as_string()
}

thread_local! {
    /// Trackers created so far: all tests share one page, so each test stops the
    /// previous tests' trackers (their timers and listeners would act on the
    /// shared storage otherwise).
    static TRACKERS: std::cell::RefCell<Vec<Rc<BrowserTracker>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn reset() -> JsValue {
    TRACKERS.with(|t| t.borrow_mut().drain(..).for_each(|t| t.destroy()));
    js(HARNESS)
}

fn tracker(cfg: &str) -> Rc<BrowserTracker> {
    let t = Rc::new(BrowserTracker::new(js(&format!("({cfg})"))).unwrap_or_else(|e| panic!("config rejected: {e:?}")));
    TRACKERS.with(|all| all.borrow_mut().push(t.clone()));
    t
}

fn config_error(cfg: &str) -> String {
    match BrowserTracker::new(js(&format!("({cfg})"))) {
        Ok(_) => panic!("config accepted: {cfg}"),
        Err(e) => s(&e, "message").unwrap(),
    }
}

async fn flush(t: &BrowserTracker) -> f64 {
    JsFuture::from(t.flush()).await.unwrap().as_f64().unwrap()
}

fn cookie(name: &str) -> Option<String> {
    let all = js("document.cookie").as_string().unwrap();
    all.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn fetches(h: &JsValue, endpoint: &str) -> Vec<JsValue> {
    Array::from(&get(h, "fetches")).iter().filter(|f| s(f, "url").is_some_and(|u| u.ends_with(endpoint))).collect()
}

fn events_of(call: &JsValue) -> Vec<JsValue> {
    Array::from(&get(&get(call, "body"), "events")).iter().collect()
}

fn sleep(ms: i32) -> JsFuture {
    JsFuture::from(js_sys::Promise::new(&mut |r, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&r, ms).unwrap();
    }))
}

const CART: &str =
    "{ value: 20, currency: 'EUR', items: [{ itemId: 'SKU_1', itemName: 'Tee', price: 10, quantity: 2 }] }";
const ORDER: &str = "{ transactionId: 'T_12345', value: '30.03', currency: 'USD', items: [{ itemId: 'SKU_1', price: 10.01, quantity: 3 }] }";
const ORDER_ID: &str = "54de189e-77b5-88e0-9311-ea73ac8286ab";

#[wasm_bindgen_test]
fn bad_config_says_what_to_fix() {
    reset();
    assert!(config_error("{}").contains("endpoint is required"));
    assert!(config_error("{ endpoint: 'collect' }").contains("endpoint must be your first-party collect URL"));
    assert!(config_error("{ endpoint: '/c', consentMode: 'on' }").contains("consentMode must be 'v2'"));
    assert!(config_error("{ endpoint: '/c', consentmode: 'v2' }").contains("unknown option 'consentmode'"));
    assert!(
        config_error("{ endpoint: '/c', conversionLabels: { purchase: 'abc' } }").contains("needs adsConversionId")
    );
    assert!(config_error("{ endpoint: '/c', ga4MeasurementId: 'UA-1' }").contains("ga4MeasurementId"));
    assert!(config_error("{ endpoint: '/c', cookieExpiryDays: 0 }").contains("cookieExpiryDays"));
    assert!(config_error("{ endpoint: '/c', clickIdStorage: 'local' }").contains("clickIdStorage"));
    assert!(config_error("{ endpoint: '/c', cookieDomain: 'other.example' }").contains("cookieDomain"));
    assert!(config_error("null").contains("config must be an object"));
}

#[wasm_bindgen_test]
async fn purchase_is_sent_to_the_endpoint_with_the_wire_contract() {
    let h = reset();
    let t = tracker("{ endpoint: '/c/wire', siteKey: 'shop_1', consentMode: 'off' }");
    t.set_visitor("v-42".into()).unwrap();
    let id = t.track_purchase(js(&format!("({ORDER})"))).unwrap();
    assert_eq!(id, ORDER_ID, "derived from the transaction id, as the server derives it");
    assert_eq!(flush(&t).await, 0.0);
    let calls = fetches(&h, "/c/wire");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let init = get(call, "init");
    assert_eq!(s(&init, "method").as_deref(), Some("POST"));
    assert_eq!(s(&init, "credentials").as_deref(), Some("include"));
    assert_eq!(get(&init, "keepalive"), JsValue::TRUE);
    assert_eq!(s(&get(&init, "headers"), "Content-Type").as_deref(), Some("application/json"));
    let body = get(call, "body");
    assert_eq!(s(&body, "siteKey").as_deref(), Some("shop_1"));
    assert!(get(&body, "sentAt").as_f64().unwrap() > 1.7e12);
    let ctx = get(&body, "context");
    assert_eq!(get(&ctx, "v").as_f64(), Some(1.0));
    assert_eq!(s(&ctx, "clientId"), Some(t.get_client_id()));
    assert_eq!(s(&ctx, "visitorId").as_deref(), Some("v-42"));
    let ev = &events_of(call)[0];
    assert_eq!(s(ev, "eventId").as_deref(), Some(ORDER_ID));
    assert_eq!(s(ev, "name").as_deref(), Some("purchase"));
    assert_eq!(s(ev, "transactionId").as_deref(), Some("T_12345"));
    assert_eq!(get(ev, "value").as_f64(), Some(30.03));
}

#[wasm_bindgen_test]
fn purchase_and_refund_need_a_transaction_id() {
    reset();
    let t = tracker("{ endpoint: '/c/txn', consentMode: 'off' }");
    for input in ["{ value: 1, currency: 'USD', items: [] }", "{ transactionId: '', value: 1, currency: 'USD' }"] {
        let e = t.track_purchase(js(&format!("({input})"))).unwrap_err();
        assert!(s(&e, "message").unwrap().contains("trackPurchase: transactionId is required"), "{input}");
    }
    let e = t.track_refund(js("({ value: 1, currency: 'USD' })")).unwrap_err();
    assert!(s(&e, "message").unwrap().contains("transactionId is required"));
    let e = t.track_add_to_cart(js("({ value: 1, currency: 'usdx' })")).unwrap_err();
    assert!(s(&e, "message").unwrap().contains("currency"));
    let e = t.track_event(js("({ name: 'session_start' })")).unwrap_err();
    assert!(s(&e, "message").unwrap().contains("reserved"));
}

#[wasm_bindgen_test]
async fn identity_cookies() {
    let h = reset();
    // No _ga: a GA4-format id is minted into Tally's own cookie, never into _ga.
    let t = tracker("{ endpoint: '/c/id', consentMode: 'off' }");
    let cid = t.get_client_id();
    let (a, b) = cid.split_once('.').unwrap();
    assert!(a.parse::<u32>().is_ok() && b.parse::<u64>().is_ok(), "{cid}");
    assert_eq!(cookie("_tally_cid"), Some(format!("GA1.1.{cid}")));
    assert_eq!(cookie("_ga"), None);
    assert_eq!(t.get_client_id(), cid, "stable");
    t.set_visitor("visitor 7".into()).unwrap();
    assert_eq!(cookie("_tally_vid").as_deref(), Some("visitor%207"));
    let next_page = tracker("{ endpoint: '/c/id', consentMode: 'off', ga4MeasurementId: 'G-ABC123' }");
    assert_eq!(next_page.get_client_id(), cid);
    assert_eq!(next_page.get_visitor_id().as_deref(), Some("visitor 7"));
    // gtag.js's own cookies win once they exist.
    js("document.cookie = '_ga=GA1.1.1958185836.1757409569; Path=/'");
    js("document.cookie = '_ga_ABC123=GS2.1.s1757409568$o3$g0$t1757409591$j37$l0$h0; Path=/'");
    assert_eq!(next_page.get_client_id(), "1958185836.1757409569");
    assert_eq!(next_page.get_session_id().as_deref(), Some("1757409568"));
    let ctx = next_page.export_context(JsValue::UNDEFINED).unwrap();
    assert_eq!(s(&ctx, "clientId").as_deref(), Some("1958185836.1757409569"));
    assert_eq!(s(&ctx, "sessionId").as_deref(), Some("1757409568"));
    assert_eq!(get(&ctx, "sessionNumber").as_f64(), Some(3.0));
    assert!(t.set_visitor(JsValue::from_f64(5.0)).is_err());
    let _ = h;
}

#[wasm_bindgen_test]
async fn consent_v2_holds_everything_until_a_decision() {
    let h = reset();
    let t = tracker("{ endpoint: '/c/v2', metaPixelId: '123456789' }");
    js("window.gtag = function () { window.__t.gtag.push(Array.from(arguments)); }");
    assert_eq!(s(&t.get_consent(), "ad_storage").as_deref(), Some("unknown"));
    let id = t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    t.set_visitor("v1".into()).unwrap();
    let _ = t.get_client_id();
    assert_eq!(flush(&t).await, 1.0, "buffered, not sent");
    assert!(fetches(&h, "/c/v2").is_empty());
    assert_eq!(js("document.cookie").as_string().unwrap(), "", "no cookie before a decision");
    assert_eq!(js("localStorage.length").as_f64(), Some(0.0), "no storage before a decision");
    assert_eq!(Array::from(&get(&h, "gtag")).length(), 0, "gtag not called before a decision");
    // Analytics granted, ads denied: the buffered event goes, without ad data.
    t.update_consent(js("({ analytics_storage: 'granted', ad_storage: 'denied', ad_user_data: 'denied', ad_personalization: 'denied' })"))
        .unwrap();
    assert_eq!(flush(&t).await, 0.0);
    let calls = fetches(&h, "/c/v2");
    assert_eq!(calls.len(), 1);
    assert_eq!(s(&events_of(&calls[0])[0], "eventId"), Some(id));
    let ctx = get(&get(&calls[0], "body"), "context");
    assert_eq!(s(&get(&ctx, "consent"), "analytics_storage").as_deref(), Some("granted"));
    assert!(s(&ctx, "clientId").is_some());
    assert!(cookie("_tally_cid").is_some() && cookie("_tally_vid").is_some(), "analytics storage granted");
    let gtag: Vec<JsValue> = Array::from(&get(&h, "gtag")).iter().collect();
    assert_eq!(s(&gtag[0].clone(), "0").as_deref(), Some("consent"), "decision forwarded to gtag");
    assert!(gtag.iter().any(|c| s(c, "1").as_deref() == Some("add_to_cart")), "GA4 allowed");
    assert!(!gtag.iter().any(|c| s(c, "1").as_deref() == Some("conversion")));
    assert_eq!(js("localStorage.getItem('_tally_consent')").as_string().as_deref(), Some("dgdd"));
    // The next page remembers the decision and sends right away.
    let next = tracker("{ endpoint: '/c/v2' }");
    assert_eq!(s(&next.get_consent(), "analytics_storage").as_deref(), Some("granted"));
    next.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&next).await, 0.0);
    assert_eq!(fetches(&h, "/c/v2").len(), 2);
}

#[wasm_bindgen_test]
async fn only_one_tab_drains_the_shared_queue() {
    let h = reset();
    let far = js_sys::Date::now() + 60_000.0;
    js(&format!("localStorage.setItem('_tally_lease', 'othertab:{far}')"));
    let t = tracker("{ endpoint: '/c/lease', consentMode: 'off' }");
    t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 1.0, "another tab holds the lease");
    assert!(fetches(&h, "/c/lease").is_empty());
    js("localStorage.setItem('_tally_lease', 'othertab:1')");
    assert_eq!(flush(&t).await, 0.0, "expired lease: this tab drains");
    assert_eq!(fetches(&h, "/c/lease").len(), 1);
}

#[wasm_bindgen_test]
async fn consent_denied_discards_and_sends_nothing() {
    let h = reset();
    js("window.fbq = function () { window.__t.fbq.push(Array.from(arguments)); }");
    let t =
        tracker("{ endpoint: '/c/deny', onDrop: d => (window.__t.dropped = (window.__t.dropped || []).concat([d])) }");
    let id = t.track_purchase(js(&format!("({ORDER})"))).unwrap();
    t.update_consent(js(
        "({ ad_storage: false, analytics_storage: false, ad_user_data: false, ad_personalization: false })",
    ))
    .unwrap();
    assert_eq!(flush(&t).await, 0.0);
    t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 0.0);
    assert!(fetches(&h, "/c/deny").is_empty());
    let dropped = t.get_dropped_events();
    assert_eq!(dropped.length(), 2);
    assert_eq!(s(&dropped.get(0), "eventId"), Some(id));
    assert_eq!(s(&dropped.get(0), "reason").as_deref(), Some("consent_denied"));
    assert_eq!(Array::from(&get(&h, "dropped")).length(), 2, "onDrop called");
    let fbq: Vec<JsValue> = Array::from(&get(&h, "fbq")).iter().collect();
    assert_eq!(fbq.len(), 1);
    assert_eq!(s(&fbq[0], "1").as_deref(), Some("revoke"));
    assert_eq!(cookie("_tally_cid"), None);
}

#[wasm_bindgen_test]
async fn click_ids_from_url_and_cookies() {
    let h = reset();
    js(
        "history.replaceState(null, '', location.pathname + '?gclid=FROMURL&fbclid=IwAR2F4&ttclid=E.C.P.x&rtid=rokt123&utm_source=x')",
    );
    js("document.cookie = '_gcl_aw=GCL.1750842800.FROMCOOKIE; Path=/'");
    js("document.cookie = '_fbp=fb.1.1596403881668.1116446470; Path=/'");
    let t = tracker("{ endpoint: '/c/click', consentMode: 'off', cookieExpiryDays: 30 }");
    let ids = t.get_click_identifiers();
    assert_eq!(s(&ids, "gclid").as_deref(), Some("FROMURL"), "URL wins over _gcl_aw");
    assert!(s(&ids, "fbc").unwrap().starts_with("fb.1."));
    assert!(s(&ids, "fbc").unwrap().ends_with(".IwAR2F4"));
    assert_eq!(s(&ids, "fbp").as_deref(), Some("fb.1.1596403881668.1116446470"));
    assert_eq!(s(&ids, "ttclid").as_deref(), Some("E.C.P.x"));
    assert_eq!(s(&ids, "rtid").as_deref(), Some("rokt123"));
    assert_eq!(cookie("_tally_gclid").as_deref(), Some("FROMURL"));
    assert_eq!(cookie("_tally_rtid").as_deref(), Some("rokt123"));
    // Next page without click parameters: Google's cookie, then Tally's.
    js("history.replaceState(null, '', location.pathname)");
    let next = tracker("{ endpoint: '/c/click', consentMode: 'off' }");
    assert_eq!(s(&next.get_click_identifiers(), "gclid").as_deref(), Some("FROMCOOKIE"));
    js("document.cookie = '_gcl_aw=; Max-Age=0; Path=/'");
    let third = tracker("{ endpoint: '/c/click', consentMode: 'off' }");
    assert_eq!(s(&third.get_click_identifiers(), "gclid").as_deref(), Some("FROMURL"));
    assert_eq!(s(&third.get_click_identifiers(), "rtid").as_deref(), Some("rokt123"));
    let memory = tracker("{ endpoint: '/c/click', consentMode: 'off', clickIdStorage: 'none' }");
    assert!(s(&memory.get_click_identifiers(), "gclid").is_none());
    let _ = h;
}

#[wasm_bindgen_test]
async fn ad_data_waits_for_ad_storage() {
    let h = reset();
    js("history.replaceState(null, '', location.pathname + '?gclid=G1')");
    let t = tracker("{ endpoint: '/c/ads' }");
    t.update_consent(js("({ analytics_storage: 'granted', ad_storage: 'denied' })")).unwrap();
    assert_eq!(cookie("_tally_gclid"), None, "no ad cookie without ad_storage");
    let ctx = t.export_context(js("({ userData: { email: 'test@example.com' } })")).unwrap();
    assert_eq!(Reflect::own_keys(&get(&ctx, "clickIds")).unwrap().length(), 0);
    assert!(get(&ctx, "hashedUserData").is_undefined(), "no user data without ad_user_data");
    t.track_lead(JsValue::UNDEFINED).unwrap();
    flush(&t).await;
    let raw = js_sys::JSON::stringify(&get(&fetches(&h, "/c/ads")[0], "body")).unwrap().as_string().unwrap();
    assert!(!raw.contains("G1") && !raw.contains("hashedUserData"), "{raw}");
    t.update_consent(js("({ ad_storage: 'granted', ad_user_data: 'granted' })")).unwrap();
    assert_eq!(cookie("_tally_gclid").as_deref(), Some("G1"));
    let ctx = t.export_context(js("({ userData: { email: 'Test@Example.com ' } })")).unwrap();
    assert_eq!(s(&get(&ctx, "clickIds"), "gclid").as_deref(), Some("G1"));
    let google = get(&get(&ctx, "hashedUserData"), "google");
    assert_eq!(
        Array::from(&get(&google, "sha256_email_address")).get(0).as_string().as_deref(),
        Some("973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b")
    );
    t.update_consent(js("({ ad_storage: 'denied' })")).unwrap();
    assert_eq!(cookie("_tally_gclid"), None, "revoking ad_storage removes Tally's ad cookies");
}

#[wasm_bindgen_test]
async fn queue_survives_a_reload_and_a_purchase_is_sent_once() {
    let h = reset();
    Reflect::set(&h, &"mode".into(), &"down".into()).unwrap();
    let page1 = tracker("{ endpoint: '/c/persist', consentMode: 'off' }");
    let id = page1.track_purchase(js(&format!("({ORDER})"))).unwrap();
    assert_eq!(flush(&page1).await, 1.0, "endpoint down: kept");
    let stored = js("localStorage.getItem('_tally_q')").as_string().unwrap();
    assert!(stored.contains(&id));
    // The page is left (beacon refused too), then the thank-you page reloads.
    Reflect::set(&h, &"beaconOk".into(), &JsValue::FALSE).unwrap();
    js("window.dispatchEvent(new Event('pagehide'))");
    Reflect::set(&h, &"mode".into(), &"ok".into()).unwrap();
    let page2 = tracker("{ endpoint: '/c/persist', consentMode: 'off' }");
    assert_eq!(page2.get_queue_size(), 1);
    assert_eq!(page2.track_purchase(js(&format!("({ORDER})"))).unwrap(), id, "same id on reload");
    assert_eq!(flush(&page2).await, 0.0);
    let sent: Vec<String> =
        fetches(&h, "/c/persist").iter().flat_map(events_of).filter_map(|e| s(&e, "eventId")).collect();
    assert!(sent.contains(&id), "delivered from the next page: {sent:?}");
    let before = fetches(&h, "/c/persist").len();
    assert_eq!(js("localStorage.getItem('_tally_q')"), JsValue::NULL);
    // A third load of the thank-you page: not sent again.
    let page3 = tracker("{ endpoint: '/c/persist', consentMode: 'off' }");
    page3.track_purchase(js(&format!("({ORDER})"))).unwrap();
    assert_eq!(page3.get_queue_size(), 0);
    assert_eq!(flush(&page3).await, 0.0);
    assert_eq!(fetches(&h, "/c/persist").len(), before, "the reload sends no second purchase");
    let ctx = page3.export_context(JsValue::UNDEFINED).unwrap();
    assert_eq!(Array::from(&get(&ctx, "eventIds")).get(0).as_string(), Some(id));
}

#[wasm_bindgen_test]
async fn retries_server_errors_and_drops_client_errors() {
    let h = reset();
    let t = tracker("{ endpoint: '/c/retry', consentMode: 'off' }");
    Reflect::set(&h, &"mode".into(), &"503".into()).unwrap();
    let id = t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 1.0);
    Reflect::set(&h, &"mode".into(), &"429".into()).unwrap();
    assert_eq!(flush(&t).await, 1.0);
    assert_eq!(t.get_dropped_events().length(), 0);
    Reflect::set(&h, &"mode".into(), &"ok".into()).unwrap();
    assert_eq!(flush(&t).await, 0.0);
    let calls = fetches(&h, "/c/retry");
    assert!(calls.len() >= 3);
    assert!(calls.iter().all(|c| s(&events_of(c)[0], "eventId").as_deref() == Some(id.as_str())));
    // Automatic retry after backoff, without a flush.
    Reflect::set(&h, &"mode".into(), &"down".into()).unwrap();
    t.track_view_item(js(&format!("({CART})"))).unwrap();
    sleep(200).await.unwrap();
    Reflect::set(&h, &"mode".into(), &"ok".into()).unwrap();
    for _ in 0..40 {
        if t.get_queue_size() == 0 {
            break;
        }
        sleep(100).await.unwrap();
    }
    assert_eq!(t.get_queue_size(), 0, "retried with backoff");
    // A 4xx drops the batch with a visible reason.
    Reflect::set(&h, &"mode".into(), &"400".into()).unwrap();
    let bad = t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 0.0);
    let d = t.get_dropped_events().get(0);
    assert_eq!(s(&d, "eventId"), Some(bad));
    assert_eq!(s(&d, "reason").as_deref(), Some("http_400"));
    // Per-event verdicts.
    Reflect::set(&h, &"mode".into(), &"ok".into()).unwrap();
    Reflect::set(&h, &"status".into(), &"invalid".into()).unwrap();
    let inv = t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 0.0);
    let d = t.get_dropped_events().get(1);
    assert_eq!(s(&d, "eventId"), Some(inv));
    assert_eq!(s(&d, "reason").as_deref(), Some("invalid"));
    assert_eq!(s(&d, "field").as_deref(), Some("value"));
    assert_eq!(s(&d, "detail").as_deref(), Some("too big"));
}

#[wasm_bindgen_test]
async fn page_hide_flushes_with_send_beacon() {
    let h = reset();
    Reflect::set(&h, &"mode".into(), &"down".into()).unwrap();
    let t = tracker("{ endpoint: '/c/beacon', siteKey: 'k', consentMode: 'off' }");
    let a = t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    let b = t.track_begin_checkout(js(&format!("({CART})"))).unwrap();
    js("Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true })");
    js("document.dispatchEvent(new Event('visibilitychange'))");
    js("delete document.visibilityState");
    js("window.dispatchEvent(new Event('pagehide'))");
    let beacons: Vec<JsValue> =
        Array::from(&get(&h, "beacons")).iter().filter(|c| s(c, "url").as_deref() == Some("/c/beacon")).collect();
    assert_eq!(beacons.len(), 1, "one beacon; pagehide does not repeat what visibilitychange sent");
    let body = get(&beacons[0], "body");
    assert_eq!(s(&body, "siteKey").as_deref(), Some("k"));
    let ids: Vec<String> = Array::from(&get(&body, "events")).iter().filter_map(|e| s(&e, "eventId")).collect();
    assert_eq!(ids, [a, b]);
    assert!(s(&beacons[0], "raw").unwrap().len() <= 64 * 1024);
    // Not confirmed: still queued for the next page (the server deduplicates).
    assert_eq!(t.get_queue_size(), 2);
}

#[wasm_bindgen_test]
async fn gtag_and_fbq_are_called_as_functions_with_the_event_id() {
    let h = reset();
    js("window.gtag = function () { window.__t.gtag.push(Array.from(arguments)); }");
    js("window.fbq = function () { window.__t.fbq.push(Array.from(arguments)); }");
    let t = tracker(
        "{ endpoint: '/c/bridge', consentMode: 'off', ga4MeasurementId: 'G-ABC123', adsConversionId: 'AW-123456789',
           conversionLabels: { purchase: 'PuRcH_1', lead: 'LeAd_2' }, metaPixelId: '1234567890' }",
    );
    let id = t.track_purchase(js(&format!("({ORDER})"))).unwrap();
    let gtag: Vec<JsValue> = Array::from(&get(&h, "gtag")).iter().collect();
    let ga4 = gtag.iter().find(|c| s(c, "1").as_deref() == Some("purchase")).expect("gtag purchase");
    let p = get(ga4, "2");
    assert_eq!(s(&p, "transaction_id").as_deref(), Some("T_12345"), "the shop's order id");
    assert_eq!(s(&p, "send_to").as_deref(), Some("G-ABC123"));
    assert_eq!(get(&p, "value").as_f64(), Some(30.03));
    assert_eq!(s(&Array::from(&get(&p, "items")).get(0), "item_id").as_deref(), Some("SKU_1"));
    let conv = gtag.iter().find(|c| s(c, "1").as_deref() == Some("conversion")).expect("ads conversion");
    assert_eq!(s(&get(conv, "2"), "send_to").as_deref(), Some("AW-123456789/PuRcH_1"));
    assert_eq!(s(&get(conv, "2"), "transaction_id").as_deref(), Some("T_12345"));
    let fbq: Vec<JsValue> = Array::from(&get(&h, "fbq")).iter().collect();
    assert_eq!(fbq.len(), 1);
    assert_eq!(s(&fbq[0], "0").as_deref(), Some("trackSingle"));
    assert_eq!(s(&fbq[0], "1").as_deref(), Some("1234567890"));
    assert_eq!(s(&fbq[0], "2").as_deref(), Some("Purchase"));
    assert_eq!(s(&get(&fbq[0], "4"), "eventID"), Some(id));
    assert!(js("window.dataLayer").is_undefined(), "nothing pushed onto dataLayer");
    // Consent forwarding.
    t.update_consent(js("({ ad_storage: 'granted', ad_user_data: 'granted', functionality_storage: 'granted' })"))
        .unwrap();
    let gtag: Vec<JsValue> = Array::from(&get(&h, "gtag")).iter().collect();
    let c = gtag.iter().find(|c| s(c, "0").as_deref() == Some("consent")).unwrap();
    assert_eq!(s(c, "1").as_deref(), Some("update"));
    assert_eq!(s(&get(c, "2"), "functionality_storage").as_deref(), Some("granted"));
    assert_eq!(s(&Array::from(&get(&h, "fbq")).get(1), "1").as_deref(), Some("grant"));
    // A conversion goes to Ads only.
    let lead = t.track_conversion(js("({ label: 'lead', value: 5, currency: 'EUR' })")).unwrap();
    let last = Array::from(&get(&h, "gtag")).pop();
    assert_eq!(s(&get(&last, "2"), "send_to").as_deref(), Some("AW-123456789/LeAd_2"));
    assert_eq!(s(&get(&last, "2"), "transaction_id"), Some(lead));
    flush(&t).await;
}

#[wasm_bindgen_test]
fn page_views_are_not_doubled() {
    reset();
    let t = tracker("{ endpoint: '/c/pv', consentMode: 'off' }");
    let a = t.track_page_view(JsValue::UNDEFINED).unwrap();
    let b = t.track_page_view(JsValue::UNDEFINED).unwrap();
    assert_eq!(a, b);
    let c = t.track_page_view(js("({ path: '/other' })")).unwrap();
    assert_ne!(a, c);
}

#[wasm_bindgen_test]
fn exported_hash_functions() {
    reset();
    let h = tally_web::hash::hash_user_data(js("({ email: 'Jane.Doe@gmail.com', firstName: 'Ren\u{e9}' })")).unwrap();
    let google = get(&h, "google");
    assert_eq!(
        Array::from(&get(&google, "sha256_email_address")).get(0).as_string().as_deref(),
        Some("d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69")
    );
    assert_eq!(
        Array::from(&get(&get(&h, "meta"), "em")).get(0).as_string().as_deref(),
        Some("831f6494ad6be4fcb3a724c3d5fef22d3ceffa3c62ef3a7984e45a0ea177f982")
    );
    // Composed and decomposed input hash the same (NFC in the browser).
    let d = tally_web::hash::hash_user_data(js("({ firstName: 'Rene\u{301}' })")).unwrap();
    let first = |v: &JsValue| s(&Array::from(&get(&get(v, "google"), "address")).get(0), "sha256_first_name");
    assert!(first(&h).is_some());
    assert_eq!(first(&h), first(&d));
    let city = tally_web::hash::hash_user_data(js("({ address: { city: ' S\u{e3}o  Paulo ' } })")).unwrap();
    let addr = Array::from(&get(&get(&city, "google"), "address")).get(0);
    assert_eq!(s(&addr, "city").as_deref(), Some("s\u{e3}o paulo"), "Google's city is plain");
    assert!(tally_web::hash::hash_user_data(js("({ email: 5 })")).is_err());
    assert_eq!(
        tally_web::hash::sha256_hex(&"test@example.com".into()),
        "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    );
}

/// `JSON.stringify` with object keys sorted, for comparing JSON by value.
fn canonical(v: &JsValue) -> String {
    let f = js(
        "(function c(v) { return Array.isArray(v) ? v.map(c) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map(k => [k, c(v[k])])) : v; })",
    );
    let sorted = js_sys::Function::from(f).call1(&JsValue::NULL, v).unwrap();
    js_sys::JSON::stringify(&sorted).unwrap().as_string().unwrap()
}

/// The browser build normalises without Unicode tables (the JS engine
/// lowercases, `tally-core`'s `js-lowercase` feature): it must hash exactly as
/// the server does, for the core's golden vectors and for non-ASCII capitals.
#[wasm_bindgen_test]
fn hashing_matches_the_server() {
    reset();
    let data = js_sys::JSON::parse(include_str!("../../core/tests/data/hash_vectors.json")).unwrap();
    let mut n = 0;
    for case in Array::from(&get(&data, "user_data")).iter() {
        if !get(&case, "defaultCallingCode").is_null() {
            continue; // hashUserData has no calling-code option
        }
        let got = tally_web::hash::hash_user_data(get(&case, "input")).unwrap();
        assert_eq!(canonical(&got), canonical(&get(&case, "expected")), "{}", s(&case, "source").unwrap());
        n += 1;
    }
    assert!(n >= 4);
    // Computed natively with the server's build (Unicode lowercasing in Rust).
    let got = tally_web::hash::hash_user_data(js(
        r#"({ email: ' \u00c5SA.Str\u00f6m@Example.COM ', firstName: '\u00c9LODIE', lastName: '\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3', externalId: 'CUST-\u013042',
            address: { street: 'Stra\u00dfe DER Einheit 1', city: 'M\u00dcNCHEN', region: 'BAYERN', postalCode: 'SW1A 1AA', country: 'DEUTSCHLAND' } })"#,
    ))
    .unwrap();
    let want = js(
        r#"({"google":{"sha256_email_address":["3165de737935f429da596e87fca2f45aa3bff8bf7c50dcdfde5c016835350650"],"address":[{"sha256_first_name":"36bac2631d17463d569eaf1b869e7bf8d40e4636fd8b2b778ee93f504baf6691","sha256_last_name":"3c70e8e70fb6820b6ae6de04be9249923ba46e8aaa0f6ecfae7a1ee8880f574d","sha256_street":"1b7862304599134ce9186e95d3aa13ad9e8bff38a2ffa59d79c50953c695901d","city":"münchen","region":"bayern","postal_code":"SW1A 1AA","country":"DE"}]},"meta":{"em":["3165de737935f429da596e87fca2f45aa3bff8bf7c50dcdfde5c016835350650"],"fn":["36bac2631d17463d569eaf1b869e7bf8d40e4636fd8b2b778ee93f504baf6691"],"ln":["3c70e8e70fb6820b6ae6de04be9249923ba46e8aaa0f6ecfae7a1ee8880f574d"],"ct":["f75c175f552c8b2bf46ef4b282ee782c81cf8687f66a8fe8278cc56fa727503e"],"st":["52b07f18c831ba4b08ba0b8bc84c6e023a825dfd385d20d8dcbf410d11c546e7"],"zp":["830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614"],"country":["959a45d44e6fcf58361ed004681556fe50129f2109e817dec098c00c9e5d2578"],"external_id":["a0b0953f2ad3347d6d5802f78f043c40d7b7ef0dc1ed44b23ef261b525531236"]}})"#,
    );
    assert_eq!(canonical(&got), canonical(&want));
}

#[wasm_bindgen_test]
async fn main_thread_cost_of_track_add_to_cart() {
    reset();
    let t = tracker("{ endpoint: '/c/perf', consentMode: 'off' }");
    let input = js(&format!("({CART})"));
    let perf = web_sys::window().unwrap().performance().unwrap();
    let mut samples = Vec::new();
    for i in 0..300 {
        let t0 = perf.now();
        t.track_add_to_cart(input.clone()).unwrap();
        samples.push(perf.now() - t0);
        if i % 20 == 19 {
            flush(&t).await; // a real page drains between clicks
        }
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    web_sys::console::log_1(&format!("trackAddToCart median {median:.3} ms, p90 {:.3} ms", samples[270]).into());
    assert!(median < 5.0, "{median}");
    flush(&t).await;
}

#[wasm_bindgen_test]
async fn coming_back_online_retries_at_once() {
    let h = reset();
    let t = tracker("{ endpoint: '/c/online', consentMode: 'off' }");
    Reflect::set(&h, &"mode".into(), &"down".into()).unwrap();
    t.track_add_to_cart(js(&format!("({CART})"))).unwrap();
    assert_eq!(flush(&t).await, 1.0);
    Reflect::set(&h, &"mode".into(), &"ok".into()).unwrap();
    js("window.dispatchEvent(new Event('online'))");
    sleep(100).await.unwrap();
    assert_eq!(t.get_queue_size(), 0, "sent without waiting for the backoff");
}
