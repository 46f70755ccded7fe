//! Scenario 4: the provider delivers the same webhook three times.

use std::sync::atomic::Ordering;

use tally_e2e::{
    ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, eventually, start_demo_on, wait_paid,
};

tally_e2e::on_both_server_trackers!(same_webhook_three_times_counts_once);

async fn same_webhook_three_times_counts_once(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
    demo.shop.switches.webhook_deliveries.store(3, Ordering::Relaxed);
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "accept", "SKU-204").await;
    let shop = &demo.shop;
    assert!(
        eventually(15, || shop.orders.get(&order_id).is_some_and(|o| o.webhook_deliveries == 3)).await,
        "three deliveries: {:?}",
        shop.orders.get(&order_id)
    );
    wait_paid(shop, &order_id).await;
    assert_reconciled(shop, &ALL_DESTINATIONS, 1).await;
    assert_eq!(shop.sandbox.data_manager.conversions().len(), 1);
    assert_eq!(
        shop.sandbox.webhook.events("warehouse").iter().filter(|r| r.event_name == "purchase" && !r.duplicate).count(),
        1
    );
    browser.close().await;
}
