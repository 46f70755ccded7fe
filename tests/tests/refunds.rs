//! Scenario 5: a full refund and a partial refund from the admin page; then
//! one order refunded three times, from the backend and from the page.
//! Google Ads gets RETRACTION / RESTATEMENT, GA4 and the warehouse get refund
//! events; net revenue reconciles to the cent. Meta and Rokt take no refunds:
//! they keep the purchases, reconciled against the gross order totals.
//!
//! Google Ads refuses adjustments of conversions younger than 24 hours, so the
//! orders are placed "yesterday": the server reports them with a purchase time
//! 25 hours back (the webhook-lateness switch), and the browser tracker is
//! blocked so that the server's dated purchase is the one Google counts (the
//! visitor is stitched through the `_ga` / `_gcl_aw` cookies).

use std::sync::atomic::Ordering;

use tally_core::Amount;
use tally_e2e::{Browser, GCLID, ServerTrackerPath, assert_reconciled, eventually, start_demo_on, wait_paid};

const DAY_AND_HOUR_MS: u64 = 25 * 3_600_000;

/// The demo shop, its payment webhook reporting purchases 25 hours back, and
/// a consenting shopper with the tracker blocked whose `_ga` / `_gcl_aw`
/// cookies say they clicked an ad 26 hours ago.
async fn shopper_who_clicked_yesterday(path: ServerTrackerPath) -> (tally_demo::RunningDemo, Browser) {
    let demo = start_demo_on(path, 200).await;
    let browser = Browser::launch().await;
    demo.shop.switches.webhook_late_ms.store(DAY_AND_HOUR_MS, Ordering::Relaxed);
    browser.open(&format!("{}/?blocked=tracker", demo.base_url)).await;
    browser.click("#consent-accept").await;
    let click_s = tally_server::now_ms() / 1000 - 26 * 3600;
    browser
        .eval(&format!(
            "document.cookie = '_ga=GA1.1.111222333.{click_s}; path=/'; document.cookie = '_gcl_aw=GCL.{click_s}.{GCLID}; path=/'; return true"
        ))
        .await;
    (demo, browser)
}

async fn buy_yesterday(browser: &Browser, shop: &tally_demo::Shop, base: &str, sku: &str) -> String {
    let before = shop.orders.all().len();
    browser.open(&format!("{base}/product/{sku}")).await;
    browser.click("#add").await;
    browser.open(&format!("{base}/checkout")).await;
    browser.click("#pay").await;
    assert!(eventually(15, || shop.orders.all().len() == before + 1).await, "an order was placed");
    let id = shop.orders.all().into_iter().map(|o| o.id).max().expect("order");
    wait_paid(shop, &id).await;
    id
}

tally_e2e::on_both_server_trackers!(full_and_partial_refunds_reconcile);

async fn full_and_partial_refunds_reconcile(path: ServerTrackerPath) {
    let (demo, browser) = shopper_who_clicked_yesterday(path).await;
    let base = &demo.base_url;
    let shop = &demo.shop;
    let first = buy_yesterday(&browser, shop, base, "SKU-311").await;
    let second = buy_yesterday(&browser, shop, base, "SKU-204").await;

    browser.open(&format!("{base}/admin")).await;
    browser.click(&format!(".refund-full[data-order='{first}']")).await;
    assert!(eventually(10, || shop.orders.get(&first).is_some_and(|o| o.status == "refunded")).await);
    browser.open(&format!("{base}/admin")).await;
    browser.refund_partially(&second, "10.25").await;
    assert!(
        eventually(10, || shop.orders.get(&second).is_some_and(|o| o.refunded_cents == 1025)).await,
        "partial refund: {:?}",
        shop.orders.get(&second)
    );

    let report = assert_reconciled(shop, &["ga4", "google_ads", "webhook:warehouse"], 2).await;
    let ga4 = report.row("ga4", "EUR").expect("ga4");
    let o1 = shop.orders.get(&first).expect("first");
    let o2 = shop.orders.get(&second).expect("second");
    let net = Amount::from_minor(o2.total_cents - 1025, 2).expect("amount");
    assert_eq!(ga4.backend_revenue, net, "the fully refunded order counts zero");

    // Google Ads: the partial refund restated through the Data Manager API at
    // once; the full one retracted through the Google Ads API (the demo's legacy access).
    let restated = shop.sandbox.data_manager.conversion(&second).expect("second order at Google Ads");
    assert_eq!(restated.restatements, 1, "{restated:?}");
    assert_eq!(restated.value.map(|v| (v * 100.0).round() as i64), Some(o2.total_cents - 1025), "{restated:?}");
    assert!(shop.sandbox.data_manager.conversion(&first).is_some_and(|c| c.retracted));
    let adj = shop.sandbox.google_ads.adjustments();
    assert_eq!(adj.iter().map(|a| a.adjustment_type.as_str()).collect::<Vec<_>>(), ["RETRACTION"], "{adj:?}");
    assert_eq!(shop.sandbox.ga4.events().iter().filter(|e| e.name == "refund").count(), 2);

    // Meta and Rokt: purchases = orders, gross revenue to the cent.
    for d in ["meta", "rokt"] {
        let row = report.row(d, "EUR").expect("row");
        assert_eq!(row.purchases, 2, "{d}: {row:?}");
        let gross = Amount::from_minor(o1.total_cents + o2.total_cents, 2).expect("amount");
        assert_eq!(row.destination_revenue, gross, "{d}: {row:?}");
    }
    browser.close().await;
}

tally_e2e::on_both_server_trackers!(two_partial_refunds_then_the_rest_reconcile);

