//! Scenario 8: a destination (Meta) is down during checkout; the purchase waits
//! in the durable outbox and is delivered once it recovers.

use std::time::Duration;

use tally_e2e::{ALL_DESTINATIONS, Browser, assert_reconciled, buy, eventually, start_demo, wait_paid};
use tally_sandbox::Mode;

#[tokio::test]
async fn destination_down_during_checkout_recovers_later() {
    let demo = start_demo(300).await;
    let shop = &demo.shop;
    shop.sandbox.meta.faults.set(Mode::Down);
    let browser = Browser::launch().await;
    let order_id = buy(&browser, &demo.base_url, "accept", "SKU-204").await;
    wait_paid(shop, &order_id).await;
    let order = shop.orders.get(&order_id).expect("order");
    assert!(shop.sandbox.meta.purchases().is_empty(), "Meta is down");
    let report = tally_demo::inspect::report(shop);
    let meta = report.row("meta", "EUR").expect("meta row");
    assert_eq!(meta.purchases, 0, "{meta:?} {:?}", order.server_outcomes);
    assert_eq!(meta.pending, 1, "the inspector shows the pending delivery: {meta:?} {:?}", order.server_outcomes);
    // The backlog (the purchase and the browsing events before it) is Meta's
    // alone, and /metrics says so per destination. A browser event the
    // collector is still delivering to the healthy destinations may be in the
    // outbox for a moment, so the others are given a few seconds to drain.
    let backlog = || {
        let by = shop.tracker.outbox().stats_by_destination().expect("stats by destination");
        let waiting: Vec<String> =
            by.iter().filter(|(_, s)| s.queued + s.in_flight > 0).map(|(d, _)| d.clone()).collect();
        (waiting, by)
    };
    assert!(eventually(10, || backlog().0 == ["meta"]).await, "only Meta has a backlog: {:?}", backlog().1);
    let metrics = shop.tracker.metrics_text();
    assert!(metrics.contains("tally_outbox_queued{destination=\"meta\"} "), "{metrics}");

    shop.sandbox.meta.faults.set(Mode::Up);
    shop.tracker.flush(Duration::from_secs(10)).await;
    assert_reconciled(shop, &ALL_DESTINATIONS, 1).await;
    assert_eq!(shop.tracker.outbox().stats().expect("stats").dead, 0);
    browser.close().await;
}
