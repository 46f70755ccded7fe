//! Google Ads through the Google Ads API (`api = "google_ads_api"`, for
//! developers Google still allowlists), against the local Google Ads sandbox
//! (loopback only): OAuth, click conversions, partial failures, adjustments, faults.

use std::time::Duration;

use crate::support::{amount, fast_retry, tracker_on_sandbox};
use serde_json::Value;
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    ClickIds, ConsentState, ContextEnvelope, Currency, DestinationKind, Event, EventName, TransactionId, UserData,
};
use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{
    ConversionInput, DeliveryError, Ga4Config, GoogleAdsApi, GoogleAdsConfig, LaneSettings, Outcome, PurchaseInput,
    RefundInput, ServerTracker, SignUpInput, SkipReason, Visitor,
};

const DAY_MS: i64 = 86_400_000;

fn ads(run: &RunningSandbox) -> GoogleAdsConfig {
    GoogleAdsConfig::new("123-456-7890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .api(GoogleAdsApi::GoogleAdsApi)
        .base_url(run.url("/google-ads"))
        .token_url(run.url("/google-ads/token"))
        .login_customer_id("987-654-3210")
        .conversion_action("AbC-purchase", "555666777")
        .conversion_action("signup_label", "customers/1234567890/conversionActions/111222333")
        .label("purchase", "AbC-purchase")
}

async fn setup_with(
    configure: impl FnOnce(&RunningSandbox, GoogleAdsConfig) -> GoogleAdsConfig,
    retry: RetryPolicy,
) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(retry, |run, b| b.google_ads(configure(run, ads(run)))).await
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(|_, c| c, fast_retry()).await
}

/// Google Ads and GA4 on one tracker.
async fn setup_with_ga4() -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(fast_retry(), |run, b| {
        b.google_ads(ads(run)).ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(run.url("/ga4")))
    })
    .await
}

const GCLID: &str = "Cj0KCQjw-sandbox_gclid";

fn envelope() -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","sessionId":"1757409568",
            "clickIds":{{"gclid":"{GCLID}","wbraid":"WB123"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}},
            "userData":{{"email":"Jane.Doe@gmail.com","phone":"+1 (650) 555-1212"}}}}"#
    ))
}

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "129.99", "USD")
}

fn outcome(r: &tally_server::TrackResult) -> &Outcome {
    r.get("google_ads").unwrap()
}

#[tokio::test]
async fn purchase_uploads_one_click_conversion_with_hashed_identifiers() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-1001")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?} dropped: {:?}", sandbox.google_ads.dropped());
    let convs = sandbox.google_ads.conversions();
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!(c.customer_id, "1234567890", "dashes stripped");
    assert_eq!(c.conversion_action, "customers/1234567890/conversionActions/555666777");
    assert_eq!(c.gclid.as_deref(), Some(GCLID));
    assert!(c.wbraid.is_none() && c.gbraid.is_none(), "exactly one click id");
    assert_eq!(c.order_id.as_deref(), Some("ORD-1001"), "the shop's order number, not the event id");
    assert_eq!(c.value, Some(129.99));
    assert_eq!(c.currency.as_deref(), Some("USD"));
    assert_eq!(c.ad_user_data.as_deref(), Some("GRANTED"));
    assert_eq!(c.login_customer_id.as_deref(), Some("9876543210"));
    assert!(!c.developer_token_sent, "the developer token is optional and was not configured");
    let hashed = UserData {
        email: Some("Jane.Doe@gmail.com".into()),
        phone: Some("+1 (650) 555-1212".into()),
        ..Default::default()
    }
    .hashed(&NormalizeOptions::default())
    .google
    .unwrap();
    assert_eq!(c.hashed_emails, hashed.sha256_email_address);
    assert_eq!(c.hashed_phones, hashed.sha256_phone_number);
    assert_eq!(sandbox.google_ads.token_requests(), 1);

    // The tracker remembers the delivery ...
    let again = tracker.from_context(&envelope()).track_purchase(purchase("ORD-1001")).await.unwrap();
    assert_eq!(outcome(&again), &Outcome::Skipped(SkipReason::Duplicate));
    // ... and a second process that does not still counts it as delivered:
    // Google answers ORDER_ID_ALREADY_IN_USE, which means "already there".
    let other = ServerTracker::builder().google_ads(ads(&_run)).retry(fast_retry()).build().unwrap();
    let r = other.from_context(&envelope()).track_purchase(purchase("ORD-1001")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
    let dups = sandbox.google_ads.deduplicated();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].code, "conversionUploadError:ORDER_ID_ALREADY_IN_USE");
}

