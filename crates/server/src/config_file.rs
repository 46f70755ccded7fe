//! Configuration from a TOML file or environment variables, for `tally serve`
//! and for backends that prefer files to code.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8787"
//! store = "sqlite:/var/lib/tally/tally.db"   # default "sqlite:tally.db"; or "redis://…", or "memory"
//! default_consent = "unknown"                 # "granted" only where no consent is required
//! order_id = "as_given"                       # or "hashed"; the browser's orderId must match
//! journal_days = 8                            # the order journal behind GET /status (at least 1)
//! header_read_timeout_ms = 10000              # request line and headers, and HTTP/1.1 keep-alive waits
//! body_read_timeout_ms = 15000                # a whole /collect body (408 when slower)
//! idle_timeout_ms = 30000                     # no byte either way: the connection is closed
//! max_connections = 1024                      # open client connections at most
//!
//! [collector]
//! site_keys = ["pk_live_1"]
//! allowed_origins = ["https://shop.example"]
//! server_secrets = ["env:TALLY_SERVER_SECRET"]
//! metrics = true                              # GET /metrics (Prometheus)
//! metrics_token = "env:TALLY_METRICS_TOKEN"   # what /metrics asks for: Authorization: Bearer <token>
//!
//! [ga4]
//! measurement_id = "G-ABC123"
//! api_secret = "env:GA4_API_SECRET"
//!
//! [google_ads]
//! customer_id = "123-456-7890"
//! client_id = "env:GOOGLE_OAUTH_CLIENT_ID"
//! client_secret = "env:GOOGLE_OAUTH_CLIENT_SECRET"
//! refresh_token = "env:GOOGLE_ADS_REFRESH_TOKEN"   # granted the datamanager scope
//! # service_account_key_file = "/etc/tally/sa.json"  # instead of the three above
//! conversion_actions = { purchase = "555666777" }
//! labels = { purchase = "purchase" }
//! # api = "google_ads_api"                   # default "data_manager"; the Google Ads API only takes allowlisted developers
//! # retractions = "google_ads_api"           # full refunds through the Google Ads API; default "skip"
//!
//! [meta]
//! pixel_id = "1234567890"
//! access_token = "env:META_ACCESS_TOKEN"
//!
//! [rokt]
//! account_id = "12345"
//! public_key = "env:ROKT_PUBLIC_KEY"
//! secret = "env:ROKT_SECRET"
//!
//! [servoki]
//! site = "shop.example"
//! api_key = "env:SERVOKI_API_KEY"
//!
//! [webhooks.warehouse]
//! url = "https://warehouse.example/tally"
//! secret = "env:WAREHOUSE_HMAC_SECRET"
//! batch = 100                                 # optional: records per request (default 1)
//!
//! # bots = "send"                            # in any destination's section: known bots' events
//!                                             # (default "drop"; "send" for webhooks), see crate::bots
//!
//! [lanes.meta]                                # optional, per destination
//! window = 8                                  # requests in flight at most
//! max_batch = 1000                            # events per request at most
//! linger_ms = 5                               # how long a request waits to fill
//! max_requests_per_minute = 300               # a quota, if the API has one
//! ```
//!
//! Any string of the form `env:NAME` is read from the environment variable
//! `NAME` (a missing variable is a configuration error that names it), so
//! secrets stay out of the file. [`TallyConfig::from_env`] reads the same
//! settings from `TALLY_*` variables.

use std::collections::BTreeMap;

use serde::Deserialize;
use tally_core::ConsentState;

use crate::collector::CollectorConfig;
use crate::config::{
    Ga4Config, GoogleAdsConfig, MetaConfig, RoktConfig, ServerTrackerBuilder, ServokiConfig, TikTokConfig,
    WebhookConfig,
};
use crate::error::ConfigError;
use crate::secret::Secret;
use crate::serve::ConnectionLimits;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TallyConfig {
    /// Process settings.
    #[serde(default)]
    pub server: ServerSection,
    /// The collector.
    #[serde(default)]
    pub collector: CollectorSection,
    /// GA4.
    pub ga4: Option<Ga4Section>,
    /// Google Ads.
    pub google_ads: Option<GoogleAdsSection>,
    /// Meta Conversions API.
    pub meta: Option<MetaSection>,
    /// Rokt Event API.
    pub rokt: Option<RoktSection>,
    /// A Servoki-style server-events endpoint.
    pub servoki: Option<ServokiSection>,
    /// TikTok Events API.
    pub tiktok: Option<TikTokSection>,
    /// Webhook / warehouse sinks by name.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSection>,
    /// Delivery lanes by destination name (`ga4`, `meta`, `webhook:warehouse`):
    /// what is not set keeps the destination's default.
    #[serde(default)]
    pub lanes: BTreeMap<String, LaneSection>,
}

