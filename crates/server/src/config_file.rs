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
//! # eu = true                                 # the EU collection endpoint (or base_url = "…")
//! # validate = true                           # the debug endpoint: validation messages become errors
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
//! # diagnostics = false                      # no request-status polling; or the first wait in ms (default 1800000)
//!
//! [meta]
//! pixel_id = "1234567890"
//! access_token = "env:META_ACCESS_TOKEN"
//! # action_source = "physical_store"         # default "website"; or "email", "phone_call", "chat",
//!                                             # "system_generated", "business_messaging", "other"
//! # limited_data_use = { country = 1, state = 1000 }   # Limited Data Use (0 = let Meta geolocate)
//! # test_event_code = "TEST123"               # Events Manager › Test events; remove in production
//!
//! [rokt]
//! account_id = "12345"
//! public_key = "env:ROKT_PUBLIC_KEY"
//! secret = "env:ROKT_SECRET"
//! # rokt_version = "2020-05-21"               # the Rokt-Version header (default: the one Tally is written for)
//!
//! [servoki]
//! site = "shop.example"
//! api_key = "env:SERVOKI_API_KEY"
//!
//! [tiktok]
//! pixel_code = "C4PIXEL"
//! access_token = "env:TIKTOK_ACCESS_TOKEN"
//!
//! [pinterest]
//! ad_account_id = "549755885175"
//! access_token = "env:PINTEREST_CONVERSION_TOKEN"
//! # test = true                               # ?test=true: validated, not recorded; remove in production
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
//! Each destination's section is its settings type, deserialised: the keys
//! are the fields of [`Ga4Config`](crate::Ga4Config),
//! [`GoogleAdsConfig`](crate::GoogleAdsConfig), [`MetaConfig`](crate::MetaConfig),
//! [`RoktConfig`](crate::RoktConfig), [`ServokiConfig`](crate::ServokiConfig),
//! [`TikTokConfig`](crate::TikTokConfig), [`PinterestConfig`](crate::PinterestConfig) and
//! [`WebhookConfig`](crate::WebhookConfig)
//! (every `url`/`base_url` can be overridden too), so the file sets every
//! setting the builder has; an unknown key or section is refused, naming the
//! ones there are.
//!
//! Any string of the form `env:NAME` is read from the environment variable
//! `NAME` (a missing variable is a configuration error that names it), so
//! secrets stay out of the file. [`TallyConfig::from_env`] reads the same
//! settings from `TALLY_*` variables.

use std::collections::BTreeMap;

use serde::Deserialize;
use tally_core::ConsentState;

use crate::collector::CollectorConfig;
use crate::config::ServerTrackerBuilder;
pub use crate::destinations::registry::DestinationSection;
use crate::destinations::registry::{self, REGISTRY, ReadSettings, Registration};
use crate::error::ConfigError;
use crate::secret::Secret;
use crate::serve::ConnectionLimits;

/// The whole file: `[server]`, `[collector]` and `[lanes.<name>]` as typed
/// here, and one section per destination, each deserialised into that
/// destination's own settings type (see [`DestinationSection`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TallyConfig {
    /// Process settings.
    pub server: ServerSection,
    /// The collector.
    pub collector: CollectorSection,
    /// Delivery lanes by destination name (`ga4`, `meta`, `webhook:warehouse`):
    /// what is not set keeps the destination's default.
    pub lanes: BTreeMap<String, LaneSection>,
    /// The destinations' sections, in the file's order of keys.
    destinations: Vec<DestinationSection>,
}

/// A destination section and the settings read from it.
pub(crate) type ReadSection<'a> = (&'a DestinationSection, Box<dyn ReadSettings>);

