//! Building a [`ServerTracker`]: destinations, store, defaults. Mistakes fail at `build()`.

use std::sync::Arc;
use std::time::Duration;

use tally_core::ConsentState;
use tally_core::normalize::NormalizeOptions;

use crate::destinations::DestinationSettings;
use crate::destinations::webhook::NamedWebhook;
use crate::engine::Route;
use crate::engine::retry::RetryPolicy;
use crate::error::ConfigError;
use crate::store::{IdempotencyStore, MemoryOutbox, MemoryStore, Outbox};
use crate::tracker::ServerTracker;

pub use crate::destinations::ga4::Ga4Config;
pub use crate::destinations::google_ads::{AdsLabels, GoogleAdsApi, GoogleAdsConfig, Retractions};
pub use crate::destinations::meta::MetaConfig;
pub use crate::destinations::pinterest::PinterestConfig;
pub use crate::destinations::rokt::RoktConfig;
pub use crate::destinations::servoki::ServokiConfig;
pub use crate::destinations::tiktok::TikTokConfig;
pub use crate::destinations::webhook::WebhookConfig;

pub(crate) use crate::engine::http::check_url;

/// Builder for [`ServerTracker`].
pub struct ServerTrackerBuilder {
    /// Every destination's settings, in the order they were added.
    pub(crate) destinations: Vec<Box<dyn DestinationSettings>>,
    pub(crate) store: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) outbox: Option<Arc<dyn Outbox>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) normalize: NormalizeOptions,
    pub(crate) retention: Duration,
    pub(crate) journal_retention: Duration,
    pub(crate) default_consent: ConsentState,
    pub(crate) order_id: tally_core::OrderIdForm,
    pub(crate) lanes: std::collections::BTreeMap<String, crate::engine::lane::LaneSettings>,
    pub(crate) bots: std::collections::BTreeMap<String, crate::bots::BotPolicy>,
    pub(crate) http: Option<reqwest::Client>,
}

impl Default for ServerTrackerBuilder {
    fn default() -> Self {
        ServerTrackerBuilder {
            destinations: Vec::new(),
            store: None,
            outbox: None,
            retry: RetryPolicy::default(),
            lease: crate::tracker::LEASE,
            poll_interval: Duration::from_millis(250),
            normalize: NormalizeOptions::default(),
            retention: Duration::from_secs(48 * 3600),
            journal_retention: crate::store::journal::JOURNAL_RETENTION,
            default_consent: ConsentState::default(),
            order_id: tally_core::OrderIdForm::AsGiven,
            lanes: std::collections::BTreeMap::new(),
            bots: std::collections::BTreeMap::new(),
            http: None,
        }
    }
}

impl ServerTrackerBuilder {
    /// Adds GA4.
    pub fn ga4(self, c: Ga4Config) -> Self {
        self.destination(c)
    }

    /// Adds Google Ads (click conversions, refunds as adjustments).
    pub fn google_ads(self, c: GoogleAdsConfig) -> Self {
        self.destination(c)
    }

    /// Adds the Meta Conversions API.
    pub fn meta(self, c: MetaConfig) -> Self {
        self.destination(c)
    }

    /// Adds the Rokt Event API.
    pub fn rokt(self, c: RoktConfig) -> Self {
        self.destination(c)
    }

    /// Adds a Servoki-style server-events endpoint.
    pub fn servoki(self, c: ServokiConfig) -> Self {
        self.destination(c)
    }

    /// Adds the TikTok Events API.
    pub fn tiktok(self, c: TikTokConfig) -> Self {
        self.destination(c)
    }

    /// Adds the Pinterest Conversions API.
    pub fn pinterest(self, c: PinterestConfig) -> Self {
        self.destination(c)
    }

    /// Adds a webhook or warehouse sink, reported as `webhook:<name>`. Any number may be added.
    pub fn webhook(mut self, name: impl Into<String>, c: WebhookConfig) -> Self {
        // Not replaced by name: two sinks of one name are refused at `build()`.
        self.destinations.push(Box::new(NamedWebhook { name: name.into(), cfg: c }));
        self
    }

