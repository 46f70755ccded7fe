//! Building a [`ServerTracker`]: destinations, store, defaults. Mistakes fail at `build()`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tally_core::destinations::ga4 as core_ga4;
use tally_core::destinations::google_ads as core_ads;
use tally_core::destinations::meta as core_meta;
use tally_core::destinations::rokt as core_rokt;
use tally_core::destinations::servoki as core_servoki;
use tally_core::destinations::tiktok as core_tiktok;
use tally_core::normalize::NormalizeOptions;
use tally_core::{ConsentState, EventName};

use crate::destination::Destination;
use crate::error::ConfigError;
use crate::ga4::Ga4Destination;
use crate::google_ads::GoogleAdsDestination;
use crate::meta::MetaDestination;
use crate::retry::RetryPolicy;
use crate::rokt::RoktDestination;
use crate::servoki::ServokiDestination;
use crate::store::{IdempotencyStore, MemoryOutbox, MemoryStore, Outbox};
use crate::tiktok::TikTokDestination;
use crate::tracker::ServerTracker;
use crate::webhook::WebhookDestination;

/// GA4 Measurement Protocol settings.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for Ga4Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ga4Config")
            .field("measurement_id", &self.measurement_id)
            .field("api_secret", &REDACTED)
            .field("base_url", &self.base_url)
            .field("validate", &self.validate)
            .finish()
    }
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
            // The core error names the setting too; keep only its reason.
            reason: match e {
                tally_core::Error::Invalid { reason, .. } => format!("{:?}: {reason}", self.measurement_id),
                other => other.to_string(),
            },
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
        _ => Err(ConfigError::Invalid { setting, reason: format!("{url:?} is not an http(s) URL") }),
    }
}

/// Which Google Ads conversion-action label each helper's event feeds.
///
/// The values are keys of [`GoogleAdsConfig::conversion_actions`] (on the
/// browser the same strings are the gtag `send_to` labels). An event whose name
/// has no label here is reported as `Skipped(NoLabelConfigured)` at Google Ads.
/// Refunds use the `purchase` label's action (as a conversion adjustment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdsLabels {
    /// `purchase` (and the adjustments of refunds).
    pub purchase: Option<String>,
    /// `sign_up`.
    pub sign_up: Option<String>,
    /// `generate_lead` (`track_lead`).
    pub lead: Option<String>,
    /// `add_to_cart`.
    pub add_to_cart: Option<String>,
    /// `begin_checkout`.
    pub begin_checkout: Option<String>,
    /// `add_payment_info`.
    pub add_payment_info: Option<String>,
    /// Any other event, by its GA4 name (`view_item`, `login`, custom names …).
    pub other: BTreeMap<String, String>,
}

impl AdsLabels {
    /// The label configured for events called `name`.
    pub fn label_for(&self, name: &EventName) -> Option<&str> {
        let named = match name {
            EventName::Purchase => self.purchase.as_deref(),
            EventName::SignUp => self.sign_up.as_deref(),
            EventName::GenerateLead => self.lead.as_deref(),
            EventName::AddToCart => self.add_to_cart.as_deref(),
            EventName::BeginCheckout => self.begin_checkout.as_deref(),
            EventName::AddPaymentInfo => self.add_payment_info.as_deref(),
            _ => None,
        };
        named.or_else(|| self.other.get(name.as_str()).map(String::as_str))
    }

    /// Sets the label of events called `event` (GA4 spelling; `lead` is
    /// accepted for `generate_lead`).
    pub fn set(&mut self, event: &str, label: impl Into<String>) {
        let label = Some(label.into());
        match event.trim() {
            "purchase" => self.purchase = label,
            "sign_up" => self.sign_up = label,
            "lead" | "generate_lead" => self.lead = label,
            "add_to_cart" => self.add_to_cart = label,
            "begin_checkout" => self.begin_checkout = label,
            "add_payment_info" => self.add_payment_info = label,
            other => {
                if let Some(l) = label {
                    self.other.insert(other.to_owned(), l);
                }
            }
        }
    }

    /// Every `(event, label)` pair, for checks and display.
    pub fn entries(&self) -> Vec<(String, &str)> {
        let mut v: Vec<(String, &str)> = [
            ("purchase", &self.purchase),
            ("sign_up", &self.sign_up),
            ("generate_lead", &self.lead),
            ("add_to_cart", &self.add_to_cart),
            ("begin_checkout", &self.begin_checkout),
            ("add_payment_info", &self.add_payment_info),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|l| (k.to_owned(), l)))
        .collect();
        v.extend(self.other.iter().map(|(k, l)| (k.clone(), l.as_str())));
        v
    }
}

