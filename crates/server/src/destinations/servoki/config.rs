//! Servoki-style endpoint settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::servoki::{self as core_servoki};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// A Servoki-style server-events endpoint; in a configuration file, the
/// `[servoki]` section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServokiConfig {
    /// The site: its domain or numeric site code.
    pub site: String,
    /// The API key (`servoki_…`), sent as a bearer token.
    pub api_key: Secret,
    /// The endpoint, default [`core_servoki::DEFAULT_URL`].
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    core_servoki::DEFAULT_URL.to_owned()
}

impl FileSettings for ServokiConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.servoki(self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        ServokiConfig::new("shop.example", "servoki_sample").url("http://127.0.0.1:9/servoki")
    }
}

impl ServokiConfig {
    /// Server events for `site` with `api_key`.
    pub fn new(site: impl Into<String>, api_key: impl Into<Secret>) -> ServokiConfig {
        ServokiConfig { site: site.into(), api_key: api_key.into(), url: default_url() }
    }

    /// Overrides the endpoint (the full URL).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.site.trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "servoki.site",
                hint: "the site's domain (example.com) or numeric site code",
            });
        }
        if self.api_key.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "servoki.api_key",
                hint: "create an API key in the dashboard under API keys",
            });
        }
        check_url("servoki.url", &self.url)
    }
}
