//! Scenario 1: one real purchase, end to end: browser → collector → GA4 and
//! Meta, payment webhook → `from_context` → every destination, counted once.

use tally_e2e::{ALL_DESTINATIONS, Browser, ServerTrackerPath, assert_reconciled, buy, start_demo_on, wait_paid};

tally_e2e::on_both_server_trackers!(one_purchase_counts_once_everywhere_and_stitches_to_the_browser);

async fn one_purchase_counts_once_everywhere_and_stitches_to_the_browser(path: ServerTrackerPath) {
    let demo = start_demo_on(path, 400).await;
    let browser = Browser::launch().await;
    let base = &demo.base_url;

    let order_id = buy(&browser, base, "accept", "SKU-204").await;
    let browser_event_id = browser.attr("#purchase-event-id", "data-event-id").await.expect("event id on the page");
    let client_id = browser.eval("return window.tally.getClientId()").await;
    let client_id = client_id.as_str().expect("a client id").to_owned();
    assert!(!browser_event_id.is_empty());

    let shop = &demo.shop;
    wait_paid(shop, &order_id).await;
    let order = shop.orders.get(&order_id).expect("order");
    assert_eq!(order.status, "paid");
    assert_eq!(
        order.server_event_id.as_deref(),
        Some(browser_event_id.as_str()),
        "browser and server share the event id"
    );
    assert!(order.user_agent.is_some() && order.page_url.is_some(), "the checkout request's UA and URL are stored");

    assert_reconciled(shop, &ALL_DESTINATIONS, 1).await;

    let purchases: Vec<_> = shop.sandbox.ga4.events().into_iter().filter(|e| e.name == "purchase").collect();
    assert_eq!(purchases.len(), 1, "exactly one purchase reached GA4: {purchases:?}");
    let p = &purchases[0];
    assert_eq!(p.client_id, client_id, "the purchase stitches to the browser's client id");
    assert_eq!(p.value_micros(), Some(order.total_cents * 10_000), "revenue equal to the cent");
    assert_eq!(p.currency(), Some("EUR"));
    // Whichever of the browser and the server came first, the other was skipped as a duplicate.
    let ga4_outcome = order.server_outcomes.get("ga4").map(String::as_str).unwrap_or("");
    assert!(ga4_outcome == "skipped: duplicate" || ga4_outcome.starts_with("sent"), "{ga4_outcome}");
    assert!(shop.sandbox.ga4.dropped().is_empty(), "GA4 dropped: {:?}", shop.sandbox.ga4.dropped());
    let ads = shop.sandbox.data_manager.conversions();
    assert_eq!(ads.len(), 1, "{ads:?}");
    assert_eq!(ads[0].gclid.as_deref(), Some(tally_e2e::GCLID));
    let meta: Vec<_> = shop.sandbox.meta.purchases();
    assert!(meta.iter().all(|m| m.event_source_url.is_some()), "Meta website events carry event_source_url: {meta:?}");

    // The inspector shows it all, and which server tracker is live; its
    // screenshot (of the Rust path, the default) is the README's.
    browser.open(&format!("{base}/inspector")).await;
    let live = browser.attr("#server-tracker", "data-path").await;
    assert_eq!(live.as_deref(), Some(path.as_str()), "the inspector shows the live server tracker");
    if path != ServerTrackerPath::Rust {
        browser.close().await;
        return;
    }
    let png = browser.client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).expect("docs dir");
    std::fs::write(docs.join("inspector.png"), png).expect("write docs/inspector.png");
    browser.close().await;
}