/// Which Google API carries conversions to Google Ads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoogleAdsApi {
    /// The Data Manager API (`events:ingest`): the default, and the only
    /// path Google opens to new offline-conversion uploaders since 2026-06-15.
    #[default]
    DataManager,
    /// The Google Ads API (`:uploadClickConversions`, `:uploadConversionAdjustments`),
    /// for developers Google still allowlists.
    GoogleAdsApi,
}

impl GoogleAdsApi {
    /// The configuration spelling: `data_manager` or `google_ads_api`.
    pub fn as_str(self) -> &'static str {
        match self {
            GoogleAdsApi::DataManager => "data_manager",
            GoogleAdsApi::GoogleAdsApi => "google_ads_api",
        }
    }
}

/// What becomes of a full refund on the Data Manager path, which can restate
/// a conversion's value but not retract it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retractions {
    /// Reported as `Skipped(RetractionUnsupported)`, saying what to do.
    #[default]
    Skip,
    /// Sent as a `RETRACTION` through the Google Ads API
    /// (`:uploadConversionAdjustments`), for accounts that still have access
    /// to it; the refresh token must then carry the `adwords` scope too.
    GoogleAdsApi,
}

/// Google Ads settings: conversions through the Data Manager API (the
/// default) or the Google Ads API.
///
/// ```
/// use tally_server::GoogleAdsConfig;
/// let ads = GoogleAdsConfig::new("123-456-7890", "client-id.apps.googleusercontent.com", "client-secret", "1//refresh")
///     .login_customer_id("987-654-3210")
///     .conversion_action("AbC-D_efG-h12_34-567", "555666777")
///     .label("purchase", "AbC-D_efG-h12_34-567");
/// assert_eq!(ads.labels.purchase.as_deref(), Some("AbC-D_efG-h12_34-567"));
/// assert_eq!(ads.api, tally_server::GoogleAdsApi::DataManager);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct GoogleAdsConfig {
    /// Which API conversions go through (default: the Data Manager API).
    pub api: GoogleAdsApi,
    /// The account that owns the conversion actions (dashes allowed; sent as
    /// 10 digits, as the Data Manager `operatingAccount`).
    pub customer_id: String,
    /// The manager (MCC) account the credentials reach `customer_id` through:
    /// the Data Manager `loginAccount` (the `login-customer-id` header on the
    /// Google Ads API).
    pub login_customer_id: Option<String>,
    /// OAuth 2.0 client id (Google Cloud console › Credentials).
    pub client_id: String,
    /// OAuth 2.0 client secret.
    pub client_secret: String,
    /// A refresh token granted the `datamanager` scope (and `adwords` for the
    /// Google Ads API path or its retractions).
    pub refresh_token: String,
    /// A service account's JSON key, instead of the client id, secret and
    /// refresh token: tokens come from the JWT-bearer grant. The service
    /// account must be a user of the Google Ads account.
    pub service_account_key: Option<crate::Secret>,
    /// Developer token, Google Ads API only; optional since Google stopped
    /// requiring it (sent only when set).
    pub developer_token: Option<String>,
    /// Google Ads API version, default [`core_ads::DEFAULT_API_VERSION`].
    pub api_version: String,
    /// Google Ads API base URL (loopback in tests).
    pub base_url: String,
    /// Data Manager API base URL (loopback in tests).
    pub data_manager_url: String,
    /// Full refunds on the Data Manager path.
    pub retractions: Retractions,
    /// Merchant Center account of the items (`cartData.merchantId`), Data Manager only.
    pub merchant_id: Option<String>,
    /// Data Manager request-status polling: the wait before the first poll
    /// (Google's schedule: 30 minutes, then ×1.3 up to an hour, for 24 hours;
    /// a shorter first wait shrinks the whole schedule in proportion).
    /// `None`: no polling.
    pub diagnostics: Option<Duration>,
    /// OAuth token endpoint (loopback in tests).
    pub token_url: String,
    /// Conversion actions by label: the action id (`555666777`) or its resource name
    /// (`customers/1234567890/conversionActions/555666777`).
    pub conversion_actions: BTreeMap<String, String>,
    /// Which label each helper's event feeds.
    pub labels: AdsLabels,
    /// Ask Google to validate uploads without storing them (`validateOnly`).
    pub validate_only: bool,
}

