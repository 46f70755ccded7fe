//! The collector's status page in headless Chromium: after a purchase with
//! every consent and one with analytics consent only, it shows each
//! destination's coverage of the confirmed orders, the order withheld from
//! the ad destinations by consent, and the coverage chart. Its screenshot is
//! the README's (`docs/status.png`).

use std::time::Duration;

use fantoccini::Locator;
use tally_e2e::{Browser, assert_reconciled, buy, start_demo, wait_paid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_coverage_and_consent_per_destination() {
    let demo = start_demo(200).await;
    let shop = &demo.shop;
    // Two visitors: one accepts everything, the other analytics only.
    let first = Browser::launch().await;
    let all = buy(&first, &demo.base_url, "accept", "SKU-311").await;
    wait_paid(shop, &all).await;
    first.close().await;
    let browser = Browser::launch().await;
    let analytics = buy(&browser, &demo.base_url, "analytics", "SKU-311").await;
    wait_paid(shop, &analytics).await;
    assert_reconciled(shop, &["ga4", "webhook:warehouse"], 2).await;

    // A person opens it with the server secret as the Basic password.
    let url = demo.base_url.replacen("http://", &format!("http://status:{}@", tally_demo::SERVER_SECRET), 1);
    browser.client.goto(&format!("{url}/status")).await.expect("goto /status");
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#day"))
        .await
        .expect("the status page's 24 h table");
    let cell = |dest: &str, col: usize| {
        format!("return document.querySelector('#day tr[data-destination=\"{dest}\"]').children[{col}].textContent")
    };
    for dest in ["ga4", "google_ads", "meta", "webhook:warehouse"] {
        let coverage = browser.eval(&cell(dest, 1)).await;
        assert_eq!(coverage, "100.0 %", "{dest} reached every order it was allowed to");
    }
    // GA4 and the warehouse expect both orders; the ad destinations only the one with ads consent.
    assert_eq!(browser.eval(&cell("ga4", 2)).await, "2");
    assert_eq!(browser.eval(&cell("google_ads", 2)).await, "1");
    assert_eq!(browser.eval(&cell("google_ads", 5)).await, "consent_denied 1");
    assert_eq!(browser.eval(&cell("meta", 5)).await, "consent_denied 1");
    assert_eq!(browser.eval(&cell("ga4", 5)).await, "");
    // Rokt skipped the browser's report (no attribution) and got the backend's: only consent withheld.
    assert_eq!(browser.eval(&cell("rokt", 5)).await, "consent_denied 1");
    let points = browser.eval("return document.querySelectorAll('#coverage circle').length").await;
    assert!(points.as_u64().is_some_and(|n| n >= 4), "the chart has this hour's points: {points}");

    let png = browser.client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).expect("docs dir");
    std::fs::write(docs.join("status.png"), png).expect("write docs/status.png");
    browser.close().await;
}
