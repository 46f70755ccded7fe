//! The npm package (`pkg/index.js` over `pkg/tally_web_bg.wasm`) in headless
//! Chromium, from the landing URL to the collector. A purchase made before
//! the consent decision waits, is bridged to gtag/fbq and sent to the
//! collector once consent is granted, with the event id the page got back,
//! the GA4 client id from `_ga` and the click id from the landing URL; a
//! purchase without a transaction id throws the package's error; the queue
//! is in `localStorage` and empty once the collector accepted; repeated page
//! views count once; consent updates reach gtag snake_case.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use serde_json::{Value, json};
use tally_e2e::{eventually, open_page};

/// SHA-256 of "jane@example.com".
const JANE: &str = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d";

const PAGE: &str = r#"<!doctype html><html><body><p id="out">loading</p><script type="module">
window.calls = [];
window.gtag = (...a) => calls.push(['gtag', ...a]);
window.fbq = (...a) => calls.push(['fbq', ...a]);
document.cookie = '_ga=GA1.1.1234567890.1757409591; path=/';
import { createBrowserTracker, sha256Hex, hashUserData } from '/pkg/index.js';
document.title = 'Thanks';
const out = {};
try {
  const t = await createBrowserTracker({ endpoint: location.origin + '/collect', siteKey: 'k', consentMode: 'v2',
    ga4MeasurementId: 'G-ABC123', metaPixelId: '123456789012345' });
  try { t.trackPurchase({ value: 1, currency: 'EUR' }); } catch (e) { out.error = e.message; }
  out.id = t.trackPurchase({ transactionId: 'SHELL-1', value: 12.5, currency: 'EUR', items: [{ itemId: 'A', price: 12.5, quantity: 1 }],
    userData: { email: ' Jane@Example.com ' } });
  out.before = calls.length;
  out.waiting = t.getQueueSize();
  t.updateConsent({ ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' });
  out.stored = (localStorage.getItem('_tally_q') || '').includes(out.id);
  out.left = await t.flush();
  out.after = localStorage.getItem('_tally_q');
  out.calls = calls;
  out.clicks = t.getClickIdentifiers();
  out.context = JSON.parse(t.exportContextJson());
  out.cid = t.getClientId();
  const view = t.trackPageView();
  out.views = [view, t.trackPageView(), t.trackPageView({ path: '/other' })];
  t.updateConsent({ adPersonalization: false, wait_for_update: 500 });
  out.sha = await sha256Hex('jane@example.com');
  out.hashed = await hashUserData({ email: ' Jane@Example.com ' });
  await t.flush();
  out.lastConsent = calls.filter((c) => c[0] === 'gtag' && c[1] === 'consent').pop();
  out.firstCall = calls[0];
} catch (e) { out.fatal = String(e && e.stack || e); }
document.getElementById('out').textContent = JSON.stringify(out);
document.body.dataset.ready = '1';
</script></body></html>"#;

#[tokio::test]
async fn a_purchase_goes_through_consent_to_gtag_fbq_and_the_collector() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(root.join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let collect = tally_e2e::accepting_collector(received.clone());
    let router = Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html")], PAGE) }))
        .nest_service("/pkg", tower_http::services::ServeDir::new(root.join("pkg")))
        .route("/collect", collect);
    let (browser, out) = open_page(router, "/?gclid=Cj0-shell").await;
    let out: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert!(out["fatal"].is_null(), "{out}");
    assert_eq!(out["error"], "[tally] trackPurchase: transactionId is required", "{out}");
    let id = out["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 36, "{out}");
    assert_eq!(out["before"], 0, "nothing reaches gtag/fbq before the consent decision: {out}");
    assert_eq!(out["waiting"], 1, "the purchase waits for the decision and is counted: {out}");
    assert_eq!(
        out["firstCall"],
        json!(["gtag", "consent", "update", { "ad_storage": "granted", "analytics_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted" }]),
        "gtag hears the decision before the events it releases: {out}"
    );
    assert_eq!(
        out["lastConsent"],
        json!(["gtag", "consent", "update", { "ad_personalization": "denied", "wait_for_update": 500 }]),
        "gtag gets the update snake_case, other keys passed through: {out}"
    );
    let calls = out["calls"].to_string();
    assert!(
        calls.contains(r#"["gtag","event","purchase""#)
            && calls.contains(r#"["fbq","trackSingle","123456789012345","Purchase""#),
        "{calls}"
    );
    assert!(calls.contains(r#"["fbq","consent","grant"]"#), "{calls}");
    // The user data was normalised and hashed.
    assert!(calls.contains(JANE), "{calls}");
    assert_eq!(out["stored"], true, "with analytics storage granted the queue is in localStorage: {out}");
    assert_eq!(out["left"], 0, "flush resolves with nothing left: {out}");
    assert!(out["after"].is_null(), "the accepted event left the stored queue: {out}");
    assert_eq!(out["clicks"]["gclid"], "Cj0-shell", "{out}");
    assert_eq!(out["context"]["clientId"], "1234567890.1757409591", "{out}");
    assert_eq!(out["cid"], "1234567890.1757409591", "{out}");
    let views = &out["views"];
    assert!(views[0] == views[1] && views[0] != views[2], "a repeated page view is counted once: {out}");
    assert_eq!(out["sha"], JANE, "{out}");
    assert_eq!(out["hashed"]["google"]["sha256_email_address"][0], JANE, "{out}");
    assert!(
        eventually(10, || received.lock().unwrap().iter().any(|b| {
            b["context"]["clientId"] == "1234567890.1757409591"
                && b["context"]["clickIds"]["gclid"] == "Cj0-shell"
                && b["events"].as_array().is_some_and(|a| {
                    a.iter().any(|e| {
                        e["name"] == "purchase" && e["transactionId"] == "SHELL-1" && e["eventId"] == id.as_str()
                    })
                })
        }))
        .await,
        "the purchase did not reach /collect as the package sends it: {:?}",
        received.lock().unwrap()
    );
    let page_views: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["name"] == "page_view")
        .collect();
    assert_eq!(page_views.len(), 2, "{page_views:?}");
    assert!(page_views.iter().all(|e| e["params"]["page_title"] == "Thanks"), "{page_views:?}");
    assert!(page_views.iter().any(|e| e["params"]["page_path"] == "/other"), "{page_views:?}");
    browser.close().await;
}
