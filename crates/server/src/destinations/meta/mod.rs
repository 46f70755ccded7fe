//! Delivery to the Meta Conversions API (`POST /{version}/{pixel}/events`).
//!
//! The core builder pre-validates every event (window, `event_source_url`,
//! `client_user_agent`, customer information) and leaves the bad ones out, so
//! one bad event never sinks a batch of up to 1,000 — Meta rejects a whole
//! request when any event in it is invalid. The access token travels in the
//! query string, as Meta documents; it is redacted from every message.
//!
//! Answers, classified by Graph error `code` and `is_transient`
//! ([`tally_core::destinations::meta::classify`]):
//!
//! * 200 `{events_received: n}`: sent, but only if `n` equals the events in
//!   the request — otherwise the request counts as failed.
//! * code 190 / 102 or HTTP 401: [`DeliveryError::Unauthorized`].
//! * codes 4, 17, 32, 341 (throttling): [`DeliveryError::RateLimited`];
//!   codes 1, 2, `is_transient`, 429, 5xx: transient — the outbox retries.
//! * code 100 and other 4xx: [`DeliveryError::Rejected`], not retried.
//!
//! Every entry of a success answer's `messages` and every error answer's
//! `code/error_subcode` is counted in `tally_destination_diagnostics_total`
//! (`kind` `message` or `error`).

use tally_core::DestinationKind;
use tally_core::destinations::meta::{self as core_meta, ErrorClass, MetaRequest, MetaResponse};
use tally_core::destinations::{Batch, VisitorEvents};
use tally_core::http::{StatusClass, status_class};

use crate::destinations::DestinationSettings;
use crate::diagnostics::{DiagnosticTally, DiagnosticsReport};
use crate::engine::http::{Answer, excerpt, redact, transient_error, with_json};
use crate::engine::{Deliver, Destination, Judgement};
use crate::error::{ConfigError, DeliveryError};

mod config;
pub use config::MetaConfig;

/// A configured Meta CAPI destination.
#[derive(Clone)]
pub(crate) struct MetaDestination {
    cfg: MetaConfig,
    core: core_meta::MetaOptions,
    url: String,
    /// The token as it appears in the URL (percent-encoded), also redacted.
    encoded_token: String,
    /// Meta's `messages` and error codes, by reason.
    diagnostics: std::sync::Arc<DiagnosticTally>,
}

impl std::fmt::Debug for MetaDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the access token: never shown.
        f.debug_struct("MetaDestination").field("cfg", &self.cfg).finish()
    }
}

impl MetaDestination {
    /// From checked configuration.
    pub(crate) fn new(cfg: MetaConfig) -> MetaDestination {
        let token = cfg.access_token.expose().trim();
        let url = core_meta::events_url_with_token(&cfg.base_url, cfg.api_version.trim(), cfg.pixel_id.trim(), token);
        let encoded_token = tally_core::cookie::percent_encode(token);
        let core = core_meta::MetaOptions {
            action_source: cfg.action_source,
            test_event_code: cfg.test_event_code.as_deref().map(str::trim).map(str::to_owned),
            limited_data_use: cfg.limited_data_use,
        };
        MetaDestination { cfg, core, url, encoded_token, diagnostics: Default::default() }
    }
}

impl Destination for MetaDestination {
    type Request = MetaRequest;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Meta
    }

    fn merges_visitors(&self) -> bool {
        true
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<MetaRequest>> {
        core_meta::build_many(visitors, &self.core)
    }

    fn request(&self, http: &reqwest::Client, request: &MetaRequest) -> Result<reqwest::RequestBuilder, DeliveryError> {
        Ok(with_json(http.post(&self.url), request))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.access_token.expose().trim(), self.encoded_token.as_str()]
    }

    fn judge(&self, answer: &Answer, request: &MetaRequest) -> Judgement {
        judge(answer, request.data.len(), &self.secrets(), &self.diagnostics)
    }

    fn diagnostics(&self) -> Option<DiagnosticsReport> {
        Some(self.diagnostics.report())
    }
}

