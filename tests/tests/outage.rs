//! Scenario 8: a destination (Meta) is down during checkout; the purchase waits
//! in the durable outbox and is delivered once it recovers.

use std::time::Duration;

use tally_e2e::{ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, start_demo_on, wait_paid};
use tally_sandbox::Mode;

tally_e2e::on_both_server_trackers!(destination_down_during_checkout_recovers_later);

async fn destination_down_during_checkout_recovers_later(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 300).await;
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
    // The backlog (the purchase and the browsing events before it) is Meta's,
    // and /metrics says so per destination. A healthy destination may hold a
    // row only as a duplicate: the browser sent the same event twice (a beacon
    // on leaving the page, then the next page's re-send), the first copy was
    // being delivered, and the second waits out that delivery's lease before it
    // is acknowledged. Each such row is counted as a duplicate.
    let by = shop.tracker.outbox().stats_by_destination().expect("stats by destination");
    let counts = shop.tracker.metrics().by_destination();
    assert!(by.get("meta").is_some_and(|s| s.queued + s.in_flight >= 1), "{by:?}");
    for (dest, stats) in by.iter().filter(|(d, _)| d.as_str() != "meta") {
        assert_eq!(stats.dead, 0, "{dest}: {by:?}");
        let waiting = (stats.queued + stats.in_flight) as u64;
        let duplicates = counts.get(dest).map_or(0, |c| c.duplicates);
        assert!(waiting <= duplicates, "{dest} holds {waiting} rows that are not duplicates: {by:?}\n{counts:?}");
    }
    let metrics = shop.tracker.metrics_text();
    assert!(metrics.contains("tally_outbox_queued{destination=\"meta\"} "), "{metrics}");

    shop.sandbox.meta.faults.set(Mode::Up);
    shop.tracker.flush(Duration::from_secs(10)).await;
    assert_reconciled(shop, &ALL_DESTINATIONS, 1).await;
    assert_eq!(shop.tracker.outbox().stats().expect("stats").dead, 0);
    browser.close().await;
}
