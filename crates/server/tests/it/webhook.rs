//! Tally's webhook contract against the local webhook sandbox (loopback only):
//! the shop's own signed webhook / warehouse sinks.

use std::time::Duration;

use crate::support::{fast_retry, tracker_on_sandbox};
use tally_core::destinations::webhook::{DEFAULT_TOLERANCE_SECS, verify};
use tally_core::{ContextEnvelope, Currency};
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{DeliveryError, Outcome, PurchaseInput, RefundInput, ServerTracker, TrackResult, WebhookConfig};

const WAREHOUSE_SECRET: &str = "whsec_warehouse_0123456789";
const CRM_SECRET: &str = "whsec_crm_abcdefghij";

async fn setup_with(retry: RetryPolicy) -> (Sandbox, RunningSandbox, ServerTracker) {
    let (sandbox, run, tracker) = tracker_on_sandbox(retry, |run, b| {
        b.webhook("warehouse", WebhookConfig::new(run.url("/webhook/warehouse"), WAREHOUSE_SECRET))
            .webhook("crm", WebhookConfig::new(run.url("/webhook/crm"), CRM_SECRET))
    })
    .await;
    sandbox.webhook.set_secret("warehouse", WAREHOUSE_SECRET);
    sandbox.webhook.set_secret("crm", CRM_SECRET);
    (sandbox, run, tracker)
}

async fn setup() -> (Sandbox, RunningSandbox, ServerTracker) {
    setup_with(fast_retry()).await
}

pub(super) fn envelope(ad_user_data: &str) -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","userId":"user_42",
            "clickIds":{{"gclid":"Cj0KCQjw","ttclid":"E.C.P.abc123"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"{ad_user_data}","ad_personalization":"granted"}},
            "userData":{{"email":"jane@example.com","phone":"+16505551212"}},
            "pageUrl":"https://shop.example/checkout/done"}}"#
    ))
}

pub(super) fn purchase(txn: &str) -> PurchaseInput {
    crate::support::purchase(txn, "30.03", "USD")
}

pub(super) fn at<'a>(r: &'a TrackResult, d: &str) -> &'a Outcome {
    r.get(d).unwrap()
}

#[tokio::test]
async fn every_click_id_reaches_the_warehouse() {
    let (sandbox, _run, tracker) = setup().await;
    // Every click id of the core's table but Meta's two (cookie-shaped, covered elsewhere).
    let ids: Vec<(&str, String)> = tally_core::click_ids::CLICK_IDS
        .iter()
        .filter(|k| k.key != "fbc" && k.key != "fbp")
        .map(|k| (k.key, format!("V{}", k.key)))
        .collect();
    assert!(ids.iter().any(|(k, _)| *k == "msclkid") && ids.iter().any(|(k, _)| *k == "rdt_cid"));
    let clicks: serde_json::Map<String, serde_json::Value> =
        ids.iter().map(|(k, v)| ((*k).to_owned(), v.as_str().into())).collect();
    let env = crate::support::envelope(
        &serde_json::json!({"v":1,"createdAt":1,"clientId":"1958185836.1757409569","clickIds":clicks,
            "consent":{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}})
        .to_string(),
    );
    let r = tracker.from_context(&env).track_purchase(purchase("ORD-CLICKS")).await.unwrap();
    assert!(at(&r, "webhook:warehouse").is_sent(), "{r:?} {:?}", sandbox.webhook.dropped());
    let got = sandbox.webhook.events("warehouse");
    let sent = &got[0].body["user"]["click_ids"];
    for (k, v) in &ids {
        assert_eq!(sent[k], v.as_str(), "{k} in {sent}");
    }
}

