//! Google Ads through the Data Manager API
//! (<https://developers.google.com/data-manager/api/devguides/events/google-ads/offline/send-events>).
//!
//! * One request per conversion action and round, up to 2,000 events of any
//!   visitors, built by the core
//!   ([`tally_core::destinations::data_manager::build_many`]), which leaves
//!   out every event the API would refuse.
//! * **Fast-fail**: the API rejects a whole request for one invalid event.
//!   When it does, the events its field violations name fail with their own
//!   reasons and the rest is sent again; when no violation names an event, the
//!   batch is split in halves, and again, until the bad event stands alone.
//!   At most [`MAX_SPLIT_REQUESTS`] extra requests per batch are spent so; a
//!   violation of the request itself (an account id, the destination) fails
//!   the batch at once, as splitting cannot help.
//! * 200 `fieldWarnings` become the `warnings` of each event's
//!   [`Outcome::Sent`] and are counted in the diagnostics.
//! * 401: the token is refreshed once. 403: the credentials, the scope or the
//!   Cloud project (the message says which). 429 `RESOURCE_EXHAUSTED` and 5xx:
//!   transient; the lane slows down and, with the per-minute quota its
//!   settings carry (300 requests a minute by default), stays under it.
//! * **Diagnostics**: each accepted request's `requestId` is polled at
//!   `requestStatus:retrieve` on Google's schedule (first after 30 minutes,
//!   then ×1.3 up to hourly, for 24 hours; never for `validateOnly`), and the
//!   processing errors and warnings are counted per reason
//!   ([`DiagnosticsReport`]). The polls live in memory: a restart forgets the
//!   requests still being processed (their events are delivered all the same).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tally_core::EventName;
use tally_core::destinations::VisitorEvents;
use tally_core::destinations::data_manager::{
    self as core_dm, DmError, DmTarget, IngestEventsRequest, IngestResponse, PollSchedule, RequestStatusResponse,
    event_index,
};
use tally_core::destinations::google_ads::normalize_customer_id;

use crate::config::GoogleAdsConfig;
use crate::destinations::google_ads::oauth::{Authorized, TokenCache};
use crate::diagnostics::{DiagnosticCount, DiagnosticsReport, RequestReport};
use crate::engine::http::{Answer, excerpt, redact, send, transient_error, with_json};
use crate::engine::{finish, open};
use crate::error::{ConfigError, DeliveryError};
use crate::outcome::Outcome;
use tally_core::http::{StatusClass, status_class};

/// Most extra requests spent splitting one rejected batch.
pub const MAX_SPLIT_REQUESTS: u32 = 64;

/// How many finished requests the diagnostics keep for display.
const RECENT: usize = 50;

/// The Data Manager sender of a Google Ads destination.
#[derive(Clone)]
pub(crate) struct DataManagerSender {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: Arc<GoogleAdsConfig>,
    oauth: Arc<TokenCache>,
    operating_account_id: String,
    login_account_id: Option<String>,
    actions: BTreeMap<String, String>,
    ingest_url: String,
    status_url: String,
    schedule: Option<PollSchedule>,
    state: Mutex<DiagState>,
}

impl fmt::Debug for DataManagerSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataManagerSender")
            .field("operating_account_id", &self.shared.operating_account_id)
            .field("login_account_id", &self.shared.login_account_id)
            .field("actions", &self.shared.actions)
            .field("ingest_url", &self.shared.ingest_url)
            .finish()
    }
}

impl DataManagerSender {
    pub(crate) fn new(cfg: Arc<GoogleAdsConfig>, oauth: Arc<TokenCache>) -> Result<DataManagerSender, ConfigError> {
        let bad =
            |setting: &'static str| move |e: tally_core::Error| ConfigError::Invalid { setting, reason: e.to_string() };
        let operating_account_id = normalize_customer_id(&cfg.customer_id).map_err(bad("google_ads.customer_id"))?;
        let login_account_id = cfg
            .login_customer_id
            .as_deref()
            .map(normalize_customer_id)
            .transpose()
            .map_err(bad("google_ads.login_customer_id"))?;
        let actions = super::actions(&cfg, &operating_account_id)?;
        // The URL and the merchant id were checked with the configuration (`GoogleAdsConfig::check`).
        let base = cfg.data_manager_url.trim().trim_end_matches('/');
        let schedule = cfg
            .diagnostics
            .map(|first| PollSchedule::scaled_to(u64::try_from(first.as_millis()).unwrap_or(u64::MAX).max(1)));
        Ok(DataManagerSender {
            shared: Arc::new(Shared {
                ingest_url: format!("{base}{}", core_dm::INGEST_PATH),
                status_url: format!("{base}{}", core_dm::STATUS_PATH),
                cfg,
                oauth,
                operating_account_id,
                login_account_id,
                actions,
                schedule,
                state: Mutex::new(DiagState::default()),
            }),
        })
    }

