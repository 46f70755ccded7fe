//! A Trackbridge-format context envelope (<https://docs.trackbridge.dev/sdk/concepts/context-envelope/>) handed to
//! `from_context` delivers: its client id, session, user id, click id and
//! consent bind every helper, and its raw `userData` is normalised and hashed
//! by the tracker — the raw values never leave.

use std::time::Duration;

use serde_json::Value;
use tally_core::hash::sha256_hex;
use tally_core::{Amount, ContextEnvelope, Currency, Item};
use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::{Ga4Config, GoogleAdsConfig, Outcome, PurchaseInput, ServerTracker, SignUpInput, SkipReason};

/// The envelope of <https://docs.trackbridge.dev/sdk/concepts/context-envelope/>, byte for byte except the gclid: the
/// document abbreviates it as `Cj0KCQ...`, which is not a decodable click id.
const TRACKBRIDGE_ENVELOPE: &str = r#"{ "v": 1, "createdAt": 1777700000000, "clientId": "1234567890.1777000000", "sessionId": "1777699000",
  "userId": "user_42", "clickIds": { "gclid": "Cj0KCQjw3tCyBhDBARIsAEY0XNk" },
  "consent": { "ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "denied", "analytics_storage": "granted" },
  "userData": { "email": "jane@example.com", "phone": "+1 (555) 123-4567" } }"#;

fn tracker(run: &RunningSandbox) -> ServerTracker {
    // Trackbridge's server config, in Tally's builder: GA4 plus Ads with
    // conversionActions keyed by label and conversionLabels naming those keys.
    ServerTracker::builder()
        .ga4(Ga4Config::new("G-TRACKBRIDGE1", "ga4-api-secret").base_url(run.url("/ga4")))
        .google_ads(
            GoogleAdsConfig::new("123-456-7890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                .data_manager_url(run.url("/data-manager"))
                .token_url(run.url("/data-manager/token"))
                .conversion_action("abcDEF1234", "customers/1234567890/conversionActions/9876543210")
                .label("purchase", "abcDEF1234"),
        )
        .retry(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_trackbridge_envelope_drives_every_destination() {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker = tracker(&run);
    let env = ContextEnvelope::parse(TRACKBRIDGE_ENVELOPE).unwrap();
    let bound = tracker.from_context(&env);

    let p = PurchaseInput::new("ORD-1001", Amount::parse("99").unwrap(), Currency::parse("USD").unwrap())
        .item(Item::new("SKU_1", "Tee").with_price(Amount::parse("33").unwrap(), 3));
    let r = bound.track_purchase(p).await.unwrap();
    assert!(r.get("ga4").unwrap().is_sent(), "{r:?}");
    assert!(r.get("google_ads").unwrap().is_sent(), "{r:?} {:?}", sandbox.data_manager.rejections());

    // GA4: the envelope's client id, user id and session.
    let ga4 = sandbox.ga4.events();
    assert_eq!(ga4.len(), 1, "{:?}", sandbox.ga4.dropped());
    assert_eq!(ga4[0].client_id, "1234567890.1777000000");
    assert_eq!(ga4[0].user_id.as_deref(), Some("user_42"));
    assert_eq!(ga4[0].params["session_id"], "1777699000");
    assert_eq!(ga4[0].transaction_id(), Some("ORD-1001"));

    // Google Ads: the envelope's gclid, and the raw user data hashed the Google way.
    let c = &sandbox.data_manager.conversions()[0];
    assert_eq!(c.gclid.as_deref(), Some("Cj0KCQjw3tCyBhDBARIsAEY0XNk"));
    assert_eq!((c.operating_account.as_str(), c.product_destination_id.as_str()), ("1234567890", "9876543210"));
    assert_eq!(c.hashed_emails, [sha256_hex("jane@example.com")]);
    assert_eq!(c.hashed_phones, [sha256_hex("+15551234567")]);
    assert_eq!(c.ad_user_data.as_deref(), Some("CONSENT_GRANTED"));

    // GA4 got the hashed form too (user_data needs the user id, which the envelope has).
    let ga4_body: Value = serde_json::from_str(&sandbox.traffic.under("/ga4")[0].body).unwrap();
    assert_eq!(ga4_body["user_data"]["sha256_email_address"][0], sha256_hex("jane@example.com"));

    // The raw values never left.
    for req in sandbox.traffic.all() {
        for raw in ["jane@example.com", "555) 123-4567", "+15551234567"] {
            assert!(!req.body.contains(raw), "{raw} in {} {}", req.path, req.body);
        }
    }

    // A helper with no Ads label still reaches GA4, and says why Ads was skipped.
    let r = bound.track_sign_up(SignUpInput::default()).await.unwrap();
    assert!(r.get("ga4").unwrap().is_sent());
    assert_eq!(r.get("google_ads"), Some(&Outcome::Skipped(SkipReason::NoLabelConfigured)));
}

#[tokio::test]
async fn the_base64url_header_form_parses_to_the_same_envelope() {
    let json = ContextEnvelope::parse(TRACKBRIDGE_ENVELOPE).unwrap();
    let header = json.to_base64url();
    let back = ContextEnvelope::parse(&header).unwrap();
    assert_eq!(back, json);
    assert_eq!(back.raw_user_data.unwrap().email.as_deref(), Some("jane@example.com"));
}