impl fmt::Debug for GoogleAdsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAdsConfig")
            .field("api", &self.api)
            .field("customer_id", &self.customer_id)
            .field("login_customer_id", &self.login_customer_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("service_account_key", &self.service_account_key.as_ref().map(|_| REDACTED))
            .field("developer_token", &self.developer_token.as_ref().map(|_| REDACTED))
            .field("api_version", &self.api_version)
            .field("base_url", &self.base_url)
            .field("data_manager_url", &self.data_manager_url)
            .field("retractions", &self.retractions)
            .field("merchant_id", &self.merchant_id)
            .field("diagnostics", &self.diagnostics)
            .field("token_url", &self.token_url)
            .field("conversion_actions", &self.conversion_actions)
            .field("labels", &self.labels)
            .field("validate_only", &self.validate_only)
            .finish()
    }
}

const REDACTED: &str = "[redacted]";

impl GoogleAdsConfig {
    /// Google Ads for `customer_id` with OAuth client credentials and a refresh token.
    pub fn new(
        customer_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> GoogleAdsConfig {
        GoogleAdsConfig {
            api: GoogleAdsApi::DataManager,
            customer_id: customer_id.into(),
            login_customer_id: None,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            service_account_key: None,
            developer_token: None,
            api_version: core_ads::DEFAULT_API_VERSION.to_owned(),
            base_url: core_ads::DEFAULT_BASE_URL.to_owned(),
            data_manager_url: tally_core::destinations::data_manager::DEFAULT_BASE_URL.to_owned(),
            retractions: Retractions::Skip,
            merchant_id: None,
            diagnostics: Some(Duration::from_secs(30 * 60)),
            token_url: core_ads::TOKEN_URL.to_owned(),
            conversion_actions: BTreeMap::new(),
            labels: AdsLabels::default(),
            validate_only: false,
        }
    }

    /// Google Ads for `customer_id` with a service account: `key_json` is
    /// the JSON key file Google Cloud gives out (checked at `build()`).
    ///
    /// ```
    /// use tally_server::GoogleAdsConfig;
    /// let ads = GoogleAdsConfig::service_account("123-456-7890", std::env::var("GOOGLE_KEY").unwrap_or_default())
    ///     .conversion_action("purchase", "555666777")
    ///     .label("purchase", "purchase");
    /// assert!(ads.service_account_key.is_some());
    /// ```
    pub fn service_account(customer_id: impl Into<String>, key_json: impl Into<String>) -> GoogleAdsConfig {
        GoogleAdsConfig {
            service_account_key: Some(crate::Secret::from(key_json.into())),
            ..GoogleAdsConfig::new(customer_id, "", "", "")
        }
    }

    /// The service-account key, parsed.
    pub(crate) fn service_account_key(&self) -> Result<Option<crate::oauth::ServiceAccountKey>, ConfigError> {
        self.service_account_key
            .as_ref()
            .map(|k| {
                crate::oauth::ServiceAccountKey::from_json(k.expose()).map_err(|e| ConfigError::Invalid {
                    setting: "google_ads.service_account_key",
                    reason: format!("{e} (give the JSON key file of the service account, from Google Cloud console › IAM › Service accounts › Keys)"),
                })
            })
            .transpose()
    }

    /// The OAuth scopes the tokens need: `datamanager`, and `adwords` where
    /// the Google Ads API is called.
    pub(crate) fn scopes(&self) -> Vec<&'static str> {
        use tally_core::destinations::data_manager::SCOPE as DM;
        match (self.api, self.retractions) {
            (GoogleAdsApi::GoogleAdsApi, _) => vec![core_ads::SCOPE],
            (GoogleAdsApi::DataManager, Retractions::GoogleAdsApi) => vec![DM, core_ads::SCOPE],
            (GoogleAdsApi::DataManager, Retractions::Skip) => vec![DM],
        }
    }

    /// Chooses the API: [`GoogleAdsApi::GoogleAdsApi`] keeps the Google Ads
    /// API path for developers Google still allowlists.
    pub fn api(mut self, api: GoogleAdsApi) -> Self {
        self.api = api;
        self
    }

    /// Overrides the Data Manager API base URL.
    pub fn data_manager_url(mut self, url: impl Into<String>) -> Self {
        self.data_manager_url = url.into();
        self
    }

    /// What becomes of full refunds on the Data Manager path.
    pub fn retractions(mut self, r: Retractions) -> Self {
        self.retractions = r;
        self
    }

    /// Sends items with this Merchant Center account id (`cartData.merchantId`).
    pub fn merchant_id(mut self, id: impl Into<String>) -> Self {
        self.merchant_id = Some(id.into());
        self
    }

