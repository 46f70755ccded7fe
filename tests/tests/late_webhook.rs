//! Scenario 3: the payment webhook arrives two minutes (simulated) after the
//! browser purchase; the server event keeps the purchase time and still counts once.

use std::sync::atomic::Ordering;

use tally_e2e::{ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, start_demo_on, wait_paid};

tally_e2e::on_both_server_trackers!(webhook_two_minutes_late_still_counts_once);

async fn webhook_two_minutes_late_still_counts_once(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 1500).await;
    demo.shop.switches.webhook_late_ms.store(120_000, Ordering::Relaxed);
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "accept", "SKU-402").await;
    // The browser purchase is in before the webhook.
    assert!(demo.shop.orders.get(&order_id).is_some_and(|o| o.server_event_id.is_none()), "webhook not yet in");
    wait_paid(&demo.shop, &order_id).await;
    assert_reconciled(&demo.shop, &ALL_DESTINATIONS, 1).await;
    // The late server event was accepted or recognised as the browser's purchase:
    // nothing failed, nothing fell outside a window.
    let order = demo.shop.orders.get(&order_id).expect("order");
    for (dest, outcome) in &order.server_outcomes {
        assert!(outcome.starts_with("sent") || outcome == "skipped: duplicate", "{dest}: {outcome}");
    }
    assert!(
        demo.shop.sandbox.data_manager.rejections().is_empty(),
        "{:?}",
        demo.shop.sandbox.data_manager.rejections()
    );
    browser.close().await;
}
