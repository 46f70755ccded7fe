//! A new user's first hour with the demo, in a 1280 px wide Chromium: a
//! purchase in the second currency reconciles in its own row, the inspector
//! fits the window, explains its columns, shows Tally's own counts and keeps a
//! text selection across its auto-refresh; the admin page's checkboxes sit
//! by their labels, a flush and an over-refund answer in sentences; the shop
//! has a favicon and the thank-you page's link looks like a link.

use std::time::Duration;

use tally_e2e::{Browser, buy, eventually, start_demo, wait_paid};

#[tokio::test]
async fn the_demo_reads_well_for_a_new_user() {
    let demo = start_demo(200).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;
    let shop = &demo.shop;

    // The second currency: the shopper picks USD, the order and every destination get USD.
    browser.open(&format!("{base}/")).await;
    let picker = browser.eval("return [...document.querySelectorAll('#currency option')].map(o => o.value)").await;
    assert_eq!(picker, serde_json::json!(["EUR", "USD"]), "the shop offers two currencies");
    browser.eval("localStorage.setItem('demo_currency', 'USD'); return true").await;
    let order_id = buy(&browser, base, "accept", "SKU-204").await;
    let order = shop.orders.get(&order_id).expect("order");
    assert_eq!((order.currency.as_str(), order.total_cents), ("USD", 12_900), "priced in USD");

    // The thank-you page's link is styled as a link (not as the surrounding text).
    let link = browser
        .eval(
            "const a = document.querySelector('main .card a[href=\"/inspector\"]'), p = a.closest('p'); \
             const s = getComputedStyle(a); \
             return [s.color !== getComputedStyle(p).color, s.textDecorationLine]",
        )
        .await;
    assert_eq!(link, serde_json::json!([true, "underline"]), "the link stands out: {link}");

    // A favicon, so the first load has no 404.
    let favicon = browser
        .eval("return fetch(document.querySelector('link[rel=icon]').href).then(r => [r.status, r.headers.get('content-type')])")
        .await;
    assert_eq!(favicon, serde_json::json!([200, "image/svg+xml"]));
    let ico = browser.eval("return fetch('/favicon.ico').then(r => r.status)").await;
    assert_eq!(ico, 200);

    wait_paid(shop, &order_id).await;
    let reconciled = eventually(15, || {
        let r = tally_demo::inspect::report(shop);
        ["ga4", "google_ads", "meta", "webhook:warehouse"]
            .iter()
            .all(|d| r.row(d, "USD").is_some_and(|row| row.matches() && row.orders == 1))
    })
    .await;
    assert!(reconciled, "USD reconciles: {:#?}", tally_demo::inspect::report(shop));

    // The inspector: USD rows with money to the cent, the shop's order id at GA4, the
    // legend, Tally's own counts, and everything inside 1280 px.
    browser.open(&format!("{base}/inspector")).await;
    let usd = browser
        .eval(
            "return [...document.querySelectorAll('#reconciliation tr')].map(r => [...r.cells].map(c => c.textContent)) \
             .filter(c => c[0] === 'ga4' && c[1] === 'USD')",
        )
        .await;
    assert_eq!(usd[0][5], "129.00 USD", "backend money: {usd}");
    assert_eq!(usd[0][6], "129.00 USD", "destination money: {usd}");
    assert_eq!(usd[0][12], "match", "{usd}");
    let ga4_ids = browser
        .eval("return [...document.querySelectorAll('#ga4-events tr td:nth-child(3)')].map(c => c.textContent)")
        .await;
    assert!(
        ga4_ids.as_array().is_some_and(|ids| ids.iter().any(|i| i == order_id.as_str())),
        "GA4 shows the shop's order id as transaction_id: {ga4_ids}"
    );
    let legend = browser.eval("return [...document.querySelectorAll('#legend dt')].map(d => d.textContent)").await;
    for col in ["Orders", "Purchases", "Dupes", "Withheld (consent)", "Pending"] {
        assert!(legend.as_array().is_some_and(|l| l.iter().any(|t| t == col)), "legend explains {col}: {legend}");
    }
    let counts = browser
        .eval(
            "return [...document.querySelectorAll('#tally-counts tr')].map(r => [...r.cells].map(c => c.textContent)) \
             .find(c => c[0] === 'ga4')",
        )
        .await;
    let delivered: u64 = counts[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(delivered >= 1, "Tally's own ga4 counts: {counts}");
    let fits = browser
        .eval("return [document.documentElement.scrollWidth, document.documentElement.clientWidth, document.getElementById('reconciliation').getBoundingClientRect().right]")
        .await;
    let (page_w, view_w, table_right) =
        (fits[0].as_f64().unwrap_or(0.0), fits[1].as_f64().unwrap_or(0.0), fits[2].as_f64().unwrap_or(f64::MAX));
    assert!(page_w <= view_w && table_right <= view_w, "the inspector fits 1280 px: {fits}");

    // Selected text survives the 2 s auto-refresh, even when the data changes;
    // the page catches up once the selection is gone.
    browser
        .eval(
            "const td = document.querySelector('#orders tr:nth-child(2) td'); const r = document.createRange(); \
             r.selectNodeContents(td); getSelection().removeAllRanges(); getSelection().addRange(r); return true",
        )
        .await;
    let placed = browser
        .eval(
            "return fetch('/api/orders', {method: 'POST', headers: {'content-type': 'application/json'}, \
             body: JSON.stringify({lines: [{id: 'SKU-311', quantity: 1}], email: 'a@example.com', context: null})}).then(r => r.status)",
        )
        .await;
    assert_eq!(placed, 200);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let kept = browser
        .eval("const s = getSelection(); return [s.toString().trim(), s.anchorNode ? s.anchorNode.isConnected : false]")
        .await;
    assert_eq!(kept, serde_json::json!([order_id, true]), "the selection survived the refresh: {kept}");
    browser.eval("getSelection().removeAllRanges(); return true").await;
    let mut rows = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rows = browser.eval("return document.querySelectorAll('#orders tr').length").await.as_u64().unwrap_or(0);
        if rows == 3 {
            break;
        }
    }
    assert_eq!(rows, 3, "the inspector refreshed once the selection was gone");

    // The admin page: checkboxes beside their labels, readable flush and over-refund answers.
    browser.open(&format!("{base}/admin")).await;
    let checkbox = browser
        .eval(
            "const b = document.getElementById('sw-collect').getBoundingClientRect(); \
             const r = document.createRange(); r.selectNodeContents(document.getElementById('sw-collect').parentElement); \
             return [b.width, r.getClientRects()[0].left, b.left]",
        )
        .await;
    let width = checkbox[0].as_f64().unwrap_or(999.0);
    assert!(width < 30.0, "a checkbox is checkbox-sized, not 280 px: {checkbox}");
    browser.click("#flush").await;
    let flushed = wait_message(&browser, "").await;
    assert!(flushed.0.starts_with("Outbox flushed") || flushed.0.starts_with("Still waiting"), "{flushed:?}");
    assert!(!flushed.0.contains("FlushReport"), "{flushed:?}");
    browser.refund_partially(&order_id, "500").await;
    let refused = wait_message(&browser, &flushed.0).await;
    assert_eq!(
        refused,
        (
            format!(
                "Cannot refund 500.00 USD of {order_id}: only 129.00 USD is left to refund. Enter at most 129.00 USD."
            ),
            "message bad".to_owned()
        )
    );

    // A refund shows its delivery in the inspector.
    browser.click(&format!(".refund-full[data-order='{order_id}']")).await;
    assert!(eventually(10, || shop.orders.get(&order_id).is_some_and(|o| o.status == "refunded")).await);
    browser.open(&format!("{base}/inspector")).await;
    let refund_cell = browser
        .eval(&format!(
            "return [...document.querySelectorAll('#orders tr')].find(r => r.cells[0].textContent === '{order_id}').querySelector('.refund-outcomes').textContent"
        ))
        .await;
    assert!(refund_cell.as_str().is_some_and(|t| t.contains("ga4: ")), "refund outcomes shown: {refund_cell}");
    browser.close().await;
}

/// The admin message once it is neither empty nor `previous`: its text and class.
async fn wait_message(browser: &Browser, previous: &str) -> (String, String) {
    for _ in 0..100 {
        let m = browser
            .eval("const m = document.getElementById('admin-message'); return m ? [m.textContent, m.className] : ['', '']")
            .await;
        let text = m[0].as_str().unwrap_or("").to_owned();
        if !text.is_empty() && text != previous {
            return (text, m[1].as_str().unwrap_or("").to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no admin message");
}
