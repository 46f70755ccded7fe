//! The Google Ads API path (`api = "google_ads_api"`): offline click
//! conversions (`:uploadClickConversions`) and conversion adjustments
//! (`:uploadConversionAdjustments`), for accounts Google still allowlists
//! (since 2026-06-15 the API takes no new adopters of offline conversion
//! imports). With the default Data Manager path it is also what sends full
//! refunds (retractions), when `retractions = "google_ads_api"` is set.
//!
//! Events are grouped per action and built by the core
//! ([`tally_core::destinations::google_ads::build`]): consent, exactly one click
//! id, at most five hashed identifiers, the 90-day (54 for adjustments) window,
//! batches of at most 2,000 rows.
//!
//! Answers:
//!
//! * 200 with `partialFailureError`: per row. A duplicate order
//!   (`ORDER_ID_ALREADY_IN_USE`, `CLICK_CONVERSION_ALREADY_EXISTS`,
//!   `CONVERSION_ALREADY_RETRACTED` …) means the row is already there: `Sent`.
//!   Any other row error fails that event only, with
//!   [`DeliveryError::PartialFailure`]. A row refused only because its click
//!   is under 6 h old (`TOO_RECENT_EVENT`) stays in the outbox and is sent
//!   again once Google can accept it ([`DeliveryError::too_recent_wait`]);
//!   the caller gets [`Outcome::Queued`] with the row's code.
//! * 401: the token is dropped, a fresh one fetched and the request sent once
//!   more; a second 401 is [`DeliveryError::Unauthorized`].
//! * 429, 5xx, `UNAVAILABLE`/`INTERNAL`/`RESOURCE_EXHAUSTED`: transient (the
//!   outbox retries, honouring `Retry-After`); 403 is `Unauthorized`; other
//!   4xx are permanent.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use tally_core::destinations::DeliveryContext;
use tally_core::destinations::google_ads::{
    self as core_ads, AdsTarget, ErrorClass, HEADER_DEVELOPER_TOKEN, HEADER_LOGIN_CUSTOMER_ID, Upload, UploadResponse,
};
use tally_core::{Event, EventName};

use crate::config::GoogleAdsConfig;
use crate::destinations::google_ads::oauth::{Authorized, TokenCache};
use crate::engine::http::{Answer, excerpt, redact, send, transient_error, with_json};
use crate::engine::{fan_out, finish};
use std::time::Duration;

use crate::error::{ConfigError, DeliveryError, RowError};
use crate::outcome::{Outcome, SkipReason};
use tally_core::http::{StatusClass, status_class};

/// The Google Ads API sender.
#[derive(Debug, Clone)]
pub(crate) struct GoogleAdsApiSender {
    cfg: Arc<GoogleAdsConfig>,
    customer_id: String,
    login_customer_id: Option<String>,
    /// Conversion action id by label.
    actions: BTreeMap<String, String>,
    clicks_url: String,
    adjustments_url: String,
    oauth: Arc<TokenCache>,
}

/// What one upload request's rows came to: `None` delivered (or already there).
type RowResults = Vec<Option<RowError>>;

impl GoogleAdsApiSender {
    /// From checked configuration.
    pub(crate) fn new(cfg: Arc<GoogleAdsConfig>, oauth: Arc<TokenCache>) -> Result<GoogleAdsApiSender, ConfigError> {
        let bad =
            |setting: &'static str| move |e: tally_core::Error| ConfigError::Invalid { setting, reason: e.to_string() };
        let customer_id = core_ads::normalize_customer_id(&cfg.customer_id).map_err(bad("google_ads.customer_id"))?;
        let login_customer_id = cfg
            .login_customer_id
            .as_deref()
            .map(core_ads::normalize_customer_id)
            .transpose()
            .map_err(bad("google_ads.login_customer_id"))?;
        let actions = super::actions(&cfg, &customer_id)?;
        let version = cfg.api_version.trim();
        let clicks_url = core_ads::upload_url(&cfg.base_url, version, &customer_id, Upload::Clicks)
            .map_err(bad("google_ads.api_version"))?;
        let adjustments_url = core_ads::upload_url(&cfg.base_url, version, &customer_id, Upload::Adjustments)
            .map_err(bad("google_ads.api_version"))?;
        Ok(GoogleAdsApiSender { cfg, customer_id, login_customer_id, actions, clicks_url, adjustments_url, oauth })
    }