impl<'de> Deserialize<'de> for TallyConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TallyConfig, D::Error> {
        struct File;
        impl<'de> serde::de::Visitor<'de> for File {
            type Value = TallyConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Tally configuration file")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TallyConfig, A::Error> {
                use serde::de::Error;
                let mut c = TallyConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "server" => c.server = map.next_value()?,
                        "collector" => c.collector = map.next_value()?,
                        "lanes" => c.lanes = map.next_value()?,
                        other => {
                            let Some(r) = registry::by_file_key(other) else {
                                return Err(A::Error::custom(format!(
                                    "unknown section [{other}]: expected [server], [collector], [lanes.<destination>], {}",
                                    registry::section_list()
                                )));
                            };
                            if r.many {
                                for (name, table) in map.next_value::<BTreeMap<String, toml::Table>>()? {
                                    c.destinations.push(
                                        DestinationSection::new(r, Some(&name), table).map_err(A::Error::custom)?,
                                    );
                                }
                            } else {
                                let table = map.next_value::<toml::Table>()?;
                                c.destinations.push(DestinationSection::new(r, None, table).map_err(A::Error::custom)?);
                            }
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(File)
    }
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
            let mut ga4 = toml::Table::new();
            ga4.insert("measurement_id".into(), id.into());
            let secret = get("TALLY_GA4_API_SECRET").ok_or(ConfigError::Missing {
                setting: "TALLY_GA4_API_SECRET",
                hint: "set it with TALLY_GA4_MEASUREMENT_ID",
            })?;
            ga4.insert("api_secret".into(), secret.into());
            if let Some(url) = get("TALLY_GA4_BASE_URL") {
                ga4.insert("base_url".into(), url.into());
            }
            let section = registry::by_file_key("ga4")
                .ok_or_else(|| "GA4 is not registered".to_owned())
                .and_then(|r| DestinationSection::new(r, None, ga4))
                .map_err(|reason| ConfigError::Invalid { setting: "TALLY_GA4_MEASUREMENT_ID", reason })?;
            c.destinations.push(section);
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
            let Some(kind) = REGISTRY.iter().map(|r| r.kind).find(|k| k.as_str() == prefix) else {
                let names: Vec<String> = REGISTRY.iter().map(Registration::lane_name).collect();
                return Err(ConfigError::Invalid {
                    setting: "lanes",
                    reason: format!("[lanes.{name}]: name a destination ({})", names.join(", ")),
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
        for (section, settings) in self.destination_settings()? {
            b = settings.add_to(b, &section.instance);
            if let Some(policy) = section.bots {
                b = b.bots(section.destination_name(), policy);
            }
        }
        Ok(b)
    }

    /// The destinations' sections, in the order the tracker lists them (then by name).
    pub fn destinations(&self) -> impl Iterator<Item = &DestinationSection> {
        REGISTRY.iter().flat_map(|r| self.destinations.iter().filter(move |s| s.kind == r.kind))
    }

    /// The section of the destination called `name` (`meta`, `webhook:warehouse`).
    pub fn destination(&self, name: &str) -> Option<&DestinationSection> {
        self.destinations.iter().find(|s| s.destination_name() == name)
    }

    /// Every destination section read into its settings type, in the order
    /// the tracker lists them: `env:NAME` resolved, unknown keys refused.
    pub(crate) fn destination_settings(&self) -> Result<Vec<ReadSection<'_>>, ConfigError> {
        self.destinations()
            .map(|section| {
                let r = registry::by_kind(section.kind).ok_or_else(|| ConfigError::InFile {
                    setting: section.path.clone(),
                    reason: "no destination of this kind is registered".into(),
                })?;
                Ok((section, (r.read)(section)?))
            })
            .collect()
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

    /// The example at the top of this module, every commented-out key
    /// switched on (but the key file, which would have to exist) and `env:`
    /// references written as literals, reads into every destination's settings.
    #[test]
    fn the_documented_example_reads() {
        let source = include_str!("config_file.rs");
        let start = source.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + source[start..].find("//! ```\n").unwrap();
        let text: String = source[start..end]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .map(|l| match l.strip_prefix("# ") {
                Some(key)
                    if key
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) =>
                {
                    key
                }
                _ => l,
            })
            .filter(|l| !l.starts_with("service_account_key_file"))
            .map(|l| l.replace("\"env:", "\"") + "\n")
            .collect();
        let c = TallyConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let read = c.destination_settings().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<String> = read.iter().map(|(s, _)| s.destination_name()).collect();
        let every: Vec<String> = REGISTRY
            .iter()
            .map(|r| if r.many { format!("{}:warehouse", r.kind.as_str()) } else { r.kind.as_str().to_owned() })
            .collect();
        assert_eq!(names, every, "the example shows every destination");
        assert_eq!(c.destination("webhook:warehouse").and_then(|s| s.bots), Some(crate::bots::BotPolicy::Send));
        let meta = read.iter().find_map(|(_, s)| (&**s as &dyn std::any::Any).downcast_ref::<crate::MetaConfig>());
        let meta = meta.unwrap();
        assert_eq!(meta.action_source, tally_core::destinations::meta::ActionSource::PhysicalStore);
        assert_eq!(
            meta.limited_data_use,
            Some(tally_core::destinations::meta::LimitedDataUse { country: 1, state: 1000 })
        );
        assert!(!c.lanes.is_empty() && c.tracker_builder().is_ok());
    }

    #[test]
    fn the_files_own_spellings() {
        let ads = |extra: &str| {
            let text = format!(
                "[google_ads]\ncustomer_id = \"123-456-7890\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrefresh_token = \"r\"\n\
                 conversion_actions = {{ buy = \"555\" }}\nlabels = {{ purchase = \"buy\", lead = \"buy\" }}\n{extra}"
            );
            let c = TallyConfig::from_toml(&text).unwrap();
            let read = c.destination_settings()?;
            let ads = (&*read[0].1 as &dyn std::any::Any).downcast_ref::<crate::GoogleAdsConfig>().cloned();
            Ok::<_, ConfigError>(ads.unwrap())
        };
        let a = ads("").unwrap();
        assert_eq!(a.diagnostics, Some(std::time::Duration::from_secs(1800)));
        assert_eq!((a.labels.purchase.as_deref(), a.labels.lead.as_deref()), (Some("buy"), Some("buy")));
        assert_eq!(ads("diagnostics = false").unwrap().diagnostics, None);
        let first = Some(std::time::Duration::from_millis(60_000));
        assert_eq!(ads("diagnostics_first_poll_ms = 60000").unwrap().diagnostics, first);
        assert_eq!(ads("diagnostics = 60000").unwrap().diagnostics, first);
        let e = ads("diagnostics = \"soon\"").unwrap_err().to_string();
        assert!(e.contains("google_ads.diagnostics is invalid") && e.contains("false"), "{e}");
        let e = ads("service_account_key = \"{}\"\nservice_account_key_file = \"/nonexistent/sa.json\"").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = ads("service_account_key_file = \"/nonexistent/sa.json\"").unwrap_err().to_string();
        assert!(e.contains("google_ads.service_account_key_file") && e.contains("/nonexistent/sa.json"), "{e}");
        let e = ads("conversion_action = {}").unwrap_err().to_string();
        assert!(e.contains("unknown field `conversion_action`") && e.contains("conversion_actions"), "{e}");

        let ga4 = |extra: &str| {
            let c = TallyConfig::from_toml(&format!("[ga4]\nmeasurement_id = \"G-A1\"\napi_secret = \"s\"\n{extra}"))
                .unwrap();
            let read = c.destination_settings()?;
            Ok::<_, ConfigError>(
                (&*read[0].1 as &dyn std::any::Any).downcast_ref::<crate::Ga4Config>().cloned().unwrap(),
            )
        };
        let eu = tally_core::destinations::ga4::EU_BASE_URL;
        assert_eq!(ga4("eu = true").unwrap().base_url, eu);
        assert_eq!(ga4("eu = true\nbase_url = \"http://127.0.0.1:9\"").unwrap().base_url, "http://127.0.0.1:9");
        assert_eq!(ga4("eu = false").unwrap().base_url, tally_core::destinations::ga4::DEFAULT_BASE_URL);
        assert!(ga4("eu = \"yes\"").unwrap_err().to_string().contains("ga4.eu"));

        // A missing variable names the setting, webhooks by their name.
        let c = TallyConfig::from_toml(
            "[webhooks.crm]\nurl = \"https://crm.example/in\"\nsecret = \"env:TALLY_TEST_SURELY_UNSET\"",
        )
        .unwrap();
        let e = c.tracker_builder().err().unwrap().to_string();
        assert_eq!(e, "webhooks.crm.secret is invalid: environment variable TALLY_TEST_SURELY_UNSET is not set");
    }

    #[test]
    fn lists_of_destinations_come_from_the_registry() {
        let e = TallyConfig::from_toml("[tik_tok]\npixel_code = \"C4\"").unwrap_err().to_string();
        let e2 = TallyConfig::from_toml("[lanes.no_such_destination]\nwindow = 2")
            .unwrap()
            .tracker_builder()
            .err()
            .unwrap()
            .to_string();
        let e3 = ConfigError::NoDestination.to_string();
        for r in REGISTRY {
            assert!(e.contains(&format!("[{}", r.file_key)), "{e}");
            assert!(e2.contains(&r.lane_name()), "{e2}");
            assert!(e3.contains(r.kind.as_str()), "{e3}");
        }
    }
}
