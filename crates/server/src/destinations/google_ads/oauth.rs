//! OAuth 2.0 access tokens for Google's APIs (Google Ads API, Data Manager
//! API), by one of two grants through one cache:
//!
//! * the refresh-token grant of an OAuth client ([`TokenCache::new`]);
//! * the service-account JWT-bearer grant ([`TokenCache::service_account`],
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>):
//!   a JWT signed RS256 with the key file's private key, claims `iss` (the
//!   service account), `scope`, `aud` (the token URL), `iat` and `exp` (one
//!   hour later), posted as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
//!
//! Both behave the same:
//!
//! * The token is cached until its expiry minus [`SAFETY_MARGIN`] (60 s), so a
//!   request never leaves with a token about to lapse.
//! * One refresh at a time: callers wait on a `tokio` mutex; whoever gets it
//!   first refreshes, the others find the fresh token in the cache. Callers
//!   that waited on a refresh which failed get that failure too (they do not
//!   each hammer the token endpoint); the next call after it tries again — a
//!   failure is never cached.
//! * `invalid_grant`, `invalid_client` and the like are permanent
//!   ([`DeliveryError::Unauthorized`]): someone must re-authorise or fix the
//!   client. 429, 5xx and transport errors are transient.
//! * A 401 from the API means the cached token is no longer good:
//!   [`TokenCache::invalidate`] drops it (only if it is still the one that was
//!   refused), and the caller retries once with a fresh one.
//!
//! * When a scope is required ([`TokenCache::require_scope`]; for a service
//!   account, the scope it asks for) and the token response's `scope` lacks it,
//!   the token is not used: a permanent [`DeliveryError::Unauthorized`] says to
//!   re-consent with that scope (a refresh token minted for the Google Ads API
//!   alone does not work for the Data Manager API).
//!
//! The client secret, the refresh token, the private key and access tokens
//! never appear in an error or a log line.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;

use tally_core::destinations::google_ads::{TokenError, TokenResponse, refresh_token_form};

use crate::engine::http::excerpt;
use crate::engine::http::{redact, send, status_error};
use crate::error::DeliveryError;

/// How one call made with a bearer token went (see [`TokenCache::authorized`]).
pub(crate) enum Authorized<T> {
    /// Answered.
    Done(T),
    /// The API refused the token (401): refresh it and call once more.
    TokenRefused(DeliveryError),
    /// Failed (transient or not: the error says).
    Failed(DeliveryError),
}
use crate::secret::Secret;

/// How long before its expiry a cached token is refreshed.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime assumed when the token endpoint gives no `expires_in` (Google's is 3599 s).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The `grant_type` of the service-account flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime of a service-account assertion (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;

