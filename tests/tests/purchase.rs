//! One real purchase, end to end: browser → collector → GA4 sandbox, and
//! payment webhook → `from_context` → GA4 sandbox, counted once.

use tally_e2e::{Browser, eventually, start_demo};

#[tokio::test]
async fn one_purchase_counts_once_and_stitches_to_the_browser() {
    let demo = start_demo(400).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;

    browser.open(&format!("{base}/")).await;
    browser.click("#consent-accept").await;
    browser.open(&format!("{base}/product/SKU-204")).await;
    browser.click("#add").await;
    browser.open(&format!("{base}/checkout")).await;
    browser.click("#pay").await;
    browser.wait_ready().await;
    // The thank-you page fired the browser purchase and flushed it.
    let order_id = browser.eval("return document.getElementById('order-id').textContent").await;
    let order_id = order_id.as_str().expect("order id on the page").to_owned();
    let browser_event_id = browser.attr("#purchase-event-id", "data-event-id").await.expect("event id on the page");
    let client_id = browser.eval("return window.tally.getClientId()").await;
    let client_id = client_id.as_str().expect("a client id").to_owned();
    assert!(!browser_event_id.is_empty());

    // The simulated provider calls the webhook; the backend reports the purchase.
    let shop = &demo.shop;
    assert!(
        eventually(15, || shop.orders.get(&order_id).is_some_and(|o| o.server_event_id.is_some())).await,
        "the payment webhook did not report the purchase: {:?}",
        shop.orders.get(&order_id)
    );
    let order = shop.orders.get(&order_id).expect("order");
    assert_eq!(order.status, "paid");
    assert_eq!(
        order.server_event_id.as_deref(),
        Some(browser_event_id.as_str()),
        "browser and server share the event id"
    );

    let purchases: Vec<_> = shop.sandbox.ga4.events().into_iter().filter(|e| e.name == "purchase").collect();
    assert_eq!(purchases.len(), 1, "exactly one purchase reached GA4: {purchases:?}");
    let p = &purchases[0];
    assert_eq!(p.client_id, client_id, "the purchase stitches to the browser's client id");
    assert_eq!(p.transaction_id(), Some(browser_event_id.as_str()));
    assert_eq!(p.value_micros(), Some(order.total_cents * 10_000), "revenue equal to the cent");
    assert_eq!(p.currency(), Some("EUR"));
    // The server saw the browser's delivery and skipped its own as a duplicate.
    assert_eq!(order.server_outcomes.get("ga4").map(String::as_str), Some("skipped: duplicate"));
    assert!(shop.sandbox.ga4.dropped().is_empty(), "GA4 dropped: {:?}", shop.sandbox.ga4.dropped());
    browser.close().await;
}
