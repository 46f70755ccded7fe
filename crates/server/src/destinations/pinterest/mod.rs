//! Delivery to the Pinterest Conversions API
//! (`POST /v5/ad_accounts/{ad_account_id}/events`,
//! <https://developers.pinterest.com/docs/api/v5/events-create>), an optional
//! destination.
//!
//! `Authorization: Bearer <conversion access token>`, batches of at most
//! 1,000 events of many visitors built by the core
//! ([`tally_core::destinations::pinterest`]), `?test=true` when the settings
//! ask for test events. A 200 answer lists one status per event in request
//! order: a `failed` one is a [`DeliveryError::PartialFailure`] carrying
//! Pinterest's `error_message`, the rest are sent (with any
//! `warning_message` as warnings). A 422 ("not all events were successfully
//! processed") is read the same way when its `details` list the events, and
//! fails the whole request otherwise. Every other status means what the one
//! status rule says: 429 / 5xx transient, 401 / 403 `Unauthorized`, other
//! 4xx permanent.

use tally_core::DestinationKind;
use tally_core::destinations::pinterest::{
    self as core_pinterest, PinterestError, PinterestRequest, PinterestResponse,
};
use tally_core::destinations::{Batch, VisitorEvents};

use crate::destinations::DestinationSettings;
use crate::engine::http::{Answer, excerpt, redact, status_error, with_json};
use crate::engine::{Deliver, Destination, Judgement};
use crate::error::{ConfigError, DeliveryError, RowError};

mod config;
pub use config::PinterestConfig;

/// A configured Pinterest destination.
#[derive(Debug, Clone)]
pub(crate) struct PinterestDestination {
    cfg: PinterestConfig,
    core: core_pinterest::PinterestOptions,
    url: String,
}

impl PinterestDestination {
    /// From checked configuration.
    pub(crate) fn new(cfg: PinterestConfig) -> PinterestDestination {
        let core = core_pinterest::PinterestOptions { ad_account_id: cfg.ad_account_id.trim().to_owned() };
        PinterestDestination { url: cfg.events_url(), cfg, core }
    }

    /// The judgement of per-event statuses (`statuses.events` in request order).
    fn per_event(&self, statuses: &PinterestResponse, request: &PinterestRequest) -> Judgement {
        let sent = request.data.len();
        if statuses.events.len() != sent {
            // No per-event statuses to go by: the counts decide, for every event alike.
            if statuses.num_events_processed as usize == sent && statuses.num_events_received as usize == sent {
                return Judgement::Done { warnings: Vec::new() };
            }
            let message = format!("Pinterest processed {} of {sent} events", statuses.num_events_processed);
            return Judgement::Partial((0..sent).map(|index| Some(row_error(index, message.clone()))).collect());
        }
        let secrets = self.secrets();
        let rows: Vec<Option<DeliveryError>> = statuses
            .events
            .iter()
            .enumerate()
            .map(|(index, s)| {
                (!s.is_processed()).then(|| {
                    let why = s.error_message.as_deref().unwrap_or("failed, with no message");
                    row_error(index, redact(why, &secrets))
                })
            })
            .collect();
        if rows.iter().all(Option::is_none) {
            let warnings =
                statuses.events.iter().filter_map(|s| s.warning_message.as_deref()).map(|w| redact(w, &secrets));
            return Judgement::Done { warnings: warnings.collect() };
        }
        Judgement::Partial(rows)
    }
}

/// One event Pinterest did not process.
fn row_error(index: usize, message: String) -> DeliveryError {
    DeliveryError::PartialFailure(vec![RowError { index, code: "failed".into(), message }])
}

impl Destination for PinterestDestination {
    type Request = PinterestRequest;

    fn kind(&self) -> DestinationKind {
        DestinationKind::Pinterest
    }

    fn merges_visitors(&self) -> bool {
        true
    }

    fn build(&self, visitors: &[VisitorEvents<'_>]) -> tally_core::Result<Batch<PinterestRequest>> {
        core_pinterest::build_many(visitors, &self.core)
    }

    fn request(
        &self,
        http: &reqwest::Client,
        request: &PinterestRequest,
    ) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let token = self.cfg.access_token.expose().trim();
        Ok(with_json(http.post(&self.url).bearer_auth(token), request))
    }

    fn secrets(&self) -> Vec<&str> {
        vec![self.cfg.access_token.expose().trim()]
    }