    /// Sends `events`; returns one outcome per event, in order.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        events: &[Event],
        ctx: &DeliveryContext,
    ) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; events.len()];
        let mut groups: BTreeMap<(String, String), (EventName, Vec<usize>)> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            match super::route(&self.cfg.labels, &self.actions, e) {
                Ok((action, target_event)) => {
                    groups
                        .entry((action, target_event.as_str().to_owned()))
                        .or_insert_with(|| (target_event, Vec::new()))
                        .1
                        .push(i);
                }
                Err(reason) => out[i] = Some(Outcome::Skipped(reason)),
            }
        }
        for ((action, _), (target_event, indices)) in groups {
            let group: Vec<Event> = indices.iter().map(|&i| events[i].clone()).collect();
            let target = match AdsTarget::new(&self.customer_id, &action) {
                Ok(t) => AdsTarget { validate_only: self.cfg.validate_only, ..t.for_event(target_event) },
                Err(e) => {
                    fan_out(&mut out, &indices, &Outcome::Skipped(SkipReason::Invalid(e)));
                    continue;
                }
            };
            let batch = match core_ads::build(&group, ctx, &target) {
                Ok(b) => b,
                Err(e) => {
                    fan_out(&mut out, &indices, &Outcome::Skipped(SkipReason::Invalid(e)));
                    continue;
                }
            };
            for (j, skip) in batch.skipped {
                out[indices[j]] = Some(Outcome::Skipped(SkipReason::from(skip)));
            }
            let requests = batch
                .clicks
                .iter()
                .map(|r| (Upload::Clicks, serde_json::to_value(r), r.conversions.len()))
                .zip(batch.click_indices)
                .chain(
                    batch
                        .adjustments
                        .iter()
                        .map(|r| (Upload::Adjustments, serde_json::to_value(r), r.conversion_adjustments.len()))
                        .zip(batch.adjustment_indices),
                );
            for ((upload, body, rows), rows_to_group) in requests {
                let event_indices: Vec<usize> = rows_to_group.iter().map(|&j| indices[j]).collect();
                let body = match body {
                    Ok(b) => b,
                    Err(e) => {
                        let o = Outcome::Failed(DeliveryError::Rejected {
                            status: 0,
                            message: format!("request not serialisable: {e}"),
                        });
                        fan_out(&mut out, &event_indices, &o);
                        continue;
                    }
                };
                match self.upload(http, timeout, upload, &body, rows).await {
                    Ok((row_results, attempts)) => {
                        for (row, &i) in event_indices.iter().enumerate() {
                            out[i] = Some(match row_results.get(row).cloned().flatten() {
                                None => Outcome::sent(attempts),
                                Some(err) => Outcome::Failed(DeliveryError::PartialFailure(vec![err])),
                            });
                        }
                    }
                    Err(e) => fan_out(&mut out, &event_indices, &Outcome::Failed(e)),
                }
            }
        }
        finish(out)
    }

    fn secrets<'a>(&'a self, token: &'a str) -> Vec<&'a str> {
        let mut s = vec![token, self.cfg.client_secret.expose(), self.cfg.refresh_token.expose()];
        if let Some(d) = &self.cfg.developer_token {
            s.push(d.expose());
        }
        s
    }

    /// One upload request, with retries per `retry` and one token refresh on 401.
    async fn upload<B: Serialize>(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        upload: Upload,
        body: &B,
        rows: usize,
    ) -> Result<(RowResults, u32), DeliveryError> {
        let url = match upload {
            Upload::Clicks => &self.clicks_url,
            Upload::Adjustments => &self.adjustments_url,
        };
        self.oauth
            .authorized(http, timeout, |token| async move {
                let secrets = self.secrets(&token);
                let mut req = with_json(http.post(url.as_str()).bearer_auth(&token), body);
                if let Some(l) = &self.login_customer_id {
                    req = req.header(HEADER_LOGIN_CUSTOMER_ID, l.as_str());
                }
                if let Some(d) = &self.cfg.developer_token {
                    req = req.header(HEADER_DEVELOPER_TOKEN, d.expose().trim());
                }
                let answer = match send(req, timeout, &secrets).await {
                    Ok(a) => a,
                    Err(e) => return Authorized::Failed(e),
                };
                match self.judge(&answer, rows, &secrets) {
                    Judged::Rows(r) => Authorized::Done(r),
                    Judged::Credentials(e) => Authorized::TokenRefused(e),
                    Judged::Fail(e) | Judged::Retry(e) => Authorized::Failed(e),
                }
            })
            .await
            .map(|rows| (rows, 1))
    }

    fn judge(&self, answer: &Answer, rows: usize, secrets: &[&str]) -> Judged {
        let status = answer.status;
        if status_class(status) == StatusClass::Success {
            let parsed = match UploadResponse::parse(&answer.body) {
                Ok(p) => p,
                // Unreadable success: the rows may be stored; a retry is safe (duplicates count as delivered).
                Err(_) => {
                    return Judged::Retry(DeliveryError::Transport(format!(
                        "Google Ads answered HTTP {status} with an unreadable body: {}",
                        redact(&excerpt(&answer.body), secrets)
                    )));
                }
            };
            if let Some(job) = parsed.job_id() {
                tracing::debug!(job_id = %job, rows, "Google Ads upload accepted");
            }
            return Judged::Rows(row_results(&parsed, rows, secrets));
        }
        let rpc = core_ads::parse_rpc_error(&answer.body);
        let message = redact(
            &match &rpc {
                Some(e) => {
                    let codes: Vec<String> =
                        e.errors().into_iter().map(|r| format!("{}: {}", r.code, r.message)).collect();
                    let mut m = format!("{}: {}", e.status.as_deref().unwrap_or("ERROR"), e.message);
                    if !codes.is_empty() {
                        m.push_str(&format!(" [{}]", codes.join("; ")));
                    }
                    m
                }
                None => excerpt(&answer.body),
            },
            secrets,
        );
        match core_ads::classify(status, rpc.as_ref()) {
            ErrorClass::Credentials => Judged::Credentials(DeliveryError::Unauthorized { status, message }),
            ErrorClass::Transient if status_class(status) == StatusClass::Transient => {
                Judged::Retry(transient_error(status, message, answer.retry_after))
            }
            // A transient RPC status on an otherwise permanent HTTP status: retry all the same.
            ErrorClass::Transient => {
                Judged::Retry(DeliveryError::Transport(format!("Google Ads asked to retry (HTTP {status}): {message}")))
            }
            ErrorClass::Permanent if status == 403 => Judged::Fail(DeliveryError::Unauthorized { status, message }),
            ErrorClass::Permanent => Judged::Fail(DeliveryError::Rejected { status, message }),
        }
    }
}

enum Judged {
    Rows(RowResults),
    Credentials(DeliveryError),
    Retry(DeliveryError),
    Fail(DeliveryError),
}

/// Spreads `partialFailureError` over the rows: a duplicate-order error
/// means delivered; errors without a row apply to every row without its own.
fn row_results(parsed: &UploadResponse, rows: usize, secrets: &[&str]) -> RowResults {
    let mut out: RowResults = vec![None; rows];
    let mut unlocated = Vec::new();
    for err in parsed.row_errors() {
        if core_ads::is_duplicate(&err.code) {
            tracing::debug!(row = ?err.index, code = %err.code, "already uploaded: counted as delivered");
            continue;
        }
        tracing::warn!(row = ?err.index, code = %err.code, message = %err.message, "Google Ads rejected a row");
        let row =
            RowError { index: err.index.unwrap_or(0), code: err.code.clone(), message: redact(&err.message, secrets) };
        match err.index {
            Some(i) if i < rows => {
                if out[i].is_none() {
                    out[i] = Some(row);
                }
            }
            _ => unlocated.push(row),
        }
    }
    if let Some(first) = unlocated.first() {
        for (i, slot) in out.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = Some(RowError { index: i, ..first.clone() });
            }
        }
    }
    out
}
