//! What happened at each destination.

use std::collections::BTreeMap;
use std::fmt;

use tally_core::{ConsentDenial, EventId};

use crate::error::DeliveryError;

/// Why an event was deliberately not sent to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The destination is not configured on this tracker.
    NotConfigured,
    /// The helper needs a conversion label the configuration does not have.
    NoLabelConfigured,
    /// Consent forbids it.
    ConsentDenied(ConsentDenial),
    /// Already delivered (same destination, event name and event id).
    Duplicate,
    /// Older or newer than the destination accepts.
    OutsideWindow,
    /// The destination has no such concept (e.g. refunds at Meta).
    Unsupported,
    /// Nothing to attribute with (no click id and no user data for an ad platform).
    NoAttribution,
    /// The event breaks one of the destination's rules.
    Invalid(tally_core::Error),
    /// A full refund, which the destination cannot record: Google Ads through
    /// the Data Manager API restates conversions but cannot retract them.
    RetractionUnsupported,
    /// The visitor's user agent is a known bot (crawler, link previewer,
    /// headless browser) and the destination does not take bots
    /// (`bots = "drop"`, the default at ad and analytics destinations): see
    /// [`crate::bots`].
    Bot(crate::bots::BotMatch),
}

impl SkipReason {
    /// Every [`SkipReason::code`], in declaration order: the names the
    /// collector's answer, the OpenAPI document and `tally-web/server`'s types use.
    pub const CODES: &'static [&'static str] = &[
        "not_configured",
        "no_label_configured",
        "consent_denied",
        "duplicate",
        "outside_window",
        "unsupported",
        "no_attribution",
        "invalid",
        "retraction_unsupported",
        "bot",
    ];

    /// A stable snake_case code for logs, metrics and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotConfigured => "not_configured",
            SkipReason::NoLabelConfigured => "no_label_configured",
            SkipReason::ConsentDenied(_) => "consent_denied",
            SkipReason::Duplicate => "duplicate",
            SkipReason::OutsideWindow => "outside_window",
            SkipReason::Unsupported => "unsupported",
            SkipReason::NoAttribution => "no_attribution",
            SkipReason::Invalid(_) => "invalid",
            SkipReason::RetractionUnsupported => "retraction_unsupported",
            SkipReason::Bot(_) => "bot",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ConsentDenied(d) => write!(f, "consent denied ({})", d.as_str()),
            SkipReason::Invalid(e) => write!(f, "invalid: {e}"),
            SkipReason::RetractionUnsupported => f.write_str(
                "retraction_unsupported: the Data Manager API cannot retract a conversion (full refund); \
                 set google_ads retractions = \"google_ads_api\" if the account still has Google Ads API \
                 access, or remove the conversion in Google Ads",
            ),
            SkipReason::Bot(m) => write!(
                f,
                "bot: the user agent is a known {} (matches `{}`); this destination takes bots with bots = \"send\"",
                m.kind.code(),
                m.pattern
            ),
            other => f.write_str(other.code()),
        }
    }
}

impl From<tally_core::destinations::Skip> for SkipReason {
    fn from(s: tally_core::destinations::Skip) -> SkipReason {
        use tally_core::destinations::Skip;
        match s {
            Skip::Consent(d) => SkipReason::ConsentDenied(d),
            Skip::Invalid(tally_core::Error::OutsideWindow { .. }) => SkipReason::OutsideWindow,
            Skip::Invalid(e) => SkipReason::Invalid(e),
            Skip::Unsupported => SkipReason::Unsupported,
            Skip::NoAttribution => SkipReason::NoAttribution,
            Skip::RetractionUnsupported => SkipReason::RetractionUnsupported,
        }
    }
}

/// The outcome at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the destination.
    Sent {
        /// How many attempts it took.
        attempts: u32,
        /// What the destination accepted but could not use (Data Manager
        /// `fieldWarnings`: `REASON at field`); empty for most.
        warnings: Vec<String>,
    },
    /// Not delivered yet: the attempt failed transiently and the event waits in
    /// the durable outbox for the next one.
    Queued {
        /// The last attempt's error.
        error: DeliveryError,
    },
    /// Not delivered and given up on; the error says why.
    Failed(DeliveryError),
    /// Deliberately not sent.
    Skipped(SkipReason),
}

