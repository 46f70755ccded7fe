//! Google's OAuth 2.0 token endpoint, as the Google stand-ins serve it
//! (<https://developers.google.com/identity/protocols/oauth2/web-server#offline>,
//! <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).
//!
//! One piece of code, one [`GoogleOAuth`] state per stand-in (the Google Ads
//! and the Data Manager stand-ins each mount their own `POST /token`). Two
//! grants:
//!
//! * `grant_type=refresh_token`: checks the client id and secret and the
//!   refresh token, and grants the scopes registered for that refresh token
//!   ([`GoogleOAuth::set_refresh_token_scopes`]).
//! * `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`
//!   (service accounts): the JWT must be RS256 (`alg`), signed with the key
//!   registered for its `iss` ([`GoogleOAuth::register_service_account`]), its
//!   `aud` the URL the request was sent to, a non-empty `scope`, and `iat` /
//!   `exp` at most one hour apart and around now. The token gets the scopes of
//!   the `scope` claim.
//!
//! Every access token remembers the scopes it was minted with, so an API can
//! refuse one without its scope ([`GoogleOAuth::check_bearer`]); the answer
//! carries `scope` (space-separated) as Google's does. Errors are Google's
//! `{"error": …, "error_description": …}` bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Latency;
use crate::fault::{FaultSwitch, Mode};
use crate::util::{base64_decode, base64url_decode, form_decode, now_ms, trace_id};

/// The Google Ads API scope.
pub const ADWORDS_SCOPE: &str = "https://www.googleapis.com/auth/adwords";
/// The Data Manager API scope.
pub const DATAMANAGER_SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
/// The `grant_type` of the service-account flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A TEST service-account key file (Google's JSON format, `token_uri` pointing
/// at Google; replace it with the stand-in's URL). Its public key is registered
/// in every stand-in by default under [`TEST_SERVICE_ACCOUNT_EMAIL`]. This key
/// was generated for Tally's tests and protects nothing: never use it anywhere else.
pub const TEST_SERVICE_ACCOUNT_KEY: &str = include_str!("../keys/test-service-account.json");
/// The public half of [`TEST_SERVICE_ACCOUNT_KEY`] (SubjectPublicKeyInfo PEM).
pub const TEST_SERVICE_ACCOUNT_PUBLIC_KEY: &str = include_str!("../keys/test-service-account.pub.pem");
/// The `client_email` of [`TEST_SERVICE_ACCOUNT_KEY`].
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str = "tally-sandbox@tally-test.iam.gserviceaccount.com";
/// A TEST key file with the same `client_email` but another private key, whose
/// public key is registered nowhere: its assertions fail the signature check.
pub const TEST_ROGUE_KEY: &str = include_str!("../keys/test-rogue-key.json");

/// The form body of a refresh-token grant with the sandbox's default client
/// and refresh token, for tests that ask the token endpoint themselves.
pub fn sandbox_refresh_token_form() -> String {
    format!(
        "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
        crate::google_ads::CLIENT_ID,
        crate::google_ads::CLIENT_SECRET,
        crate::google_ads::REFRESH_TOKEN.replace('/', "%2F")
    )
}

/// Longest a service-account assertion may live (`exp - iat`).
const MAX_ASSERTION_LIFETIME_S: i64 = 3600;
/// Clock skew tolerated on `iat` / `exp`.
const ASSERTION_SKEW_S: i64 = 300;

/// One answered token request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenGrant {
    /// `refresh_token`, `urn:ietf:params:oauth:grant-type:jwt-bearer`, … (as sent).
    pub grant_type: String,
    /// The scopes granted (empty when refused).
    pub scopes: Vec<String>,
    /// The service account (`iss`) of a JWT-bearer grant.
    pub service_account: Option<String>,
    /// The OAuth `error` when refused (`invalid_grant`, …).
    pub error: Option<String>,
}

/// Why a bearer token was not accepted by [`GoogleOAuth::check_bearer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BearerProblem {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token this endpoint never issued (or [`GoogleOAuth::expire_tokens`] forgot).
    Unknown,
    /// Issued here, past its lifetime.
    Expired,
    /// Valid, but minted without the scope the API needs.
    InsufficientScope {
        /// The scopes it has.
        granted: Vec<String>,
    },
}