/// The outcome text of `order`'s latest refund at `destination`.
fn refund_outcome(shop: &tally_demo::Shop, order: &str, destination: &str) -> String {
    shop.orders.get(order).and_then(|o| o.refund_outcomes.get(destination).cloned()).unwrap_or_default()
}

/// GA4's refunds of `order`, in cents, in arrival order.
fn ga4_refunds(shop: &tally_demo::Shop, order: &str) -> Vec<i64> {
    let events = shop.sandbox.ga4.events();
    let refunds = events.iter().filter(|e| e.name == "refund" && e.transaction_id() == Some(order));
    refunds.filter_map(|e| e.value_micros()).map(|m| m / 10_000).collect()
}

/// Scenario 5b (issue 31): one order refunded three times, 5.25, then 7.50,
/// then the rest. The first refund comes from the shop's backend (the server
/// path); the second from the page first (the browser tracker's
/// `trackRefund`, the browser path) and then from the backend, which finds
/// it already delivered; the rest from the backend. Every destination that
/// takes refunds gets each refund once: GA4 and the warehouse three refund
/// events, Google Ads the value restated to what is left, twice, then
/// retracted; the backend's books and every destination agree to the cent
/// after the partial refunds and after the last one.
async fn two_partial_refunds_then_the_rest_reconcile(path: ServerTrackerPath) {
    const REFUND_DESTINATIONS: [&str; 3] = ["ga4", "google_ads", "webhook:warehouse"];
    let (demo, browser) = shopper_who_clicked_yesterday(path).await;
    let base = &demo.base_url;
    let shop = &demo.shop;
    let order = buy_yesterday(&browser, shop, base, "SKU-311").await;
    let total = shop.orders.get(&order).expect("order").total_cents;
    assert!(total > 1275, "the order is worth more than both partial refunds: {total}");

    // 1. 5.25 from the backend.
    browser.open(&format!("{base}/admin")).await;
    browser.refund_partially(&order, "5.25").await;
    assert!(eventually(10, || shop.orders.get(&order).is_some_and(|o| o.refunded_cents == 525)).await);
    for d in REFUND_DESTINATIONS {
        assert!(refund_outcome(shop, &order, d).starts_with("sent"), "{d}: {:?}", shop.orders.get(&order));
    }

    // 2. 7.50 from the page first (the tracker unblocked, consent given), then from the backend.
    browser.open(&format!("{base}/?blocked=none")).await;
    let before = format!("{}.{:02}", (total - 525) / 100, (total - 525) % 100);
    let id = browser
        .eval(&format!(
            "tally.updateConsent({{ ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' }});
             return tally.trackRefund({{ transactionId: '{order}', value: '7.50', originalValue: '{before}', currency: 'EUR' }})"
        ))
        .await;
    assert!(id.as_str().is_some_and(|id| id.len() == 36), "trackRefund returns the event id: {id}");
    assert!(
        eventually(15, || ga4_refunds(shop, &order) == [525, 750]).await,
        "the browser's second refund reached GA4: {:?}\n{}",
        ga4_refunds(shop, &order),
        tally_e2e::dump(shop)
    );
    browser.open(&format!("{base}/admin")).await;
    browser.refund_partially(&order, "7.50").await;
    assert!(eventually(10, || shop.orders.get(&order).is_some_and(|o| o.refunded_cents == 1275)).await);
    for d in REFUND_DESTINATIONS {
        let outcome = refund_outcome(shop, &order, d);
        assert!(outcome.contains("duplicate"), "{d}: the backend's report of the browser's refund: {outcome}");
    }
    let left = total - 1275;
    let restated = shop.sandbox.data_manager.conversion(&order).expect("the order at Google Ads");
    let cents = |v: &Option<f64>| v.map(|v| (v * 100.0).round() as i64);
    assert_eq!(
        restated.restated_values.iter().map(cents).collect::<Vec<_>>(),
        [Some(total - 525), Some(left)],
        "restated to what is left after each refund: {restated:?}"
    );
    assert_eq!(cents(&restated.value), Some(left), "Google Ads keeps what the books say");
    assert_reconciled(shop, &REFUND_DESTINATIONS, 1).await;

    // 3. The rest, from the backend: nothing remains, so Google Ads retracts.
    browser.open(&format!("{base}/admin")).await;
    browser.click(&format!(".refund-full[data-order='{order}']")).await;
    assert!(eventually(10, || shop.orders.get(&order).is_some_and(|o| o.status == "refunded")).await);
    for d in REFUND_DESTINATIONS {
        assert!(refund_outcome(shop, &order, d).starts_with("sent"), "{d}: {:?}", shop.orders.get(&order));
    }
    assert_eq!(ga4_refunds(shop, &order), [525, 750, left]);
    let warehouse: Vec<i64> = shop
        .sandbox
        .webhook
        .events("warehouse")
        .iter()
        .filter(|r| r.event_name == "refund")
        .filter_map(|r| r.body["value"].as_f64())
        .map(|v| (v * 100.0).round() as i64)
        .collect();
    assert_eq!(warehouse, [525, 750, left]);
    assert!(shop.sandbox.data_manager.conversion(&order).is_some_and(|c| c.retracted));
    let adj = shop.sandbox.google_ads.adjustments();
    assert_eq!(adj.iter().map(|a| a.adjustment_type.as_str()).collect::<Vec<_>>(), ["RETRACTION"], "{adj:?}");
    let report = assert_reconciled(shop, &REFUND_DESTINATIONS, 1).await;
    assert_eq!(report.row("ga4", "EUR").map(|r| r.backend_revenue), Some(Amount::ZERO));
    browser.close().await;
}
