//! OAuth 2.0 access tokens for the Google Ads API (refresh-token grant).
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
//! The client secret, the refresh token and access tokens never appear in an
//! error or a log line.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_core::destinations::google_ads::{TokenError, TokenResponse, refresh_token_form};

use crate::destination::{excerpt, send};
use crate::error::DeliveryError;
use crate::retry::{RetryPolicy, StatusClass, classify_status, redact, transient_error};

/// How long before its expiry a cached token is refreshed.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime assumed when the token endpoint gives no `expires_in` (Google's is 3599 s).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

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
    client_id: String,
    client_secret: String,
    refresh_token: String,
    state: tokio::sync::Mutex<State>,
    /// Refreshes completed so far (successful or not).
    completed: AtomicU64,
    requests: AtomicU32,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("requests", &self.requests())
            .finish()
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
        TokenCache {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            state: tokio::sync::Mutex::new(State::default()),
            completed: AtomicU64::new(0),
            requests: AtomicU32::new(0),
        }
    }

    /// Token requests sent so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The secrets this cache holds, for redaction.
    pub(crate) fn secrets(&self) -> [&str; 2] {
        [self.client_secret.as_str(), self.refresh_token.as_str()]
    }

    /// A valid access token: the cached one, or a fresh one (one refresh in
    /// flight however many callers wait).
    pub async fn access_token(&self, http: &reqwest::Client, retry: &RetryPolicy) -> Result<String, DeliveryError> {
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
        let result = self.refresh(http, retry).await;
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

    /// Forgets the cached token if it is `rejected` (a 401 said it is no longer
    /// good); a token another caller already replaced is kept.
    pub async fn invalidate(&self, rejected: &str) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|c| c.access_token == rejected) {
            state.token = None;
        }
    }

    async fn refresh(&self, http: &reqwest::Client, retry: &RetryPolicy) -> Result<(String, Duration), DeliveryError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let secrets = self.secrets();
        let req = http
            .post(&self.token_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(refresh_token_form(&self.client_id, &self.client_secret, &self.refresh_token));
        let answer = send(req, retry, &secrets).await.map_err(|e| match e {
            DeliveryError::Transport(m) => DeliveryError::Transport(format!("OAuth token refresh: {m}")),
            other => other,
        })?;
        let status = answer.status;
        if (200..300).contains(&status) {
            return match serde_json::from_str::<TokenResponse>(&answer.body) {
                Ok(t) if !t.access_token.is_empty() => {
                    let lifetime = if t.expires_in == 0 { DEFAULT_LIFETIME } else { Duration::from_secs(t.expires_in) };
                    Ok((t.access_token, lifetime))
                }
                // A garbled success (a proxy?): worth another try later.
                _ => {
                    Err(DeliveryError::Transport(format!("OAuth token refresh: HTTP {status} without an access token")))
                }
            };
        }
        let parsed = serde_json::from_str::<TokenError>(&answer.body).ok();
        let message = match &parsed {
            Some(e) => format!(
                "OAuth token refresh failed: {}{}",
                e.error,
                e.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
            None => format!("OAuth token refresh failed: {}", excerpt(&answer.body)),
        };
        let message = redact(&message, &secrets);
        if parsed.as_ref().is_some_and(TokenError::is_permanent) {
            return Err(DeliveryError::Unauthorized { status, message });
        }
        Err(match classify_status(status) {
            StatusClass::Transient => transient_error(status, message, answer.retry_after),
            StatusClass::Unauthorized => DeliveryError::Unauthorized { status, message },
            StatusClass::Permanent | StatusClass::Success => DeliveryError::Rejected { status, message },
        })
    }
}