    fn judge(&self, answer: &Answer, request: &PinterestRequest) -> Judgement {
        let secrets = self.secrets();
        let status = answer.status;
        if answer.is_success() {
            return match PinterestResponse::parse(&answer.body) {
                Ok(r) => self.per_event(&r, request),
                Err(_) => Judgement::Fail(DeliveryError::Rejected {
                    status,
                    message: format!("unreadable success answer: {}", redact(&excerpt(&answer.body), &secrets)),
                }),
            };
        }
        let error = PinterestError::parse(&answer.body);
        if status == 422
            && let Some(details) = error.as_ref().and_then(|e| e.details.as_ref())
        {
            return self.per_event(details, request);
        }
        let message = match &error {
            Some(e) if !e.message.is_empty() => format!("code {}: {}", e.code, e.message),
            _ => excerpt(&answer.body),
        };
        Judgement::of_error(status_error(status, redact(&message, &secrets), answer.retry_after))
    }

    fn notes(&self) -> Vec<String> {
        if self.cfg.test {
            vec![
                "pinterest.test is on: Pinterest validates the events and records none; remove it in production"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        }
    }
}

impl DestinationSettings for PinterestConfig {
    fn name(&self) -> String {
        DestinationKind::Pinterest.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        PinterestConfig::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(PinterestDestination::new(self.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::destinations::pinterest::{PinterestEvent, PinterestUserData};

    const TOKEN: &str = "pina-unit-token-123";

    fn dest() -> PinterestDestination {
        PinterestDestination::new(PinterestConfig::new("549755885175", TOKEN))
    }

    fn two() -> PinterestRequest {
        let ev = |id: &str| PinterestEvent {
            event_name: "checkout",
            action_source: "web",
            event_time: 1_700_000_000,
            event_id: id.into(),
            event_source_url: None,
            opt_out: false,
            user_data: PinterestUserData { em: vec!["a".repeat(64)], ..Default::default() },
            custom_data: None,
        };
        PinterestRequest { data: vec![ev("e1"), ev("e2")] }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, retry_after: None, body: body.into() }
    }

    #[test]
    fn the_url_carries_the_account_and_test_flag() {
        assert_eq!(dest().url, "https://api.pinterest.com/v5/ad_accounts/549755885175/events");
        let test = PinterestDestination::new(PinterestConfig::new(" 549755885175 ", TOKEN).test(true));
        assert_eq!(test.url, "https://api.pinterest.com/v5/ad_accounts/549755885175/events?test=true");
        assert_eq!(Destination::notes(&test).len(), 1);
    }

    #[test]
    fn per_event_statuses_decide() {
        let ok = r#"{"num_events_received":2,"num_events_processed":2,
                     "events":[{"status":"processed"},{"status":"processed","warning_message":"value not a number"}]}"#;
        assert_eq!(
            dest().judge(&answer(200, ok), &two()),
            Judgement::Done { warnings: vec!["value not a number".into()] }
        );
        let one_failed = format!(
            r#"{{"num_events_received":2,"num_events_processed":1,
                "events":[{{"status":"failed","error_message":"token {TOKEN} bad event_time"}},{{"status":"processed"}}]}}"#
        );
        let want = Judgement::Partial(vec![Some(row_error(0, "token [redacted] bad event_time".into())), None]);
        assert_eq!(dest().judge(&answer(200, &one_failed), &two()), want);
        // A 422 lists them under `details`.
        let detailed = format!(r#"{{"code":4179,"message":"Not all events","details":{one_failed}}}"#);
        assert_eq!(dest().judge(&answer(422, &detailed), &two()), want);
        // Counts only: every event carries the shortfall.
        let counts = r#"{"num_events_received":2,"num_events_processed":1,"events":[]}"#;
        assert!(
            matches!(dest().judge(&answer(200, counts), &two()), Judgement::Partial(rows) if rows.iter().all(Option::is_some))
        );
    }

    #[test]
    fn other_answers_follow_the_status_rule() {
        let j = |status, body| dest().judge(&answer(status, body), &two());
        assert_eq!(
            j(401, r#"{"code":2,"message":"Authentication failed."}"#),
            Judgement::Fail(DeliveryError::Unauthorized {
                status: 401,
                message: "code 2: Authentication failed.".into()
            })
        );
        assert!(matches!(j(403, r#"{"code":29,"message":"no"}"#), Judgement::Fail(DeliveryError::Unauthorized { .. })));
        assert!(matches!(
            j(429, r#"{"code":8,"message":"slow down"}"#),
            Judgement::Retry(DeliveryError::RateLimited { .. })
        ));
        assert!(matches!(j(503, "down"), Judgement::Retry(DeliveryError::Rejected { status: 503, .. })));
        assert!(matches!(
            j(422, r#"{"code":4179,"message":"x"}"#),
            Judgement::Fail(DeliveryError::Rejected { status: 422, .. })
        ));
        assert!(matches!(
            j(400, r#"{"code":4196,"message":"The request was invalid."}"#),
            Judgement::Fail(DeliveryError::Rejected { status: 400, .. })
        ));
        assert!(matches!(j(200, "not json"), Judgement::Fail(DeliveryError::Rejected { status: 200, .. })));
    }
}
