//! Errors of the server crate: configuration (fail at build), tracking input, delivery.

/// A configuration mistake, reported by [`ServerTrackerBuilder::build`](crate::ServerTrackerBuilder::build)
/// with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("{setting} is required: {hint}")]
    Missing {
        /// The setting, e.g. `ga4.api_secret`.
        setting: &'static str,
        /// Where to find or how to set it.
        hint: &'static str,
    },
    /// A setting has a value that cannot work.
    #[error("{setting} is invalid: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why, and what is expected.
        reason: String,
    },
    /// A setting read from a configuration file (`meta.access_token`,
    /// `webhooks.warehouse.batch`) cannot be read: a wrong type or spelling,
    /// an unknown key, or an `env:NAME` whose variable is not set.
    #[error("{setting} is invalid: {reason}")]
    InFile {
        /// The setting, as its section and key.
        setting: String,
        /// Why, and what is expected.
        reason: String,
    },
    /// Nothing to deliver to.
    #[error("no destination is configured: add at least one of {}", crate::destinations::registry::destination_list())]
    NoDestination,
}

/// A tracking call whose input is wrong: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The input breaks a rule of the event model (the core error names the field).
    #[error("invalid input: {0}")]
    Invalid(#[from] tally_core::Error),
}

/// Why a delivery to one destination failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The request never got an answer (DNS, connect, reset, timeout).
    #[error("transport error: {0}")]
    Transport(String),
    /// The destination answered with an error it means.
    #[error("rejected by the destination (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The destination's own message.
        message: String,
    },
    /// The destination asked to slow down (HTTP 429), possibly saying when to come back.
    #[error("rate limited (HTTP 429){}: {message}", .retry_after_secs.map(|s| format!(", retry after {s} s")).unwrap_or_default())]
    RateLimited {
        /// `Retry-After`, in seconds, when given.
        retry_after_secs: Option<u64>,
        /// The destination's message.
        message: String,
    },
    /// Credentials were refused (OAuth, token, key).
    #[error("credentials refused (HTTP {status}): {message}")]
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// The destination's own message.
        message: String,
    },
    /// The idempotency store could not be asked whether the event was already
    /// delivered, so nothing was sent; the event stays in the outbox.
    #[error("idempotency store unavailable; the event stays in the outbox and is tried again")]
    StoreUnavailable,
    /// Some rows of a batch failed (Google Ads partial failure, Rokt unprocessed records).
    #[error("{} row(s) failed: {}", .0.len(), .0.iter().map(|r| format!("{} ({})", r.code, r.message)).collect::<Vec<_>>().join("; "))]
    PartialFailure(Vec<RowError>),
    /// The outbox is full: delivery is falling behind; nothing was accepted.
    #[error("refused: {0}")]
    Refused(String),
    /// Transient failures went on past the retry budget.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<DeliveryError>,
    },
}

/// One failed row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Index of the row in the request.
    pub index: usize,
    /// The destination's error code (e.g. `conversionUploadError:UNPARSEABLE_GCLID`).
    pub code: String,
    /// The destination's message.
    pub message: String,
}