/// The reason a Meta `messages` entry is counted under: the text of a
/// string, else an object's `code`, `type` or `message`.
fn message_reason(m: &serde_json::Value) -> String {
    match m {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => ["code", "type", "message"]
            .iter()
            .find_map(|k| o.get(*k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .unwrap_or_else(|| "unknown".to_owned()),
        other => other.to_string(),
    }
}

fn judge(answer: &Answer, sent: usize, secrets: &[&str], diagnostics: &DiagnosticTally) -> Judgement {
    let status = answer.status;
    if answer.is_success() {
        let parsed = MetaResponse::parse(&answer.body);
        if let Ok(r) = &parsed {
            for m in &r.messages {
                diagnostics.note("message", &redact(&message_reason(m), secrets), 1);
            }
        }
        return match parsed {
            Ok(r) if r.events_received == sent as u64 => {
                tracing::debug!(events_received = r.events_received, fbtrace_id = ?r.fbtrace_id, "Meta accepted");
                Judgement::Done { warnings: Vec::new() }
            }
            Ok(r) => Judgement::Fail(DeliveryError::Rejected {
                status,
                message: format!(
                    "Meta received {} of {sent} events (fbtrace_id {})",
                    r.events_received,
                    r.fbtrace_id.as_deref().unwrap_or("-")
                ),
            }),
            Err(_) => Judgement::Fail(DeliveryError::Rejected {
                status,
                message: format!("unreadable success answer: {}", redact(&excerpt(&answer.body), secrets)),
            }),
        };
    }
    let error = core_meta::parse_error(&answer.body);
    let reason = match &error {
        Some(e) => e.error_subcode.map_or_else(|| e.code.to_string(), |sub| format!("{}/{sub}", e.code)),
        None => format!("http_{status}"),
    };
    diagnostics.note("error", &reason, 1);
    let message = redact(
        &match &error {
            Some(e) => {
                let mut m = format!("(#{}", e.code);
                if let Some(sub) = e.error_subcode {
                    m.push_str(&format!("/{sub}"));
                }
                m.push_str(&format!(") {}", e.message));
                if let Some(u) = &e.error_user_msg {
                    m.push_str(&format!(": {u}"));
                }
                if let Some(t) = &e.fbtrace_id {
                    m.push_str(&format!(" (fbtrace_id {t})"));
                }
                m
            }
            None => excerpt(&answer.body),
        },
        secrets,
    );
    match core_meta::classify(status, error.as_ref()) {
        ErrorClass::Credentials => Judgement::Fail(DeliveryError::Unauthorized { status, message }),
        ErrorClass::Transient => {
            let after = answer.retry_after;
            let throttled = error.as_ref().is_some_and(|e| matches!(e.code, 4 | 17 | 32 | 341));
            let e = if status_class(status) == StatusClass::Transient {
                transient_error(status, message, after)
            } else if throttled {
                DeliveryError::RateLimited { retry_after_secs: after.map(|d| d.as_secs()), message }
            } else {
                DeliveryError::Transport(format!("Meta asked to retry (HTTP {status}): {message}"))
            };
            Judgement::Retry(e)
        }
        ErrorClass::Permanent => Judgement::Fail(DeliveryError::Rejected { status, message }),
    }
}

impl DestinationSettings for MetaConfig {
    fn name(&self) -> String {
        DestinationKind::Meta.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        MetaConfig::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(MetaDestination::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, retry_after: None, body: body.to_owned() }
    }

    #[test]
    fn messages_and_error_codes_are_counted_and_redacted() {
        let d = DiagnosticTally::default();
        let ok = answer(
            200,
            r#"{"events_received":2,"messages":["Low match quality for EAAtoken",{"code":"MISSING_FBP","message":"x"}],"fbtrace_id":"T"}"#,
        );
        assert!(matches!(judge(&ok, 2, &["EAAtoken"], &d), Judgement::Done { .. }));
        let throttled =
            answer(400, r#"{"error":{"message":"limit","type":"OAuthException","code":17,"fbtrace_id":"T"}}"#);
        assert!(matches!(judge(&throttled, 1, &[], &d), Judgement::Retry(..)));
        let invalid =
            answer(400, r#"{"error":{"message":"bad","type":"OAuthException","code":100,"error_subcode":2804019}}"#);
        assert!(matches!(judge(&invalid, 1, &[], &d), Judgement::Fail(DeliveryError::Rejected { .. })));
        assert!(matches!(judge(&answer(502, "<html>"), 1, &[], &d), Judgement::Retry(..)));
        let r = d.report();
        assert_eq!(r.count("message", "Low match quality for [redacted]"), 1, "{r:?}");
        assert_eq!(r.count("message", "MISSING_FBP"), 1, "{r:?}");
        assert_eq!(r.count("error", "17"), 1);
        assert_eq!(r.count("error", "100/2804019"), 1);
        assert_eq!(r.count("error", "http_502"), 1);
    }
}