impl Outcome {
    /// `Sent` after `attempts` attempts, without warnings.
    pub fn sent(attempts: u32) -> Outcome {
        Outcome::Sent { attempts, warnings: Vec::new() }
    }

    /// Every [`Outcome::code`], in declaration order.
    pub const CODES: &'static [&'static str] = &["sent", "queued", "failed", "skipped"];

    /// A stable snake_case code for JSON: `sent`, `queued`, `failed` or `skipped`.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Queued { .. } => "queued",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// The delivery error of a queued or failed outcome.
    pub fn error(&self) -> Option<&DeliveryError> {
        match self {
            Outcome::Queued { error } | Outcome::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// True for `Sent`.
    pub fn is_sent(&self) -> bool {
        matches!(self, Outcome::Sent { .. })
    }

    /// The skip reason, if skipped.
    pub fn skip_reason(&self) -> Option<&SkipReason> {
        match self {
            Outcome::Skipped(r) => Some(r),
            _ => None,
        }
    }
}

/// The outcome in words (`sent (1 attempt(s))`, `skipped: duplicate`, `queued
/// for retry: …`): the same text as its [`OutcomeReport`]'s.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        OutcomeReport::from(self).fmt(f)
    }
}

/// The JSON form of an [`Outcome`], as the collector answers a server-to-server
/// call (one per destination) and `tally-web/server` returns it:
///
/// ```json
/// {"outcome":"sent","attempts":1}
/// {"outcome":"queued","error":{"code":"transport","message":"transport error: …"}}
/// {"outcome":"failed","error":{"code":"rejected","message":"…","httpStatus":400}}
/// {"outcome":"skipped","reason":"consent_denied","detail":"consent denied (ad_user_data)"}
/// ```
///
/// `outcome` is one of [`Outcome::CODES`], `error.code` one of
/// [`DeliveryError::CODES`], `reason` one of [`SkipReason::CODES`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeReport {
    /// [`Outcome::code`].
    pub outcome: &'static str,
    /// For `sent`: the attempts it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// For `sent`: fields the destination accepted but could not use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For `queued` and `failed`: the delivery error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// For `skipped`: [`SkipReason::code`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For `skipped`: the reason in words (the consent signal, the rule broken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The JSON form of a [`DeliveryError`] inside an [`OutcomeReport`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    /// [`DeliveryError::code`].
    pub code: &'static str,
    /// The error's message (what the destination said, what to fix).
    pub message: String,
    /// The destination's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl OutcomeReport {
    /// Reads the JSON form back: one entry of `destinations` in the collector's
    /// answer, or of a `tally-web/server` result. `None` when `v` is not an
    /// outcome report (an unknown outcome, error or skip code, or a field missing).
    ///
    /// ```
    /// use tally_server::OutcomeReport;
    /// let v = serde_json::json!({"outcome": "skipped", "reason": "duplicate", "detail": "duplicate"});
    /// let report = OutcomeReport::from_json(&v).expect("an outcome report");
    /// assert_eq!(report.to_string(), "skipped: duplicate");
    /// assert!(OutcomeReport::from_json(&serde_json::json!({"outcome": "lost"})).is_none());
    /// ```
    pub fn from_json(v: &serde_json::Value) -> Option<OutcomeReport> {
        fn code(codes: &'static [&'static str], v: Option<&serde_json::Value>) -> Option<&'static str> {
            let s = v?.as_str()?;
            codes.iter().copied().find(|c| *c == s)
        }
        let outcome = code(Outcome::CODES, v.get("outcome"))?;
        let mut r =
            OutcomeReport { outcome, attempts: None, warnings: Vec::new(), error: None, reason: None, detail: None };
        match outcome {
            "sent" => {
                r.attempts = Some(u32::try_from(v.get("attempts")?.as_u64()?).ok()?);
                r.warnings = match v.get("warnings") {
                    None => Vec::new(),
                    Some(w) => w.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<_>>()?,
                };
            }
            "skipped" => {
                r.reason = Some(code(SkipReason::CODES, v.get("reason"))?);
                r.detail = v.get("detail").and_then(serde_json::Value::as_str).map(str::to_owned);
            }
            _ => {
                let e = v.get("error")?;
                r.error = Some(ErrorReport {
                    code: code(DeliveryError::CODES, e.get("code"))?,
                    message: e.get("message")?.as_str()?.to_owned(),
                    http_status: e
                        .get("httpStatus")
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok()),
                });
            }
        }
        Some(r)
    }
}

