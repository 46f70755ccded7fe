//! Meta settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::meta::{self as core_meta};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// Meta Conversions API settings; in a configuration file, the `[meta]`
/// section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// The pixel (dataset) id, digits.
    pub pixel_id: String,
    /// A system-user access token (Events Manager › Settings › Conversions API).
    pub access_token: Secret,
    /// Graph API version, default [`core_meta::DEFAULT_API_VERSION`].
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Graph base URL (loopback in tests).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `test_event_code` from Events Manager › Test events; remove in production.
    #[serde(default)]
    pub test_event_code: Option<String>,
    /// `action_source` of every event (default `website`; in a file
    /// `"website"`, `"email"`, `"phone_call"`, `"chat"`, `"physical_store"`,
    /// `"system_generated"`, `"business_messaging"` or `"other"`).
    #[serde(default)]
    pub action_source: core_meta::ActionSource,
    /// Limited Data Use flags (in a file `{ country = 1, state = 1000 }`;
    /// `0` lets Meta geolocate).
    #[serde(default)]
    pub limited_data_use: Option<core_meta::LimitedDataUse>,
}

fn default_api_version() -> String {
    core_meta::DEFAULT_API_VERSION.to_owned()
}

fn default_base_url() -> String {
    core_meta::DEFAULT_BASE_URL.to_owned()
}

impl FileSettings for MetaConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.meta(self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        MetaConfig::new("1234567890", "meta-sample-token")
            .api_version("v99.0")
            .base_url("http://127.0.0.1:9/meta")
            .test_event_code("TEST123")
            .action_source(core_meta::ActionSource::PhysicalStore)
            .limited_data_use(core_meta::LimitedDataUse { country: 1, state: 1000 })
    }
}

impl MetaConfig {
    /// Meta CAPI for `pixel_id` with `access_token`.
    pub fn new(pixel_id: impl Into<String>, access_token: impl Into<Secret>) -> MetaConfig {
        MetaConfig {
            pixel_id: pixel_id.into(),
            access_token: access_token.into(),
            api_version: default_api_version(),
            base_url: default_base_url(),
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

    /// Flags every event for Limited Data Use (`data_processing_options`).
    pub fn limited_data_use(mut self, l: core_meta::LimitedDataUse) -> Self {
        self.limited_data_use = Some(l);
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
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
        if self.access_token.expose().trim().is_empty() {
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
