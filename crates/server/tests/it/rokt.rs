//! Rokt Event API delivery against the local Rokt sandbox (loopback only).

use std::time::Duration;

use crate::support::{fast_retry, tracker_on_sandbox};
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    Amount, ClickIds, ConsentState, ContextEnvelope, Currency, Event, EventName, TransactionId, UserData,
};
use tally_sandbox::rokt::{ACCOUNT_ID, PUBLIC_KEY, SECRET};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{
    DeliveryError, Outcome, PurchaseInput, RefundInput, RoktConfig, ServerTracker, SkipReason, TrackResult, Visitor,
};

fn rokt(run: &RunningSandbox) -> RoktConfig {
    RoktConfig::new(ACCOUNT_ID, PUBLIC_KEY, SECRET).url(run.url("/rokt/v2/events"))
}

async fn setup_with(retry: RetryPolicy) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(retry, |run, b| b.rokt(rokt(run))).await
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(fast_retry()).await
}

fn envelope() -> ContextEnvelope {
    crate::support::envelope(
        r#"{"v":1,"createdAt":1,"clickIds":{"rtid":"rokt-click-123"},
            "consent":{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"},
            "userData":{"email":" Jane.Doe@Gmail.com "}}"#,
    )
}

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "129.99", "USD")
}

fn outcome(r: &TrackResult) -> &Outcome {
    r.get("rokt").unwrap()
}

fn visitor() -> Visitor {
    Visitor {
        consent: Some(ConsentState::ALL_GRANTED),
        click_ids: ClickIds { rtid: Some("rokt-click-9".into()), ..Default::default() },
        ..Default::default()
    }
}

fn event(txn: &str) -> Event {
    let mut e = Event::transactional(EventName::Purchase, TransactionId::parse(txn).unwrap(), now_ms() - 60_000);
    e.value = Some(Amount::parse("5").unwrap());
    e.currency = Some(Currency::parse("USD").unwrap());
    e
}

#[tokio::test]
async fn purchase_reaches_rokt_with_basic_auth_and_the_pinned_version() {
    let (sandbox, _run, tracker) = setup().await;
    let at = now_ms() - 5_000;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-1").occurred_at_ms(at)).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?} {:?}", sandbox.rokt.dropped());
    let p = sandbox.rokt.purchases();
    assert_eq!(p.len(), 1);
    let e = &p[0];
    assert_eq!(e.client_event_id, r.event_id.as_str());
    assert_eq!(e.event_type, "conversion");
    assert_eq!(e.event_time, tally_core::time::rfc3339_utc(at));
    assert_eq!(e.object("passbackconversiontrackingid"), Some("rokt-click-123"));
    assert_eq!(e.object("amount"), Some("129.99"));
    assert_eq!(e.object("transactionid"), Some("ORD-1"));
    let meta_email = UserData { email: Some(" Jane.Doe@Gmail.com ".into()), ..Default::default() }
        .hashed(&NormalizeOptions::default())
        .meta
        .unwrap()
        .em;
    assert_eq!(e.object("emailsha256"), Some(meta_email[0].as_str()));
    assert!(e.object("email").is_none(), "never the raw email");
    let raw = &sandbox.traffic.under("/rokt")[0];
    assert_eq!(raw.header("rokt-version"), Some("2020-05-21"));
    assert!(raw.header("authorization").unwrap().starts_with("Basic "));
}

#[tokio::test]
async fn unprocessed_records_fail_only_those_events() {
    let (sandbox, _run, tracker) = setup().await;
    let events = vec![event("ORD-A"), event("ORD-B"), event("ORD-C")];
    sandbox.rokt.reject_event(events[1].id.as_str());
    let results = tracker.deliver(events, &visitor()).await;
    assert_eq!(sandbox.rokt.requests(), 1);
    assert!(results[0].get("rokt").unwrap().is_sent());
    assert!(results[2].get("rokt").unwrap().is_sent());
    match results[1].get("rokt").unwrap() {
        Outcome::Failed(DeliveryError::PartialFailure(rows)) => {
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].index, 1);
            assert_eq!(rows[0].code, "ValidationError");
            assert_eq!(rows[0].message, "Invalid content");
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(tracker.outbox().dead_entries(10).unwrap().len(), 1, "not retried");
    assert_eq!(sandbox.rokt.events().len(), 2);
}

#[tokio::test]
async fn batches_hold_at_most_100_events() {
    let (sandbox, _run, tracker) = setup().await;
    let events: Vec<Event> = (0..150).map(|i| event(&format!("ORD-{i}"))).collect();
    let results = tracker.deliver(events, &visitor()).await;
    assert!(results.iter().all(|r| r.get("rokt").unwrap().is_sent()));
    assert_eq!(sandbox.rokt.requests(), 2);
    assert_eq!(sandbox.rokt.events().len(), 150);
}

#[tokio::test]
async fn a_wrong_key_pair_is_unauthorized_and_not_retried() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.rokt.set_credentials(ACCOUNT_ID, "rpub-other", "rsec-other");
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-401")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 401, message }) => {
            assert!(message.contains("UnauthorizedError"), "{message}");
            assert!(!message.contains(SECRET));
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.rokt.requests(), 1);
}

#[tokio::test]
async fn rate_limit_carries_retry_after_then_delivers() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.rokt.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-429")).await.unwrap();
    assert!(
        matches!(outcome(&r), Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs: Some(1), .. } }),
        "{r:?}"
    );
    sandbox.rokt.faults.set(Mode::Up);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.rokt.purchases().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.rokt.faults.fail_next(2);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-5XX")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.rokt.events().len(), 1);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let (sandbox, _run, tracker) =
        setup_with(RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() }).await;
    sandbox.rokt.latency.set(Duration::from_millis(1200));
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-SLOW")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Transport(_) }), "{r:?}");
    sandbox.rokt.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(sandbox.rokt.purchases().len(), 1, "the late copy is a duplicate clientEventId");
}

#[tokio::test]
async fn refunds_are_unsupported_and_attribution_is_required() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker
        .from_context(&envelope())
        .track_refund(RefundInput::full("ORD-1", Currency::parse("USD").unwrap()))
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::Unsupported));
    let mut env = envelope();
    env.click_ids = ClickIds::default();
    env.raw_user_data = None;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-NA")).await.unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::NoAttribution));
    let r = tracker
        .from_context(&envelope())
        .track_purchase(purchase("ORD-OLD").occurred_at_ms(now_ms() - 600 * 86_400_000))
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::OutsideWindow));
    assert_eq!(sandbox.rokt.requests(), 0);
}
