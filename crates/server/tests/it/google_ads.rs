//! Google Ads through the Data Manager API (the default), against the local
//! Data Manager stand-in (loopback only): the request as Google documents it,
//! batches across visitors, fast-fail rejections isolated, field warnings,
//! the quota, token refresh, request-status diagnostics, consent and refunds.

use std::time::Duration;

use crate::support::{fast_retry, google_ads_on, tracker_on_sandbox};
use serde_json::Value;
use tally_core::{ContextEnvelope, Currency, DestinationKind, Item};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::{
    GoogleAdsConfig, LaneSettings, Outcome, PurchaseInput, RefundInput, Retractions, ServerTracker, SkipReason,
    TrackResult, Visitor,
};

const GCLID: &str = "Cj0KCQjw-sandbox_gclid";

fn ads(run: &RunningSandbox) -> GoogleAdsConfig {
    google_ads_on(run)
        .login_customer_id("987-654-3210")
        .conversion_action("purchase", "555666777")
        .label("purchase", "purchase")
        .diagnostics(Some(Duration::from_millis(50)))
}

async fn setup_with(
    configure: impl FnOnce(&RunningSandbox, GoogleAdsConfig) -> GoogleAdsConfig,
) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(fast_retry(), |run, b| b.google_ads(configure(run, ads(run)))).await
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(|_, c| c).await
}

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

fn envelope_with(gclid: &str, consent: &str) -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","clickIds":{{"gclid":"{gclid}"}},
            "consent":{consent},
            "userData":{{"email":"Jane.Doe@gmail.com","phone":"+1 800-555-0100"}}}}"#
    ))
}

fn envelope() -> ContextEnvelope {
    envelope_with(GCLID, GRANTED)
}

fn browser() -> Visitor {
    Visitor {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some("203.0.113.7".into()),
        ..Default::default()
    }
}

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "129.99", "USD").visitor(browser())
}

fn outcome(r: &TrackResult) -> &Outcome {
    r.get("google_ads").unwrap()
}

#[tokio::test]
async fn a_purchase_is_ingested_as_google_documents_it() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-1001")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?} rejected: {:?}", sandbox.data_manager.rejections());
    let c = sandbox.data_manager.conversion("ORD-1001").expect("stored under the shop's order id");
    assert_eq!(c.operating_account, "1234567890", "dashes stripped");
    assert_eq!(c.login_account.as_deref(), Some("9876543210"), "the manager as loginAccount");
    assert_eq!(c.product_destination_id, "555666777");
    assert_eq!(c.gclid.as_deref(), Some(GCLID));
    assert_eq!(c.value, Some(129.99));
    assert_eq!(c.currency.as_deref(), Some("USD"));
    assert_eq!(c.ad_user_data.as_deref(), Some("CONSENT_GRANTED"));
    // Google's own vectors: jane.doe@gmail.com → janedoe@gmail.com, +18005550100.
    assert_eq!(c.hashed_emails, ["d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"]);
    assert_eq!(c.hashed_phones, ["fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"]);
    assert_eq!(c.user_agent.as_deref(), Some("Mozilla/5.0 (X11; Linux x86_64)"));
    assert_eq!(c.ip_address.as_deref(), Some("203.0.113.7"));
    // No Google Ads API headers; the request declares its hash encoding.
    let raw = sandbox.traffic.under("/data-manager/v1/events:ingest");
    assert_eq!(raw.len(), 1);
    assert!(raw[0].header("developer-token").is_none() && raw[0].header("login-customer-id").is_none());
    let body: Value = serde_json::from_str(&raw[0].body).unwrap();
    assert_eq!(body["encoding"], "HEX");
    assert!(raw[0].header("authorization").is_some_and(|a| a.starts_with("Bearer ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_share_requests_and_keep_their_own_click_ids() {
    let lane = LaneSettings::for_kind(DestinationKind::GoogleAds).window(2);
    let (sandbox, _run, tracker) =
        tracker_on_sandbox(fast_retry(), |run, b| b.google_ads(ads(run)).lane("google_ads", lane)).await;
    sandbox.data_manager.latency.set(Duration::from_millis(100));
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let t = tracker.clone();
            tokio::spawn(async move {
                let env = envelope_with(&format!("gclid-{i}"), GRANTED);
                t.from_context(&env).track_purchase(purchase(&format!("ORD-{i}"))).await.unwrap()
            })
        })
        .collect();
    for c in calls {
        let r = c.await.unwrap();
        assert!(outcome(&r).is_sent(), "{r:?}");
    }
    let convs = sandbox.data_manager.conversions();
    assert_eq!(convs.len(), 100);
    for c in &convs {
        let i = c.transaction_id.as_deref().unwrap().trim_start_matches("ORD-");
        assert_eq!(c.gclid.as_deref(), Some(format!("gclid-{i}").as_str()), "each event kept its visitor's click");
    }
    let requests = sandbox.data_manager.ingests().len();
    assert!(requests <= 12, "{requests} requests for 100 visitors: not batched");
    assert!(sandbox.data_manager.faults.peak_in_flight() <= 2, "window of 2 exceeded");
}