/// `[lanes.<destination>]`: how one destination's lane batches and paces
/// requests (see [`LaneSettings`](crate::LaneSettings)).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaneSection {
    /// Requests in flight at most.
    pub window: Option<usize>,
    /// Events per request at most (capped at the API's limit).
    pub max_batch: Option<usize>,
    /// How long a request waits to fill, in ms.
    pub linger_ms: Option<u64>,
    /// Requests per minute at most (0 or absent: no limit).
    pub max_requests_per_minute: Option<u32>,
}

/// `[google_ads]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// `data_manager` (default) or `google_ads_api` (for developers Google
    /// still allowlists for offline conversion imports).
    pub api: Option<String>,
    /// Customer id (dashes allowed).
    pub customer_id: String,
    /// Manager account id.
    pub login_customer_id: Option<String>,
    /// OAuth client id (with `client_secret` and `refresh_token`, unless a
    /// service account is given).
    #[serde(default)]
    pub client_id: String,
    /// OAuth client secret.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// OAuth refresh token.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// A service account's JSON key (usually `env:NAME`), instead of the three above.
    pub service_account_key: Option<Secret>,
    /// A file holding a service account's JSON key, instead of the three above.
    pub service_account_key_file: Option<String>,
    /// Optional developer token.
    pub developer_token: Option<Secret>,
    /// API version (default: a current one).
    pub api_version: Option<String>,
    /// Base URL override.
    pub base_url: Option<String>,
    /// Token URL override.
    pub token_url: Option<String>,
    /// Data Manager API base URL override.
    pub data_manager_url: Option<String>,
    /// Full refunds on the Data Manager path: `skip` (default) or
    /// `google_ads_api` (sent as retractions through the Google Ads API).
    pub retractions: Option<String>,
    /// Merchant Center account of the items.
    pub merchant_id: Option<String>,
    /// Poll Data Manager request statuses (default true).
    pub diagnostics: Option<bool>,
    /// The wait before the first status poll, ms (default 1,800,000: Google's 30 minutes).
    pub diagnostics_first_poll_ms: Option<u64>,
    /// Label → conversion action id or resource name.
    #[serde(default)]
    pub conversion_actions: BTreeMap<String, String>,
    /// Event name → label (`purchase`, `sign_up`, `lead`, `add_to_cart`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `validateOnly` mode.
    #[serde(default)]
    pub validate_only: bool,
}

/// `[meta]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetaSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// Pixel (dataset) id.
    pub pixel_id: String,
    /// System-user access token.
    pub access_token: Secret,
    /// Graph API version.
    pub api_version: Option<String>,
    /// Base URL override.
    pub base_url: Option<String>,
    /// Test event code.
    pub test_event_code: Option<String>,
}

/// `[rokt]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoktSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// Account id.
    pub account_id: String,
    /// `rpub-…` key.
    pub public_key: Secret,
    /// `rsec-…` key.
    pub secret: Secret,
    /// URL override.
    pub url: Option<String>,
}

/// `[servoki]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServokiSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// Site (domain or code).
    pub site: String,
    /// API key.
    pub api_key: Secret,
    /// URL override.
    pub url: Option<String>,
}

/// `[tiktok]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TikTokSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// Pixel code.
    pub pixel_code: String,
    /// Events API access token.
    pub access_token: Secret,
    /// Test event code.
    pub test_event_code: Option<String>,
    /// URL override.
    pub url: Option<String>,
}

