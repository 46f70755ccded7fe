//! Meta Conversions API delivery against the local Meta sandbox (loopback only).

use std::time::Duration;

use crate::support::{fast_retry, tracker_on_sandbox};
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    Amount, ConsentSignal, ConsentState, ContextEnvelope, Currency, Event, EventId, EventName, TransactionId, UserData,
};
use tally_sandbox::meta::ACCESS_TOKEN;
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{
    DeliveryError, MetaConfig, Outcome, PurchaseInput, RefundInput, ServerTracker, SkipReason, TrackResult, Visitor,
};

const DAY_MS: i64 = 86_400_000;

fn meta(run: &RunningSandbox) -> MetaConfig {
    MetaConfig::new("1234567890", ACCESS_TOKEN).base_url(run.url("/meta")).test_event_code("TEST123")
}

async fn setup_with(
    retry: RetryPolicy,
    f: impl FnOnce(MetaConfig) -> MetaConfig,
) -> (Sandbox, RunningSandbox, ServerTracker) {
    tracker_on_sandbox(retry, |run, b| b.meta(f(meta(run)))).await
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(fast_retry(), |c| c).await
}

const FBC: &str = "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890";
const FBP: &str = "fb.1.1596403881668.1116446470";

fn envelope() -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569",
            "clickIds":{{"fbc":"{FBC}","fbp":"{FBP}"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"denied"}},
            "userData":{{"email":"Jane.Doe@gmail.com","phone":"+1 (650) 555-1212"}},
            "pageUrl":"https://shop.example/checkout/done?gclid=abc"}}"#
    ))
}

fn browser() -> Visitor {
    Visitor {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some("203.0.113.7".into()),
        ..Default::default()
    }
}

fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "100.2", "USD").visitor(browser())
}

fn outcome(r: &TrackResult) -> &Outcome {
    r.get("meta").unwrap()
}

#[tokio::test]
async fn purchase_reaches_meta_with_hashed_user_data_and_the_shared_event_id() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-1")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?} {:?}", sandbox.meta.dropped());
    let p = sandbox.meta.purchases();
    assert_eq!(p.len(), 1);
    let e = &p[0];
    assert_eq!(e.event_id.as_deref(), Some(r.event_id.as_str()), "the browser Pixel's eventID");
    assert_eq!(e.action_source, "website");
    assert_eq!(e.event_source_url.as_deref(), Some("https://shop.example/checkout/done?gclid=abc"));
    assert_eq!(e.value(), Some(100.2));
    assert_eq!(e.currency(), Some("USD"));
    assert_eq!(e.test_event_code.as_deref(), Some("TEST123"));
    assert_eq!(e.opt_out, Some(true), "ad_personalization denied");
    let hashed = UserData {
        email: Some("Jane.Doe@gmail.com".into()),
        phone: Some("+1 (650) 555-1212".into()),
        ..Default::default()
    }
    .hashed(&NormalizeOptions::default())
    .meta
    .unwrap();
    assert_eq!(e.user_data["em"], serde_json::json!(hashed.em));
    assert_eq!(e.user_data["ph"], serde_json::json!(hashed.ph));
    assert_eq!(e.user_data["fbc"], FBC);
    assert_eq!(e.user_data["fbp"], FBP);
    assert_eq!(e.user_data["client_ip_address"], "203.0.113.7");
    // The token travels in the query string, as Meta documents.
    let raw = sandbox.traffic.under("/meta");
    assert_eq!(raw[0].path, "/meta/v25.0/1234567890/events");
    assert_eq!(raw[0].query.as_deref(), Some(format!("access_token={ACCESS_TOKEN}").as_str()));
}

