//! GA4 delivery against the local GA4 sandbox (loopback only).

use std::time::Duration;

use tally_core::{Amount, ContextEnvelope, Currency, Item};
use tally_sandbox::{Mode, Sandbox};
use tally_server::retry::RetryPolicy;
use tally_server::{DeliveryError, Ga4Config, Outcome, PurchaseInput, ServerTracker, SkipReason};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

async fn setup(validate: bool) -> (Sandbox, tally_sandbox::RunningSandbox, ServerTracker) {
    let sandbox = Sandbox::new();
    let running = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", running.base_url)).validate(validate))
        .retry(fast_retry())
        .build()
        .unwrap();
    (sandbox, running, tracker)
}

fn envelope(consent: &str) -> ContextEnvelope {
    ContextEnvelope::parse_json(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","sessionId":"1757409568","consent":{consent}}}"#
    ))
    .unwrap()
}

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

fn purchase(txn: &str) -> PurchaseInput {
    PurchaseInput::new(txn, Amount::parse("30.03").unwrap(), Currency::parse("USD").unwrap())
        .item(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3))
}

#[tokio::test]
async fn purchase_reaches_ga4_once() {
    let (sandbox, _run, tracker) = setup(false).await;
    let env = envelope(GRANTED);
    let first = tracker.from_context(&env).track_purchase(purchase("ORD-1")).await.unwrap();
    assert!(first.get("ga4").unwrap().is_sent(), "{first:?}");
    let again = tracker.from_context(&env).track_purchase(purchase("ORD-1")).await.unwrap();
    assert_eq!(again.get("ga4"), Some(&Outcome::Skipped(SkipReason::Duplicate)));
    assert_eq!(first.event_id, again.event_id);

    let events = sandbox.ga4.events();
    assert_eq!(events.len(), 1, "dropped: {:?}", sandbox.ga4.dropped());
    let e = &events[0];
    assert_eq!(e.client_id, "1958185836.1757409569");
    assert_eq!(e.transaction_id(), Some(first.event_id.as_str()));
    assert_eq!(e.value_micros(), Some(30_030_000));
    assert_eq!(e.params["session_id"], "1757409568");
    assert!(sandbox.ga4.dropped().is_empty());
}

#[tokio::test]
async fn consent_denied_is_skipped_with_reason() {
    let (sandbox, _run, tracker) = setup(false).await;
    let env = envelope(r#"{"analytics_storage":"denied","ad_storage":"granted"}"#);
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-2")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Skipped(SkipReason::ConsentDenied(_)))), "{r:?}");
    assert_eq!(sandbox.ga4.requests(), 0);
    // Unknown is not granted either.
    let r = tracker.from_context(&envelope("{}")).track_purchase(purchase("ORD-3")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Skipped(SkipReason::ConsentDenied(_)))));
}

#[tokio::test]
async fn outage_is_retried_then_delivered() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.fail_next(2);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-4")).await.unwrap();
    assert_eq!(r.get("ga4"), Some(&Outcome::Sent { attempts: 3 }));
    assert_eq!(sandbox.ga4.purchases().len(), 1);
}

#[tokio::test]
async fn retries_exhausted_then_a_later_call_delivers() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::Down);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-5")).await.unwrap();
    assert!(
        matches!(r.get("ga4"), Some(Outcome::Failed(DeliveryError::RetriesExhausted { attempts: 3, .. }))),
        "{r:?}"
    );
    // A failed delivery releases its idempotency key: the retry is not a "duplicate".
    sandbox.ga4.faults.set(Mode::Up);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-5")).await.unwrap();
    assert!(r.get("ga4").unwrap().is_sent());
    assert_eq!(sandbox.ga4.purchases().len(), 1);
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::Unauthorized);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-6")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Failed(DeliveryError::Unauthorized { status: 401, .. }))));
    assert_eq!(sandbox.ga4.requests(), 1);
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::RateLimited);
    let started = std::time::Instant::now();
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-7")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Failed(DeliveryError::RetriesExhausted { .. }))));
    // Retry-After: 1 is capped by max_delay (50 ms) in this policy; two waits happened.
    assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
}

#[tokio::test]
async fn validation_mode_turns_messages_into_errors() {
    let (_sandbox, _run, tracker) = setup(true).await;
    let ok = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-8")).await.unwrap();
    assert!(ok.get("ga4").unwrap().is_sent(), "{ok:?}");
}

#[tokio::test]
async fn empty_transaction_id_is_an_error_and_nothing_is_sent() {
    let (sandbox, _run, tracker) = setup(false).await;
    let err = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("  ")).await.unwrap_err();
    assert!(err.to_string().contains("transactionId is required"), "{err}");
    assert_eq!(sandbox.ga4.requests(), 0);
}

#[tokio::test]
async fn secrets_never_appear_in_errors() {
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url("http://127.0.0.1:9"))
        .retry(fast_retry())
        .build()
        .unwrap();
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-9")).await.unwrap();
    let text = format!("{r:?}");
    assert!(matches!(r.get("ga4"), Some(Outcome::Failed(_))));
    assert!(!text.contains("secret-xyz"), "{text}");
}