/// `[webhooks.<name>]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// Where to POST.
    pub url: String,
    /// HMAC secret.
    pub secret: Secret,
    /// Events per request at most (default 1; up to 500).
    #[serde(default)]
    pub batch: Option<usize>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sqlite:<path>` (default `sqlite:tally.db`, in the working directory),
    /// `redis://…`, or `memory` (lost on restart).
    #[serde(default = "default_store")]
    pub store: String,
    /// Outbox capacity (entries).
    #[serde(default = "default_capacity")]
    pub outbox_capacity: usize,
    /// Consent assumed when a request carries none: `unknown` (default) or `granted`.
    #[serde(default = "default_consent")]
    pub default_consent: String,
    /// How order ids fill the destinations' order fields: `as_given` (default) or `hashed`.
    pub order_id: Option<String>,
    /// Dedup retention in hours (at least 48).
    #[serde(default = "default_retention")]
    pub dedup_retention_hours: u64,
    /// How long the order journal (status page, `tally reconcile --since`)
    /// keeps its rows, in days (default 8, at least 1).
    pub journal_days: Option<u64>,
    /// Attempts per delivery before it is given up (default 16).
    pub retry_max_attempts: Option<u32>,
    /// First backoff in ms (default 500).
    pub retry_base_ms: Option<u64>,
    /// Longest backoff in ms (default 300000).
    pub retry_max_delay_ms: Option<u64>,
    /// Per-request timeout in ms (default 10000).
    pub request_timeout_ms: Option<u64>,
    /// How long a worker holds a delivery before another may take over after a
    /// crash, in ms (default 30000; keep it above the request timeout).
    pub lease_ms: Option<u64>,
    /// A client's request line and headers must all arrive within this, in ms
    /// (default 10000); for HTTP/1.1 it also bounds how long a kept-alive
    /// connection waits for its next request.
    pub header_read_timeout_ms: Option<u64>,
    /// A `/collect` body must all arrive within this, in ms, from when the
    /// collector starts reading it (default 15000); slower is answered 408.
    pub body_read_timeout_ms: Option<u64>,
    /// A connection with no byte read or written for this long is closed, in ms (default 30000).
    pub idle_timeout_ms: Option<u64>,
    /// Client connections open at once, at most (default 1024); at the cap new
    /// ones wait in the listen backlog. Keep it below the open-file limit.
    pub max_connections: Option<usize>,
}

fn default_listen() -> String {
    "127.0.0.1:8787".into()
}
/// Durable by default: a collector that lost its queue on restart would
/// silently lose events. `memory` only when asked for.
pub const DEFAULT_STORE: &str = "sqlite:tally.db";

fn default_store() -> String {
    DEFAULT_STORE.into()
}
fn default_capacity() -> usize {
    100_000
}
fn default_consent() -> String {
    "unknown".into()
}
fn default_retention() -> u64 {
    48
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            store: default_store(),
            outbox_capacity: default_capacity(),
            default_consent: default_consent(),
            order_id: None,
            dedup_retention_hours: default_retention(),
            journal_days: None,
            retry_max_attempts: None,
            retry_base_ms: None,
            retry_max_delay_ms: None,
            request_timeout_ms: None,
            lease_ms: None,
            header_read_timeout_ms: None,
            body_read_timeout_ms: None,
            idle_timeout_ms: None,
            max_connections: None,
        }
    }
}

/// `[collector]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// Site keys.
    #[serde(default)]
    pub site_keys: Vec<String>,
    /// Allowed browser origins.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Bearer secrets for server-to-server calls.
    #[serde(default)]
    pub server_secrets: Vec<Secret>,
    /// Requests per second per IP.
    pub rate_per_ip: Option<u32>,
    /// Burst per IP.
    pub burst_per_ip: Option<u32>,
    /// Trust `X-Forwarded-For`.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Truncate IPs before forwarding (default true).
    pub truncate_ip: Option<bool>,
    /// Serve `/metrics`.
    #[serde(default)]
    pub metrics: bool,
    /// The bearer token `/metrics` asks for (usually `env:NAME`): Prometheus
    /// sends it as `Authorization: Bearer <token>`. Without one, `/metrics` is
    /// open to anyone who reaches the listen address (`tally check` warns when
    /// that is not loopback).
    pub metrics_token: Option<Secret>,
    /// Wait for one delivery attempt before answering (default true); `false`
    /// answers once the events are in the outbox (see
    /// [`CollectorConfig::deliver_inline`]).
    pub deliver_inline: Option<bool>,
}

/// `[ga4]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ga4Section {
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    /// `G-…`.
    pub measurement_id: String,
    /// API secret (use `env:NAME`).
    pub api_secret: Secret,
    /// Base URL override.
    pub base_url: Option<String>,
    /// Use the EU endpoint.
    #[serde(default)]
    pub eu: bool,
    /// Validation mode.
    #[serde(default)]
    pub validate: bool,
}

/// Resolves `env:NAME` references.
pub fn resolve(setting: &'static str, value: &str) -> Result<String, ConfigError> {
    match value.strip_prefix("env:") {
        Some(name) => std::env::var(name.trim()).map_err(|_| ConfigError::Invalid {
            setting,
            reason: format!("environment variable {} is not set", name.trim()),
        }),
        None => Ok(value.to_owned()),
    }
}

