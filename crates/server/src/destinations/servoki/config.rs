//! Servoki-style endpoint settings, as the builder and the TOML file hold them.

use tally_core::destinations::servoki::{self as core_servoki};

use crate::config::check_url;
use crate::error::ConfigError;
use crate::secret::Secret;

/// A Servoki-style server-events endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServokiConfig {
    /// The site: its domain or numeric site code.
    pub site: String,
    /// The API key (`servoki_…`), sent as a bearer token.
    pub api_key: Secret,
    /// The endpoint, default [`core_servoki::DEFAULT_URL`].
    pub url: String,
}

impl ServokiConfig {
    /// Server events for `site` with `api_key`.
    pub fn new(site: impl Into<String>, api_key: impl Into<Secret>) -> ServokiConfig {
        ServokiConfig { site: site.into(), api_key: api_key.into(), url: core_servoki::DEFAULT_URL.to_owned() }
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
