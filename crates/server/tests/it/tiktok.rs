//! TikTok's Events API against the local TikTok sandbox (loopback only): the
//! optional TikTok destination, its event id, error codes and timeouts.

use std::time::Duration;

use super::webhook::{at, envelope, purchase};
use crate::support::{fast_retry, tracker_on_sandbox};
use tally_core::Currency;
use tally_sandbox::tiktok::{ACCESS_TOKEN as TIKTOK_TOKEN, PIXEL_CODE};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::{DeliveryError, Outcome, RefundInput, ServerTracker, SkipReason, TikTokConfig, Visitor};

async fn tiktok_setup(retry: RetryPolicy) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(retry, |run, b| {
        b.tiktok(TikTokConfig::new(PIXEL_CODE, TIKTOK_TOKEN).url(run.url("/tiktok/open_api/v1.3/event/track/")))
    })
    .await
}

#[tokio::test]
async fn tiktok_receives_complete_payment_with_the_shared_event_id() {
    let (sandbox, _run, tracker) = tiktok_setup(fast_retry()).await;
    let visitor = Visitor {
        ip_address: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0".into()),
        ..Default::default()
    };
    let r =
        tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-TT").visitor(visitor)).await.unwrap();
    assert!(at(&r, "tiktok").is_sent(), "{r:?} {:?}", sandbox.tiktok.dropped());
    let p = sandbox.tiktok.purchases();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].event_id.as_deref(), Some(r.event_id.as_str()));
    assert_eq!(p[0].user["ttclid"], "E.C.P.abc123");
    assert_eq!(p[0].user["email"].as_str().map(str::len), Some(64));
    assert_eq!(p[0].limited_data_use, Some(false));
    assert_eq!(sandbox.traffic.under("/tiktok")[0].header("access-token"), Some(TIKTOK_TOKEN));
    let refund = tracker
        .from_context(&envelope("granted"))
        .track_refund(RefundInput::full("ORD-TT", Currency::parse("USD").unwrap()))
        .await
        .unwrap();
    assert_eq!(at(&refund, "tiktok"), &Outcome::Skipped(SkipReason::Unsupported));
}

#[tokio::test]
async fn tiktok_errors_are_classified_by_code() {
    let (sandbox, _run, tracker) = tiktok_setup(fast_retry()).await;
    // Partial success: the events of that request are reported as row failures.
    let r0 = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-P0")).await.unwrap();
    assert!(at(&r0, "tiktok").is_sent());
    let id = tally_core::EventId::for_transaction(
        &tally_core::EventName::Purchase,
        &tally_core::TransactionId::parse("ORD-P1").unwrap(),
    );
    sandbox.tiktok.reject_event(id.as_str());
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-P1")).await.unwrap();
    assert!(
        matches!(at(&r, "tiktok"), Outcome::Failed(DeliveryError::PartialFailure(rows)) if rows[0].code == "20001"),
        "{r:?}"
    );
    // Credentials (HTTP 401, code 40105): not retried.
    sandbox.tiktok.faults.set(Mode::Unauthorized);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-P2")).await.unwrap();
    assert!(matches!(at(&r, "tiktok"), Outcome::Failed(DeliveryError::Unauthorized { .. })), "{r:?}");
    // Throttled (429 with Retry-After), then a 503: queued, then delivered.
    sandbox.tiktok.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-P3")).await.unwrap();
    assert!(
        matches!(
            at(&r, "tiktok"),
            Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs: Some(1), .. } }
        ),
        "{r:?}"
    );
    sandbox.tiktok.faults.set(Mode::Up);
    sandbox.tiktok.faults.fail_next(1);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.tiktok.purchases().len(), 2);
}

#[tokio::test]
async fn tiktok_timeout_is_transient() {
    let (sandbox, _run, tracker) =
        tiktok_setup(RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() }).await;
    sandbox.tiktok.latency.set(Duration::from_millis(1000));
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-TS")).await.unwrap();
    assert!(matches!(at(&r, "tiktok"), Outcome::Queued { error: DeliveryError::Transport(_) }), "{r:?}");
    sandbox.tiktok.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sandbox.tiktok.purchases().len(), 1, "TikTok deduplicates by event and event_id");
}