/// The outcome in words, as [`Outcome`] shows it: `sent (2 attempt(s))`,
/// `queued for retry: <error>`, `failed: <error>`, `skipped: <reason>`.
impl fmt::Display for OutcomeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.error.as_ref().map_or("", |e| e.message.as_str());
        match self.outcome {
            "sent" => write!(f, "sent ({} attempt(s))", self.attempts.unwrap_or(1)),
            "queued" => write!(f, "queued for retry: {message}"),
            "failed" => write!(f, "failed: {message}"),
            _ => write!(f, "skipped: {}", self.detail.as_deref().or(self.reason).unwrap_or("")),
        }
    }
}

impl From<&DeliveryError> for ErrorReport {
    fn from(e: &DeliveryError) -> ErrorReport {
        ErrorReport { code: e.code(), message: e.to_string(), http_status: e.http_status() }
    }
}

impl From<&Outcome> for OutcomeReport {
    fn from(o: &Outcome) -> OutcomeReport {
        let mut r = OutcomeReport {
            outcome: o.code(),
            attempts: None,
            warnings: Vec::new(),
            error: None,
            reason: None,
            detail: None,
        };
        match o {
            Outcome::Sent { attempts, warnings } => {
                r.attempts = Some(*attempts);
                r.warnings.clone_from(warnings);
            }
            Outcome::Queued { error } | Outcome::Failed(error) => r.error = Some(error.into()),
            Outcome::Skipped(reason) => {
                r.reason = Some(reason.code());
                r.detail = Some(reason.to_string());
            }
        }
        r
    }
}

/// The result of one tracking call: the event id used and one outcome per
/// configured destination (by destination name, e.g. `ga4`, `webhook:warehouse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackResult {
    /// The event id every destination received (the dedup key).
    pub event_id: EventId,
    /// Outcome per destination.
    pub destinations: BTreeMap<String, Outcome>,
}

impl TrackResult {
    /// The outcome at `destination`.
    pub fn get(&self, destination: &str) -> Option<&Outcome> {
        self.destinations.get(destination)
    }

