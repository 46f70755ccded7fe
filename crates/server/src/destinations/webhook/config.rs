//! webhook sink settings, as the builder and the TOML file hold them.

use serde::{Deserialize, Serialize};

use crate::config::{ServerTrackerBuilder, check_url};
use crate::destinations::registry::FileSettings;
use crate::error::ConfigError;
use crate::secret::Secret;

/// A webhook or warehouse sink: every event as signed JSON; in a
/// configuration file, a `[webhooks.<name>]` section (the field names are its
/// keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to `POST`.
    pub url: String,
    /// The HMAC-SHA256 secret the receiver verifies `X-Tally-Signature` with.
    pub secret: Secret,
    /// Events per request at most (1, the default: one record per request;
    /// up to 500). Above 1 the sink receives `records` bodies
    /// holding events of any visitors.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_batch() -> usize {
    1
}

impl FileSettings for WebhookConfig {
    fn add_to(self, builder: ServerTrackerBuilder, name: &str) -> ServerTrackerBuilder {
        builder.webhook(name, self)
    }

    #[cfg(test)]
    fn sample() -> Self {
        WebhookConfig::new("http://127.0.0.1:9/hook", "whsec-sample").batch(100)
    }
}

/// The largest [`WebhookConfig::batch`].
pub const MAX_BATCH: usize = 500;

impl WebhookConfig {
    /// A sink at `url` signing with `secret`.
    pub fn new(url: impl Into<String>, secret: impl Into<Secret>) -> WebhookConfig {
        WebhookConfig { url: url.into(), secret: secret.into(), batch: default_batch() }
    }

    /// With up to `n` events per request (1 to 500; checked when
    /// the tracker is built).
    ///
    /// ```
    /// use tally_server::WebhookConfig;
    /// let sink = WebhookConfig::new("https://warehouse.example/tally", "env-secret").batch(100);
    /// assert_eq!(sink.batch, 100);
    /// ```
    pub fn batch(mut self, n: usize) -> WebhookConfig {
        self.batch = n;
        self
    }

    pub(crate) fn check(&self, name: &str) -> Result<(), ConfigError> {
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
        if self.secret.expose().is_empty() {
            return Err(ConfigError::Missing {
                setting: "webhook.secret",
                hint: "a random secret shared with the receiver, which verifies X-Tally-Signature with it",
            });
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(ConfigError::Invalid {
                setting: "webhook.batch",
                reason: format!("webhook {name:?}: {} events per request: use 1 to {MAX_BATCH}", self.batch),
            });
        }
        Ok(())
    }
}