/// A listen address `tally serve` can bind: `host:port`, the host an IP address
/// (`[…]` around IPv6) or a name such as `localhost`.
fn check_listen(listen: &str) -> Result<(), ConfigError> {
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    let named = listen.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.bytes().all(name_char)
            && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && port.parse::<u16>().is_ok()
    });
    if named || listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        setting: "server.listen",
        reason: format!(
            "{listen:?}: expected host:port such as 127.0.0.1:8787, 0.0.0.0:8787 (every interface) or [::1]:8787"
        ),
    })
}

/// An allowed origin as browsers send it in the `Origin` header, which the
/// collector compares exactly: `scheme://host[:port]`, lower case, no path, no
/// trailing slash, no default port.
fn check_origin(origin: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { setting: "collector.allowed_origins", reason };
    let web = reqwest::Url::parse(origin).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    if let Some(url) = web {
        let sent = url.origin().ascii_serialization();
        return if sent == origin {
            Ok(())
        } else {
            Err(invalid(format!(
                "{origin:?}: browsers send this origin as {sent:?} (scheme://host[:port], no path or trailing slash), write that"
            )))
        };
    }
    let bare = origin.trim().trim_end_matches('/');
    let local = bare.starts_with("localhost") || bare.starts_with("127.");
    let guess = if bare.contains("://") {
        None
    } else {
        reqwest::Url::parse(&format!("{}://{bare}", if local { "http" } else { "https" })).ok()
    };
    let example = guess.map_or_else(|| "https://shop.example".to_owned(), |u| u.origin().ascii_serialization());
    Err(invalid(format!("{origin:?} is not an origin: write scheme://host[:port], such as {example:?}")))
}

