//! Rokt settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};
use tally_core::destinations::rokt::{self as core_rokt};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// Rokt Event API v2 settings; in a configuration file, the `[rokt]`
/// section (the field names are its keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoktConfig {
    /// The advertiser account id (at most 64 characters).
    pub account_id: String,
    /// The public key, `rpub-…`.
    pub public_key: String,
    /// The secret key, `rsec-…`.
    pub secret: Secret,
    /// The endpoint, default [`core_rokt::DEFAULT_URL`].
    #[serde(default = "default_url")]
    pub url: String,
    /// The `Rokt-Version` header, default [`core_rokt::ROKT_VERSION`].
    #[serde(default = "default_rokt_version")]
    pub rokt_version: String,
}

fn default_url() -> String {
    core_rokt::DEFAULT_URL.to_owned()
}

fn default_rokt_version() -> String {
    core_rokt::ROKT_VERSION.to_owned()
}

impl FileSettings for RoktConfig {
    fn add_to(self, builder: ServerTrackerBuilder, _name: &str) -> ServerTrackerBuilder {
        builder.rokt(self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        RoktConfig::new("12345", "rpub-sample", "rsec-sample")
            .url("http://127.0.0.1:9/rokt/v2/events")
            .rokt_version("2099-01-01")
    }
}

impl RoktConfig {
    /// Rokt for `account_id` with the key pair the account manager issued.
    pub fn new(account_id: impl Into<String>, public_key: impl Into<String>, secret: impl Into<Secret>) -> RoktConfig {
        RoktConfig {
            account_id: account_id.into(),
            public_key: public_key.into(),
            secret: secret.into(),
            url: default_url(),
            rokt_version: default_rokt_version(),
        }
    }

    /// Overrides the endpoint (the full `…/v2/events` URL).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Pins another `Rokt-Version` header (default [`core_rokt::ROKT_VERSION`]).
    pub fn rokt_version(mut self, v: impl Into<String>) -> Self {
        self.rokt_version = v.into();
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
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
        if self.secret.expose().trim().is_empty() {
            return Err(ConfigError::Missing {
                setting: "rokt.secret",
                hint: "the rsec-… key issued by your Rokt account manager",
            });
        }
        core_rokt::basic_auth(&self.public_key, self.secret.expose()).map_err(|e| match e.field() {
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
