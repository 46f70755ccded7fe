//! Scenario 7: the tracker script is blocked in the browser. The server still
//! delivers the purchase, stitched to the visitor through the cookies the
//! backend reads from the checkout request (`_ga`, `_gcl_aw`).

use std::sync::atomic::Ordering;

use tally_e2e::{
    ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, eventually, start_demo_on, wait_paid,
};

const GA_COOKIE: &str = "GA1.1.987654321.1760000000";

tally_e2e::on_both_server_trackers!(tracker_blocked_server_still_delivers_stitched_by_cookies);

async fn tracker_blocked_server_still_delivers_stitched_by_cookies(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;
    browser.open(&format!("{base}/?blocked=tracker")).await;
    assert_eq!(browser.eval("return window.tally === null").await, serde_json::Value::Bool(true), "tracker blocked");
    // The shop's own consent banner still works without the tracker.
    browser.click("#consent-accept").await;
    // Cookies a first-party tag (or an earlier visit) left on the shop's domain.
    browser.eval(&format!("document.cookie = '_ga={GA_COOKIE}; path=/'; return true")).await;
    browser.open(&format!("{base}/product/SKU-311")).await;
    browser.click("#add").await;
    browser.open(&format!("{base}/checkout")).await;
    browser.click("#pay").await;
    let shop = &demo.shop;
    assert!(eventually(15, || shop.orders.all().len() == 1).await, "an order was placed");
    let order_id = shop.orders.all()[0].id.clone();
    wait_paid(shop, &order_id).await;
    let order = shop.orders.get(&order_id).expect("order");
    assert!(order.context.is_none(), "no envelope: the tracker was blocked");
    assert!(order.tracking_cookies.as_deref().is_some_and(|c| c.contains("_ga=")), "{order:?}");

    assert_reconciled(shop, &["ga4", "webhook:warehouse"], 1).await;
    let purchases = shop.sandbox.ga4.purchases();
    assert_eq!(purchases.len(), 1);
    assert_eq!(purchases[0].client_id, "987654321.1760000000", "stitched to the visitor's _ga cookie");
    browser.close().await;
}

tally_e2e::on_both_server_trackers!(collect_endpoint_blocked_server_still_delivers_everywhere);

/// The collect endpoint blocked for browsers (the admin switch): the browser's
/// events never arrive, the envelope still travels with the order and the server
/// delivers the purchase to every destination.
async fn collect_endpoint_blocked_server_still_delivers_everywhere(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
    demo.shop.switches.collect_blocked.store(true, Ordering::Relaxed);
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "accept", "SKU-402").await;
    let shop = &demo.shop;
    wait_paid(shop, &order_id).await;
    assert!(shop.sandbox.ga4.events().iter().all(|e| e.name == "purchase"), "only the server's purchase reached GA4");
    assert!(shop.orders.get(&order_id).is_some_and(|o| o.context.is_some()), "the envelope came with the order");
    assert_reconciled(shop, &ALL_DESTINATIONS, 1).await;
    browser.close().await;
}