/// 40 purchases queued during an outage, one of them refused by Google: the
/// backlog leaves as one batch once the API is back.
async fn backlog_with_one_bad_event(hide_fields: bool) -> (Sandbox, ServerTracker, RunningSandbox) {
    let (sandbox, run, tracker) = setup().await;
    sandbox.data_manager.omit_violation_fields(hide_fields);
    sandbox.data_manager.reject_transaction_id("ORD-BAD");
    sandbox.data_manager.faults.set(Mode::Down);
    for i in 0..40 {
        let id = if i == 17 { "ORD-BAD".to_owned() } else { format!("ORD-{i}") };
        let r = tracker.from_context(&envelope()).track_purchase(purchase(&id)).await.unwrap();
        assert!(matches!(outcome(&r), Outcome::Queued { .. }), "{r:?}");
    }
    sandbox.data_manager.faults.set(Mode::Up);
    tracker.flush(Duration::from_secs(10)).await;
    (sandbox, tracker, run)
}

#[tokio::test]
async fn one_bad_event_is_isolated_and_the_rest_of_its_batch_delivered() {
    for hide in [false, true] {
        let (sandbox, tracker, _run) = backlog_with_one_bad_event(hide).await;
        let stored = sandbox.data_manager.conversions();
        assert_eq!(stored.len(), 39, "the 39 good events of the batch arrive (fields hidden: {hide})");
        assert!(stored.iter().all(|c| c.transaction_id.as_deref() != Some("ORD-BAD")));
        let stats = tracker.outbox().stats().unwrap();
        assert_eq!((stats.queued, stats.dead), (0, 1), "the bad one is kept as dead, with its reason");
        let rejected = sandbox.data_manager.rejections().len();
        if hide {
            // Halving 40 down to the one: about 2·log2(40) requests, not 40.
            assert!((2..=14).contains(&rejected), "{rejected} rejected requests while bisecting");
        } else {
            assert_eq!(rejected, 1, "the violation named the event: one rejection, one resend");
        }
    }
}

