//! GA4 delivery against the local GA4 sandbox (loopback only).

use std::time::Duration;

use crate::support::{amount, fast_retry, tracker_on_sandbox};
use tally_core::{ContextEnvelope, Item, OrderIdForm, TransactionId};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::{DeliveryError, Ga4Config, Outcome, PurchaseInput, ServerTracker, SkipReason};

async fn setup(validate: bool) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(fast_retry(), |run, b| {
        b.ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url)).validate(validate))
    })
    .await
}

fn envelope(consent: &str) -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","sessionId":"1757409568","consent":{consent}}}"#
    ))
}

const GRANTED: &str =
    r#"{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}"#;

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "30.03", "USD").item(Item::new("SKU_1", "Tee").with_price(amount("10.01"), 3))
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
    // The shop's order number, so GA4's reports read against the order export.
    assert_eq!(e.transaction_id(), Some("ORD-1"));
    assert_eq!(e.value_micros(), Some(30_030_000));
    assert_eq!(e.params["session_id"], "1757409568");
    assert!(sandbox.ga4.dropped().is_empty());
}

#[tokio::test]
async fn a_shop_can_send_its_order_ids_hashed() {
    let (sandbox, _run, tracker) = tracker_on_sandbox(fast_retry(), |run, b| {
        b.ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{}/ga4", run.base_url)))
            .order_id(OrderIdForm::Hashed)
    })
    .await;
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-1")).await.unwrap();
    assert!(r.get("ga4").unwrap().is_sent(), "{r:?}");
    let key = TransactionId::parse("ORD-1").unwrap().order_key().as_str().to_owned();
    assert_eq!(sandbox.ga4.events()[0].transaction_id(), Some(key.as_str()));
    assert_ne!(key, "ORD-1");
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
async fn outage_is_queued_then_delivered_once() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.fail_next(2);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-4")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Queued { .. })), "{r:?}");
    let report = tracker.flush(Duration::from_secs(10)).await;
    assert!(report.complete, "{report:?}");
    assert_eq!(sandbox.ga4.purchases().len(), 1);
    assert_eq!(sandbox.ga4.events().len(), 1, "delivered exactly once");
    assert_eq!(tracker.metrics().delivered_total(), 1);
    // A late duplicate of the same purchase is recognised.
    let again = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-4")).await.unwrap();
    assert_eq!(again.get("ga4"), Some(&Outcome::Skipped(SkipReason::Duplicate)));
}

#[tokio::test]
async fn retries_exhausted_is_a_visible_drop_and_a_later_call_delivers() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::Down);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-5")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Queued { .. })), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    let dead = tracker.outbox().dead_entries(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.starts_with("retries exhausted after 3 attempts"), "{}", dead[0].reason);
    assert!(
        tracker
            .metrics_text()
            .contains("tally_events_dropped_total{destination=\"ga4\",reason=\"retries_exhausted\"} 1")
    );
    // The key was released: a later call is not a "duplicate".
    sandbox.ga4.faults.set(Mode::Up);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-5")).await.unwrap();
    assert!(r.get("ga4").unwrap().is_sent(), "{r:?}");
    assert_eq!(sandbox.ga4.purchases().len(), 1);
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::Unauthorized);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-6")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Failed(DeliveryError::Unauthorized { status: 401, .. }))));
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.ga4.requests(), 1);
    assert_eq!(tracker.outbox().dead_entries(1).unwrap().len(), 1);
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let (sandbox, _run, tracker) = setup(false).await;
    sandbox.ga4.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-7")).await.unwrap();
    match r.get("ga4") {
        Some(Outcome::Queued { error }) => {
            assert_eq!(
                error,
                &DeliveryError::RateLimited { retry_after_secs: Some(1), message: "sandbox: rate limited".into() }
            );
        }
        other => panic!("{other:?}"),
    }
    sandbox.ga4.faults.set(Mode::Up);
    assert!(tracker.flush(Duration::from_secs(5)).await.complete);
    assert_eq!(sandbox.ga4.purchases().len(), 1);
}

#[tokio::test]
async fn concurrent_duplicate_calls_deliver_once() {
    let (sandbox, _run, tracker) = setup(false).await;
    let env = envelope(GRANTED);
    let calls = (0..3).map(|_| {
        let t = tracker.clone();
        let env = env.clone();
        tokio::spawn(async move { t.from_context(&env).track_purchase(purchase("ORD-10")).await.unwrap() })
    });
    let mut sent = 0;
    for c in calls {
        if c.await.unwrap().get("ga4").unwrap().is_sent() {
            sent += 1;
        }
    }
    assert!(tracker.flush(Duration::from_secs(5)).await.complete);
    assert_eq!(sent, 1);
    assert_eq!(sandbox.ga4.events().len(), 1);
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
    let text = format!("{r:?} {}", tracker.metrics_text());
    assert!(matches!(r.get("ga4"), Some(Outcome::Queued { error: DeliveryError::Transport(_) })), "{r:?}");
    assert!(!text.contains("secret-xyz"), "{text}");
}

/// A debug endpoint answering as Google's does for a field the core never
/// gets wrong (so the sandbox, which checks what the core sends, never says it).
#[tokio::test]
async fn validation_messages_are_counted_by_code_in_the_diagnostics() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/ga4/debug/mp/collect",
        post(|| async {
            axum::Json(serde_json::json!({"validationMessages": [
                {"fieldPath": "events.params.currency", "description": "Currency is required", "validationCode": "VALUE_REQUIRED"}
            ]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(format!("{base}/ga4")).validate(true))
        .retry(fast_retry())
        .build()
        .unwrap();
    let r = tracker.from_context(&envelope(GRANTED)).track_purchase(purchase("ORD-V")).await.unwrap();
    assert!(matches!(r.get("ga4"), Some(Outcome::Failed(DeliveryError::Rejected { .. }))), "{r:?}");
    let diagnostics = tracker.destination_diagnostics();
    assert_eq!(diagnostics["ga4"].count("validation", "VALUE_REQUIRED"), 1, "{diagnostics:?}");
    let text = tracker.metrics_text();
    assert!(
        text.contains(
            "tally_destination_diagnostics_total{destination=\"ga4\",kind=\"validation\",reason=\"VALUE_REQUIRED\"} 1\n"
        ),
        "{text}"
    );
}
