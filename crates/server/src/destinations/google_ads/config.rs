//! Google Ads settings: the account, the credentials, the conversion actions
//! and labels, and which API carries them ([`GoogleAdsApi`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tally_core::EventName;
use tally_core::destinations::google_ads as core_ads;

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// Which Google Ads conversion-action label each helper's event feeds.
///
/// The values are keys of [`GoogleAdsConfig::conversion_actions`] (on the
/// browser the same strings are the gtag `send_to` labels). An event whose name
/// has no label here is reported as `Skipped(NoLabelConfigured)` at Google Ads.
/// Refunds use the `purchase` label's action (as a conversion adjustment).
///
/// In a configuration file, a table of event name → label:
/// `labels = { purchase = "purchase", sign_up = "signup" }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
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

impl From<BTreeMap<String, String>> for AdsLabels {
    fn from(by_event: BTreeMap<String, String>) -> AdsLabels {
        let mut labels = AdsLabels::default();
        for (event, label) in by_event {
            labels.set(&event, label);
        }
        labels
    }
}

impl From<AdsLabels> for BTreeMap<String, String> {
    fn from(labels: AdsLabels) -> BTreeMap<String, String> {
        labels.entries().into_iter().map(|(event, label)| (event, label.to_owned())).collect()
    }
}

/// Which Google API carries conversions to Google Ads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
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
/// a conversion's value but not retract it. In a configuration file `"skip"`
/// or `"google_ads_api"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
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
/// default) or the Google Ads API. In a configuration file, the
/// `[google_ads]` section: the field names are its keys, plus
/// `service_account_key_file` (a file holding `service_account_key`).
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsConfig {
    /// Which API conversions go through (default: the Data Manager API).
    #[serde(default)]
    pub api: GoogleAdsApi,
    /// The account that owns the conversion actions (dashes allowed; sent as
    /// 10 digits, as the Data Manager `operatingAccount`).
    pub customer_id: String,
    /// The manager (MCC) account the credentials reach `customer_id` through:
    /// the Data Manager `loginAccount` (the `login-customer-id` header on the
    /// Google Ads API).
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// OAuth 2.0 client id (Google Cloud console › Credentials).
    #[serde(default)]
    pub client_id: String,
    /// OAuth 2.0 client secret.
    #[serde(default)]
    pub client_secret: Secret,
    /// A refresh token granted the `datamanager` scope (and `adwords` for the
    /// Google Ads API path or its retractions).
    #[serde(default)]
    pub refresh_token: Secret,
    /// A service account's JSON key, instead of the client id, secret and
    /// refresh token: tokens come from the JWT-bearer grant. The service
    /// account must be a user of the Google Ads account.
    #[serde(default)]
    pub service_account_key: Option<Secret>,
    /// Developer token, Google Ads API only; optional since Google stopped
    /// requiring it (sent only when set).
    #[serde(default)]
    pub developer_token: Option<Secret>,
    /// Google Ads API version, default [`core_ads::DEFAULT_API_VERSION`].
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Google Ads API base URL (loopback in tests).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Data Manager API base URL (loopback in tests).
    #[serde(default = "default_data_manager_url")]
    pub data_manager_url: String,
    /// Full refunds on the Data Manager path.
    #[serde(default)]
    pub retractions: Retractions,
    /// Merchant Center account of the items (`cartData.merchantId`), Data Manager only.
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// Data Manager request-status polling: the wait before the first poll
    /// (Google's schedule: 30 minutes, then ×1.3 up to an hour, for 24 hours;
    /// a shorter first wait shrinks the whole schedule in proportion).
    /// `None`: no polling. In a configuration file `diagnostics = false`, or
    /// the first wait in ms (`diagnostics_first_poll_ms` is accepted too).
    #[serde(default = "default_diagnostics", alias = "diagnostics_first_poll_ms", with = "first_poll_ms")]
    pub diagnostics: Option<Duration>,
    /// OAuth token endpoint (loopback in tests).
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// Conversion actions by label: the action id (`555666777`) or its resource name
    /// (`customers/1234567890/conversionActions/555666777`).
    #[serde(default)]
    pub conversion_actions: BTreeMap<String, String>,
    /// Which label each helper's event feeds.
    #[serde(default)]
    pub labels: AdsLabels,
    /// Ask Google to validate uploads without storing them (`validateOnly`).
    #[serde(default)]
    pub validate_only: bool,
}

fn default_api_version() -> String {
    core_ads::DEFAULT_API_VERSION.to_owned()
}

fn default_base_url() -> String {
    core_ads::DEFAULT_BASE_URL.to_owned()
}

fn default_data_manager_url() -> String {
    tally_core::destinations::data_manager::DEFAULT_BASE_URL.to_owned()
}