    /// True when no destination failed.
    pub fn all_ok(&self) -> bool {
        self.destinations.values().all(|o| !matches!(o, Outcome::Failed(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RowError;

    /// One of each variant; the exhaustive matches make a new variant a compile
    /// error here until it is listed (and given a code in `CODES`).
    fn every_skip_reason() -> Vec<SkipReason> {
        let all = vec![
            SkipReason::NotConfigured,
            SkipReason::NoLabelConfigured,
            SkipReason::ConsentDenied(ConsentDenial::AdUserData),
            SkipReason::Duplicate,
            SkipReason::OutsideWindow,
            SkipReason::Unsupported,
            SkipReason::NoAttribution,
            SkipReason::Invalid(tally_core::Error::Missing { field: "value" }),
            SkipReason::RetractionUnsupported,
            SkipReason::Bot(crate::bots::BotMatch { kind: crate::bots::BotKind::Crawler, pattern: "Googlebot\\/" }),
        ];
        for r in &all {
            match r {
                SkipReason::NotConfigured
                | SkipReason::NoLabelConfigured
                | SkipReason::ConsentDenied(_)
                | SkipReason::Duplicate
                | SkipReason::OutsideWindow
                | SkipReason::Unsupported
                | SkipReason::NoAttribution
                | SkipReason::Invalid(_)
                | SkipReason::RetractionUnsupported
                | SkipReason::Bot(_) => {}
            }
        }
        all
    }

    fn every_outcome() -> Vec<Outcome> {
        let all = vec![
            Outcome::sent(1),
            Outcome::Sent {
                attempts: 1,
                warnings: vec!["WARNING_REASON_CART_DATA_ITEM_UNIT_PRICE_MISSING at events[0]".into()],
            },
            Outcome::Queued { error: DeliveryError::Transport("down".into()) },
            Outcome::Failed(DeliveryError::PartialFailure(vec![RowError {
                index: 0,
                code: "x".into(),
                message: String::new(),
            }])),
            Outcome::Skipped(SkipReason::Duplicate),
        ];
        for o in &all {
            match o {
                Outcome::Sent { .. } | Outcome::Queued { .. } | Outcome::Failed(_) | Outcome::Skipped(_) => {}
            }
        }
        all
    }

    #[test]
    fn codes_list_every_variant_once() {
        let skip: Vec<&str> = every_skip_reason().iter().map(SkipReason::code).collect();
        assert_eq!(skip, SkipReason::CODES);
        let mut outcomes: Vec<&str> = every_outcome().iter().map(Outcome::code).collect();
        outcomes.dedup();
        assert_eq!(outcomes, Outcome::CODES);
    }

    #[test]
    fn a_report_reads_back_and_reads_as_its_outcome() {
        let mut all = every_outcome();
        all.push(Outcome::Failed(DeliveryError::Rejected { status: 400, message: "bad value".into() }));
        all.extend(every_skip_reason().into_iter().map(Outcome::Skipped));
        for o in &all {
            let report = OutcomeReport::from(o);
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(OutcomeReport::from_json(&json).as_ref(), Some(&report), "{json}");
            assert_eq!(report.to_string(), o.to_string(), "{json}");
        }
        assert_eq!(Outcome::sent(2).to_string(), "sent (2 attempt(s))");
        assert_eq!(Outcome::Skipped(SkipReason::Duplicate).to_string(), "skipped: duplicate");
        let consent = Outcome::Skipped(SkipReason::ConsentDenied(ConsentDenial::AdUserData));
        assert_eq!(consent.to_string(), "skipped: consent denied (ad_user_data_not_granted)");
        let queued = Outcome::Queued { error: DeliveryError::Transport("down".into()) }.to_string();
        assert!(queued.starts_with("queued for retry: ") && queued.ends_with("down"), "{queued}");
        for bad in [
            serde_json::json!({"outcome": "lost"}),
            serde_json::json!({"outcome": "sent"}),
            serde_json::json!({"outcome": "skipped", "reason": "bored"}),
            serde_json::json!({"outcome": "queued", "error": {"code": "transport"}}),
            serde_json::json!({"outcome": "failed", "error": {"code": "gone", "message": "x"}}),
            serde_json::json!("sent"),
        ] {
            assert!(OutcomeReport::from_json(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reports_carry_the_codes() {
        let json = |o: &Outcome| serde_json::to_value(OutcomeReport::from(o)).unwrap();
        assert_eq!(json(&Outcome::sent(2)), serde_json::json!({"outcome":"sent","attempts":2}));
        let queued = json(&Outcome::Queued {
            error: DeliveryError::RetriesExhausted {
                attempts: 3,
                last: Box::new(DeliveryError::Rejected { status: 503, message: "down".into() }),
            },
        });
        assert_eq!(queued["outcome"], "queued");
        assert_eq!(queued["error"]["code"], "retries_exhausted");
        assert_eq!(queued["error"]["httpStatus"], 503);
        let skipped = json(&Outcome::Skipped(SkipReason::ConsentDenied(ConsentDenial::AdUserData)));
        assert_eq!(skipped["reason"], "consent_denied");
        assert!(skipped["detail"].as_str().unwrap().contains("ad_user_data"), "{skipped}");
        assert!(skipped.get("error").is_none() && skipped.get("attempts").is_none());
    }
}