struct Issued {
    expires: Instant,
    scopes: Vec<String>,
}

struct OAuthState {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    refresh_scopes: Vec<String>,
    refresh_revoked: bool,
    token_lifetime: Duration,
    tokens: HashMap<String, Issued>,
    token_seq: u64,
    token_requests: u32,
    grants: Vec<TokenGrant>,
    /// Service-account email → PKCS#1 `RSAPublicKey` DER.
    service_accounts: HashMap<String, Vec<u8>>,
    audience: Option<String>,
}

/// A Google OAuth token endpoint's state: credentials, issued tokens and their
/// scopes, faults. Clones share it.
#[derive(Clone)]
pub struct GoogleOAuth {
    state: Arc<Mutex<OAuthState>>,
    /// Fault injection for the token endpoint.
    pub faults: FaultSwitch,
    /// Slow mode for the token endpoint.
    pub latency: Latency,
}

impl GoogleOAuth {
    /// An endpoint accepting the sandbox client ([`crate::google_ads::CLIENT_ID`],
    /// [`crate::google_ads::CLIENT_SECRET`], [`crate::google_ads::REFRESH_TOKEN`])
    /// whose refresh token grants `refresh_scopes`, and the test service account.
    pub fn new(refresh_scopes: &[&str]) -> GoogleOAuth {
        let mut service_accounts = HashMap::new();
        if let Ok(der) = rsa_public_key_der(TEST_SERVICE_ACCOUNT_PUBLIC_KEY) {
            service_accounts.insert(TEST_SERVICE_ACCOUNT_EMAIL.to_owned(), der);
        }
        GoogleOAuth {
            state: Arc::new(Mutex::new(OAuthState {
                client_id: crate::google_ads::CLIENT_ID.into(),
                client_secret: crate::google_ads::CLIENT_SECRET.into(),
                refresh_token: crate::google_ads::REFRESH_TOKEN.into(),
                refresh_scopes: refresh_scopes.iter().map(|s| (*s).to_owned()).collect(),
                refresh_revoked: false,
                token_lifetime: Duration::from_secs(3599),
                tokens: HashMap::new(),
                token_seq: 0,
                token_requests: 0,
                grants: Vec::new(),
                service_accounts,
                audience: None,
            })),
            faults: FaultSwitch::default(),
            latency: Latency::default(),
        }
    }

