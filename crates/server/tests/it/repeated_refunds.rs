//! An order refunded several times (issue 31, item 1): 100 refunded by 20,
//! then by 30, then the 50 left. Each refund is its own event at every
//! destination that takes refunds (GA4 `refund`, the Data Manager
//! restatement, the Google Ads API retraction of what is left, the webhook),
//! the same refund reported twice still counts once, and the journal that
//! `/status` and `tally reconcile` read nets them to the cent. Against the
//! local stand-ins (loopback only).

use crate::support::{amount, fast_retry, google_ads_on, tracker_on_sandbox};
use tally_core::reconcile::money;
use tally_core::{ContextEnvelope, Currency};
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::{
    Ga4Config, Outcome, RefundInput, Retractions, ServerTracker, SkipReason, TrackResult, Visitor, WebhookConfig,
};

const WAREHOUSE_SECRET: &str = "whsec_warehouse_0123456789";
const REFUND_DESTINATIONS: [&str; 3] = ["ga4", "google_ads", "webhook:warehouse"];

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    let (sandbox, run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url)))
            .google_ads(
                google_ads_on(run)
                    .login_customer_id("987-654-3210")
                    .conversion_action("purchase", "555666777")
                    .label("purchase", "purchase")
                    .retractions(Retractions::GoogleAdsApi),
            )
            .webhook("warehouse", WebhookConfig::new(run.url("/webhook/warehouse"), WAREHOUSE_SECRET))
    })
    .await;
    sandbox.webhook.set_secret("warehouse", WAREHOUSE_SECRET);
    (sandbox, run, tracker)
}

fn envelope() -> ContextEnvelope {
    crate::support::envelope(
        r#"{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","clickIds":{"gclid":"Cj0KCQjw-sandbox_gclid"},
            "consent":{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"},
            "userData":{"email":"Jane.Doe@gmail.com"}}"#,
    )
}