#[tokio::test]
async fn developer_token_is_sent_only_when_configured() {
    let (sandbox, _run, tracker) = setup_with(|_, c| c.developer_token("dev-token-1234567890ab"), fast_retry()).await;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-DT")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert!(sandbox.google_ads.conversions()[0].developer_token_sent);
    let raw = sandbox.traffic.under("/google-ads/v26");
    assert_eq!(raw[0].header("developer-token"), Some("dev-token-1234567890ab"));
    assert_eq!(raw[0].header("login-customer-id"), Some("9876543210"));
    assert!(raw[0].header("authorization").unwrap().starts_with("Bearer ya29.sandbox-"));
}

#[tokio::test]
async fn partial_failure_fails_only_the_bad_row_and_the_duplicate_counts_as_sent() {
    let (sandbox, _run, tracker) = setup().await;
    // The action counts conversions of clicks up to 30 days old; Tally allows 90.
    sandbox.google_ads.set_click_through_days(30);
    let now = now_ms();
    let mk = |txn: &str, at: i64| {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse(txn).unwrap(), at);
        e.value = Some(amount("10"));
        e.currency = Some(Currency::parse("USD").unwrap());
        e
    };
    let visitor = Visitor {
        click_ids: ClickIds { gclid: Some(GCLID.into()), ..Default::default() },
        consent: Some(ConsentState::ALL_GRANTED),
        ..Default::default()
    };
    // Upload ORD-B once, so the batch below repeats it.
    let first = tracker.deliver(vec![mk("ORD-B", now - 3_600_000)], &visitor).await;
    assert!(first[0].get("google_ads").unwrap().is_sent());
    let fresh = ServerTracker::builder().google_ads(ads(&_run)).retry(fast_retry()).build().unwrap();
    let requests_before = sandbox.google_ads.requests();
    let results = fresh
        .deliver(
            vec![mk("ORD-A", now - 3_600_000), mk("ORD-B", now - 3_600_000), mk("ORD-OLD", now - 40 * DAY_MS)],
            &visitor,
        )
        .await;
    assert_eq!(sandbox.google_ads.requests() - requests_before, 1, "one request for the batch");
    assert!(results[0].get("google_ads").unwrap().is_sent(), "{results:?}");
    assert!(results[1].get("google_ads").unwrap().is_sent(), "duplicate order = delivered: {results:?}");
    match results[2].get("google_ads").unwrap() {
        Outcome::Failed(DeliveryError::PartialFailure(rows)) => {
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].index, 2);
            assert_eq!(rows[0].code, "conversionUploadError:EXPIRED_EVENT");
        }
        other => panic!("{other:?}"),
    }
    // A row error is not retried: it is kept as a dead entry with its reason.
    assert!(fresh.flush(Duration::from_secs(2)).await.complete);
    let dead = fresh.outbox().dead_entries(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("click-through window"), "{}", dead[0].reason);
    assert_eq!(sandbox.google_ads.conversions().len(), 2);
}

#[tokio::test]
async fn unparseable_gclid_is_a_row_failure() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.reject_gclid(GCLID);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-GCLID")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::PartialFailure(rows)) => {
            assert_eq!(rows[0].code, "conversionUploadError:UNPARSEABLE_GCLID");
            assert_eq!(rows[0].message, "The imported gclid could not be decoded.");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_then_fails_without_retry() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.faults.set(Mode::Unauthorized);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-401")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 401, message }) => {
            assert!(message.contains("UNAUTHENTICATED"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sandbox.google_ads.token_requests(), 2, "a fresh token was fetched after the 401");
    assert_eq!(sandbox.google_ads.requests(), 2, "and the request retried once");
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.google_ads.requests(), 2, "credentials errors are not retried later");
    assert_eq!(tracker.outbox().dead_entries(10).unwrap().len(), 1);
}

#[tokio::test]
async fn an_expired_access_token_is_replaced_and_the_call_succeeds() {
    let (sandbox, _run, tracker) = setup().await;
    let env = envelope();
    assert!(outcome(&tracker.from_context(&env).track_purchase(purchase("ORD-E1")).await.unwrap()).is_sent());
    sandbox.google_ads.expire_tokens();
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-E2")).await.unwrap();
    assert_eq!(outcome(&r), &Outcome::sent(1), "{r:?}");
    assert_eq!(sandbox.google_ads.token_requests(), 2);
    assert_eq!(sandbox.google_ads.conversions().len(), 2);
}

