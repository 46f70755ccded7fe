//! Scenario 2: the thank-you page reloaded three times counts one purchase.

use tally_e2e::{ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, start_demo_on, wait_paid};

tally_e2e::on_both_server_trackers!(thank_you_reloaded_three_times_counts_once);

async fn thank_you_reloaded_three_times_counts_once(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "accept", "SKU-311").await;
    let url = browser.client.current_url().await.expect("url").to_string();
    for _ in 0..3 {
        browser.open(&url).await;
        let again = browser.eval("return document.getElementById('order-id').textContent").await;
        assert_eq!(again.as_str(), Some(order_id.as_str()));
    }
    wait_paid(&demo.shop, &order_id).await;
    assert_reconciled(&demo.shop, &ALL_DESTINATIONS, 1).await;
    // The reloads did not even reach GA4 as purchases a second time.
    let ga4 = demo.shop.sandbox.ga4.events();
    assert_eq!(ga4.iter().filter(|e| e.name == "purchase").count(), 1, "{ga4:?}");
    let meta = demo.shop.sandbox.meta.events();
    assert_eq!(meta.iter().filter(|e| e.event_name == "Purchase" && !e.duplicate).count(), 1, "{meta:?}");
    browser.close().await;
}
