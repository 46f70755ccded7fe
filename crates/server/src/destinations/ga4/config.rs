//! GA4 settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::ga4::{self as core_ga4};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// GA4 Measurement Protocol settings; in a configuration file, the `[ga4]`
/// section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Config {
    /// `G-…` measurement id of the web stream.
    pub measurement_id: String,
    /// Measurement Protocol API secret (Admin › Data streams › Measurement Protocol API secrets).
    pub api_secret: Secret,
    /// Base URL; default Google's, `EU_BASE_URL` for EU collection (`eu = true`
    /// in a file), loopback in tests.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Send to `/debug/mp/collect` and turn `validationMessages` into errors.
    #[serde(default)]
    pub validate: bool,
}

fn default_base_url() -> String {
    core_ga4::DEFAULT_BASE_URL.to_owned()
}

impl FileSettings for Ga4Config {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.ga4(self)
    }

    /// `eu = true`: the EU collection endpoint, unless `base_url` is given.
    fn file_shorthands(table: &mut toml::Table, section: &str) -> Result<(), ConfigError> {
        match table.remove("eu") {
            None | Some(toml::Value::Boolean(false)) => Ok(()),
            Some(toml::Value::Boolean(true)) => {
                table.entry("base_url").or_insert_with(|| core_ga4::EU_BASE_URL.into());
                Ok(())
            }
            Some(other) => Err(ConfigError::InFile {
                setting: format!("{section}.eu"),
                reason: format!("{other}: expected true (the EU endpoint) or false"),
            }),
        }
    }

    #[cfg(test)]
    fn sample() -> Self {
        Ga4Config::new("G-SAMPLE1", "ga4-sample-secret").base_url("http://127.0.0.1:9/ga4").validate(true)
    }
}

impl Ga4Config {
    /// GA4 with Google's default endpoint.
    pub fn new(measurement_id: impl Into<String>, api_secret: impl Into<Secret>) -> Ga4Config {
        Ga4Config {
            measurement_id: measurement_id.into(),
            api_secret: api_secret.into(),
            base_url: default_base_url(),
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

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
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
        if self.api_secret.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "ga4.api_secret",
                hint: "create one in GA4 Admin › Data streams › Measurement Protocol API secrets",
            });
        }
        check_url("ga4.base_url", &self.base_url)
    }
}