/// Why a service-account key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceAccountKeyError {
    /// Not JSON, or not the shape of a key file.
    #[error("the service-account key file is not valid JSON: {0}")]
    Json(String),
    /// `type` is not `service_account` (e.g. an OAuth client file).
    #[error(
        "the key file's type is {0:?}, not \"service_account\": download a service-account key (IAM > Service accounts > Keys > Add key > JSON)"
    )]
    NotServiceAccount(String),
    /// A field Tally needs is missing or empty.
    #[error("the service-account key file has no {0}")]
    MissingField(&'static str),
    /// `private_key` is not an RSA key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    #[error("the service-account private_key is not a PKCS#8 RSA key (-----BEGIN PRIVATE KEY-----): {0}")]
    PrivateKey(String),
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: Option<Secret>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A Google service-account key, from the JSON key file Google Cloud gives
/// out (<https://cloud.google.com/iam/docs/keys-create-delete>). Its `Debug`
/// shows the account, never the private key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// `client_email`: the service account, the JWT's `iss`.
    pub client_email: String,
    /// `private_key_id`: sent as the JWT header's `kid`.
    pub private_key_id: Option<String>,
    /// `token_uri` (`https://oauth2.googleapis.com/token`).
    pub token_uri: String,
    private_key: Secret,
    key_pair: Arc<ring::signature::RsaKeyPair>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a key file: `type` `service_account`, `client_email`,
    /// `private_key` (PKCS#8 PEM), `private_key_id`, `token_uri` (default
    /// `https://oauth2.googleapis.com/token`).
    pub fn from_json(json: &str) -> Result<ServiceAccountKey, ServiceAccountKeyError> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| ServiceAccountKeyError::Json(e.to_string()))?;
        if let Some(kind) = file.kind.filter(|k| k != "service_account") {
            return Err(ServiceAccountKeyError::NotServiceAccount(kind));
        }
        if file.client_email.trim().is_empty() {
            return Err(ServiceAccountKeyError::MissingField("client_email"));
        }
        let Some(private_key) = file.private_key.filter(|k| !k.expose().trim().is_empty()) else {
            return Err(ServiceAccountKeyError::MissingField("private_key"));
        };
        let key_pair = pkcs8_key_pair(private_key.expose())?;
        Ok(ServiceAccountKey {
            client_email: file.client_email.trim().to_owned(),
            private_key_id: file.private_key_id.filter(|k| !k.is_empty()),
            token_uri: file
                .token_uri
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned()),
            private_key,
            key_pair: Arc::new(key_pair),
        })
    }

    /// A signed JWT-bearer assertion for `scope` at `audience`, issued at `iat` (Unix s).
    fn assertion(&self, scope: &str, audience: &str, iat: u64) -> Result<String, DeliveryError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_S,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string().as_bytes()),
            URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DeliveryError::Unauthorized {
                status: 0,
                message: format!("could not sign the JWT assertion of service account {}", self.client_email),
            })?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&signature)))
    }
}

fn pkcs8_key_pair(pem: &str) -> Result<ring::signature::RsaKeyPair, ServiceAccountKeyError> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let (Some(start), Some(stop)) = (pem.find(BEGIN), pem.find(END)) else {
        return Err(ServiceAccountKeyError::PrivateKey("no -----BEGIN PRIVATE KEY----- block".into()));
    };
    if stop < start {
        return Err(ServiceAccountKeyError::PrivateKey("the PEM block is malformed".into()));
    }
    let b64: String = pem[start + BEGIN.len()..stop].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| ServiceAccountKeyError::PrivateKey("the PEM is not base64".into()))?;
    ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| ServiceAccountKeyError::PrivateKey(e.to_string()))
}

/// How a [`TokenCache`] gets its tokens.
enum Grant {
    RefreshToken { client_id: String, client_secret: String, refresh_token: String },
    ServiceAccount { key: ServiceAccountKey, scope: String },
}

struct Cached {
    access_token: String,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// The completion number of the last refresh, if it failed, and why.
    last_failure: Option<(u64, DeliveryError)>,
}

/// A single-flight cache of one OAuth access token.
pub struct TokenCache {
    token_url: String,
    grant: Grant,
    required_scope: Option<String>,
    state: tokio::sync::Mutex<State>,
    /// Refreshes completed so far (successful or not).
    completed: AtomicU64,
    requests: AtomicU32,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenCache");
        d.field("token_url", &self.token_url);
        match &self.grant {
            Grant::RefreshToken { client_id, .. } => d
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .field("refresh_token", &"[redacted]"),
            Grant::ServiceAccount { key, scope } => d.field("service_account", key).field("scope", scope),
        };
        d.field("required_scope", &self.required_scope).field("requests", &self.requests()).finish()
    }
}