    /// Request-status polling: `Some(first wait)` or `None` for none (see
    /// [`GoogleAdsConfig::diagnostics`]).
    pub fn diagnostics(mut self, first_poll: Option<Duration>) -> Self {
        self.diagnostics = first_poll;
        self
    }

    /// Sets the manager account (`loginAccount`, `login-customer-id`).
    pub fn login_customer_id(mut self, id: impl Into<String>) -> Self {
        self.login_customer_id = Some(id.into());
        self
    }

    /// Sends a `developer-token` header.
    pub fn developer_token(mut self, token: impl Into<String>) -> Self {
        self.developer_token = Some(token.into());
        self
    }

    /// Pins the API version (`v26`).
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = v.into();
        self
    }

    /// Overrides the API base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Overrides the OAuth token endpoint.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    /// Adds a conversion action under `label`.
    pub fn conversion_action(mut self, label: impl Into<String>, action: impl Into<String>) -> Self {
        self.conversion_actions.insert(label.into(), action.into());
        self
    }

    /// Makes events called `event` (`purchase`, `sign_up`, `generate_lead` …) feed the action labelled `label`.
    pub fn label(mut self, event: &str, label: impl Into<String>) -> Self {
        self.labels.set(event, label);
        self
    }

    /// Validation mode (`validateOnly`): Google checks, stores nothing.
    pub fn validate_only(mut self, on: bool) -> Self {
        self.validate_only = on;
        self
    }

    /// What a person setting this up should know, in words: the 2026 change
    /// when the Google Ads API is chosen, settings the chosen API ignores, and
    /// what becomes of full refunds. `tally check` prints these.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.api {
            GoogleAdsApi::GoogleAdsApi => notes.push(
                "google_ads: api = \"google_ads_api\" — since 2026-06-15 the Google Ads API accepts offline \
                 conversion imports only from developers Google allowlisted (others get \
                 CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE); remove `api` to send through the Data Manager API"
                    .to_owned(),
            ),
            GoogleAdsApi::DataManager => {
                if self.developer_token.is_some() {
                    notes.push(
                        "google_ads: developer_token is not used by the Data Manager API (only by \
                         retractions = \"google_ads_api\")"
                            .to_owned(),
                    );
                }
                notes.push(match self.retractions {
                    Retractions::Skip => "google_ads: full refunds are reported as skipped \
                        (retraction_unsupported): the Data Manager API cannot retract a conversion; partial \
                        refunds restate the order's value at once"
                        .to_owned(),
                    Retractions::GoogleAdsApi => "google_ads: full refunds go through the Google Ads API \
                        (uploadConversionAdjustments): the refresh token needs the adwords scope as well as \
                        datamanager"
                        .to_owned(),
                });
                if self.validate_only {
                    notes.push("google_ads: validate_only — Google checks every request and stores nothing".to_owned());
                }
            }
        }
        notes
    }

    fn check(&self) -> Result<(), ConfigError> {
        core_ads::normalize_customer_id(&self.customer_id).map_err(|e| match e {
            tally_core::Error::Missing { .. } => ConfigError::Missing {
                setting: "google_ads.customer_id",
                hint: "the 10-digit id of the account that owns the conversion actions, e.g. 123-456-7890",
            },
            _ => ConfigError::Invalid {
                setting: "google_ads.customer_id",
                reason: format!("{:?}: expected 10 digits such as 123-456-7890", self.customer_id),
            },
        })?;
        if let Some(l) = &self.login_customer_id {
            core_ads::normalize_customer_id(l).map_err(|_| ConfigError::Invalid {
                setting: "google_ads.login_customer_id",
                reason: format!("{l:?}: expected the manager account's 10 digits such as 987-654-3210"),
            })?;
        }
        let oauth_settings = if self.service_account_key.is_some() {
            self.service_account_key()?;
            Vec::new()
        } else {
            vec![
                (
                    "google_ads.client_id",
                    &self.client_id,
                    "the OAuth client id from Google Cloud console › APIs & Services › Credentials",
                ),
                ("google_ads.client_secret", &self.client_secret, "the OAuth client secret of that client"),
                (
                    "google_ads.refresh_token",
                    &self.refresh_token,
                    "a refresh token granted the https://www.googleapis.com/auth/datamanager scope (OAuth consent flow), or a service_account_key instead",
                ),
            ]
        };
        for (setting, value, hint) in oauth_settings {
            if value.trim().is_empty() {
                return Err(ConfigError::Missing { setting, hint });
            }
        }
        if self.developer_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                setting: "google_ads.developer_token",
                reason: "is empty: leave it unset (it is optional) or give the 22-character token".into(),
            });
        }
        let v = self.api_version.trim();
        if !(v.len() >= 2 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())) {
            return Err(ConfigError::Invalid {
                setting: "google_ads.api_version",
                reason: format!("{v:?}: expected a version such as {}", core_ads::DEFAULT_API_VERSION),
            });
        }
        check_url("google_ads.base_url", &self.base_url)?;
        check_url("google_ads.data_manager_url", &self.data_manager_url)?;
        check_url("google_ads.token_url", &self.token_url)?;
        if let Some(m) = &self.merchant_id
            && (m.trim().is_empty() || !m.trim().bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError::Invalid {
                setting: "google_ads.merchant_id",
                reason: format!("{m:?}: expected the Merchant Center account id, digits only"),
            });
        }
        if self.diagnostics.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Invalid {
                setting: "google_ads.diagnostics_first_poll",
                reason: "must be above zero (leave diagnostics on with Google's 30 minutes, or turn them off)".into(),
            });
        }
        if self.conversion_actions.is_empty() {
            return Err(ConfigError::Missing {
                setting: "google_ads.conversion_actions",
                hint: "map at least one label to a conversion action id (Google Ads › Goals › Conversions › the action's ctId)",
            });
        }
        for (label, action) in &self.conversion_actions {
            if label.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    setting: "google_ads.conversion_actions",
                    reason: "a label is empty".into(),
                });
            }
            core_ads::AdsTarget::new(&self.customer_id, action).map_err(|_| ConfigError::Invalid {
                setting: "google_ads.conversion_actions",
                reason: format!(
                    "label {label:?} maps to {action:?}: expected the numeric action id or customers/{{cid}}/conversionActions/{{id}}"
                ),
            })?;
        }
        for (event, label) in self.labels.entries() {
            if !self.conversion_actions.contains_key(label) {
                let known: Vec<&str> = self.conversion_actions.keys().map(String::as_str).collect();
                return Err(ConfigError::Invalid {
                    setting: "google_ads.labels",
                    reason: format!(
                        "the {event} label {label:?} names no configured conversion action; add it to google_ads.conversion_actions (configured: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Meta Conversions API settings.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaConfig {
    /// The pixel (dataset) id, digits.
    pub pixel_id: String,
    /// A system-user access token (Events Manager › Settings › Conversions API).
    pub access_token: String,
    /// Graph API version, default [`core_meta::DEFAULT_API_VERSION`].
    pub api_version: String,
    /// Graph base URL (loopback in tests).
    pub base_url: String,
    /// `test_event_code` from Events Manager › Test events; remove in production.
    pub test_event_code: Option<String>,
    /// `action_source` of every event (default `website`).
    pub action_source: core_meta::ActionSource,
    /// Limited Data Use flags.
    pub limited_data_use: Option<core_meta::LimitedDataUse>,
}

impl fmt::Debug for MetaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaConfig")
            .field("pixel_id", &self.pixel_id)
            .field("access_token", &REDACTED)
            .field("api_version", &self.api_version)
            .field("base_url", &self.base_url)
            .field("test_event_code", &self.test_event_code)
            .field("action_source", &self.action_source)
            .field("limited_data_use", &self.limited_data_use)
            .finish()
    }
}

impl MetaConfig {
    /// Meta CAPI for `pixel_id` with `access_token`.
    pub fn new(pixel_id: impl Into<String>, access_token: impl Into<String>) -> MetaConfig {
        MetaConfig {
            pixel_id: pixel_id.into(),
            access_token: access_token.into(),
            api_version: core_meta::DEFAULT_API_VERSION.to_owned(),
            base_url: core_meta::DEFAULT_BASE_URL.to_owned(),
            test_event_code: None,
            action_source: core_meta::ActionSource::Website,
            limited_data_use: None,
        }
    }

    /// Overrides the Graph base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Pins the Graph API version (`v25.0`).
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = v.into();
        self
    }

    /// Sends every event with this `test_event_code`.
    pub fn test_event_code(mut self, code: impl Into<String>) -> Self {
        self.test_event_code = Some(code.into());
        self
    }

    /// Sets the `action_source`.
    pub fn action_source(mut self, s: core_meta::ActionSource) -> Self {
        self.action_source = s;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.pixel_id.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "meta.pixel_id",
                hint: "the numeric pixel (dataset) id from Events Manager",
            });
        }
        core_meta::validate_pixel_id(self.pixel_id.trim()).map_err(|_| ConfigError::Invalid {
            setting: "meta.pixel_id",
            reason: format!("{:?}: expected the numeric pixel (dataset) id from Events Manager", self.pixel_id),
        })?;
        if self.access_token.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "meta.access_token",
                hint: "generate one in Events Manager › Settings › Conversions API",
            });
        }
        let v = self.api_version.trim();
        let ok = v.strip_prefix('v').and_then(|r| r.split_once('.')).is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(ConfigError::Invalid {
                setting: "meta.api_version",
                reason: format!("{v:?}: expected a Graph API version such as {}", core_meta::DEFAULT_API_VERSION),
            });
        }
        if self.test_event_code.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                setting: "meta.test_event_code",
                reason: "is empty: leave it unset, or copy the code from Events Manager › Test events".into(),
            });
        }
        check_url("meta.base_url", &self.base_url)
    }
}