    /// `POST /token`.
    pub fn router(&self) -> Router {
        Router::new().route("/token", post(token)).with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OAuthState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uses other OAuth client credentials and refresh token.
    pub fn set_credentials(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        let mut s = self.lock();
        s.client_id = client_id.into();
        s.client_secret = client_secret.into();
        s.refresh_token = refresh_token.into();
    }

    /// The scopes the refresh token was consented with (what its grant mints).
    pub fn set_refresh_token_scopes(&self, scopes: &[&str]) {
        self.lock().refresh_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Accepts JWT-bearer assertions from `email` signed with the private half
    /// of `public_key_pem` (`-----BEGIN PUBLIC KEY-----`, as `openssl pkey
    /// -pubout` writes it, or `-----BEGIN RSA PUBLIC KEY-----`).
    pub fn register_service_account(&self, email: &str, public_key_pem: &str) -> Result<(), String> {
        let der = rsa_public_key_der(public_key_pem)?;
        self.lock().service_accounts.insert(email.to_owned(), der);
        Ok(())
    }

    /// Forgets a service account (its assertions are refused as `invalid_grant`).
    pub fn remove_service_account(&self, email: &str) {
        self.lock().service_accounts.remove(email);
    }

    /// The `aud` assertions must carry (default: the URL the request came to).
    pub fn set_expected_audience(&self, aud: &str) {
        self.lock().audience = Some(aud.to_owned());
    }

    /// Issues tokens living `d` from now on (default 3599 s).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.lock().token_lifetime = d;
    }

    /// Makes every access token issued so far invalid.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Revokes the refresh token: its grant answers `invalid_grant`.
    pub fn revoke_refresh_token(&self) {
        self.lock().refresh_revoked = true;
    }

    /// Token requests received (faulted ones included).
    pub fn token_requests(&self) -> u32 {
        self.lock().token_requests
    }

    /// Every token request that got past faults, in arrival order.
    pub fn grants(&self) -> Vec<TokenGrant> {
        self.lock().grants.clone()
    }

    /// Forgets the recorded requests (credentials, tokens and settings stay).
    pub fn clear(&self) {
        let mut s = self.lock();
        s.token_requests = 0;
        s.grants.clear();
    }

    /// Checks `Authorization: Bearer …`: a token issued here, not expired, and
    /// minted with `scope`.
    pub fn check_bearer(&self, headers: &HeaderMap, scope: &str) -> Result<(), BearerProblem> {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(BearerProblem::Missing)?;
        let s = self.lock();
        let issued = s.tokens.get(bearer).ok_or(BearerProblem::Unknown)?;
        if issued.expires <= Instant::now() {
            return Err(BearerProblem::Expired);
        }
        if !issued.scopes.iter().any(|g| g == scope) {
            return Err(BearerProblem::InsufficientScope { granted: issued.scopes.clone() });
        }
        Ok(())
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn refuse(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { status, error, description: description.into() }
}

async fn token(
    State(o): State<GoogleOAuth>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    o.lock().token_requests += 1;
    o.latency.wait().await;
    match o.faults.take() {
        Mode::Up => {}
        Mode::Down => {
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "internal_failure", "sandbox: token endpoint down");
        }
        Mode::RateLimited => {
            let mut r = oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "sandbox: slow down");
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        Mode::Unauthorized => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "sandbox: the OAuth client was deleted");
        }
    }
    let form_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form = form_decode(&String::from_utf8_lossy(&body));
    let field = |k: &str| form_field(&form, k);
    let grant_type = field("grant_type").unwrap_or_default().to_owned();
    let here = {
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
        format!("http://{host}{}", uri.path())
    };
    let mut s = o.lock();
    let outcome: JwtOutcome = match grant_type.as_str() {
        "refresh_token" => refresh_grant(&s, &form).map(|scopes| (scopes, None)).map_err(|r| (r, None)),
        JWT_BEARER_GRANT => {
            let aud = s.audience.clone().unwrap_or(here);
            jwt_bearer_grant(&s, field("assertion"), &aud)
        }
        "" => Err((refuse(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type"), None)),
        _ => Err((refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type"), None)),
    };
    match outcome {
        Ok((scopes, service_account)) => {
            s.token_seq += 1;
            let access_token = format!("ya29.sandbox-{}-{}", s.token_seq, trace_id(s.token_seq));
            let lifetime = s.token_lifetime;
            s.tokens
                .insert(access_token.clone(), Issued { expires: Instant::now() + lifetime, scopes: scopes.clone() });
            s.grants.push(TokenGrant { grant_type, scopes: scopes.clone(), service_account, error: None });
            axum::Json(json!({
                "access_token": access_token,
                "expires_in": lifetime.as_secs(),
                "scope": scopes.join(" "),
                "token_type": "Bearer",
            }))
            .into_response()
        }
        Err((r, service_account)) => {
            s.grants.push(TokenGrant { grant_type, scopes: Vec::new(), service_account, error: Some(r.error.into()) });
            oauth_error(r.status, r.error, &r.description)
        }
    }
}

fn form_field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn refresh_grant(s: &OAuthState, form: &[(String, String)]) -> Result<Vec<String>, Refusal> {
    let field = |k: &str| form_field(form, k);
    if field("client_id") != Some(s.client_id.as_str()) || field("client_secret") != Some(s.client_secret.as_str()) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found."));
    }
    match field("refresh_token") {
        None | Some("") => {
            Err(refuse(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: refresh_token"))
        }
        Some(t) if t != s.refresh_token || s.refresh_revoked => {
            Err(refuse(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked."))
        }
        Some(_) => Ok(s.refresh_scopes.clone()),
    }
}

/// The granted scopes and service account, or the refusal (and the `iss` it named).
type JwtOutcome = Result<(Vec<String>, Option<String>), (Refusal, Option<String>)>;

fn jwt_bearer_grant(s: &OAuthState, assertion: Option<&str>, aud: &str) -> JwtOutcome {
    let bad = |d: &str| refuse(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let Some(assertion) = assertion.filter(|a| !a.is_empty()) else {
        return Err((
            refuse(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: assertion"),
            None,
        ));
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [h, c, sig] = parts[..] else {
        return Err((bad("Invalid JWT: a JWT has three dot-separated parts."), None));
    };
    let decode = |p: &str| base64url_decode(p).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims), Some(signature)) = (decode(h), decode(c), base64url_decode(sig)) else {
        return Err((bad("Invalid JWT: the header, claims or signature are not base64url-encoded JSON."), None));
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err((bad("Invalid JWT: the header's alg must be RS256."), None));
    }
    let iss = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
    let Some(key) = iss.as_deref().and_then(|i| s.service_accounts.get(i)) else {
        return Err((bad("Invalid JWT: iss is not a known service account (client_email)."), iss));
    };
    let signed = format!("{h}.{c}");
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key);
    if public.verify(signed.as_bytes(), &signature).is_err() {
        return Err((bad("Invalid JWT Signature."), iss));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(aud) {
        return Err((bad(&format!("Invalid JWT: aud must be the token URL, {aud}")), iss));
    }
    let (Some(iat), Some(exp)) = (claims.get("iat").and_then(Value::as_i64), claims.get("exp").and_then(Value::as_i64))
    else {
        return Err((bad("Invalid JWT: iat and exp (Unix seconds) are required."), iss));
    };
    let now = now_ms() / 1000;
    if exp <= iat
        || exp - iat > MAX_ASSERTION_LIFETIME_S
        || iat > now + ASSERTION_SKEW_S
        || exp < now - ASSERTION_SKEW_S
    {
        return Err((
            bad(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ),
            iss,
        ));
    }
    let scopes: Vec<String> =
        claims.get("scope").and_then(Value::as_str).unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err((refuse(StatusCode::BAD_REQUEST, "invalid_scope", "Empty or missing scope not allowed."), iss));
    }
    Ok((scopes, iss))
}

/// The PKCS#1 `RSAPublicKey` DER of an RSA public key in PEM (SPKI or PKCS#1).
fn rsa_public_key_der(pem: &str) -> Result<Vec<u8>, String> {
    let body = |label: &str| -> Option<String> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = pem.find(&begin)? + begin.len();
        let stop = pem[start..].find(&end)? + start;
        Some(pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect())
    };
    if let Some(b64) = body("RSA PUBLIC KEY") {
        return base64_decode(&b64).ok_or_else(|| "the RSA PUBLIC KEY PEM is not base64".to_owned());
    }
    let b64 = body("PUBLIC KEY").ok_or_else(|| "expected a -----BEGIN PUBLIC KEY----- PEM".to_owned())?;
    let der = base64_decode(&b64).ok_or_else(|| "the PUBLIC KEY PEM is not base64".to_owned())?;
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    let (spki, _) = der_element(&der, 0x30).ok_or("not a SubjectPublicKeyInfo")?;
    let (_, rest) = der_element(spki, 0x30).ok_or("no AlgorithmIdentifier")?;
    let (bits, _) = der_element(rest, 0x03).ok_or("no subjectPublicKey")?;
    match bits.split_first() {
        Some((0, key)) => Ok(key.to_vec()),
        _ => Err("the subjectPublicKey BIT STRING is malformed".to_owned()),
    }
}

/// One DER element of `tag` at the start of `input`: (its contents, what follows).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_public_key_parses() {
        let der = rsa_public_key_der(TEST_SERVICE_ACCOUNT_PUBLIC_KEY).unwrap();
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        assert_eq!(der[0], 0x30);
        assert!(der.len() > 256);
        assert!(rsa_public_key_der("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(rsa_public_key_der("nothing").is_err());
    }
}
