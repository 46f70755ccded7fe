//! Pinterest settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::pinterest::{self as core_pinterest};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// Pinterest Conversions API settings; in a configuration file, the
/// `[pinterest]` section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PinterestConfig {
    /// The ad account id, digits (Ads Manager › the account's overview).
    pub ad_account_id: String,
    /// The conversion access token (Ads Manager › Conversions › Conversion access token).
    pub access_token: Secret,
    /// Every request with `?test=true`: Pinterest validates the events and
    /// does not record them. Remove in production.
    #[serde(default)]
    pub test: bool,
    /// The API's base URL, default [`core_pinterest::DEFAULT_BASE_URL`]
    /// (requests go to `{base_url}/ad_accounts/{ad_account_id}/events`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    core_pinterest::DEFAULT_BASE_URL.to_owned()
}

impl FileSettings for PinterestConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.pinterest(self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        PinterestConfig::new("549755885175", "pina-sample-token").base_url("http://127.0.0.1:9/pinterest/v5").test(true)
    }
}

impl PinterestConfig {
    /// Pinterest for `ad_account_id` with the conversion `access_token`.
    pub fn new(ad_account_id: impl Into<String>, access_token: impl Into<Secret>) -> PinterestConfig {
        PinterestConfig {
            ad_account_id: ad_account_id.into(),
            access_token: access_token.into(),
            test: false,
            base_url: default_base_url(),
        }
    }

    /// Overrides the API's base URL (up to `/v5`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sends every request as a test request (`?test=true`): validated, not recorded.
    pub fn test(mut self, test: bool) -> Self {
        self.test = test;
        self
    }

    /// The URL events are posted to.
    pub(crate) fn events_url(&self) -> String {
        core_pinterest::events_url(self.base_url.trim(), &self.ad_account_id, self.test)
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        match core_pinterest::validate_ad_account_id(&self.ad_account_id) {
            Ok(()) => {}
            Err(tally_core::Error::Missing { .. }) => {
                return Err(ConfigError::Missing {
                    setting: "pinterest.ad_account_id",
                    hint: "the ad account id from Pinterest Ads Manager (digits)",
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    setting: "pinterest.ad_account_id",
                    reason: format!("{:?}: {e}", self.ad_account_id.trim()),
                });
            }
        }
        if self.access_token.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "pinterest.access_token",
                hint: "generate a conversion access token in Pinterest Ads Manager › Conversions",
            });
        }
        check_url("pinterest.base_url", &self.base_url)
    }
}