/// Rokt Event API v2 settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RoktConfig {
    /// The advertiser account id (at most 64 characters).
    pub account_id: String,
    /// The public key, `rpub-…`.
    pub public_key: String,
    /// The secret key, `rsec-…`.
    pub secret: String,
    /// The endpoint, default [`core_rokt::DEFAULT_URL`].
    pub url: String,
    /// The `Rokt-Version` header, default [`core_rokt::ROKT_VERSION`].
    pub rokt_version: String,
}

impl fmt::Debug for RoktConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoktConfig")
            .field("account_id", &self.account_id)
            .field("public_key", &self.public_key)
            .field("secret", &REDACTED)
            .field("url", &self.url)
            .field("rokt_version", &self.rokt_version)
            .finish()
    }
}

impl RoktConfig {
    /// Rokt for `account_id` with the key pair the account manager issued.
    pub fn new(account_id: impl Into<String>, public_key: impl Into<String>, secret: impl Into<String>) -> RoktConfig {
        RoktConfig {
            account_id: account_id.into(),
            public_key: public_key.into(),
            secret: secret.into(),
            url: core_rokt::DEFAULT_URL.to_owned(),
            rokt_version: core_rokt::ROKT_VERSION.to_owned(),
        }
    }

    /// Overrides the endpoint (the full `…/v2/events` URL).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        let account = self.account_id.trim();
        if account.is_empty() {
            return Err(ConfigError::Missing {
                setting: "rokt.account_id",
                hint: "the advertiser account id your Rokt account manager gave you",
            });
        }
        if account.chars().count() > core_rokt::MAX_ACCOUNT_ID {
            return Err(ConfigError::Invalid {
                setting: "rokt.account_id",
                reason: format!("is longer than {} characters", core_rokt::MAX_ACCOUNT_ID),
            });
        }
        if self.public_key.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "rokt.public_key",
                hint: "the rpub-… key issued by your Rokt account manager",
            });
        }
        if self.secret.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "rokt.secret",
                hint: "the rsec-… key issued by your Rokt account manager",
            });
        }
        core_rokt::basic_auth(&self.public_key, &self.secret).map_err(|e| match e.field() {
            "rokt.public_key" => ConfigError::Invalid {
                setting: "rokt.public_key",
                reason: "expected the public key issued by Rokt, starting with rpub-".into(),
            },
            _ => ConfigError::Invalid {
                setting: "rokt.secret",
                reason: "expected the secret key issued by Rokt, starting with rsec-".into(),
            },
        })?;
        if self.rokt_version.trim().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "rokt.rokt_version",
                reason: format!("is empty (that would mean \"latest\"); pin {}", core_rokt::ROKT_VERSION),
            });
        }
        check_url("rokt.url", &self.url)
    }
}

