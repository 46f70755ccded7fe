//! Building a [`ServerTracker`]: destinations, store, defaults. Mistakes fail at `build()`.

use std::sync::Arc;
use std::time::Duration;

use tally_core::ConsentState;
use tally_core::destinations::ga4 as core_ga4;

use crate::error::ConfigError;
use crate::retry::RetryPolicy;
use crate::destination::Destination;
use crate::ga4::Ga4Destination;
use crate::store::{IdempotencyStore, MemoryOutbox, MemoryStore, Outbox};
use tally_core::normalize::NormalizeOptions;
use crate::tracker::ServerTracker;

/// GA4 Measurement Protocol settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ga4Config {
    /// `G-…` measurement id of the web stream.
    pub measurement_id: String,
    /// Measurement Protocol API secret (Admin › Data streams › Measurement Protocol API secrets).
    pub api_secret: String,
    /// Base URL; default Google's, `EU_BASE_URL` for EU collection, loopback in tests.
    pub base_url: String,
    /// Send to `/debug/mp/collect` and turn `validationMessages` into errors.
    pub validate: bool,
}

impl Ga4Config {
    /// GA4 with Google's default endpoint.
    pub fn new(measurement_id: impl Into<String>, api_secret: impl Into<String>) -> Ga4Config {
        Ga4Config {
            measurement_id: measurement_id.into(),
            api_secret: api_secret.into(),
            base_url: core_ga4::DEFAULT_BASE_URL.to_owned(),
            validate: false,
        }
    }

    /// Overrides the base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Uses the EU collection endpoint.
    pub fn eu(self) -> Self {
        self.base_url(core_ga4::EU_BASE_URL)
    }

    /// Validation mode (debug endpoint).
    pub fn validate(mut self, on: bool) -> Self {
        self.validate = on;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.measurement_id.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "ga4.measurement_id",
                hint: "the G-… id of your web data stream",
            });
        }
        core_ga4::validate_measurement_id(self.measurement_id.trim()).map_err(|e| ConfigError::Invalid {
            setting: "ga4.measurement_id",
            reason: e.to_string(),
        })?;
        if self.api_secret.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "ga4.api_secret",
                hint: "create one in GA4 Admin › Data streams › Measurement Protocol API secrets",
            });
        }
        check_url("ga4.base_url", &self.base_url)
    }
}

pub(crate) fn check_url(setting: &'static str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
        _ => Err(ConfigError::Invalid {
            setting,
            reason: format!("{url:?} is not an http(s) URL"),
        }),
    }
}

/// Builder for [`ServerTracker`].
pub struct ServerTrackerBuilder {
    pub(crate) ga4: Option<Ga4Config>,
    pub(crate) store: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) outbox: Option<Arc<dyn Outbox>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) normalize: NormalizeOptions,
    pub(crate) retention: Duration,
    pub(crate) default_consent: ConsentState,
    pub(crate) http: Option<reqwest::Client>,
}

impl Default for ServerTrackerBuilder {
    fn default() -> Self {
        ServerTrackerBuilder {
            ga4: None,
            store: None,
            outbox: None,
            retry: RetryPolicy::default(),
            lease: crate::tracker::LEASE,
            poll_interval: Duration::from_millis(250),
            normalize: NormalizeOptions::default(),
            retention: Duration::from_secs(48 * 3600),
            default_consent: ConsentState::default(),
            http: None,
        }
    }
}

impl ServerTrackerBuilder {
    /// Adds GA4.
    pub fn ga4(mut self, c: Ga4Config) -> Self {
        self.ga4 = Some(c);
        self
    }

    /// Sets the idempotency store (default: in memory).
    pub fn store(mut self, s: Arc<dyn IdempotencyStore>) -> Self {
        self.store = Some(s);
        self
    }

    /// Sets the outbox (default: in memory, 100,000 entries).
    pub fn outbox(mut self, o: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(o);
        self
    }

    /// Uses one backend for both the idempotency keys and the outbox (SQLite, Redis).
    pub fn durable<S: IdempotencyStore + Outbox>(mut self, s: Arc<S>) -> Self {
        self.store = Some(s.clone());
        self.outbox = Some(s);
        self
    }

    /// How long a worker holds a key or an entry before another may take over (default 60 s).
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How often the background worker looks for due entries when idle (default 250 ms).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// The calling code prepended to national phone numbers before hashing (e.g. `"1"`).
    pub fn default_calling_code(mut self, cc: impl Into<String>) -> Self {
        self.normalize.default_calling_code = Some(cc.into());
        self
    }

    /// Sets the retry policy for every destination: attempts in all (the first,
    /// made at once, included) and the backoff between the worker's attempts.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// How long a delivered key is remembered (at least 48 hours).
    pub fn dedup_retention(mut self, d: Duration) -> Self {
        self.retention = d;
        self
    }

    /// Consent assumed when a call and its envelope carry none. Default: all
    /// unknown, so nothing goes to a third party without a decision.
    pub fn default_consent(mut self, c: ConsentState) -> Self {
        self.default_consent = c;
        self
    }

    /// Uses this HTTP client (connection pool, proxy).
    pub fn http_client(mut self, c: reqwest::Client) -> Self {
        self.http = Some(c);
        self
    }

    /// Checks everything and builds the tracker.
    pub fn build(self) -> Result<ServerTracker, ConfigError> {
        if let Some(g) = &self.ga4 {
            g.check()?;
        }
        if self.ga4.is_none() {
            return Err(ConfigError::NoDestination);
        }
        if self.retention < Duration::from_secs(48 * 3600) {
            return Err(ConfigError::Invalid {
                setting: "dedup_retention",
                reason: "must be at least 48 hours, the longest dedup window of the destinations".into(),
            });
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::Invalid {
                setting: "retry.max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        let http = match self.http.clone() {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(self.retry.timeout)
                .user_agent(concat!("tally-server/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::Invalid {
                    setting: "http",
                    reason: e.to_string(),
                })?,
        };
        let store = self.store.clone().unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let outbox = self.outbox.clone().unwrap_or_else(|| Arc::new(MemoryOutbox::new(100_000)));
        let mut destinations = Vec::new();
        if let Some(g) = self.ga4.clone() {
            destinations.push(Destination::Ga4(Ga4Destination::new(g)));
        }
        Ok(ServerTracker::from_parts(self, http, store, outbox, destinations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_errors_say_what_to_fix() {
        let e = ServerTracker::builder().build().err().unwrap();
        assert_eq!(e, ConfigError::NoDestination);
        let e = ServerTracker::builder().ga4(Ga4Config::new("G-ABC", "")).build().err().unwrap();
        assert!(e.to_string().contains("ga4.api_secret is required"), "{e}");
        let e = ServerTracker::builder().ga4(Ga4Config::new("UA-1", "s")).build().err().unwrap();
        assert!(e.to_string().contains("ga4.measurement_id"), "{e}");
        let e = ServerTracker::builder()
            .ga4(Ga4Config::new("G-ABC", "s").base_url("ftp://x"))
            .build()
            .err()
            .unwrap();
        assert!(e.to_string().contains("ga4.base_url"), "{e}");
        let e = ServerTracker::builder()
            .ga4(Ga4Config::new("G-ABC", "s"))
            .dedup_retention(Duration::from_secs(60))
            .build()
            .err()
            .unwrap();
        assert!(e.to_string().contains("48 hours"), "{e}");
        assert!(ServerTracker::builder().ga4(Ga4Config::new("G-ABC", "s")).build().is_ok());
    }
}