#[tokio::test]
async fn concurrent_calls_share_one_token_refresh() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.token_latency.set(Duration::from_millis(200));
    let env = envelope();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let t = tracker.clone();
            let env = env.clone();
            tokio::spawn(
                async move { t.from_context(&env).track_purchase(purchase(&format!("ORD-SF-{i}"))).await.unwrap() },
            )
        })
        .collect();
    for c in calls {
        let r = c.await.unwrap();
        assert!(outcome(&r).is_sent(), "{r:?}");
    }
    assert_eq!(sandbox.google_ads.token_requests(), 1, "one refresh in flight for 20 callers");
    assert_eq!(sandbox.google_ads.conversions().len(), 20);
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let (sandbox, _run, tracker) = setup().await;
    // 61 s of life minus the 60 s safety margin: reused for one second only.
    sandbox.google_ads.set_token_lifetime(Duration::from_secs(61));
    let env = envelope();
    assert!(outcome(&tracker.from_context(&env).track_purchase(purchase("ORD-X1")).await.unwrap()).is_sent());
    assert!(outcome(&tracker.from_context(&env).track_purchase(purchase("ORD-X2")).await.unwrap()).is_sent());
    assert_eq!(sandbox.google_ads.token_requests(), 1, "cached while valid");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(outcome(&tracker.from_context(&env).track_purchase(purchase("ORD-X3")).await.unwrap()).is_sent());
    assert_eq!(sandbox.google_ads.token_requests(), 2, "refreshed inside the safety margin");
    assert_eq!(sandbox.google_ads.dropped(), vec![], "never sent an expired token");
}

#[tokio::test]
async fn a_failed_refresh_is_not_cached_and_is_retried_later() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.token_faults.fail_next(1);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-TF")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.google_ads.token_requests(), 2);
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
}

#[tokio::test]
async fn callers_waiting_on_a_failed_refresh_share_its_failure() {
    // A window wide enough that all five callers' requests wait on the one refresh.
    let lane = LaneSettings::for_kind(DestinationKind::GoogleAds).window(8);
    let (sandbox, _run, tracker) =
        tracker_on_sandbox(fast_retry(), |run, b| b.google_ads(ads(run)).lane("google_ads", lane)).await;
    sandbox.google_ads.token_latency.set(Duration::from_millis(200));
    sandbox.google_ads.token_faults.fail_next(1);
    let env = envelope();
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let t = tracker.clone();
            let env = env.clone();
            tokio::spawn(
                async move { t.from_context(&env).track_purchase(purchase(&format!("ORD-SH-{i}"))).await.unwrap() },
            )
        })
        .collect();
    for c in calls {
        let r = c.await.unwrap();
        assert!(matches!(outcome(&r), Outcome::Queued { .. }), "{r:?}");
    }
    assert_eq!(sandbox.google_ads.token_requests(), 1, "the waiters did not each retry the refresh");
    sandbox.google_ads.token_latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.google_ads.token_requests(), 2);
    assert_eq!(sandbox.google_ads.conversions().len(), 5);
}

#[tokio::test]
async fn a_revoked_refresh_token_is_a_permanent_credentials_error_without_secrets() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.revoke_refresh_token();
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-RV")).await.unwrap();
    let text = format!("{r:?} {}", outcome(&r));
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 400, message }) => {
            assert!(message.contains("invalid_grant"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.google_ads.token_requests(), 1, "invalid_grant is not retried");
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, "1%2F%2Fsandbox-refresh-token"] {
        assert!(!text.contains(secret), "{text}");
    }
    let cfg = format!("{:?}", ads(&_run).developer_token("dev-token-1234567890ab"));
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, "dev-token-1234567890ab"] {
        assert!(!cfg.contains(secret), "{cfg}");
    }
}

#[tokio::test]
async fn rate_limit_carries_retry_after_then_delivers() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-429")).await.unwrap();
    match outcome(&r) {
        Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs, .. } } => {
            assert_eq!(*retry_after_secs, Some(1))
        }
        other => panic!("{other:?}"),
    }
    sandbox.google_ads.faults.set(Mode::Up);
    let started = std::time::Instant::now();
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    // fast_retry caps waits at 50 ms, Retry-After included: the cap wins.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.faults.fail_next(2);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-5XX")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
    assert_eq!(tracker.metrics().delivered_total(), 1);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let retry = RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() };
    let (sandbox, _run, tracker) = setup_with(|_, c| c, retry).await;
    sandbox.google_ads.latency.set(Duration::from_millis(1500));
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-SLOW")).await.unwrap();
    match outcome(&r) {
        Outcome::Queued { error: DeliveryError::Transport(m) } => assert!(m.contains("timed out"), "{m}"),
        other => panic!("{other:?}"),
    }
    sandbox.google_ads.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Had the abandoned first request reached Google too, the order id would
    // have deduplicated it: one conversion either way.
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
}