/// A Servoki-style server-events endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ServokiConfig {
    /// The site: its domain or numeric site code.
    pub site: String,
    /// The API key (`servoki_…`), sent as a bearer token.
    pub api_key: String,
    /// The endpoint, default [`core_servoki::DEFAULT_URL`].
    pub url: String,
}

impl fmt::Debug for ServokiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServokiConfig")
            .field("site", &self.site)
            .field("api_key", &REDACTED)
            .field("url", &self.url)
            .finish()
    }
}

impl ServokiConfig {
    /// Server events for `site` with `api_key`.
    pub fn new(site: impl Into<String>, api_key: impl Into<String>) -> ServokiConfig {
        ServokiConfig { site: site.into(), api_key: api_key.into(), url: core_servoki::DEFAULT_URL.to_owned() }
    }

    /// Overrides the endpoint (the full URL).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.site.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "servoki.site",
                hint: "the site's domain (example.com) or numeric site code",
            });
        }
        if self.api_key.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "servoki.api_key",
                hint: "create an API key in the dashboard under API keys",
            });
        }
        check_url("servoki.url", &self.url)
    }
}

/// TikTok Events API 2.0 settings.
#[derive(Clone, PartialEq, Eq)]
pub struct TikTokConfig {
    /// The pixel code (`event_source_id`).
    pub pixel_code: String,
    /// The Events API access token.
    pub access_token: String,
    /// `test_event_code`; remove in production.
    pub test_event_code: Option<String>,
    /// The endpoint, default [`core_tiktok::DEFAULT_URL`].
    pub url: String,
}

