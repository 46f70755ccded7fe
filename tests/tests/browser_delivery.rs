//! Browser delivery, end to end: an event tracked while the collector is down
//! arrives once after it recovers; an event tracked just before the tab closes
//! arrives (beacon flush on pagehide).

use std::sync::atomic::Ordering;

use tally_e2e::{Browser, eventually, start_demo};

fn add_to_cart_count(demo: &tally_demo::RunningDemo) -> usize {
    demo.shop.sandbox.ga4.events().iter().filter(|e| e.name == "add_to_cart").count()
}

#[tokio::test]
async fn event_tracked_while_collector_is_down_arrives_once_after_recovery() {
    let demo = start_demo(300).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;
    browser.open(&format!("{base}/")).await;
    browser.click("#consent-accept").await;
    demo.shop.switches.collect_down.store(true, Ordering::Relaxed);
    browser.open(&format!("{base}/product/SKU-311")).await;
    browser.click("#add").await;
    // The collector answers 503: the event stays queued in the browser.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(add_to_cart_count(&demo), 0);
    demo.shop.switches.collect_down.store(false, Ordering::Relaxed);
    // Retried with backoff (or re-sent by the next page): it arrives, once.
    browser.open(&format!("{base}/cart")).await;
    assert!(eventually(20, || add_to_cart_count(&demo) >= 1).await, "the queued event never arrived");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(add_to_cart_count(&demo), 1, "delivered exactly once");
    browser.close().await;
}

#[tokio::test]
async fn event_tracked_just_before_the_tab_closes_arrives() {
    let demo = start_demo(300).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;
    browser.open(&format!("{base}/")).await;
    browser.click("#consent-accept").await;
    browser.open(&format!("{base}/product/SKU-518")).await;
    // Track and navigate away in the same task: no time for a normal send.
    browser
        .eval(
            "window.tally.trackAddToCart({currency:'EUR', value:19.95, items:[{itemId:'SKU-518', price:19.95, quantity:1}]}); \
             location.href = 'about:blank'; return 1;",
        )
        .await;
    assert!(eventually(15, || add_to_cart_count(&demo) == 1).await, "the event tracked before leaving never arrived");
    browser.close().await;
}