impl TallyConfig {
    /// Parses TOML; the error says which line and key are wrong.
    pub fn from_toml(text: &str) -> Result<TallyConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid { setting: "config file", reason: e.to_string() })
    }

    /// Reads `TALLY_LISTEN`, `TALLY_STORE`, `TALLY_SITE_KEYS`, `TALLY_ALLOWED_ORIGINS`,
    /// `TALLY_SERVER_SECRETS` (comma-separated), `TALLY_GA4_MEASUREMENT_ID`,
    /// `TALLY_GA4_API_SECRET`, `TALLY_GA4_BASE_URL`.
    pub fn from_env() -> Result<TallyConfig, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// [`TallyConfig::from_env`] over a given map (testable).
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<TallyConfig, ConfigError> {
        let get = |k: &str| vars.get(k).filter(|v| !v.trim().is_empty()).cloned();
        let list = |k: &str| {
            get(k)
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };
        let mut c = TallyConfig::default();
        if let Some(l) = get("TALLY_LISTEN") {
            c.server.listen = l;
        }
        if let Some(s) = get("TALLY_STORE") {
            c.server.store = s;
        }
        c.collector.site_keys = list("TALLY_SITE_KEYS");
        c.collector.allowed_origins = list("TALLY_ALLOWED_ORIGINS");
        c.collector.server_secrets = list("TALLY_SERVER_SECRETS").into_iter().map(Secret::from).collect();
        if let Some(id) = get("TALLY_GA4_MEASUREMENT_ID") {
            c.ga4 = Some(Ga4Section {
                bots: None,
                measurement_id: id,
                api_secret: get("TALLY_GA4_API_SECRET")
                    .ok_or(ConfigError::Missing {
                        setting: "TALLY_GA4_API_SECRET",
                        hint: "set it with TALLY_GA4_MEASUREMENT_ID",
                    })?
                    .into(),
                base_url: get("TALLY_GA4_BASE_URL"),
                eu: false,
                validate: false,
            });
        }
        Ok(c)
    }

    /// The tracker builder these settings describe (store not yet attached).
    pub fn tracker_builder(&self) -> Result<ServerTrackerBuilder, ConfigError> {
        let d = crate::engine::retry::RetryPolicy::default();
        let s = &self.server;
        let ms = std::time::Duration::from_millis;
        let mut b = crate::ServerTracker::builder()
            .dedup_retention(std::time::Duration::from_secs(s.dedup_retention_hours.saturating_mul(3600)))
            .retry(crate::engine::retry::RetryPolicy {
                max_attempts: s.retry_max_attempts.unwrap_or(d.max_attempts),
                base_delay: s.retry_base_ms.map(ms).unwrap_or(d.base_delay),
                max_delay: s.retry_max_delay_ms.map(ms).unwrap_or(d.max_delay),
                timeout: s.request_timeout_ms.map(ms).unwrap_or(d.timeout),
            });
        if let Some(l) = s.lease_ms {
            b = b.lease(ms(l));
        }
        if let Some(days) = s.journal_days {
            b = b.journal_retention(std::time::Duration::from_secs(days.saturating_mul(86_400)));
        }
        b = match self.server.default_consent.as_str() {
            "unknown" => b,
            "granted" => b.default_consent(ConsentState::ALL_GRANTED),
            other => {
                return Err(ConfigError::Invalid {
                    setting: "server.default_consent",
                    reason: format!("{other:?}: use \"unknown\" or \"granted\""),
                });
            }
        };
        if let Some(form) = &self.server.order_id {
            let form = tally_core::OrderIdForm::parse(form).map_err(|_| ConfigError::Invalid {
                setting: "server.order_id",
                reason: format!("{form:?}: use \"as_given\" or \"hashed\" (the browser's orderId must match)"),
            })?;
            b = b.order_id(form);
        }
        for (name, l) in &self.lanes {
            let prefix = name.split(':').next().unwrap_or_default();
            let Some(kind) = tally_core::DestinationKind::ALL.into_iter().find(|k| k.as_str() == prefix) else {
                return Err(ConfigError::Invalid {
                    setting: "lanes",
                    reason: format!(
                        "[lanes.{name}]: name a destination (ga4, google_ads, meta, rokt, servoki, tiktok, \"webhook:<name>\")"
                    ),
                });
            };
            if l.window == Some(0) || l.max_batch == Some(0) {
                return Err(ConfigError::Invalid {
                    setting: "lanes",
                    reason: format!("[lanes.{name}]: window and max_batch must be at least 1"),
                });
            }
            let mut settings = crate::LaneSettings::for_kind(kind);
            if let Some(w) = l.window {
                settings = settings.window(w);
            }
            if let Some(n) = l.max_batch {
                settings = settings.max_batch(n);
            }
            if let Some(linger) = l.linger_ms {
                settings = settings.linger(ms(linger));
            }
            if l.max_requests_per_minute.is_some() {
                settings = settings.max_requests_per_minute(l.max_requests_per_minute);
            }
            b = b.lane(name.clone(), settings);
        }
        if let Some(g) = &self.ga4 {
            let mut cfg = Ga4Config::new(g.measurement_id.clone(), resolve("ga4.api_secret", g.api_secret.expose())?)
                .validate(g.validate);
            if g.eu {
                cfg = cfg.eu();
            }
            if let Some(u) = &g.base_url {
                cfg = cfg.base_url(u.clone());
            }
            b = b.ga4(cfg);
        }
        if let Some(a) = &self.google_ads {
            let optional = |setting: &'static str, v: &Option<Secret>| match v {
                Some(v) => resolve(setting, v.expose()),
                None => Ok(String::new()),
            };
            let mut cfg = GoogleAdsConfig::new(
                a.customer_id.clone(),
                if a.client_id.is_empty() { String::new() } else { resolve("google_ads.client_id", &a.client_id)? },
                optional("google_ads.client_secret", &a.client_secret)?,
                optional("google_ads.refresh_token", &a.refresh_token)?,
            )
            .validate_only(a.validate_only);
            let key = match (&a.service_account_key, &a.service_account_key_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid {
                        setting: "google_ads.service_account_key",
                        reason: "give service_account_key or service_account_key_file, not both".into(),
                    });
                }
                (Some(k), None) => Some(resolve("google_ads.service_account_key", k.expose())?),
                (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    setting: "google_ads.service_account_key_file",
                    reason: format!("{path}: {e}"),
                })?),
                (None, None) => None,
            };
            if let Some(key) = key {
                cfg.service_account_key = Some(Secret::from(key));
            }
            cfg = cfg.api(match a.api.as_deref().map(str::trim) {
                None | Some("data_manager") => crate::GoogleAdsApi::DataManager,
                Some("google_ads_api") => crate::GoogleAdsApi::GoogleAdsApi,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        setting: "google_ads.api",
                        reason: format!("{other:?}: expected \"data_manager\" (the default) or \"google_ads_api\""),
                    });
                }
            });
            cfg = cfg.retractions(match a.retractions.as_deref().map(str::trim) {
                None | Some("skip") => crate::Retractions::Skip,
                Some("google_ads_api") => crate::Retractions::GoogleAdsApi,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        setting: "google_ads.retractions",
                        reason: format!("{other:?}: expected \"skip\" (the default) or \"google_ads_api\""),
                    });
                }
            });
            if let Some(v) = &a.data_manager_url {
                cfg = cfg.data_manager_url(v.clone());
            }
            if let Some(v) = &a.merchant_id {
                cfg = cfg.merchant_id(v.clone());
            }
            if a.diagnostics == Some(false) {
                cfg = cfg.diagnostics(None);
            } else if let Some(first) = a.diagnostics_first_poll_ms {
                cfg = cfg.diagnostics(Some(ms(first)));
            }
            if let Some(v) = &a.login_customer_id {
                cfg = cfg.login_customer_id(v.clone());
            }
            if let Some(v) = &a.developer_token {
                cfg = cfg.developer_token(resolve("google_ads.developer_token", v.expose())?);
            }
            if let Some(v) = &a.api_version {
                cfg = cfg.api_version(v.clone());
            }
            if let Some(v) = &a.base_url {
                cfg = cfg.base_url(v.clone());
            }
            if let Some(v) = &a.token_url {
                cfg = cfg.token_url(v.clone());
            }
            for (label, action) in &a.conversion_actions {
                cfg = cfg.conversion_action(label.clone(), action.clone());
            }
            for (event, label) in &a.labels {
                cfg = cfg.label(event, label.clone());
            }
            b = b.google_ads(cfg);
        }
        if let Some(m) = &self.meta {
            let mut cfg = MetaConfig::new(m.pixel_id.clone(), resolve("meta.access_token", m.access_token.expose())?);
            if let Some(v) = &m.api_version {
                cfg = cfg.api_version(v.clone());
            }
            if let Some(v) = &m.base_url {
                cfg = cfg.base_url(v.clone());
            }
            if let Some(v) = &m.test_event_code {
                cfg = cfg.test_event_code(v.clone());
            }
            b = b.meta(cfg);
        }
        if let Some(r) = &self.rokt {
            let mut cfg = RoktConfig::new(
                r.account_id.clone(),
                resolve("rokt.public_key", r.public_key.expose())?,
                resolve("rokt.secret", r.secret.expose())?,
            );
            if let Some(v) = &r.url {
                cfg = cfg.url(v.clone());
            }
            b = b.rokt(cfg);
        }
        if let Some(sv) = &self.servoki {
            let mut cfg = ServokiConfig::new(sv.site.clone(), resolve("servoki.api_key", sv.api_key.expose())?);
            if let Some(v) = &sv.url {
                cfg = cfg.url(v.clone());
            }
            b = b.servoki(cfg);
        }
        if let Some(t) = &self.tiktok {
            let mut cfg =
                TikTokConfig::new(t.pixel_code.clone(), resolve("tiktok.access_token", t.access_token.expose())?);
            if let Some(v) = &t.url {
                cfg = cfg.url(v.clone());
            }
            if let Some(v) = &t.test_event_code {
                cfg = cfg.test_event_code(v.clone());
            }
            b = b.tiktok(cfg);
        }
        for (name, w) in &self.webhooks {
            let mut sink = WebhookConfig::new(w.url.clone(), resolve("webhooks.secret", w.secret.expose())?);
            if let Some(n) = w.batch {
                sink = sink.batch(n);
            }
            b = b.webhook(name.clone(), sink);
        }
        // Known bots, per destination (`bots = "drop" | "send"` in its section).
        let bots = [
            ("ga4".to_owned(), self.ga4.as_ref().and_then(|c| c.bots)),
            ("google_ads".to_owned(), self.google_ads.as_ref().and_then(|c| c.bots)),
            ("meta".to_owned(), self.meta.as_ref().and_then(|c| c.bots)),
            ("rokt".to_owned(), self.rokt.as_ref().and_then(|c| c.bots)),
            ("servoki".to_owned(), self.servoki.as_ref().and_then(|c| c.bots)),
            ("tiktok".to_owned(), self.tiktok.as_ref().and_then(|c| c.bots)),
        ]
        .into_iter()
        .chain(self.webhooks.iter().map(|(name, w)| (format!("webhook:{name}"), w.bots)));
        for (name, policy) in bots {
            if let Some(policy) = policy {
                b = b.bots(name, policy);
            }
        }
        Ok(b)
    }

    /// The collector settings. Checks `server.listen` and `collector.allowed_origins`
    /// too, since a wrong one would leave every browser request unanswered or refused.
    pub fn collector_config(&self) -> Result<CollectorConfig, ConfigError> {
        check_listen(&self.server.listen)?;
        let c = &self.collector;
        c.allowed_origins.iter().try_for_each(|o| check_origin(o))?;
        let secrets = c
            .server_secrets
            .iter()
            .map(|s| resolve("collector.server_secrets", s.expose()))
            .collect::<Result<_, _>>()?;
        if c.site_keys.is_empty() && c.server_secrets.is_empty() {
            return Err(ConfigError::Missing {
                setting: "collector.site_keys",
                hint: "browsers need a site key (and allowed_origins); servers a bearer secret",
            });
        }
        let metrics_token = match &c.metrics_token {
            Some(t) => {
                let token = resolve("collector.metrics_token", t.expose())?;
                if token.trim().is_empty() {
                    return Err(ConfigError::Invalid {
                        setting: "collector.metrics_token",
                        reason: "the token is empty: set a long random string (e.g. `openssl rand -hex 32`)".into(),
                    });
                }
                Some(token)
            }
            None => None,
        };
        let d = CollectorConfig::default();
        Ok(CollectorConfig {
            metrics_token,
            body_read_timeout: self
                .server
                .body_read_timeout_ms
                .map_or(d.body_read_timeout, std::time::Duration::from_millis),
            site_keys: c.site_keys.iter().cloned().collect(),
            allowed_origins: c.allowed_origins.iter().cloned().collect(),
            server_secrets: secrets,
            rate_per_ip: c.rate_per_ip.unwrap_or(d.rate_per_ip),
            burst_per_ip: c.burst_per_ip.unwrap_or(d.burst_per_ip),
            trust_forwarded_for: c.trust_forwarded_for,
            truncate_ip: c.truncate_ip.unwrap_or(true),
            metrics: c.metrics,
            deliver_inline: c.deliver_inline.unwrap_or(d.deliver_inline),
            ..d
        })
    }
}