fn browser() -> Visitor {
    Visitor {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some("203.0.113.7".into()),
        ..Default::default()
    }
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

/// `refunded` of an order worth `before` now.
fn refund(order: &str, refunded: &str, before: &str) -> RefundInput {
    let mut r = RefundInput::partial(order, amount(refunded), amount(before), eur());
    r.visitor = browser();
    r
}

async fn report(tracker: &ServerTracker, input: RefundInput) -> TrackResult {
    tracker.from_context(&envelope()).track_refund(input).await.unwrap()
}

fn assert_sent_everywhere(r: &TrackResult, what: &str) {
    for d in REFUND_DESTINATIONS {
        assert!(r.get(d).is_some_and(Outcome::is_sent), "{what}: {d} got it: {r:?}");
    }
}

fn assert_duplicate_everywhere(r: &TrackResult, what: &str) {
    for d in REFUND_DESTINATIONS {
        assert_eq!(r.get(d), Some(&Outcome::Skipped(SkipReason::Duplicate)), "{what}: {d}: {r:?}");
    }
}

/// GA4's, the warehouse's and the backend's revenue in the last 24 hours, as `/status` shows them.
async fn status_revenue(tracker: &ServerTracker) -> Vec<(String, String, String)> {
    let status = tracker.status().await;
    let day = status.windows.last().expect("the 24-hour window");
    ["ga4", "webhook:warehouse"]
        .iter()
        .map(|d| {
            let row = day.report.row(d, "EUR").unwrap_or_else(|| panic!("{d}: {day:?}"));
            ((*d).to_owned(), money(row.backend_revenue, "EUR"), money(row.destination_revenue, "EUR"))
        })
        .collect()
}

#[tokio::test]
async fn two_partial_refunds_then_the_rest_each_reach_every_refund_destination_once() {
    let (sandbox, _run, tracker) = setup().await;
    let purchase = crate::support::purchase("ORD-RR", "100", "EUR").visitor(browser());
    let p = tracker.from_context(&envelope()).track_purchase(purchase).await.unwrap();
    assert!(REFUND_DESTINATIONS.iter().all(|d| p.get(d).is_some_and(Outcome::is_sent)), "{p:?}");

    let first = report(&tracker, refund("ORD-RR", "20", "100")).await;
    assert_sent_everywhere(&first, "the first partial refund");
    let second = report(&tracker, refund("ORD-RR", "30", "80")).await;
    assert_sent_everywhere(&second, "the second partial refund");
    assert_ne!(first.event_id, second.event_id);
    // The shop's webhook retried: the same refund again counts once.
    let again = report(&tracker, refund("ORD-RR", "30", "80.00")).await;
    assert_eq!(again.event_id, second.event_id);
    assert_duplicate_everywhere(&again, "the second refund reported twice");

    // Google Ads keeps what the shop's books say: 50, restated twice, one conversion.
    let c = sandbox.data_manager.conversion("ORD-RR").expect("ORD-RR at Google Ads");
    assert_eq!((c.value, c.restatements, c.retracted), (Some(50.0), 2, false), "{c:?}");
    assert_eq!(sandbox.data_manager.conversions().len(), 1);
    assert_eq!(
        status_revenue(&tracker).await,
        [("ga4", "50.00 EUR", "50.00 EUR"), ("webhook:warehouse", "50.00 EUR", "50.00 EUR")].map(|(d, b, r)| (
            d.to_owned(),
            b.to_owned(),
            r.to_owned()
        )),
        "backend and destinations net of both refunds"
    );

    // The rest: nothing remains, so Google Ads retracts the conversion.
    let rest = report(&tracker, refund("ORD-RR", "50", "50")).await;
    assert_sent_everywhere(&rest, "the refund of the rest");
    assert!(sandbox.data_manager.conversion("ORD-RR").is_some_and(|c| c.retracted));
    let adj = sandbox.google_ads.adjustments();
    assert_eq!(adj.iter().map(|a| a.adjustment_type.as_str()).collect::<Vec<_>>(), ["RETRACTION"], "{adj:?}");
    // Reported once more as a full refund without a value: the same refund.
    let full = report(&tracker, RefundInput::full("ORD-RR", eur())).await;
    assert_eq!(full.event_id, rest.event_id);
    assert_duplicate_everywhere(&full, "the last refund reported again as a full refund");

    // GA4 and the warehouse got three refunds of ORD-RR, amounts as refunded.
    let ga4: Vec<i64> = sandbox
        .ga4
        .events()
        .iter()
        .filter(|e| e.name == "refund" && e.transaction_id() == Some("ORD-RR"))
        .filter_map(|e| e.value_micros())
        .collect();
    assert_eq!(ga4, [20_000_000, 30_000_000, 50_000_000]);
    let warehouse: Vec<f64> = sandbox
        .webhook
        .events("warehouse")
        .iter()
        .filter(|r| r.event_name == "refund")
        .filter_map(|r| r.body["value"].as_f64())
        .collect();
    assert_eq!(warehouse, [20.0, 30.0, 50.0]);
    assert_eq!(
        status_revenue(&tracker).await,
        [("ga4", "0.00 EUR", "0.00 EUR"), ("webhook:warehouse", "0.00 EUR", "0.00 EUR")].map(|(d, b, r)| (
            d.to_owned(),
            b.to_owned(),
            r.to_owned()
        )),
        "refunded in full on both sides"
    );
}

#[tokio::test]
async fn refunds_the_shop_keys_by_its_own_refund_id_count_once_each() {
    let (sandbox, _run, tracker) = setup().await;
    let purchase = crate::support::purchase("ORD-RK", "100", "EUR").visitor(browser());
    tracker.from_context(&envelope()).track_purchase(purchase).await.unwrap();
    // Keyed by the shop's refund ids, which the warehouse receives too.
    let a = report(&tracker, refund("ORD-RK", "25", "100").refund_id("re_1")).await;
    let b = report(&tracker, refund("ORD-RK", "25", "75").refund_id("re_2")).await;
    assert_sent_everywhere(&a, "re_1");
    assert_sent_everywhere(&b, "re_2");
    assert_duplicate_everywhere(&report(&tracker, refund("ORD-RK", "25", "75").refund_id("re_2")).await, "re_2 again");
    let ids: Vec<Option<String>> = sandbox
        .webhook
        .events("warehouse")
        .iter()
        .filter(|r| r.event_name == "refund")
        .map(|r| r.body["refund_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, [Some("re_1".to_owned()), Some("re_2".to_owned())]);
    assert_eq!(sandbox.data_manager.conversion("ORD-RK").and_then(|c| c.value), Some(50.0));
}
