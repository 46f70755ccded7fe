//! The size floor's module behind its hand-written JS shell
//! (`crates/size-floor/shell.js`) in headless Chromium: the figure `cargo
//! xtask pkg` prints for "floor + shell" is only worth something if that pair
//! really tracks. A purchase made before the consent decision waits, is
//! bridged to gtag/fbq and sent to the collector once consent is granted,
//! with the event id the page got back, the GA4 client id from `_ga` and the
//! click id from the landing URL; a purchase without a transaction id throws
//! the package's error; the queue is in `localStorage` and empty once the
//! collector accepted.

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
import { createBrowserTracker, sha256Hex, hashUserData } from '/shell.js';
document.title = 'Thanks';
const out = {};
try {
  const t = await createBrowserTracker({ endpoint: location.origin + '/collect', siteKey: 'k', consentMode: 'v2',
    ga4MeasurementId: 'G-ABC123', metaPixelId: '123456789012345' }, { wasmUrl: '/size-floor.wasm' });
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
  out.lastConsent = calls.filter((c) => c[1] === 'consent').pop();
} catch (e) { out.fatal = String(e && e.stack || e); }
document.getElementById('out').textContent = JSON.stringify(out);
document.body.dataset.ready = '1';
</script></body></html>"#;

#[tokio::test]
async fn the_floor_behind_its_hand_written_shell_tracks_a_purchase_through_consent_to_the_collector() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::fs::read(root.join("target/pkg-size/size-floor.wasm"))
        .expect("build the size floor first: cargo xtask pkg writes target/pkg-size/size-floor.wasm");
    let shell = std::fs::read_to_string(root.join("crates/size-floor/shell.js")).unwrap();

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let collect = tally_e2e::accepting_collector(received.clone());
    let router = Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html")], PAGE) }))
        .route("/shell.js", get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], shell) }))
        .route("/size-floor.wasm", get(move || async move { ([(header::CONTENT_TYPE, "application/wasm")], wasm) }))
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

#[test]
fn in_node_the_shell_checks_the_config_and_returns_the_no_op_tracker() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("tally-shell-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root.join("crates/size-floor/shell.js"), dir.join("shell.mjs")).unwrap();
    std::fs::copy(root.join("target/pkg-size/size-floor.wasm"), dir.join("size-floor.wasm"))
        .expect("build the size floor first: cargo xtask pkg");
    let out = std::process::Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "import { createBrowserTracker } from './shell.mjs';
             const t = await createBrowserTracker({ endpoint: '/collect', consentMode: 'off' });
             console.log(JSON.stringify([t.ssr, t.trackPurchase({ transactionId: 'T1' }), t.getQueueSize(), await t.flush()]));
             try { await createBrowserTracker({ endpoint: '/collect', consentMod: 'off' }); console.log('accepted'); }
             catch (e) { console.log(e.message); }",
        ])
        .current_dir(&dir)
        .output()
        .expect("node");
    let _ = std::fs::remove_dir_all(&dir);
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&r#"[true,"",0,0]"#), "{out}");
    let err = lines.get(1).copied().unwrap_or_default();
    assert!(err.starts_with("[tally] createBrowserTracker:") && err.contains("consentMod"), "the typo is named: {out}");
}