impl fmt::Debug for TikTokConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TikTokConfig")
            .field("pixel_code", &self.pixel_code)
            .field("access_token", &REDACTED)
            .field("test_event_code", &self.test_event_code)
            .field("url", &self.url)
            .finish()
    }
}

impl TikTokConfig {
    /// TikTok for `pixel_code` with `access_token`.
    pub fn new(pixel_code: impl Into<String>, access_token: impl Into<String>) -> TikTokConfig {
        TikTokConfig {
            pixel_code: pixel_code.into(),
            access_token: access_token.into(),
            test_event_code: None,
            url: core_tiktok::DEFAULT_URL.to_owned(),
        }
    }

    /// Overrides the endpoint (the full `…/event/track/` URL).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sends every event with this `test_event_code`.
    pub fn test_event_code(mut self, code: impl Into<String>) -> Self {
        self.test_event_code = Some(code.into());
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        let p = self.pixel_code.trim();
        if p.is_empty() {
            return Err(ConfigError::Missing {
                setting: "tiktok.pixel_code",
                hint: "the pixel code from TikTok Events Manager",
            });
        }
        if !p.bytes().all(|b| b.is_ascii_alphanumeric()) || p.len() > 64 {
            return Err(ConfigError::Invalid {
                setting: "tiktok.pixel_code",
                reason: format!("{p:?}: expected the alphanumeric pixel code from TikTok Events Manager"),
            });
        }
        if self.access_token.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "tiktok.access_token",
                hint: "generate an Events API access token in TikTok Events Manager › Settings",
            });
        }
        check_url("tiktok.url", &self.url)
    }
}

/// A webhook or warehouse sink: every event as signed JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to `POST`.
    pub url: String,
    /// The HMAC-SHA256 secret the receiver verifies `X-Tally-Signature` with.
    pub secret: String,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url).field("secret", &REDACTED).finish()
    }
}

impl WebhookConfig {
    /// A sink at `url` signing with `secret`.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> WebhookConfig {
        WebhookConfig { url: url.into(), secret: secret.into() }
    }

    fn check(&self, name: &str) -> Result<(), ConfigError> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::Invalid {
                setting: "webhook.name",
                reason: format!(
                    "{name:?}: use 1–64 lower-case letters, digits, '_' or '-' (it names the destination webhook:<name>)"
                ),
            });
        }
        check_url("webhook.url", &self.url).map_err(|e| match e {
            ConfigError::Invalid { setting, reason } => {
                ConfigError::Invalid { setting, reason: format!("webhook {name:?}: {reason}") }
            }
            other => other,
        })?;
        if self.secret.is_empty() {
            return Err(ConfigError::Missing {
                setting: "webhook.secret",
                hint: "a random secret shared with the receiver, which verifies X-Tally-Signature with it",
            });
        }
        Ok(())
    }
}

/// Builder for [`ServerTracker`].
pub struct ServerTrackerBuilder {
    pub(crate) ga4: Option<Ga4Config>,
    pub(crate) google_ads: Option<GoogleAdsConfig>,
    pub(crate) meta: Option<MetaConfig>,
    pub(crate) rokt: Option<RoktConfig>,
    pub(crate) servoki: Option<ServokiConfig>,
    pub(crate) tiktok: Option<TikTokConfig>,
    pub(crate) webhooks: Vec<(String, WebhookConfig)>,
    pub(crate) store: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) outbox: Option<Arc<dyn Outbox>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) normalize: NormalizeOptions,
    pub(crate) retention: Duration,
    pub(crate) default_consent: ConsentState,
    pub(crate) order_id: tally_core::OrderIdForm,
    pub(crate) lanes: std::collections::BTreeMap<String, crate::lane::LaneSettings>,
    pub(crate) http: Option<reqwest::Client>,
}

