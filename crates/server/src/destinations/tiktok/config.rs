//! TikTok settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::tiktok::{self as core_tiktok};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// TikTok Events API 2.0 settings; in a configuration file, the `[tiktok]`
/// section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TikTokConfig {
    /// The pixel code (`event_source_id`).
    pub pixel_code: String,
    /// The Events API access token.
    pub access_token: Secret,
    /// `test_event_code`; remove in production.
    #[serde(default)]
    pub test_event_code: Option<String>,
    /// The endpoint, default [`core_tiktok::DEFAULT_URL`].
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    core_tiktok::DEFAULT_URL.to_owned()
}

impl FileSettings for TikTokConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.tiktok(self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        TikTokConfig::new("C4SAMPLE", "tt-sample-token").url("http://127.0.0.1:9/tiktok").test_event_code("TEST42")
    }
}

impl TikTokConfig {
    /// TikTok for `pixel_code` with `access_token`.
    pub fn new(pixel_code: impl Into<String>, access_token: impl Into<Secret>) -> TikTokConfig {
        TikTokConfig {
            pixel_code: pixel_code.into(),
            access_token: access_token.into(),
            test_event_code: None,
            url: default_url(),
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

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
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
        if self.access_token.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "tiktok.access_token",
                hint: "generate an Events API access token in TikTok Events Manager › Settings",
            });
        }
        check_url("tiktok.url", &self.url)
    }
}