    /// Adds a destination, replacing earlier settings of the same name.
    fn destination(mut self, settings: impl DestinationSettings) -> Self {
        let name = settings.name();
        self.destinations.retain(|d| d.name() != name);
        self.destinations.push(Box::new(settings));
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

    /// How long a worker holds a key or an entry before another may take over
    /// (default 30 s, [`LEASE`](crate::tracker::LEASE); keep it above the request timeout).
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How often the background worker looks for due entries when idle (default 250 ms).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// How the order id fills the destinations' order and transaction id
    /// fields (GA4 `transaction_id`, Google Ads `orderId`): as given (the
    /// default, so reports match the shop's order export) or
    /// [`OrderIdForm::Hashed`](tally_core::OrderIdForm::Hashed). The browser's
    /// `orderId` option must be the same.
    pub fn order_id(mut self, form: tally_core::OrderIdForm) -> Self {
        self.order_id = form;
        self
    }

    /// How the lane of `destination` (`meta`, `ga4`, `webhook:warehouse`, …)
    /// batches and paces its requests; each destination has its own defaults
    /// ([`LaneSettings::for_kind`](crate::LaneSettings::for_kind)).
    ///
    /// ```
    /// use tally_core::DestinationKind;
    /// use tally_server::{LaneSettings, ServerTracker};
    /// let b = ServerTracker::builder()
    ///     .lane("meta", LaneSettings::for_kind(DestinationKind::Meta).window(2).max_requests_per_minute(Some(300)));
    /// # drop(b);
    /// ```
    pub fn lane(mut self, destination: impl Into<String>, settings: crate::engine::lane::LaneSettings) -> Self {
        self.lanes.insert(destination.into(), settings);
        self
    }

    /// The lane settings of `dest`: as set with [`ServerTrackerBuilder::lane`],
    /// else its kind's defaults, the batch capped at what its API takes.
    pub(crate) fn lane_settings_for(&self, dest: &Route) -> crate::engine::lane::LaneSettings {
        let defaults = dest.lane_defaults();
        match self.lanes.get(dest.name()) {
            Some(s) => s.max_batch(s.max_batch.min(defaults.max_batch.max(1)).max(1)),
            None => defaults,
        }
    }

    /// What `destination` (`ga4`, `meta`, `webhook:warehouse` …) does with the
    /// events of known bots: see [`crate::bots`]. Without it, its kind's
    /// default ([`BotPolicy::default_for`](crate::bots::BotPolicy::default_for)).
    pub fn bots(mut self, destination: impl Into<String>, policy: crate::bots::BotPolicy) -> Self {
        self.bots.insert(destination.into(), policy);
        self
    }

    /// The bot policy of `dest`: as set with [`ServerTrackerBuilder::bots`], else its kind's default.
    pub(crate) fn bot_policy_for(&self, dest: &Route) -> crate::bots::BotPolicy {
        self.bots.get(dest.name()).copied().unwrap_or_else(|| crate::bots::BotPolicy::default_for(dest.kind()))
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

    /// How long the [order journal](crate::store::journal) keeps its rows
    /// (at least 24 hours, what the status page shows; default 8 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// let tracker = tally_server::ServerTracker::builder()
    ///     .ga4(tally_server::Ga4Config::new("G-ABC123", "api-secret"))
    ///     .journal_retention(Duration::from_secs(3 * 24 * 3600))
    ///     .build()
    ///     .unwrap();
    /// # drop(tracker);
    /// ```
    pub fn journal_retention(mut self, d: Duration) -> Self {
        self.journal_retention = d;
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
        if self.destinations.is_empty() {
            return Err(ConfigError::NoDestination);
        }
        let mut names = std::collections::BTreeSet::new();
        for settings in &self.destinations {
            settings.check()?;
            let name = settings.name();
            if !names.insert(name.clone()) {
                return Err(ConfigError::Invalid {
                    setting: "webhook.name",
                    reason: format!(
                        "{:?} is configured twice: give each sink its own name",
                        name.strip_prefix("webhook:").unwrap_or(&name)
                    ),
                });
            }
        }
        if self.retention < Duration::from_secs(48 * 3600) {
            return Err(ConfigError::Invalid {
                setting: "dedup_retention",
                reason: "must be at least 48 hours, the longest dedup window of the destinations".into(),
            });
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&self.lease) {
            return Err(ConfigError::Invalid {
                setting: "lease",
                reason: format!(
                    "{} ms: use 1 s to 24 h (`[server] lease_ms`), above the request timeout",
                    self.lease.as_millis()
                ),
            });
        }
        if self.journal_retention < Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Invalid {
                setting: "journal_retention",
                reason: "must be at least 24 hours (`[server] journal_days` at least 1), the longest window of the status page"
                    .into(),
            });
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::Invalid { setting: "retry.max_attempts", reason: "must be at least 1".into() });
        }
        let http = match self.http.clone() {
            Some(c) => c,
            None => reqwest::Client::builder()
                .timeout(self.retry.timeout)
                .user_agent(concat!("tally-server/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::Invalid { setting: "http", reason: e.to_string() })?,
        };
        let store = self.store.clone().unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let outbox = self.outbox.clone().unwrap_or_else(|| Arc::new(MemoryOutbox::new(100_000)));
        // Results list destinations by kind (alphabetical), webhooks last in the order added.
        let mut destinations = self
            .destinations
            .iter()
            .map(|settings| settings.destination().map(Route::new))
            .collect::<Result<Vec<_>, _>>()?;
        destinations.sort_by_key(|d| d.kind().as_str());
        if let Some(unknown) = self.lanes.keys().find(|n| !destinations.iter().any(|d| d.name() == n.as_str())) {
            let names: Vec<&str> = destinations.iter().map(Route::name).collect();
            return Err(ConfigError::Invalid {
                setting: "lanes",
                reason: format!("{unknown:?} is not a configured destination (configured: {})", names.join(", ")),
            });
        }
        if let Some(unknown) = self.bots.keys().find(|n| !destinations.iter().any(|d| d.name() == n.as_str())) {
            let names: Vec<&str> = destinations.iter().map(Route::name).collect();
            return Err(ConfigError::Invalid {
                setting: "bots",
                reason: format!("{unknown:?} is not a configured destination (configured: {})", names.join(", ")),
            });
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
        let e = ServerTracker::builder().ga4(Ga4Config::new("G-ABC", "s").base_url("ftp://x")).build().err().unwrap();
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
