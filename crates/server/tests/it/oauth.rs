//! `TokenCache` against the sandbox's Google token endpoints over loopback:
//! the service-account JWT-bearer grant (minted, cached, refreshed after
//! expiry, single-flight), a wrong key, and the scope check of both grants.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use tally_sandbox::google_oauth::{
    ADWORDS_SCOPE, DATAMANAGER_SCOPE, JWT_BEARER_GRANT, TEST_ROGUE_KEY, TEST_SERVICE_ACCOUNT_EMAIL,
    TEST_SERVICE_ACCOUNT_KEY,
};
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::DeliveryError;
use tally_server::RetryPolicy;
use tally_server::oauth::{ServiceAccountKey, ServiceAccountKeyError, TokenCache};

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

async fn sandbox() -> (Sandbox, RunningSandbox) {
    let s = Sandbox::new();
    let server = s.serve("127.0.0.1:0").await.unwrap();
    (s, server)
}

/// A validateOnly ingest with `token`: the API's answer.
async fn ingest_status(http: &reqwest::Client, server: &RunningSandbox, token: &str) -> u16 {
    let body = json!({
        "destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"}, "productDestinationId": "987654321"}],
        "events": [{"transactionId": "o-1", "eventTimestamp": "2026-05-01T20:32:45Z", "adIdentifiers": {"gclid": "Cj0abc"}}],
        "validateOnly": true,
    });
    let r =
        http.post(server.url("/data-manager/v1/events:ingest")).bearer_auth(token).json(&body).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn a_service_account_token_is_minted_cached_and_refreshed_after_expiry() {
    let (s, server) = sandbox().await;
    let http = reqwest::Client::new();
    let key = ServiceAccountKey::from_json(TEST_SERVICE_ACCOUNT_KEY).unwrap();
    assert_eq!(key.client_email, TEST_SERVICE_ACCOUNT_EMAIL);
    assert_eq!(key.token_uri, "https://oauth2.googleapis.com/token");
    let cache = Arc::new(TokenCache::service_account(server.url("/data-manager/token"), key, DATAMANAGER_SCOPE));
    assert_eq!(cache.service_account_email(), Some(TEST_SERVICE_ACCOUNT_EMAIL));

    let token = cache.access_token(&http, retry().timeout).await.unwrap();
    assert_eq!(ingest_status(&http, &server, &token).await, 200);
    let grant = s.data_manager.oauth.grants().pop().unwrap();
    assert_eq!(grant.grant_type, JWT_BEARER_GRANT);
    assert_eq!(grant.service_account.as_deref(), Some(TEST_SERVICE_ACCOUNT_EMAIL));
    assert_eq!(grant.scopes, [DATAMANAGER_SCOPE]);

    // Cached.
    assert_eq!(cache.access_token(&http, retry().timeout).await.unwrap(), token);
    assert_eq!((cache.requests(), s.data_manager.token_requests()), (1, 1));

    // Invalidated: many callers, one token request.
    cache.invalidate(&token).await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (cache, http) = (cache.clone(), http.clone());
            tokio::spawn(async move { cache.access_token(&http, retry().timeout).await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(tokens[0], token);
    assert_eq!(s.data_manager.token_requests(), 2);

    // Short-lived tokens are refreshed before they lapse.
    s.data_manager.oauth.set_token_lifetime(Duration::from_secs(1));
    cache.invalidate(&tokens[0]).await;
    let short = cache.access_token(&http, retry().timeout).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = cache.access_token(&http, retry().timeout).await.unwrap();
    assert_ne!(fresh, short);
    assert_eq!(s.data_manager.token_requests(), 4);
    assert_eq!(ingest_status(&http, &server, &fresh).await, 200);
}

#[tokio::test]
async fn a_wrong_key_is_a_permanent_error_that_names_the_account_not_the_key() {
    let (s, server) = sandbox().await;
    let http = reqwest::Client::new();
    let key = ServiceAccountKey::from_json(TEST_ROGUE_KEY).unwrap();
    let cache = TokenCache::service_account(server.url("/data-manager/token"), key.clone(), DATAMANAGER_SCOPE);
    let err = cache.access_token(&http, retry().timeout).await.unwrap_err();
    let DeliveryError::Unauthorized { status, message } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 400);
    assert!(message.contains("Invalid JWT Signature"), "{message}");
    assert!(message.contains(TEST_SERVICE_ACCOUNT_EMAIL), "{message}");
    assert!(message.contains("key file current"), "{message}");
    assert_eq!(s.data_manager.token_requests(), 1, "a permanent error is not retried");
    // No secret in errors or Debug.
    for text in [format!("{err}"), format!("{err:?}"), format!("{key:?}"), format!("{cache:?}")] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains("MII"), "{text}");
    }
    // The failure is not cached: the next call asks again.
    assert!(cache.access_token(&http, retry().timeout).await.is_err());
    assert_eq!(s.data_manager.token_requests(), 2);
}