#[tokio::test]
async fn one_invalid_event_never_sinks_the_batch() {
    let (sandbox, _run, tracker) = setup().await;
    let now = now_ms();
    let mk = |txn: &str, at: i64| {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse(txn).unwrap(), at);
        e.value = Some(Amount::parse("5").unwrap());
        e.currency = Some(Currency::parse("EUR").unwrap());
        e
    };
    let mut view = Event::new(EventName::ViewItem, EventId::parse("view-1").unwrap(), now);
    view.set_text("page_location", "https://shop.example/p/1");
    let visitor = Visitor {
        consent: Some(ConsentState::ALL_GRANTED),
        user_agent: Some("Mozilla/5.0".into()),
        page_url: Some("https://shop.example/p/1".into()),
        user_data: Some(UserData { email: Some("a@example.com".into()), ..Default::default() }),
        ..Default::default()
    };
    let results = tracker.deliver(vec![mk("ORD-A", now), mk("ORD-OLD", now - 8 * DAY_MS), view], &visitor).await;
    assert!(results[0].get("meta").unwrap().is_sent(), "{results:?}");
    assert_eq!(results[1].get("meta"), Some(&Outcome::Skipped(SkipReason::OutsideWindow)));
    assert!(results[2].get("meta").unwrap().is_sent());
    assert_eq!(sandbox.meta.requests(), 1);
    assert_eq!(sandbox.meta.events().len(), 2);
    assert!(sandbox.meta.dropped().is_empty());
}

#[tokio::test]
async fn batches_hold_at_most_1000_events() {
    let (sandbox, _run, tracker) = setup().await;
    let now = now_ms();
    let events: Vec<Event> =
        (0..1500).map(|i| Event::new(EventName::PageView, EventId::parse(&format!("pv-{i}")).unwrap(), now)).collect();
    let visitor = Visitor {
        consent: Some(ConsentState::ALL_GRANTED),
        user_agent: Some("Mozilla/5.0".into()),
        page_url: Some("https://shop.example/".into()),
        ip_address: Some("198.51.100.1".into()),
        ..Default::default()
    };
    let results = tracker.deliver(events, &visitor).await;
    assert!(results.iter().all(|r| r.get("meta").unwrap().is_sent()));
    assert_eq!(sandbox.meta.requests(), 2);
    assert_eq!(sandbox.meta.events().len(), 1500);
    let sizes: Vec<usize> = sandbox
        .traffic
        .under("/meta")
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["data"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [1000, 500]);
}

#[tokio::test]
async fn expired_token_is_a_credentials_error_and_never_leaks() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.meta.faults.set(Mode::Unauthorized);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-401")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Failed(DeliveryError::Unauthorized { status: 401, .. })), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.meta.requests(), 1, "not retried");

    // A token Meta does not know: code 190 on a 400.
    sandbox.meta.faults.set(Mode::Up);
    sandbox.meta.set_access_token("EAAsomethingElse");
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-190")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Unauthorized { status: 400, message }) => {
            assert!(message.contains("(#190)"), "{message}");
            assert!(!message.contains(ACCESS_TOKEN));
        }
        other => panic!("{other:?}"),
    }
    let debug = format!("{tracker:?}");
    assert!(debug.contains("MetaDestination") && !debug.contains(ACCESS_TOKEN), "{debug}");
    // Both answers are counted by Graph error code in the diagnostics metric.
    let text = tracker.metrics_text();
    assert!(
        text.contains("tally_destination_diagnostics_total{destination=\"meta\",kind=\"error\",reason=\"190\"} 2\n"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_parameter_code_100_is_permanent() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.meta.set_pixel_id("999");
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-100")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Rejected { status: 400, message }) => {
            assert!(message.contains("(#100/33)"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let diagnostics = tracker.destination_diagnostics();
    assert_eq!(diagnostics["meta"].count("error", "100/33"), 1, "{diagnostics:?}");
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.meta.requests(), 1);
}

#[tokio::test]
async fn throttling_carries_retry_after_then_delivers() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.meta.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-429")).await.unwrap();
    match outcome(&r) {
        Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs, message } } => {
            assert_eq!(*retry_after_secs, Some(1));
            assert!(message.contains("(#4)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    sandbox.meta.faults.set(Mode::Up);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.meta.purchases().len(), 1);
}

#[tokio::test]
async fn transient_errors_are_retried_until_delivered_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.meta.faults.fail_next(2);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-5XX")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }), "{r:?}");
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.meta.purchases().len(), 1);
    assert_eq!(sandbox.meta.events().len(), 1);
}

#[tokio::test]
async fn a_timeout_is_transient_and_meta_deduplicates_the_late_copy() {
    let retry = RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() };
    let (sandbox, _run, tracker) = setup_with(retry, |c| c).await;
    sandbox.meta.latency.set(Duration::from_millis(1200));
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-SLOW")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Queued { error: DeliveryError::Transport(_) }), "{r:?}");
    sandbox.meta.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(sandbox.meta.purchases().len(), 1, "counted once: {:?}", sandbox.meta.events());
}