impl Default for ServerTrackerBuilder {
    fn default() -> Self {
        ServerTrackerBuilder {
            ga4: None,
            google_ads: None,
            meta: None,
            rokt: None,
            servoki: None,
            tiktok: None,
            webhooks: Vec::new(),
            store: None,
            outbox: None,
            retry: RetryPolicy::default(),
            lease: crate::tracker::LEASE,
            poll_interval: Duration::from_millis(250),
            normalize: NormalizeOptions::default(),
            retention: Duration::from_secs(48 * 3600),
            default_consent: ConsentState::default(),
            order_id: tally_core::OrderIdForm::AsGiven,
            lanes: std::collections::BTreeMap::new(),
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

    /// Adds Google Ads (click conversions, refunds as adjustments).
    pub fn google_ads(mut self, c: GoogleAdsConfig) -> Self {
        self.google_ads = Some(c);
        self
    }

    /// Adds the Meta Conversions API.
    pub fn meta(mut self, c: MetaConfig) -> Self {
        self.meta = Some(c);
        self
    }

    /// Adds the Rokt Event API.
    pub fn rokt(mut self, c: RoktConfig) -> Self {
        self.rokt = Some(c);
        self
    }

    /// Adds a Servoki-style server-events endpoint.
    pub fn servoki(mut self, c: ServokiConfig) -> Self {
        self.servoki = Some(c);
        self
    }

    /// Adds the TikTok Events API.
    pub fn tiktok(mut self, c: TikTokConfig) -> Self {
        self.tiktok = Some(c);
        self
    }

    /// Adds a webhook or warehouse sink, reported as `webhook:<name>`. Any number may be added.
    pub fn webhook(mut self, name: impl Into<String>, c: WebhookConfig) -> Self {
        self.webhooks.push((name.into(), c));
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
    pub fn lane(mut self, destination: impl Into<String>, settings: crate::lane::LaneSettings) -> Self {
        self.lanes.insert(destination.into(), settings);
        self
    }

    /// The lane settings of `dest`: as set with [`ServerTrackerBuilder::lane`],
    /// else its kind's defaults, the batch capped at what its API takes.
    pub(crate) fn lane_settings_for(&self, dest: &crate::destination::Destination) -> crate::lane::LaneSettings {
        let defaults = crate::lane::LaneSettings::for_kind(dest.kind());
        match self.lanes.get(dest.name()) {
            Some(s) => s.max_batch(s.max_batch.min(defaults.max_batch.max(1)).max(1)),
            None => defaults,
        }
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
        if let Some(a) = &self.google_ads {
            a.check()?;
        }
        if let Some(m) = &self.meta {
            m.check()?;
        }
        if let Some(r) = &self.rokt {
            r.check()?;
        }
        if let Some(s) = &self.servoki {
            s.check()?;
        }
        if let Some(t) = &self.tiktok {
            t.check()?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (name, w) in &self.webhooks {
            w.check(name)?;
            if !names.insert(name.as_str()) {
                return Err(ConfigError::Invalid {
                    setting: "webhook.name",
                    reason: format!("{name:?} is configured twice: give each sink its own name"),
                });
            }
        }
        if self.ga4.is_none()
            && self.google_ads.is_none()
            && self.meta.is_none()
            && self.rokt.is_none()
            && self.servoki.is_none()
            && self.tiktok.is_none()
            && self.webhooks.is_empty()
        {
            return Err(ConfigError::NoDestination);
        }
        if self.retention < Duration::from_secs(48 * 3600) {
            return Err(ConfigError::Invalid {
                setting: "dedup_retention",
                reason: "must be at least 48 hours, the longest dedup window of the destinations".into(),
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
        let mut destinations = Vec::new();
        if let Some(g) = self.ga4.clone() {
            destinations.push(Destination::Ga4(Ga4Destination::new(g)));
        }
        if let Some(a) = self.google_ads.clone() {
            destinations.push(Destination::GoogleAds(GoogleAdsDestination::new(a)?));
        }
        if let Some(m) = self.meta.clone() {
            destinations.push(Destination::Meta(MetaDestination::new(m)));
        }
        if let Some(r) = self.rokt.clone() {
            destinations.push(Destination::Rokt(RoktDestination::new(r)?));
        }
        if let Some(s) = self.servoki.clone() {
            destinations.push(Destination::Servoki(ServokiDestination::new(s)));
        }
        if let Some(t) = self.tiktok.clone() {
            destinations.push(Destination::TikTok(TikTokDestination::new(t)));
        }
        for (name, w) in self.webhooks.clone() {
            destinations.push(Destination::Webhook(WebhookDestination::new(&name, w)));
        }
        if let Some(unknown) = self.lanes.keys().find(|n| !destinations.iter().any(|d| d.name() == n.as_str())) {
            let names: Vec<&str> = destinations.iter().map(Destination::name).collect();
            return Err(ConfigError::Invalid {
                setting: "lanes",
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