#[tokio::test]
async fn field_warnings_come_back_with_the_outcome_and_in_the_metrics() {
    let (_sandbox, _run, tracker) = setup().await;
    let mut p = purchase("ORD-W");
    p.items = vec![Item::new("SKU-1", "Mug")];
    let r = tracker.from_context(&envelope()).track_purchase(p).await.unwrap();
    match outcome(&r) {
        Outcome::Sent { warnings, .. } => {
            assert!(
                warnings.iter().any(|w| w.contains("WARNING_REASON_CART_DATA_ITEM_UNIT_PRICE_MISSING")),
                "{warnings:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    let text = tracker.metrics_text();
    assert!(
        text.contains(
            "tally_destination_diagnostics_total{destination=\"google_ads\",kind=\"field_warning\",reason=\"WARNING_REASON_CART_DATA_ITEM_UNIT_PRICE_MISSING\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn over_the_quota_the_event_waits_and_arrives_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.data_manager.set_requests_per_minute(1);
    let first = tracker.from_context(&envelope()).track_purchase(purchase("ORD-Q1")).await.unwrap();
    assert!(outcome(&first).is_sent());
    let second = tracker.from_context(&envelope()).track_purchase(purchase("ORD-Q2")).await.unwrap();
    match outcome(&second) {
        Outcome::Queued { error } => assert!(error.to_string().contains("RESOURCE_EXHAUSTED"), "{error}"),
        other => panic!("over the quota: {other:?}"),
    }
    sandbox.data_manager.set_requests_per_minute(0);
    tracker.flush(Duration::from_secs(10)).await;
    assert!(sandbox.data_manager.conversion("ORD-Q2").is_some());
    assert_eq!(sandbox.data_manager.conversions().len(), 2);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_a_token_without_the_scope_is_explained() {
    let (sandbox, _run, tracker) = setup().await;
    assert!(outcome(&tracker.from_context(&envelope()).track_purchase(purchase("ORD-T1")).await.unwrap()).is_sent());
    sandbox.data_manager.oauth.expire_tokens();
    assert!(outcome(&tracker.from_context(&envelope()).track_purchase(purchase("ORD-T2")).await.unwrap()).is_sent());
    assert_eq!(sandbox.data_manager.token_requests(), 2, "one refresh after the 401");

    // A refresh token minted for the Google Ads API only.
    let (sandbox, _run, tracker) = setup().await;
    sandbox.data_manager.set_refresh_token_scopes(&["https://www.googleapis.com/auth/adwords"]);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-T3")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(e) => {
            let m = e.to_string();
            assert!(m.contains("https://www.googleapis.com/auth/datamanager"), "names the missing scope: {m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(sandbox.data_manager.conversions().is_empty());
}

#[tokio::test]
async fn request_statuses_are_polled_and_processing_errors_counted() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.data_manager.set_processing_delay(Duration::from_millis(120));
    sandbox.data_manager.reject_gclid("gclid-broken");
    let ok = tracker.from_context(&envelope()).track_purchase(purchase("ORD-D1")).await.unwrap();
    let broken = envelope_with("gclid-broken", GRANTED);
    let bad = tracker.from_context(&broken).track_purchase(purchase("ORD-D2")).await.unwrap();
    assert!(outcome(&ok).is_sent() && outcome(&bad).is_sent(), "accepted synchronously");
    let mut report = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = tracker.destination_diagnostics().remove("google_ads").unwrap();
        if d.pending == 0 && d.recent.len() == 2 {
            report = Some(d);
            break;
        }
    }
    let report = report.expect("both requests' statuses learnt");
    assert_eq!(report.count("request_status", "SUCCESS"), 1);
    assert_eq!(report.count("request_status", "PARTIAL_SUCCESS") + report.count("request_status", "FAILED"), 1);
    assert_eq!(report.count("processing_error", "PROCESSING_ERROR_REASON_INVALID_GCLID"), 1);
    assert!(sandbox.data_manager.status_requests() >= 2, "polled until final (PROCESSING first)");
    let text = tracker.metrics_text();
    assert!(text.contains("kind=\"processing_error\",reason=\"PROCESSING_ERROR_REASON_INVALID_GCLID\"} 1"), "{text}");
    assert!(text.contains("tally_destination_requests_processing{destination=\"google_ads\"} 0"), "{text}");
}

#[tokio::test]
async fn validate_only_stores_nothing_and_polls_nothing() {
    let (sandbox, _run, tracker) = setup_with(|_, c| c.validate_only(true)).await;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-V")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert_eq!(sandbox.data_manager.ingests().len(), 1);
    assert!(sandbox.data_manager.conversions().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sandbox.data_manager.status_requests(), 0);
}

#[tokio::test]
async fn without_ad_user_data_no_user_data_or_device_reaches_google() {
    let (sandbox, _run, tracker) = setup().await;
    let consent = r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"denied","ad_personalization":"denied"}"#;
    let r = tracker.from_context(&envelope_with(GCLID, consent)).track_purchase(purchase("ORD-C")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    let c = sandbox.data_manager.conversion("ORD-C").unwrap();
    assert!(c.hashed_emails.is_empty() && c.hashed_phones.is_empty());
    assert_eq!((c.user_agent.as_deref(), c.ip_address.as_deref()), (None, None));
    assert_eq!(c.ad_user_data.as_deref(), Some("CONSENT_DENIED"));
    for raw in sandbox.traffic.under("/data-manager/v1") {
        assert!(!raw.body.contains("userData") && !raw.body.contains("203.0.113.7"), "{}", raw.body);
    }
    // Neither ad_storage nor ad_user_data: nothing is sent at all.
    let none = r#"{"ad_storage":"denied","analytics_storage":"granted","ad_user_data":"denied","ad_personalization":"denied"}"#;
    let r = tracker.from_context(&envelope_with(GCLID, none)).track_purchase(purchase("ORD-N")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::ConsentDenied(_))), "{r:?}");
    assert!(sandbox.data_manager.conversion("ORD-N").is_none());
}

#[tokio::test]
async fn a_partial_refund_restates_at_once_and_a_full_one_says_why_it_is_not_sent() {
    let (sandbox, _run, tracker) = setup().await;
    let usd = Currency::parse("USD").unwrap();
    assert!(outcome(&tracker.from_context(&envelope()).track_purchase(purchase("ORD-R")).await.unwrap()).is_sent());
    let partial = RefundInput::partial("ORD-R", crate::support::amount("29.99"), crate::support::amount("129.99"), usd);
    let r = tracker.from_context(&envelope()).track_refund(partial).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    let c = sandbox.data_manager.conversion("ORD-R").unwrap();
    assert_eq!(
        (c.value, c.restatements),
        (Some(100.0), 1),
        "restated to what the order is worth now, not counted twice"
    );
    assert_eq!(sandbox.data_manager.conversions().len(), 1);

    // A full refund (of another order, still counted in full).
    assert!(outcome(&tracker.from_context(&envelope()).track_purchase(purchase("ORD-F")).await.unwrap()).is_sent());
    let r = tracker.from_context(&envelope()).track_refund(RefundInput::full("ORD-F", usd)).await.unwrap();
    match outcome(&r) {
        Outcome::Skipped(SkipReason::RetractionUnsupported) => {
            let detail = SkipReason::RetractionUnsupported.to_string();
            assert!(detail.contains("retractions = \"google_ads_api\""), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sandbox.data_manager.conversion("ORD-F").unwrap().value, Some(129.99), "still counted: say so");
}

#[tokio::test]
async fn with_legacy_access_a_full_refund_is_retracted_through_the_google_ads_api() {
    let (sandbox, _run, tracker) = setup_with(|_, c| c.retractions(Retractions::GoogleAdsApi)).await;
    let usd = Currency::parse("USD").unwrap();
    assert!(outcome(&tracker.from_context(&envelope()).track_purchase(purchase("ORD-X")).await.unwrap()).is_sent());
    let r = tracker.from_context(&envelope()).track_refund(RefundInput::full("ORD-X", usd)).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    let adj = sandbox.google_ads.adjustments();
    assert_eq!(adj.len(), 1);
    assert_eq!((adj[0].order_id.as_str(), adj[0].adjustment_type.as_str()), ("ORD-X", "RETRACTION"));
    assert!(sandbox.data_manager.conversion("ORD-X").unwrap().retracted, "the account's conversion is gone");
    assert_eq!(sandbox.data_manager.requests(), 1, "the retraction did not go to Data Manager");
}

#[tokio::test]
async fn an_outage_queues_and_delivers_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.data_manager.faults.set(Mode::Down);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-O")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { .. }), "{r:?}");
    sandbox.data_manager.faults.set(Mode::Up);
    tracker.flush(Duration::from_secs(10)).await;
    tracker.flush(Duration::from_secs(10)).await;
    assert_eq!(sandbox.data_manager.conversions().len(), 1);
}