#[tokio::test]
async fn refunds_become_retractions_and_restatements() {
    let (sandbox, _run, tracker) = setup().await;
    let env = envelope();
    let usd_c = Currency::parse("USD").unwrap();
    let two_days_ago = now_ms() - 2 * DAY_MS;
    for txn in ["ORD-FULL", "ORD-PART"] {
        let p = PurchaseInput::new(txn, amount("100"), usd_c).occurred_at_ms(two_days_ago);
        assert!(outcome(&tracker.from_context(&env).track_purchase(p).await.unwrap()).is_sent());
    }
    let full = tracker.from_context(&env).track_refund(RefundInput::full("ORD-FULL", usd_c)).await.unwrap();
    assert!(outcome(&full).is_sent(), "{full:?} {:?}", sandbox.google_ads.dropped());
    let partial = tracker
        .from_context(&env)
        .track_refund(RefundInput::partial("ORD-PART", amount("30"), amount("100"), usd_c))
        .await
        .unwrap();
    assert!(outcome(&partial).is_sent(), "{partial:?} {:?}", sandbox.google_ads.dropped());

    let adj = sandbox.google_ads.adjustments();
    assert_eq!(adj.len(), 2);
    let orders: Vec<String> = sandbox.google_ads.conversions().iter().map(|c| c.order_id.clone().unwrap()).collect();
    assert_eq!(adj[0].adjustment_type, "RETRACTION");
    assert_eq!(adj[0].adjusted_value, None);
    assert_eq!(adj[0].order_id, orders[0], "the adjustment names the purchase's order id");
    assert_eq!(adj[1].adjustment_type, "RESTATEMENT");
    assert_eq!(adj[1].adjusted_value, Some(70.0));
    assert_eq!(adj[1].currency.as_deref(), Some("USD"));
    let convs = sandbox.google_ads.conversions();
    assert!(convs[0].retracted);
    assert_eq!(convs[1].restated_value, Some(70.0));
    assert_eq!(sandbox.google_ads.purchases().len(), 1);
}

#[tokio::test]
async fn a_refund_right_after_the_purchase_is_adjusted_at_once() {
    // Google stopped refusing adjustments of conversions under 24 h old
    // (`TOO_RECENT_CONVERSION`) on 2024-09-09: nothing waits a day.
    let (sandbox, _run, tracker) = setup().await;
    let env = envelope();
    let usd_c = Currency::parse("USD").unwrap();
    assert!(outcome(&tracker.from_context(&env).track_purchase(purchase("ORD-SOON")).await.unwrap()).is_sent());
    let r = tracker.from_context(&env).track_refund(RefundInput::full("ORD-SOON", usd_c)).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert_eq!(sandbox.google_ads.adjustments().len(), 1);
    assert!(sandbox.google_ads.conversions()[0].retracted);
    assert_eq!(tracker.outbox().stats().unwrap().queued, 0);
}

#[tokio::test]
async fn labels_route_events_to_conversion_actions() {
    let (sandbox, _run, tracker) = setup_with_ga4().await;
    let env = envelope();
    let r = tracker
        .from_context(&env)
        .track_conversion(ConversionInput {
            label: "signup_label".into(),
            transaction_id: "LEAD-7".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert_eq!(r.get("ga4"), Some(&Outcome::Skipped(SkipReason::Unsupported)));
    let c = sandbox.google_ads.conversions();
    assert_eq!(c[0].conversion_action, "customers/1234567890/conversionActions/111222333");
    assert_eq!(c[0].value, None);

    // A label that names no configured action, at call time: skipped with that reason.
    let r = tracker
        .from_context(&env)
        .track_conversion(ConversionInput {
            label: "no-such-label".into(),
            transaction_id: "LEAD-8".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::NoLabelConfigured));
    // A helper whose event has no label.
    let r = tracker.from_context(&env).track_sign_up(SignUpInput::default()).await.unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::NoLabelConfigured));
    assert!(r.get("ga4").unwrap().is_sent());
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
}