impl DeliveryError {
    /// Every [`DeliveryError::code`], in declaration order: the names the
    /// collector's answer, the OpenAPI document and `tally-web/server`'s types use.
    pub const CODES: &'static [&'static str] = &[
        "transport",
        "rejected",
        "rate_limited",
        "unauthorized",
        "store_unavailable",
        "partial_failure",
        "refused",
        "retries_exhausted",
    ];

    /// A stable snake_case code for JSON and logs.
    pub fn code(&self) -> &'static str {
        match self {
            DeliveryError::Transport(_) => "transport",
            DeliveryError::Rejected { .. } => "rejected",
            DeliveryError::RateLimited { .. } => "rate_limited",
            DeliveryError::Unauthorized { .. } => "unauthorized",
            DeliveryError::StoreUnavailable => "store_unavailable",
            DeliveryError::PartialFailure(_) => "partial_failure",
            DeliveryError::Refused(_) => "refused",
            DeliveryError::RetriesExhausted { .. } => "retries_exhausted",
        }
    }

    /// The HTTP status the destination answered with, when it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            DeliveryError::Rejected { status, .. } | DeliveryError::Unauthorized { status, .. } => Some(*status),
            DeliveryError::RateLimited { .. } => Some(429),
            DeliveryError::RetriesExhausted { last, .. } => last.http_status(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Transport(_)
            | DeliveryError::Refused(_)
            | DeliveryError::RateLimited { .. }
            | DeliveryError::StoreUnavailable => true,
            DeliveryError::RetriesExhausted { last, .. } => last.is_transient(),
            other => other.is_retryable_status(),
        }
    }

    /// The error of the last attempt, unwrapping [`DeliveryError::RetriesExhausted`].
    pub fn into_last(self) -> DeliveryError {
        match self {
            DeliveryError::RetriesExhausted { last, .. } => last.into_last(),
            other => other,
        }
    }

    /// When every row of a partial failure was refused only for being too
    /// recent (Google Ads API `TOO_RECENT_*`: a click under 6 h old, a new conversion action),
    /// how long until sending it again can succeed. The
    /// tracker keeps such events in the outbox for that long instead of
    /// dropping them.
    pub fn too_recent_wait(&self) -> Option<std::time::Duration> {
        match self {
            DeliveryError::PartialFailure(rows) if !rows.is_empty() => rows
                .iter()
                .map(|r| tally_core::destinations::google_ads::too_recent_wait_ms(&r.code))
                .try_fold(0i64, |most, wait| wait.map(|w| most.max(w)))
                .map(|ms| std::time::Duration::from_millis(ms.unsigned_abs())),
            DeliveryError::RetriesExhausted { last, .. } => last.too_recent_wait(),
            _ => None,
        }
    }

    /// The wait the destination asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DeliveryError::RateLimited { retry_after_secs, .. } => retry_after_secs.map(std::time::Duration::from_secs),
            DeliveryError::RetriesExhausted { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    fn is_retryable_status(&self) -> bool {
        // The one status rule: tally_core::http.
        matches!(self, DeliveryError::Rejected { status, .. }
            if tally_core::http::status_class(*status) == tally_core::http::StatusClass::Transient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str) -> RowError {
        RowError { index: 0, code: code.into(), message: String::new() }
    }

    #[test]
    fn codes_list_every_variant_once() {
        let all = [
            DeliveryError::Transport(String::new()),
            DeliveryError::Rejected { status: 400, message: String::new() },
            DeliveryError::RateLimited { retry_after_secs: None, message: String::new() },
            DeliveryError::Unauthorized { status: 401, message: String::new() },
            DeliveryError::StoreUnavailable,
            DeliveryError::PartialFailure(vec![]),
            DeliveryError::Refused(String::new()),
            DeliveryError::RetriesExhausted { attempts: 1, last: Box::new(DeliveryError::StoreUnavailable) },
        ];
        // Exhaustive: a new variant does not compile here until it is listed above.
        for e in &all {
            match e {
                DeliveryError::Transport(_)
                | DeliveryError::Rejected { .. }
                | DeliveryError::RateLimited { .. }
                | DeliveryError::Unauthorized { .. }
                | DeliveryError::StoreUnavailable
                | DeliveryError::PartialFailure(_)
                | DeliveryError::Refused(_)
                | DeliveryError::RetriesExhausted { .. } => {}
            }
        }
        let codes: Vec<&str> = all.iter().map(DeliveryError::code).collect();
        assert_eq!(codes, DeliveryError::CODES);
    }

    #[test]
    fn only_rows_refused_for_being_too_recent_wait() {
        let hour = std::time::Duration::from_secs(3600);
        let wait = |rows: Vec<RowError>| DeliveryError::PartialFailure(rows).too_recent_wait();
        assert_eq!(wait(vec![row("conversionUploadError:TOO_RECENT_EVENT")]), Some(6 * hour));
        assert_eq!(
            wait(vec![row("conversionUploadError:TOO_RECENT_EVENT"), row("TOO_RECENT_CONVERSION_ACTION")]),
            Some(6 * hour),
            "every row too recent"
        );
        assert_eq!(wait(vec![row("TOO_RECENT_EVENT"), row("conversionUploadError:UNPARSEABLE_GCLID")]), None);
        assert_eq!(wait(vec![]), None);
        assert_eq!(DeliveryError::Transport("down".into()).too_recent_wait(), None);
        let exhausted = DeliveryError::RetriesExhausted {
            attempts: 2,
            last: Box::new(DeliveryError::PartialFailure(vec![row("TOO_RECENT_EVENT")])),
        };
        assert_eq!(exhausted.too_recent_wait(), Some(6 * hour));
    }
}
