//! The one HTTP helper every destination sends through: a request with the
//! retry policy's per-request timeout, its answer read in full, secrets
//! redacted from every message, and the one status rule
//! ([`tally_core::http`]) turned into a delivery error.

use std::time::Duration;

use tally_core::http::{StatusClass, status_class};

use crate::error::{ConfigError, DeliveryError};

/// An HTTP answer, read in full.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, if given (delta seconds).
    pub retry_after: Option<Duration>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl Answer {
    /// Whether the status is a 2xx.
    pub(crate) fn is_success(&self) -> bool {
        status_class(self.status) == StatusClass::Success
    }
}

/// Sends `req` within `timeout` and reads the answer. A request that gets no
/// answer is a [`DeliveryError::Transport`] with `secrets` redacted from the
/// message (reqwest's messages carry the URL, which may carry a token).
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    secrets: &[&str],
) -> Result<Answer, DeliveryError> {
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| DeliveryError::Transport(redact(&transport_message(&e), secrets)))?;
    let status = resp.status().as_u16();
    let after = retry_after(&resp);
    let body = resp.text().await.map_err(|e| DeliveryError::Transport(redact(&transport_message(&e), secrets)))?;
    Ok(Answer { status, retry_after: after, body })
}

fn transport_message(e: &reqwest::Error) -> String {
    if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() }
}

/// Reads `Retry-After` (delta seconds) from a response.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Attaches `body` as the JSON request body, written by tally-core's
/// [`json_body::to_vec`](tally_core::destinations::json_body::to_vec) (the bytes
/// serde_json would write, in less time).
pub(crate) fn with_json<T: serde::Serialize>(req: reqwest::RequestBuilder, body: &T) -> reqwest::RequestBuilder {
    match tally_core::destinations::json_body::to_vec(body) {
        Ok(bytes) => req.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes),
        // reqwest reports why the body cannot be serialised when the request is sent.
        Err(_) => req.json(body),
    }
}

/// A body excerpt for an error message: at most 500 characters.
pub(crate) fn excerpt(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// Removes secrets from a message before it is logged or returned.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut m = message.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        m = m.replace(s, "[redacted]");
    }
    m
}

/// The error for a transient HTTP answer: 429 becomes [`DeliveryError::RateLimited`]
/// (carrying `Retry-After`), anything else [`DeliveryError::Rejected`].
pub(crate) fn transient_error(status: u16, message: String, after: Option<Duration>) -> DeliveryError {
    if status == 429 {
        DeliveryError::RateLimited { retry_after_secs: after.map(|d| d.as_secs()), message }
    } else {
        DeliveryError::Rejected { status, message }
    }
}

/// The error a failed answer's bare status gives by the one status rule:
/// transient ([`transient_error`]), credentials ([`DeliveryError::Unauthorized`])
/// or the request ([`DeliveryError::Rejected`]); `message` is what the body said.
pub(crate) fn status_error(status: u16, message: String, after: Option<Duration>) -> DeliveryError {
    match status_class(status) {
        StatusClass::Transient => transient_error(status, message, after),
        StatusClass::Credentials => DeliveryError::Unauthorized { status, message },
        StatusClass::Success | StatusClass::Permanent => DeliveryError::Rejected { status, message },
    }
}

/// Refuses a URL that is not `http(s)://…`, naming the setting.
pub(crate) fn check_url(setting: &'static str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
        _ => Err(ConfigError::Invalid { setting, reason: format!("{url:?} is not an http(s) URL") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(redact("url?api_secret=s3cr3t&x", &["s3cr3t"]), "url?api_secret=[redacted]&x");
    }

    #[test]
    fn a_bare_status_gives_the_error_of_its_class() {
        let e = |s| status_error(s, "m".into(), Some(Duration::from_secs(7)));
        assert_eq!(e(429), DeliveryError::RateLimited { retry_after_secs: Some(7), message: "m".into() });
        assert_eq!(e(503), DeliveryError::Rejected { status: 503, message: "m".into() });
        assert!(e(503).is_transient() && e(425).is_transient());
        assert_eq!(e(403), DeliveryError::Unauthorized { status: 403, message: "m".into() });
        assert_eq!(e(400), DeliveryError::Rejected { status: 400, message: "m".into() });
        assert!(!e(400).is_transient() && !e(401).is_transient());
    }
}