#[tokio::test]
async fn a_refund_without_a_purchase_label_is_not_sent() {
    let (sandbox, run) = crate::support::sandbox().await;
    let cfg = GoogleAdsConfig::new("1234567890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .api(GoogleAdsApi::GoogleAdsApi)
        .base_url(run.url("/google-ads"))
        .token_url(run.url("/google-ads/token"))
        .conversion_action("lead", "444")
        .label("generate_lead", "lead");
    let tracker = ServerTracker::builder().google_ads(cfg).build().unwrap();
    let r = tracker
        .from_context(&envelope())
        .track_refund(RefundInput::full("ORD-1", Currency::parse("USD").unwrap()))
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::NoLabelConfigured));
    assert_eq!(sandbox.google_ads.requests(), 0);
}

#[tokio::test]
async fn explicit_occurred_at_reaches_ga4_and_ads_and_old_events_are_outside_the_window() {
    let (sandbox, _run, tracker) = setup_with_ga4().await;
    // 2026-05-01 20:32:45 UTC is long past; use "now − 2 h" rounded to the second.
    let at = (now_ms() - 2 * 3_600_000) / 1000 * 1000 + 123;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-AT").occurred_at_ms(at)).await.unwrap();
    assert!(outcome(&r).is_sent() && r.get("ga4").unwrap().is_sent(), "{r:?}");
    let expected = tally_core::time::google_ads_datetime(at, 0);
    assert_eq!(sandbox.google_ads.conversions()[0].conversion_date_time, expected);
    assert_eq!(sandbox.google_ads.conversions()[0].conversion_time_ms, at / 1000 * 1000);
    let ga4: Value = serde_json::from_str(&sandbox.traffic.under("/ga4")[0].body).unwrap();
    assert_eq!(ga4["events"][0]["timestamp_micros"].as_i64(), Some(at * 1000));

    let old = tracker
        .from_context(&envelope())
        .track_purchase(purchase("ORD-OLD").occurred_at_ms(now_ms() - 91 * DAY_MS))
        .await
        .unwrap();
    assert_eq!(outcome(&old), &Outcome::Skipped(SkipReason::OutsideWindow));
    assert_eq!(old.get("ga4"), Some(&Outcome::Skipped(SkipReason::OutsideWindow)));
    assert_eq!(sandbox.google_ads.conversions().len(), 1);
}

#[tokio::test]
async fn consent_without_ad_user_data_sends_the_click_only_and_no_signal_skips() {
    let (sandbox, _run, tracker) = setup().await;
    let mut env = envelope();
    env.consent.ad_user_data = tally_core::ConsentSignal::Denied;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-C1")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    let c = &sandbox.google_ads.conversions()[0];
    assert!(c.hashed_emails.is_empty() && c.hashed_phones.is_empty());
    assert_eq!(c.ad_user_data.as_deref(), Some("DENIED"));

    env.consent = ConsentState::default();
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-C2")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::ConsentDenied(_))), "{r:?}");

    // Neither a click id nor user data: Google could not attribute it.
    let mut env = envelope();
    env.click_ids = ClickIds::default();
    env.raw_user_data = None;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-C3")).await.unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::NoAttribution));
}

#[tokio::test]
async fn a_manager_account_mismatch_is_a_permission_error() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.google_ads.require_login_customer_id("1111111111");
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-MCC")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 403, message }) => {
            assert!(message.contains("USER_PERMISSION_DENIED"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_destination_does_not_hold_up_the_others() {
    use tally_sandbox::rokt::{ACCOUNT_ID, PUBLIC_KEY, SECRET};
    let retry = RetryPolicy { timeout: Duration::from_secs(20), ..fast_retry() };
    let (sandbox, _run, tracker) = tracker_on_sandbox(retry, |run, b| {
        b.google_ads(ads(run))
            .rokt(tally_server::RoktConfig::new(ACCOUNT_ID, PUBLIC_KEY, SECRET).url(run.url("/rokt/v2/events")))
    })
    .await;
    // Google Ads comes first in the tracker's order; one after the other, Rokt
    // would wait for its slow answer.
    assert_eq!(tracker.destination_names(), ["google_ads", "rokt"]);
    sandbox.google_ads.latency.set(Duration::from_secs(4));
    let env = envelope();
    let call = tokio::spawn(async move { tracker.from_context(&env).track_purchase(purchase("ORD-SLOW")).await });
    let started = std::time::Instant::now();
    while sandbox.rokt.purchases().is_empty() && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sandbox.rokt.purchases().len(), 1, "Rokt got the purchase while Google Ads was still answering");
    assert!(sandbox.google_ads.purchases().is_empty(), "Google Ads has not answered yet");
    let r = call.await.unwrap().unwrap();
    assert!(r.get("google_ads").unwrap().is_sent() && r.get("rokt").unwrap().is_sent(), "{r:?}");
}