impl TokenCache {
    /// A cache for the refresh-token grant of `client_id` at `token_url`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> TokenCache {
        TokenCache::with_grant(
            token_url.into(),
            Grant::RefreshToken {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                refresh_token: refresh_token.into(),
            },
            None,
        )
    }

    /// A cache for the JWT-bearer grant of a service account: tokens for
    /// `scope` (space-separated if several) from `token_url` (usually
    /// `key.token_uri`), which is also the assertion's `aud`. The granted
    /// scopes must include `scope` (its first, if several).
    pub fn service_account(
        token_url: impl Into<String>,
        key: ServiceAccountKey,
        scope: impl Into<String>,
    ) -> TokenCache {
        let scope = scope.into();
        let required = scope.split_whitespace().next().map(str::to_owned);
        TokenCache::with_grant(token_url.into(), Grant::ServiceAccount { key, scope }, required)
    }

    fn with_grant(token_url: String, grant: Grant, required_scope: Option<String>) -> TokenCache {
        TokenCache {
            token_url,
            grant,
            required_scope,
            state: tokio::sync::Mutex::new(State::default()),
            completed: AtomicU64::new(0),
            requests: AtomicU32::new(0),
        }
    }

    /// Refuses tokens whose response names scopes without `scope` (a
    /// response without `scope` is trusted): a permanent
    /// [`DeliveryError::Unauthorized`] that says to re-consent with it.
    pub fn require_scope(mut self, scope: impl Into<String>) -> TokenCache {
        self.required_scope = Some(scope.into());
        self
    }

    /// The service account's e-mail, for a cache of the JWT-bearer grant.
    pub fn service_account_email(&self) -> Option<&str> {
        match &self.grant {
            Grant::ServiceAccount { key, .. } => Some(&key.client_email),
            Grant::RefreshToken { .. } => None,
        }
    }

    /// Token requests sent so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The secrets this cache holds, for redaction.
    pub(crate) fn secrets(&self) -> [&str; 2] {
        match &self.grant {
            Grant::RefreshToken { client_secret, refresh_token, .. } => {
                [client_secret.as_str(), refresh_token.as_str()]
            }
            Grant::ServiceAccount { key, .. } => [key.private_key.expose(), ""],
        }
    }

    /// The form body of a token request, and what to call it in errors.
    fn token_request(&self) -> Result<(String, String), DeliveryError> {
        match &self.grant {
            Grant::RefreshToken { client_id, client_secret, refresh_token } => {
                Ok((refresh_token_form(client_id, client_secret, refresh_token), "OAuth token refresh".to_owned()))
            }
            Grant::ServiceAccount { key, scope } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let assertion = key.assertion(scope, &self.token_url, now)?;
                // The grant type percent-encoded; the assertion is base64url and dots.
                let form =
                    format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
                Ok((form, format!("OAuth token request for service account {}", key.client_email)))
            }
        }
    }

    /// A valid access token: the cached one, or a fresh one (one refresh in
    /// flight however many callers wait).
    pub async fn access_token(&self, http: &reqwest::Client, timeout: Duration) -> Result<String, DeliveryError> {
        // Refreshes finished before this call arrived; one finishing later
        // (the one in flight, or one started while this call waited) is shared.
        let seen = self.completed.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        if let Some(c) = &state.token
            && Instant::now() < c.refresh_at
        {
            return Ok(c.access_token.clone());
        }
        // A refresh that finished while this caller waited failed: share its answer.
        if let Some((done, e)) = &state.last_failure
            && *done > seen
        {
            return Err(e.clone());
        }
        let result = self.refresh(http, timeout).await;
        let done = self.completed.fetch_add(1, Ordering::SeqCst) + 1;
        match result {
            Ok((token, lifetime)) => {
                let margin = if lifetime > SAFETY_MARGIN { SAFETY_MARGIN } else { lifetime / 2 };
                state.token =
                    Some(Cached { access_token: token.clone(), refresh_at: Instant::now() + lifetime - margin });
                state.last_failure = None;
                Ok(token)
            }
            Err(e) => {
                tracing::warn!(error = %e, "OAuth token refresh failed");
                state.token = None;
                state.last_failure = Some((done, e.clone()));
                Err(e)
            }
        }
    }

    /// One attempt of a call made with a bearer token: `attempt` gets a valid
    /// token and says how the call went; when it says the token was refused
    /// (a 401), the token is dropped and the call made once more with a fresh
    /// one. A token that cannot be had is the attempt's error (the engine's
    /// outbox retries a transient one).
    pub(crate) async fn authorized<T, F, Fut>(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T, DeliveryError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Authorized<T>>,
    {
        let mut refreshed = false;
        loop {
            let token = self.access_token(http, timeout).await?;
            match attempt(token.clone()).await {
                Authorized::Done(t) => return Ok(t),
                Authorized::TokenRefused(_) if !refreshed => {
                    tracing::info!("the API refused the access token; refreshing it once");
                    self.invalidate(&token).await;
                    refreshed = true;
                }
                Authorized::TokenRefused(e) | Authorized::Failed(e) => return Err(e),
            }
        }
    }

    /// Forgets the cached token if it is `rejected` (a 401 said it is no longer
    /// good); a token another caller already replaced is kept.
    pub async fn invalidate(&self, rejected: &str) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|c| c.access_token == rejected) {
            state.token = None;
        }
    }

    async fn refresh(&self, http: &reqwest::Client, timeout: Duration) -> Result<(String, Duration), DeliveryError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let secrets = self.secrets();
        let (form, what) = self.token_request()?;
        let req = http
            .post(&self.token_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form);
        let answer = send(req, timeout, &secrets).await.map_err(|e| match e {
            DeliveryError::Transport(m) => DeliveryError::Transport(format!("{what}: {m}")),
            other => other,
        })?;
        let status = answer.status;
        if (200..300).contains(&status) {
            return match serde_json::from_str::<TokenResponse>(&answer.body) {
                Ok(t) if !t.access_token.is_empty() => {
                    if let (Some(required), Some(granted)) = (&self.required_scope, &t.scope)
                        && !granted.split_whitespace().any(|g| g == required)
                    {
                        return Err(DeliveryError::Unauthorized {
                            status: 403,
                            message: self.missing_scope(required, granted),
                        });
                    }
                    let lifetime = if t.expires_in == 0 { DEFAULT_LIFETIME } else { Duration::from_secs(t.expires_in) };
                    Ok((t.access_token, lifetime))
                }
                // A garbled success (a proxy?): worth another try later.
                _ => Err(DeliveryError::Transport(format!("{what}: HTTP {status} without an access token"))),
            };
        }
        let parsed = serde_json::from_str::<TokenError>(&answer.body).ok();
        let hint = match (&self.grant, parsed.as_ref().map(|e| e.error.as_str())) {
            (Grant::ServiceAccount { .. }, Some("invalid_grant")) => {
                " (is the key file current? A deleted or rotated service-account key, or a clock far off, is refused)"
            }
            _ => "",
        };
        let message = match &parsed {
            Some(e) => format!(
                "{what} failed: {}{}{hint}",
                e.error,
                e.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
            None => format!("{what} failed: {}", excerpt(&answer.body)),
        };
        let message = redact(&message, &secrets);
        if parsed.as_ref().is_some_and(TokenError::is_permanent) {
            return Err(DeliveryError::Unauthorized { status, message });
        }
        Err(status_error(status, message, answer.retry_after))
    }

    fn missing_scope(&self, required: &str, granted: &str) -> String {
        let granted = if granted.trim().is_empty() { "none" } else { granted.trim() };
        match &self.grant {
            Grant::RefreshToken { .. } => format!(
                "the refresh token was not consented with the scope {required} (it grants: {granted}); the API would refuse its tokens with 403. Re-consent: create a new refresh token with the scope {required} (and any others the same token must keep, e.g. https://www.googleapis.com/auth/adwords)"
            ),
            Grant::ServiceAccount { key, .. } => format!(
                "the token endpoint did not grant service account {} the scope {required} (granted: {granted}); the API would refuse its tokens with 403",
                key.client_email
            ),
        }
    }
}