impl TallyConfig {
    /// How long clients may take and how many may be connected at once
    /// (`[server] header_read_timeout_ms`, `idle_timeout_ms`, `max_connections`).
    pub fn connection_limits(&self) -> Result<ConnectionLimits, ConfigError> {
        let s = &self.server;
        let positive = |setting: &'static str, v: Option<u64>, default: std::time::Duration| match v {
            Some(0) => Err(ConfigError::Invalid { setting, reason: "must be at least 1 (ms)".into() }),
            Some(ms) => Ok(std::time::Duration::from_millis(ms)),
            None => Ok(default),
        };
        if s.body_read_timeout_ms == Some(0) {
            return Err(ConfigError::Invalid {
                setting: "server.body_read_timeout_ms",
                reason: "must be at least 1 (ms)".into(),
            });
        }
        if s.max_connections == Some(0) {
            return Err(ConfigError::Invalid {
                setting: "server.max_connections",
                reason: "must be at least 1: it caps the client connections open at once".into(),
            });
        }
        let d = ConnectionLimits::default();
        Ok(d.header_read_timeout(positive(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms,
            d.header_read_timeout,
        )?)
        .idle_timeout(positive("server.idle_timeout_ms", s.idle_timeout_ms, d.idle_timeout)?)
        .max_connections(s.max_connections.unwrap_or(d.max_connections)))
    }

    /// What `tally check` and `tally serve` warn about: settings that work but
    /// expose something (today: `/metrics` without a token on an address other
    /// machines can reach).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.collector.metrics && self.collector.metrics_token.is_none() && !is_loopback(&self.server.listen) {
            out.push(format!(
                "/metrics is served without a token on {}, which is not a loopback address: anyone who reaches it \
                 reads order counts and revenue. Set [collector] metrics_token = \"env:TALLY_METRICS_TOKEN\" \
                 (Prometheus sends it as a bearer token), or listen on 127.0.0.1 behind a proxy",
                self.server.listen
            ));
        }
        out
    }
}