    /// The conversion action ids by label.
    pub(crate) fn actions(&self) -> &BTreeMap<String, String> {
        &self.shared.actions
    }

    /// Sends the events of `visitors`, all for the action `action` fed by
    /// `event`; one outcome per event, in order.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        visitors: &[VisitorEvents<'_>],
        action: &str,
        event: EventName,
    ) -> Vec<Outcome> {
        let s = &self.shared;
        let target = DmTarget {
            operating_account_id: s.operating_account_id.clone(),
            login_account_id: s.login_account_id.clone(),
            product_destination_id: action.to_owned(),
            event,
            merchant_id: s.cfg.merchant_id.as_deref().map(|m| m.trim().to_owned()),
            validate_only: s.cfg.validate_only,
        };
        let total = visitors.iter().map(|(e, _)| e.len()).sum();
        let (mut out, batch) = match open(total, core_dm::build_many(visitors, &target)) {
            Ok(opened) => opened,
            Err(invalid) => return invalid,
        };
        for (request, indices) in batch.requests.iter().zip(&batch.indices) {
            for (&i, outcome) in indices.iter().zip(self.send_batch(http, timeout, request).await) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        finish(out)
    }

    /// Sends one built request; when Google rejects it, isolates the events
    /// it rejected (see the module doc). One outcome per event of `request`.
    async fn send_batch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        request: &IngestEventsRequest,
    ) -> Vec<Outcome> {
        let n = request.events.len();
        let mut out: Vec<Option<Outcome>> = vec![None; n];
        let mut parts: Vec<Vec<usize>> = vec![(0..n).collect()];
        let mut budget = MAX_SPLIT_REQUESTS;
        while let Some(part) = parts.pop() {
            let subset;
            let body = if part.len() == n {
                request
            } else {
                subset = request.subset(&part);
                &subset
            };
            match self.ingest(http, timeout, body).await {
                Ok((answer, attempts)) => {
                    let warnings = self.warnings(&answer, part.len());
                    if let Some(id) = answer.request_id.filter(|_| !request.validate_only) {
                        self.watch(http, timeout, id, part.len());
                    }
                    for (&i, warnings) in part.iter().zip(warnings) {
                        out[i] = Some(Outcome::Sent { attempts, warnings });
                    }
                }
                Err(Ingest::Rejected { status, error }) => {
                    let named: Vec<usize> = error.event_indices().into_iter().filter(|&k| k < part.len()).collect();
                    let rejected = |message: String| Outcome::Failed(DeliveryError::Rejected { status, message });
                    if part.len() == 1 || error.is_request_level() || budget == 0 {
                        tracing::warn!(events = part.len(), error = %error.describe(), "Data Manager rejected the request");
                        for &i in &part {
                            out[i] = Some(rejected(error.describe()));
                        }
                    } else if !named.is_empty() {
                        budget -= 1;
                        for &k in &named {
                            let own: Vec<String> = error
                                .violations
                                .iter()
                                .filter(|v| event_index(&v.field) == Some(k))
                                .map(|v| format!("{} ({}): {}", v.reason, v.field, v.description))
                                .collect();
                            tracing::warn!(violations = %own.join("; "), "Data Manager rejected an event");
                            out[part[k]] =
                                Some(rejected(format!("Data Manager rejected this event: {}", own.join("; "))));
                        }
                        let rest: Vec<usize> =
                            part.iter().enumerate().filter(|(k, _)| !named.contains(k)).map(|(_, &i)| i).collect();
                        if !rest.is_empty() {
                            parts.push(rest);
                        }
                    } else {
                        // Nothing says which event: halve until it stands alone.
                        budget = budget.saturating_sub(2);
                        let (a, b) = part.split_at(part.len() / 2);
                        parts.push(b.to_vec());
                        parts.push(a.to_vec());
                    }
                }
                Err(Ingest::Failed(e)) => {
                    for &i in &part {
                        out[i] = Some(Outcome::Failed(e.clone()));
                    }
                }
            }
        }
        finish(out)
    }

    /// The field warnings of an answer, spread over the `events` it covered
    /// (a warning naming no event goes to all), and counted.
    fn warnings(&self, answer: &IngestResponse, events: usize) -> Vec<Vec<String>> {
        let mut per: Vec<Vec<String>> = vec![Vec::new(); events];
        if answer.field_warnings.is_empty() {
            return per;
        }
        let mut st = self.shared.lock();
        for w in &answer.field_warnings {
            let text = format!("{} at {}", w.reason, w.field);
            tracing::info!(reason = %w.reason, field = %w.field, description = %w.description, "Data Manager field warning");
            *st.counts.entry((KIND_FIELD_WARNING, w.reason.clone())).or_default() += 1;
            match event_index(&w.field).filter(|&k| k < events) {
                Some(k) => per[k].push(text),
                None => per.iter_mut().for_each(|p| p.push(text.clone())),
            }
        }
        per
    }

    fn secrets<'a>(&'a self, token: &'a str) -> [&'a str; 3] {
        [token, self.shared.cfg.client_secret.expose(), self.shared.cfg.refresh_token.expose()]
    }

    /// One `events:ingest` call, with retries per `retry` and one token
    /// refresh on 401. A fast-fail rejection is an answer, not an error to retry.
    async fn ingest(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        body: &IngestEventsRequest,
    ) -> Result<(IngestResponse, u32), Ingest> {
        let url = self.shared.ingest_url.as_str();
        let result = self
            .shared
            .oauth
            .authorized(http, timeout, |token| async move {
                let secrets = self.secrets(&token);
                let answer = match send(with_json(http.post(url).bearer_auth(&token), body), timeout, &secrets).await {
                    Ok(a) => a,
                    Err(e) => return Authorized::Failed(e),
                };
                match self.judge(&answer, &secrets) {
                    Judged::Accepted(r) => Authorized::Done(Ok(r)),
                    Judged::Rejected(error) => Authorized::Done(Err((answer.status, error))),
                    Judged::Credentials(e) => Authorized::TokenRefused(e),
                    Judged::Fail(e) | Judged::Retry(e) => Authorized::Failed(e),
                }
            })
            .await;
        match result {
            Ok(Ok(answer)) => Ok((answer, 1)),
            Ok(Err((status, error))) => Err(Ingest::Rejected { status, error }),
            Err(e) => Err(Ingest::Failed(e)),
        }
    }

    fn judge(&self, answer: &Answer, secrets: &[&str]) -> Judged {
        let status = answer.status;
        if status_class(status) == StatusClass::Success {
            return match IngestResponse::parse(&answer.body) {
                Ok(r) => Judged::Accepted(r),
                // Re-sending is safe: the same transactionId restates, it never counts twice.
                Err(_) => Judged::Retry(DeliveryError::Transport(format!(
                    "Data Manager answered HTTP {status} with an unreadable body: {}",
                    redact(&excerpt(&answer.body), secrets)
                ))),
            };
        }
        let error = DmError::parse(&answer.body);
        let message = redact(
            &match &error {
                Some(e) => self.explain(status, e),
                None => excerpt(&answer.body),
            },
            secrets,
        );
        let transient_rpc = error.as_ref().is_some_and(|e| {
            matches!(e.status.as_str(), "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED" | "UNKNOWN")
        });
        match (status, error) {
            (401, _) => Judged::Credentials(DeliveryError::Unauthorized { status, message }),
            (403, _) => Judged::Fail(DeliveryError::Unauthorized { status, message }),
            (400, Some(e)) if e.status == "INVALID_ARGUMENT" || e.status.is_empty() => {
                Judged::Rejected(DmError { message: redact(&e.message, secrets), ..e })
            }
            _ if status_class(status) == StatusClass::Transient => {
                Judged::Retry(transient_error(status, message, answer.retry_after))
            }
            _ if transient_rpc => Judged::Retry(DeliveryError::Transport(format!(
                "Data Manager asked to retry (HTTP {status}): {message}"
            ))),
            _ => Judged::Fail(DeliveryError::Rejected { status, message }),
        }
    }

    /// The error in words, with what to do for the usual causes.
    fn explain(&self, status: u16, e: &DmError) -> String {
        let mut m = e.describe();
        let hint = match (status, e.reason.as_deref()) {
            (403, Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT")) => Some(format!(
                "the refresh token was not granted the {} scope (a Google Ads API token is not enough): \
                 authorise again with that scope",
                core_dm::SCOPE
            )),
            (403, Some("SERVICE_DISABLED")) => {
                Some("enable the Data Manager API in the Google Cloud project of the OAuth client".to_owned())
            }
            (403, _) => Some(format!(
                "the credentials' Google account cannot write to Google Ads account {}: add it as a user there, \
                 or set login_customer_id to the manager account it belongs to",
                self.shared.operating_account_id
            )),
            (429, _) => Some(format!(
                "over the Data Manager quota ({}): Tally backs off; lower [lanes.google_ads] \
                 max_requests_per_minute if this persists",
                e.quota_limit.as_deref().unwrap_or("requests per minute")
            )),
            _ => None,
        };
        if let Some(h) = hint {
            m.push_str(" — ");
            m.push_str(&h);
        }
        m
    }

    /// What Google reported so far.
    pub(crate) fn diagnostics(&self) -> DiagnosticsReport {
        let st = self.shared.lock();
        DiagnosticsReport {
            counts: st
                .counts
                .iter()
                .map(|((kind, reason), n)| DiagnosticCount { kind, reason: reason.clone(), count: *n })
                .collect(),
            pending: st.pending.len(),
            recent: st.recent.iter().cloned().collect(),
        }
    }

    /// Schedules the status polls of an accepted request.
    fn watch(&self, http: &reqwest::Client, timeout: Duration, request_id: String, events: usize) {
        if self.shared.schedule.is_none() {
            return;
        }
        let start = {
            let mut st = self.shared.lock();
            st.pending.push(Pending { request_id, events, sent_at: Instant::now(), polls: 0 });
            !std::mem::replace(&mut st.polling, true)
        };
        if start && let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(poll_loop(Arc::downgrade(&self.shared), http.clone(), timeout));
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, DiagState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One status call: `Ok(None)` while still processing.
    async fn status(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        request_id: &str,
    ) -> Result<Option<RequestStatusResponse>, String> {
        let token = self.oauth.access_token(http, timeout).await.map_err(|e| e.to_string())?;
        let secrets = [token.as_str(), self.cfg.client_secret.expose(), self.cfg.refresh_token.expose()];
        let url = format!("{}?requestId={}", self.status_url, tally_core::cookie::percent_encode(request_id));
        let req = http.get(url).bearer_auth(&token);
        let answer = send(req, timeout, &secrets).await.map_err(|e| e.to_string())?;
        if answer.status == 401 {
            self.oauth.invalidate(&token).await;
        }
        if status_class(answer.status) != StatusClass::Success {
            let why = DmError::parse(&answer.body).map_or_else(|| excerpt(&answer.body), |e| e.describe());
            return Err(format!("HTTP {}: {}", answer.status, redact(&why, &secrets)));
        }
        let parsed = RequestStatusResponse::parse(&answer.body).map_err(|e| e.to_string())?;
        Ok(parsed.is_final().then_some(parsed))
    }

    fn record(&self, p: &Pending, status: &RequestStatusResponse) {
        let mut st = self.lock();
        let mut report = RequestReport {
            request_id: p.request_id.clone(),
            events: p.events,
            polls: p.polls + 1,
            status: String::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for d in &status.request_status_per_destination {
            report.status = d.request_status.clone();
            *st.counts.entry((KIND_REQUEST_STATUS, d.request_status.clone())).or_default() += 1;
            for c in d.error_info.iter().flat_map(|e| &e.error_counts) {
                *st.counts.entry((KIND_PROCESSING_ERROR, c.reason.clone())).or_default() += c.record_count;
                report.errors.push((c.reason.clone(), c.record_count));
            }
            for c in d.warning_info.iter().flat_map(|w| &w.warning_counts) {
                *st.counts.entry((KIND_PROCESSING_WARNING, c.reason.clone())).or_default() += c.record_count;
                report.warnings.push((c.reason.clone(), c.record_count));
            }
        }
        if !report.errors.is_empty() {
            tracing::warn!(request_id = %report.request_id, status = %report.status, errors = ?report.errors, "Data Manager processing errors");
        }
        st.recent.push_front(report);
        st.recent.truncate(RECENT);
    }

    fn give_up(&self, p: &Pending, why: &str) {
        tracing::warn!(request_id = %p.request_id, why, "Data Manager request status not available; no more polls");
        let mut st = self.lock();
        *st.counts.entry((KIND_REQUEST_STATUS, "UNAVAILABLE".to_owned())).or_default() += 1;
        st.recent.push_front(RequestReport {
            request_id: p.request_id.clone(),
            events: p.events,
            polls: p.polls + 1,
            status: format!("UNAVAILABLE: {why}"),
            errors: Vec::new(),
            warnings: Vec::new(),
        });
        st.recent.truncate(RECENT);
    }
}

/// Polls every pending request when its turn comes; ends when none is left
/// (the next accepted request starts it again) or the destination is gone.
async fn poll_loop(shared: Weak<Shared>, http: reqwest::Client, timeout: Duration) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let Some(schedule) = s.schedule else { return };
        let now = Instant::now();
        let due_at = |p: &Pending| schedule.elapsed_before(p.polls).map(|ms| p.sent_at + Duration::from_millis(ms));
        let (due, next) = {
            let mut st = s.lock();
            if st.pending.is_empty() {
                st.polling = false;
                return;
            }
            let (due, waiting): (Vec<Pending>, Vec<Pending>) =
                std::mem::take(&mut st.pending).into_iter().partition(|p| due_at(p).is_none_or(|t| t <= now));
            st.pending = waiting;
            let next = st.pending.iter().filter_map(due_at).min();
            (due, next)
        };
        for mut p in due {
            if due_at(&p).is_none() {
                s.give_up(&p, "still processing after the 24 h Google documents");
                continue;
            }
            match s.status(&http, timeout, &p.request_id).await {
                Ok(Some(status)) => s.record(&p, &status),
                Ok(None) => {
                    p.polls += 1;
                    s.lock().pending.push(p);
                }
                Err(why) if why.contains("INVALID_REQUEST_ID") || why.contains("REQUEST_TOO_OLD") => {
                    s.give_up(&p, &why)
                }
                Err(why) => {
                    tracing::debug!(request_id = %p.request_id, %why, "request status poll failed; trying later");
                    p.polls += 1;
                    s.lock().pending.push(p);
                }
            }
        }
        let first = Duration::from_millis(schedule.first_ms);
        let wait = next.map_or(first, |t| t.saturating_duration_since(Instant::now())).min(first);
        drop(s);
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

enum Judged {
    Accepted(IngestResponse),
    Rejected(DmError),
    Credentials(DeliveryError),
    Retry(DeliveryError),
    Fail(DeliveryError),
}

enum Ingest {
    /// A fast-fail rejection (HTTP 400 `INVALID_ARGUMENT`).
    Rejected { status: u16, error: DmError },
    /// Anything else that did not deliver.
    Failed(DeliveryError),
}

const KIND_FIELD_WARNING: &str = "field_warning";
const KIND_REQUEST_STATUS: &str = "request_status";
const KIND_PROCESSING_ERROR: &str = "processing_error";
const KIND_PROCESSING_WARNING: &str = "processing_warning";

struct Pending {
    request_id: String,
    events: usize,
    sent_at: Instant,
    polls: u32,
}

#[derive(Default)]
struct DiagState {
    pending: Vec<Pending>,
    /// A poll loop is running.
    polling: bool,
    counts: BTreeMap<(&'static str, String), u64>,
    recent: VecDeque<RequestReport>,
}
