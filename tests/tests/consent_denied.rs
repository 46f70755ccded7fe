//! Scenario 6: consent denied for ads ("Analytics only"). No ad destination
//! receives user data or click ids; analytics (GA4) and the first-party
//! warehouse still get the purchase, reconciled to the cent.

use tally_e2e::{Browser, GCLID, ServerTrackerPath, assert_reconciled, buy, start_demo_on, wait_paid};

tally_e2e::on_both_server_trackers!(ads_consent_denied_sends_no_user_data_or_click_ids_to_ads);

async fn ads_consent_denied_sends_no_user_data_or_click_ids_to_ads(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "analytics", "SKU-311").await;
    let shop = &demo.shop;
    wait_paid(shop, &order_id).await;
    let report = assert_reconciled(shop, &["ga4", "webhook:warehouse"], 1).await;

    let order = shop.orders.get(&order_id).expect("order");
    let email_hash = tally_core::hash::sha256_hex("jane.doe@example.com");
    for prefix in ["/google-ads", "/meta", "/rokt"] {
        for req in shop.sandbox.traffic.under(prefix) {
            assert!(!req.body.contains(GCLID), "{prefix} got the gclid: {}", req.body);
            assert!(!req.body.contains(&email_hash), "{prefix} got the hashed email: {}", req.body);
            assert!(!req.body.contains("jane.doe"), "{prefix} got the email: {}", req.body);
            assert!(!req.body.contains("IwAR_demo_e2e"), "{prefix} got the fbclid: {}", req.body);
        }
    }
    assert!(shop.sandbox.data_manager.conversions().is_empty());
    let ads = report.row("google_ads", "EUR").expect("ads row");
    assert_eq!(ads.purchases, 0);
    assert!(ads.consent_drops >= 1, "the consent drop is reported: {ads:?} {:?}", order.server_outcomes);
    // Withheld by consent is correct behaviour: the order is listed apart and the row matches.
    assert_eq!(ads.withheld_by_consent, vec![order_id.clone()], "{ads:?}");
    assert_eq!(ads.orders, 0, "{ads:?}");
    assert!(ads.matches(), "{ads:?}");
    browser.close().await;
}