#[tokio::test]
async fn a_refresh_token_without_the_required_scope_says_to_re_consent() {
    let (s, server) = sandbox().await;
    let http = reqwest::Client::new();
    s.data_manager.set_refresh_token_scopes(&[ADWORDS_SCOPE]);
    let url = server.url("/data-manager/token");
    let cache = TokenCache::new(&url, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN).require_scope(DATAMANAGER_SCOPE);
    let err = cache.access_token(&http, retry().timeout).await.unwrap_err();
    let DeliveryError::Unauthorized { message, .. } = &err else { panic!("{err:?}") };
    assert!(message.contains("Re-consent") && message.contains(DATAMANAGER_SCOPE), "{message}");
    assert!(message.contains(ADWORDS_SCOPE), "names what it grants: {message}");
    assert!(!message.contains(CLIENT_SECRET) && !message.contains(REFRESH_TOKEN), "{message}");

    // Without a required scope the token is taken (and the API refuses it).
    let lax = TokenCache::new(&url, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN);
    let token = lax.access_token(&http, retry().timeout).await.unwrap();
    assert_eq!(ingest_status(&http, &server, &token).await, 403);

    // Consented with both scopes: fine.
    s.data_manager.set_refresh_token_scopes(&[ADWORDS_SCOPE, DATAMANAGER_SCOPE]);
    let token = cache.access_token(&http, retry().timeout).await.unwrap();
    assert_eq!(ingest_status(&http, &server, &token).await, 200);

    // A service account asking for the wrong scope is caught the same way.
    let key = ServiceAccountKey::from_json(TEST_SERVICE_ACCOUNT_KEY).unwrap();
    let sa = TokenCache::service_account(&url, key, ADWORDS_SCOPE).require_scope(DATAMANAGER_SCOPE);
    let err = sa.access_token(&http, retry().timeout).await.unwrap_err();
    let DeliveryError::Unauthorized { message, .. } = &err else { panic!("{err:?}") };
    assert!(message.contains(TEST_SERVICE_ACCOUNT_EMAIL) && message.contains(DATAMANAGER_SCOPE), "{message}");
}

#[test]
fn key_files_that_cannot_work_are_refused_with_what_to_fix() {
    assert!(matches!(ServiceAccountKey::from_json("{"), Err(ServiceAccountKeyError::Json(_))));
    let user = r#"{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}"#;
    let e = ServiceAccountKey::from_json(user).unwrap_err();
    assert_eq!(e, ServiceAccountKeyError::NotServiceAccount("authorized_user".into()));
    assert!(e.to_string().contains("service-account key"), "{e}");
    let mut file: serde_json::Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_KEY).unwrap();
    file["client_email"] = json!("");
    assert_eq!(
        ServiceAccountKey::from_json(&file.to_string()).unwrap_err(),
        ServiceAccountKeyError::MissingField("client_email")
    );
    let mut file: serde_json::Value = serde_json::from_str(TEST_SERVICE_ACCOUNT_KEY).unwrap();
    file["private_key"] = json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert!(matches!(ServiceAccountKey::from_json(&file.to_string()), Err(ServiceAccountKeyError::PrivateKey(_))));
    file.as_object_mut().unwrap().remove("private_key");
    assert_eq!(
        ServiceAccountKey::from_json(&file.to_string()).unwrap_err(),
        ServiceAccountKeyError::MissingField("private_key")
    );
}