/// Whether `listen` (`host:port`) only accepts connections from this machine.
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_configuration_shows_no_secret() {
        let text = r#"
[collector]
server_secrets = ["srv-s3kr1t-1", "env:TALLY_SERVER_SECRET"]
[ga4]
measurement_id = "G-ABC123"
api_secret = "ga4-s3kr1t-2"
[meta]
pixel_id = "1234567890"
access_token = "meta-s3kr1t-3"
[webhooks.wh]
url = "https://warehouse.example/t"
secret = "wh-s3kr1t-4"
"#;
        let cfg = TallyConfig::from_toml(text).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3kr1t"), "{shown}");
        assert!(shown.contains("env:TALLY_SERVER_SECRET"), "references are not secret: {shown}");
        cfg.tracker_builder().unwrap().build().unwrap();
        let ga4 = crate::Ga4Config::new("G-ABC123", "ga4-s3kr1t-2");
        assert!(!format!("{ga4:?}").contains("s3kr1t"));
        let dest = crate::destinations::ga4::Ga4Destination::new(ga4);
        assert!(!format!("{dest:?}").contains("s3kr1t"), "{dest:?}");
    }

    #[test]
    fn parses_the_documented_example() {
        let c = TallyConfig::from_toml(
            r#"
            [server]
            listen = "127.0.0.1:9999"
            store = "memory"
            [collector]
            site_keys = ["pk"]
            allowed_origins = ["https://shop.example"]
            [ga4]
            measurement_id = "G-ABC123"
            api_secret = "literal"
            "#,
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert!(c.tracker_builder().unwrap().build().is_ok());
        assert_eq!(c.collector_config().unwrap().site_keys.len(), 1);
    }

    #[test]
    fn every_destination_from_the_file() {
        let c = TallyConfig::from_toml(
            r#"
            [ga4]
            measurement_id = "G-ABC123"
            api_secret = "s"
            [google_ads]
            customer_id = "123-456-7890"
            client_id = "c"
            client_secret = "cs"
            refresh_token = "rt"
            conversion_actions = { purchase = "555666777" }
            labels = { purchase = "purchase" }
            [meta]
            pixel_id = "1234567890"
            access_token = "env:PATH"
            [rokt]
            account_id = "12345"
            public_key = "rpub-abc"
            secret = "rsec-def"
            [servoki]
            site = "shop.example"
            api_key = "k"
            [webhooks.warehouse]
            url = "https://warehouse.example/in"
            secret = "whsec"
            "#,
        )
        .unwrap();
        let t = c.tracker_builder().unwrap().build().unwrap();
        assert_eq!(t.destination_names(), ["ga4", "google_ads", "meta", "rokt", "servoki", "webhook:warehouse"]);
        let bad = TallyConfig::from_toml("[google_ads]\ncustomer_id = \"1\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrefresh_token = \"r\"\nlabels = { purchase = \"nope\" }").unwrap();
        let e = bad.tracker_builder().unwrap().build().err().unwrap();
        assert!(e.to_string().contains("google_ads"), "{e}");
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let e = TallyConfig::from_toml("[server]\nlisten = 5").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = TallyConfig::from_toml("[serve]\nx = 1").unwrap_err();
        assert!(e.to_string().contains("serve"), "{e}");
        let c =
            TallyConfig::from_toml("[ga4]\nmeasurement_id = \"G-A1\"\napi_secret = \"env:TALLY_TEST_SURELY_UNSET\"")
                .unwrap();
        let e = c.tracker_builder().err().unwrap();
        assert!(e.to_string().contains("TALLY_TEST_SURELY_UNSET"), "{e}");
        let c = TallyConfig::from_toml("[server]\ndefault_consent = \"yes\"").unwrap();
        assert!(c.tracker_builder().err().unwrap().to_string().contains("default_consent"));
        assert!(TallyConfig::default().collector_config().is_err());
        // The journal keeps at least a day; absurd numbers saturate instead of overflowing.
        let e =
            TallyConfig::from_toml("[server]\njournal_days = 0\n[ga4]\nmeasurement_id = \"G-A1\"\napi_secret = \"s\"")
                .unwrap()
                .tracker_builder()
                .unwrap()
                .build()
                .err()
                .unwrap();
        assert!(e.to_string().contains("journal_days"), "{e}");
        let huge = "[server]\njournal_days = 18446744073709551615\ndedup_retention_hours = 18446744073709551615\n\
                    [ga4]\nmeasurement_id = \"G-A1\"\napi_secret = \"s\"";
        assert!(TallyConfig::from_toml(huge).unwrap().tracker_builder().unwrap().build().is_ok());
        let lease = "[server]\nlease_ms = 18446744073709551615\n[ga4]\nmeasurement_id = \"G-A1\"\napi_secret = \"s\"";
        let e = TallyConfig::from_toml(lease).unwrap().tracker_builder().unwrap().build().err().unwrap();
        assert!(e.to_string().contains("lease_ms"), "{e}");
    }

    #[test]
    fn from_environment_variables() {
        let vars: BTreeMap<String, String> =
            [("TALLY_SITE_KEYS", "a, b"), ("TALLY_GA4_MEASUREMENT_ID", "G-ENV1"), ("TALLY_GA4_API_SECRET", "s")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let c = TallyConfig::from_vars(&vars).unwrap();
        assert_eq!(c.collector.site_keys, ["a", "b"]);
        assert!(c.tracker_builder().unwrap().build().is_ok());
        let mut missing = vars.clone();
        missing.remove("TALLY_GA4_API_SECRET");
        assert!(TallyConfig::from_vars(&missing).unwrap_err().to_string().contains("TALLY_GA4_API_SECRET"));
    }
}