#[tokio::test]
async fn every_sink_receives_the_signed_record_with_an_idempotency_key() {
    let (sandbox, _run, tracker) = setup().await;
    assert_eq!(tracker.destination_names(), ["webhook:warehouse", "webhook:crm"]);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-1")).await.unwrap();
    assert!(at(&r, "webhook:warehouse").is_sent(), "{r:?} {:?}", sandbox.webhook.dropped());
    assert!(at(&r, "webhook:crm").is_sent());
    for sink in ["warehouse", "crm"] {
        let got = sandbox.webhook.events(sink);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event_id, r.event_id.as_str());
        assert_eq!(got[0].body["schema_version"], "1");
        assert_eq!(got[0].body["transaction_id"], "ORD-1");
        assert_eq!(got[0].body["user"]["user_id"], "user_42");
    }
    // The signature checks out with tally-core's own verifier too.
    let raw = &sandbox.traffic.under("/webhook/warehouse")[0];
    let ts = raw.header("x-tally-timestamp").unwrap();
    let sig = raw.header("x-tally-signature").unwrap();
    let now = now_ms() / 1000;
    assert_eq!(verify(WAREHOUSE_SECRET.as_bytes(), ts, raw.body.as_bytes(), sig, now, DEFAULT_TOLERANCE_SECS), Ok(()));
    assert_eq!(raw.header("idempotency-key"), Some(r.event_id.as_str()));
    assert_eq!(raw.header("content-type"), Some("application/json"));
    // Refunds too: the shop's own system wants everything.
    let refund = tracker
        .from_context(&envelope("granted"))
        .track_refund(RefundInput::full("ORD-1", Currency::parse("USD").unwrap()))
        .await
        .unwrap();
    assert!(at(&refund, "webhook:crm").is_sent());
    assert_eq!(sandbox.webhook.events("crm")[1].body["order_key"], r.event_id.as_str());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_never_retried() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.webhook.set_secret("crm", "whsec_rotated_elsewhere");
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-SIG")).await.unwrap();
    assert!(at(&r, "webhook:warehouse").is_sent());
    match at(&r, "webhook:crm") {
        Outcome::Failed(DeliveryError::Unauthorized { status: 401, message }) => {
            assert!(message.contains("does not match"), "{message}");
            assert!(!message.contains(CRM_SECRET));
        }
        other => panic!("{other:?}"),
    }
    assert!(tracker.flush(Duration::from_secs(2)).await.complete);
    assert_eq!(sandbox.webhook.dropped().len(), 1, "one attempt only");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_and_stored_once() {
    let (sandbox, _run, tracker) = setup().await;
    sandbox.webhook.faults.set(Mode::RateLimited);
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-429")).await.unwrap();
    assert!(
        matches!(
            at(&r, "webhook:crm"),
            Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs: Some(1), .. } }
        ),
        "{r:?}"
    );
    sandbox.webhook.faults.set(Mode::Up);
    sandbox.webhook.faults.fail_next(2);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    assert_eq!(sandbox.webhook.events("crm").len(), 1);
    assert_eq!(sandbox.webhook.events("warehouse").len(), 1);
    assert!(sandbox.webhook.records().iter().all(|r| !r.duplicate));
}

#[tokio::test]
async fn a_timeout_is_retried_and_the_receiver_deduplicates_by_key() {
    let (sandbox, _run, tracker) =
        setup_with(RetryPolicy { timeout: Duration::from_millis(300), ..fast_retry() }).await;
    sandbox.webhook.latency.set(Duration::from_millis(1000));
    let r = tracker.from_context(&envelope("granted")).track_purchase(purchase("ORD-SLOW")).await.unwrap();
    assert!(matches!(at(&r, "webhook:crm"), Outcome::Queued { error: DeliveryError::Transport(_) }), "{r:?}");
    sandbox.webhook.latency.set(Duration::ZERO);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sandbox.webhook.events("crm").len(), 1, "stored once");
}

#[tokio::test]
async fn the_receiver_deduplicates_a_second_process_by_idempotency_key() {
    let (sandbox, run, tracker) = setup().await;
    let other = ServerTracker::builder()
        .webhook("crm", WebhookConfig::new(run.url("/webhook/crm"), CRM_SECRET))
        .build()
        .unwrap();
    for t in [&tracker, &other] {
        let r = t.from_context(&envelope("granted")).track_purchase(purchase("ORD-TWICE")).await.unwrap();
        assert!(at(&r, "webhook:crm").is_sent());
    }
    assert_eq!(sandbox.webhook.events("crm").len(), 1);
    assert_eq!(sandbox.webhook.records().iter().filter(|r| r.duplicate).count(), 1);
}

#[tokio::test]
async fn user_data_follows_consent_in_the_shops_own_sink() {
    let (sandbox, _run, tracker) = setup().await;
    let r = tracker.from_context(&envelope("denied")).track_purchase(purchase("ORD-NOUD")).await.unwrap();
    assert!(at(&r, "webhook:warehouse").is_sent());
    let body = &sandbox.webhook.events("warehouse")[0].body;
    assert!(body["user"].get("user_data").is_none(), "{body}");
    assert_eq!(body["consent"]["ad_user_data"], "denied");
}
