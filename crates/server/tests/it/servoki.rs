//! Servoki-style server-events delivery against the local sandbox (loopback only).

use std::time::Duration;

use crate::support::{amount, fast_retry, tracker_on_sandbox};
use tally_core::{ContextEnvelope, Item};
use tally_sandbox::servoki::{API_KEY, SITE};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{DeliveryError, Outcome, PurchaseInput, ServerTracker, ServokiConfig, SkipReason, TrackResult};

async fn setup_with(retry: RetryPolicy, site: &str, key: &str) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(retry, |run, b| {
        b.servoki(ServokiConfig::new(site, key).url(run.url("/servoki/api/events/server")))
    })
    .await
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(fast_retry(), SITE, API_KEY).await
}

fn envelope(analytics: &str) -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"visitorId":"anon-abc123","clickIds":{{"gclid":"Cj0KCQjw"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"{analytics}","ad_user_data":"granted","ad_personalization":"granted"}},
            "userData":{{"email":"jane@example.com"}}}}"#
    ))
}

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "238", "EUR").item(Item::new("SKU-204", "Merino runner").with_price(amount("119"), 2))
}

fn outcome(r: &TrackResult) -> &Outcome {
    r.get("servoki").unwrap()
}

#[tokio::test]
async fn purchase_reaches_servoki_with_the_shared_event_id_and_no_user_data() {
    let (sandbox, _run, tracker) = setup().await;
    let at = now_ms() - 10_000;
    let r = tracker
        .from_context(&envelope("granted"))
        .track_purchase(purchase("order_8841").occurred_at_ms(at))
        .await
        .unwrap();
    assert!(outcome(&r).is_sent(), "{r:?} {:?}", sandbox.servoki.dropped());
    let p = sandbox.servoki.purchases();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].site, SITE);
    assert_eq!(p[0].event_id.as_deref(), Some(r.event_id.as_str()));
    assert_eq!(p[0].vid.as_deref(), Some("anon-abc123"));
    assert_eq!(p[0].value, Some(238.0));
    assert_eq!(p[0].props["order_id"], "order_8841");
    assert_eq!(p[0].occurred_at.as_deref(), Some(tally_core::time::rfc3339_utc(at).as_str()));
    assert_eq!(p[0].consent, Some(true));
    let raw = &sandbox.traffic.under("/servoki")[0];
    assert_eq!(raw.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    assert!(!raw.body.contains("jane@example.com") && !raw.body.contains("Cj0KCQjw"));
    // Servoki counts repeated ids once; the tracker does not even send them again.
    let again = tracker.from_context(&envelope("granted")).track_purchase(purchase("order_8841")).await.unwrap();
    assert_eq!(outcome(&again), &Outcome::Skipped(SkipReason::Duplicate));
}

#[tokio::test]
async fn a_wrong_api_key_is_unauthorized_and_not_retried() {
    let (sandbox, _run, tracker) = setup_with(fast_retry(), SITE, "servoki_wrong").await;
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("o-401")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 401, message }) => {
            assert!(!message.contains("servoki_wrong"))
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.servoki.requests(), 1);
}

#[tokio::test]
async fn a_rejected_body_is_permanent() {
    let (sandbox, _run, tracker) = setup_with(fast_retry(), "other.example", API_KEY).await;
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("o-400")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Rejected { status: 400, message }) => {
            assert!(message.contains("unknown site"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.servoki.requests(), 1);
}

#[tokio::test]
async fn rate_limit_carries_retry_after_then_delivers() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.servoki.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("o-429")).await.unwrap();
    assert!(
        matches!(outcome(&r), Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs: Some(1), .. } }),
        "{r:?}"
    );
    sandbox.servoki.faults.set(Mode::Up);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.servoki.purchases().len(), 1);
}

#[tokio::test]
async fn server_errors_then_success() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.servoki.faults.fail_next(2);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("o-503")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.servoki.events().len(), 1);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let (sandbox, _run, tracker) =
        setup_with(RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() }, SITE, API_KEY).await;
    sandbox.servoki.latency.set(Duration::from_millis(1200));
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("o-slow")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Transport(_) }), "{r:?}");
    sandbox.servoki.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(sandbox.servoki.purchases().len(), 1, "the late copy counts once");
}

#[tokio::test]
async fn analytics_consent_is_required() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker.from_context(&envelope("denied")).track_purchase(purchase("o-consent")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::ConsentDenied(_))), "{r:?}");
    assert_eq!(sandbox.servoki.requests(), 0);
}