#[tokio::test]
async fn an_events_received_mismatch_is_a_failure() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.meta.misreport_next(1);
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-MIS")).await.unwrap();
    match outcome(&r) {
        Outcome::Failed(DeliveryError::Rejected { status: 200, message }) => {
            assert!(message.contains("received 0 of 1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refunds_are_unsupported_and_consent_is_required() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker
        .from_context(&envelope())
        .track_refund(RefundInput::full("ORD-1", Currency::parse("USD").unwrap()))
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::Unsupported));
    let mut env = envelope();
    env.consent.ad_user_data = ConsentSignal::Denied;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-2")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::ConsentDenied(_))), "{r:?}");
    // Without ad_storage the click ids stay home and the URL loses its gclid.
    let mut env = envelope();
    env.consent.ad_storage = ConsentSignal::Denied;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-3")).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    let e = sandbox.meta.events().pop().unwrap();
    assert!(e.user_data.get("fbc").is_none() && e.user_data.get("fbp").is_none());
    assert_eq!(e.event_source_url.as_deref(), Some("https://shop.example/checkout/done"));
    assert_eq!(sandbox.meta.requests(), 1);
}

#[tokio::test]
async fn explicit_occurred_at_is_event_time_and_old_events_are_outside_the_window() {
    let (sandbox, _run, tracker) = setup().await;
    let at = now_ms() - 3 * DAY_MS + 456;
    let r = tracker.from_context(&envelope()).track_purchase(purchase("ORD-AT").occurred_at_ms(at)).await.unwrap();
    assert!(outcome(&r).is_sent(), "{r:?}");
    assert_eq!(sandbox.meta.events()[0].event_time, at.div_euclid(1000));
    let r = tracker
        .from_context(&envelope())
        .track_purchase(purchase("ORD-OLD").occurred_at_ms(now_ms() - 8 * DAY_MS))
        .await
        .unwrap();
    assert_eq!(outcome(&r), &Outcome::Skipped(SkipReason::OutsideWindow));
    assert_eq!(sandbox.meta.requests(), 1);
}

#[tokio::test]
async fn a_second_process_sending_the_same_purchase_is_deduplicated_by_meta() {
    let (sandbox, run, tracker) = setup().await;
    let other = ServerTracker::builder().meta(meta(&run)).build().unwrap();
    for t in [&tracker, &other] {
        let r = t.from_context(&envelope()).track_purchase(purchase("ORD-DUP")).await.unwrap();
        assert!(outcome(&r).is_sent());
    }
    assert_eq!(sandbox.meta.events().len(), 2);
    assert_eq!(sandbox.meta.purchases().len(), 1);
    assert_eq!(sandbox.meta.deduplicated().len(), 1);
}

#[tokio::test]
async fn website_events_without_a_page_or_user_agent_are_skipped_as_invalid() {
    let (sandbox, _run, tracker) = setup().await;
    let mut env = envelope();
    env.page_url = None;
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-NOURL")).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::Invalid(_))), "{r:?}");
    let bare = PurchaseInput::new("ORD-NOUA", Amount::parse("1").unwrap(), Currency::parse("USD").unwrap());
    let r = tracker.from_context(&envelope()).track_purchase(bare).await.unwrap();
    assert!(matches!(outcome(&r), Outcome::Skipped(SkipReason::Invalid(_))), "{r:?}");
    assert_eq!(sandbox.meta.requests(), 0);
}