fn default_diagnostics() -> Option<Duration> {
    Some(Duration::from_secs(30 * 60))
}

fn default_token_url() -> String {
    core_ads::TOKEN_URL.to_owned()
}

/// [`GoogleAdsConfig::diagnostics`] in a file: `false` (no polling), `true`
/// (Google's 30 minutes) or the first wait in milliseconds.
mod first_poll_ms {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            None => s.serialize_bool(false),
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct FirstPoll;
        impl Visitor<'_> for FirstPoll {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("false (no status polling), true, or the wait before the first poll in ms")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
                Ok(on.then(super::default_diagnostics).flatten())
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Self::Value, E> {
                Ok(Some(Duration::from_millis(ms)))
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Self::Value, E> {
                u64::try_from(ms)
                    .map(|ms| Some(Duration::from_millis(ms)))
                    .map_err(|_| E::custom("must not be negative"))
            }
        }
        d.deserialize_any(FirstPoll)
    }
}

impl FileSettings for GoogleAdsConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.google_ads(self)
    }

    /// `service_account_key_file`: a file holding the service account's JSON key.
    fn file_shorthands(table: &mut toml::Table, section: &str) -> Result<(), ConfigError> {
        let Some(path) = table.remove("service_account_key_file") else {
            return Ok(());
        };
        if table.contains_key("service_account_key") {
            return Err(ConfigError::InFile {
                setting: format!("{section}.service_account_key"),
                reason: "give service_account_key or service_account_key_file, not both".into(),
            });
        }
        let setting = format!("{section}.service_account_key_file");
        let path = path.as_str().ok_or_else(|| ConfigError::InFile {
            setting: setting.clone(),
            reason: format!("{path}: expected the path of the JSON key file"),
        })?;
        let key = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::InFile { setting, reason: format!("{path}: {e}") })?;
        table.insert("service_account_key".into(), key.into());
        Ok(())
    }

    #[cfg(test)]
    fn sample() -> Self {
        let mut ads = GoogleAdsConfig::new("123-456-7890", "client.sample", "client-secret-sample", "1//sample")
            .api(GoogleAdsApi::GoogleAdsApi)
            .login_customer_id("987-654-3210")
            .developer_token("dev-token-sample")
            .api_version("v99")
            .base_url("http://127.0.0.1:9/ads")
            .data_manager_url("http://127.0.0.1:9/dm")
            .retractions(Retractions::GoogleAdsApi)
            .merchant_id("4242")
            .diagnostics(Some(Duration::from_millis(1500)))
            .token_url("http://127.0.0.1:9/token")
            .conversion_action("buy", "555666777")
            .label("purchase", "buy")
            .label("view_item", "buy")
            .validate_only(true);
        ads.service_account_key = Some(Secret::from("{\"type\": \"service_account\"}"));
        ads
    }
}

impl GoogleAdsConfig {
    /// Google Ads for `customer_id` with OAuth client credentials and a refresh token.
    pub fn new(
        customer_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        refresh_token: impl Into<Secret>,
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
            api_version: default_api_version(),
            base_url: default_base_url(),
            data_manager_url: default_data_manager_url(),
            retractions: Retractions::Skip,
            merchant_id: None,
            diagnostics: default_diagnostics(),
            token_url: default_token_url(),
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
            service_account_key: Some(Secret::from(key_json.into())),
            ..GoogleAdsConfig::new(customer_id, "", "", "")
        }
    }

    /// The service-account key, parsed.
    pub(crate) fn service_account_key(
        &self,
    ) -> Result<Option<crate::destinations::google_ads::oauth::ServiceAccountKey>, ConfigError> {
        self.service_account_key
            .as_ref()
            .map(|k| {
                crate::destinations::google_ads::oauth::ServiceAccountKey::from_json(k.expose()).map_err(|e| ConfigError::Invalid {
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
    pub fn developer_token(mut self, token: impl Into<Secret>) -> Self {
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

    pub(super) fn check(&self) -> Result<(), ConfigError> {
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
                    self.client_id.as_str(),
                    "the OAuth client id from Google Cloud console › APIs & Services › Credentials",
                ),
                ("google_ads.client_secret", self.client_secret.expose(), "the OAuth client secret of that client"),
                (
                    "google_ads.refresh_token",
                    self.refresh_token.expose(),
                    "a refresh token granted the https://www.googleapis.com/auth/datamanager scope (OAuth consent flow), or a service_account_key instead",
                ),
            ]
        };
        for (setting, value, hint) in oauth_settings {
            if value.trim().is_empty() {
                return Err(ConfigError::Missing { setting, hint });
            }
        }
        if self.developer_token.as_ref().is_some_and(|t| t.expose().trim().is_empty()) {
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
