//! One line per destination: its kind, the key of its section in a
//! configuration file, and how that section is read into the settings type
//! the builder takes. The file's sections, the `[lanes.<name>]` check and the
//! lists in error messages are derived from [`REGISTRY`], so a destination
//! added here is settable from the file, in full, with nothing else to edit.
//!
//! A section is deserialised straight into the destination's own settings
//! type (`Ga4Config`, `MetaConfig`, …: field names are the file's keys,
//! defaults are `new`'s), after two steps every section shares: each string
//! of the form `env:NAME` is replaced by the variable's value (a missing one
//! is an error naming the setting and the variable), and the `bots` key
//! (see [`crate::bots`]) is taken out beforehand, when the file is parsed.

use std::any::Any;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tally_core::DestinationKind;

use crate::config::{
    Ga4Config, GoogleAdsConfig, MetaConfig, PinterestConfig, RoktConfig, ServerTrackerBuilder, ServokiConfig,
    TikTokConfig, WebhookConfig,
};
use crate::error::ConfigError;

/// Every destination, in the order the tracker lists them.
pub(crate) const REGISTRY: &[Registration] = &[
    Registration::one::<Ga4Config>(DestinationKind::Ga4, "ga4"),
    Registration::one::<GoogleAdsConfig>(DestinationKind::GoogleAds, "google_ads"),
    Registration::one::<MetaConfig>(DestinationKind::Meta, "meta"),
    Registration::one::<RoktConfig>(DestinationKind::Rokt, "rokt"),
    Registration::one::<ServokiConfig>(DestinationKind::Servoki, "servoki"),
    Registration::one::<TikTokConfig>(DestinationKind::TikTok, "tiktok"),
    Registration::one::<PinterestConfig>(DestinationKind::Pinterest, "pinterest"),
    Registration::many::<WebhookConfig>(DestinationKind::Webhook, "webhooks"),
];

/// A destination as the configuration file knows it.
pub(crate) struct Registration {
    /// The destination's kind (its name, for one-per-tracker destinations).
    pub(crate) kind: DestinationKind,
    /// The file's top-level key: `[ga4]`, or `[webhooks.<name>]` when [`Registration::many`].
    pub(crate) file_key: &'static str,
    /// Whether any number may be configured, each in `[<file_key>.<name>]`
    /// and reported as `<kind>:<name>`.
    pub(crate) many: bool,
    /// Reads one section into the destination's settings.
    pub(crate) read: fn(&DestinationSection) -> Result<Box<dyn ReadSettings>, ConfigError>,
    /// The round trip of `file_settings_round_trip` for this line's type.
    #[cfg(test)]
    pub(crate) round_trip: fn(&Registration) -> Result<(), String>,
}

impl Registration {
    /// A destination configured at most once, in `[<file_key>]`.
    const fn one<C: FileSettings>(kind: DestinationKind, file_key: &'static str) -> Registration {
        Registration {
            kind,
            file_key,
            many: false,
            read: read::<C>,
            #[cfg(test)]
            round_trip: tests::round_trip::<C>,
        }
    }

    /// A destination configured any number of times, in `[<file_key>.<name>]`.
    const fn many<C: FileSettings>(kind: DestinationKind, file_key: &'static str) -> Registration {
        Registration { many: true, ..Registration::one::<C>(kind, file_key) }
    }

    /// How the destination is named in `[lanes.<name>]`, `bots` and results:
    /// `ga4`, or `"webhook:<name>"`.
    pub(crate) fn lane_name(&self) -> String {
        if self.many { format!("\"{}:<name>\"", self.kind.as_str()) } else { self.kind.as_str().to_owned() }
    }
}

/// The registration whose section is `[file_key]` (or `[file_key.<name>]`).
pub(crate) fn by_file_key(file_key: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.file_key == file_key)
}

/// The registration of `kind`.
pub(crate) fn by_kind(kind: DestinationKind) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.kind == kind)
}

/// The destinations, for messages: `ga4, google_ads, …, tiktok or a webhook`.
pub(crate) fn destination_list() -> String {
    let names: Vec<String> = REGISTRY
        .iter()
        .map(|r| if r.many { format!("a {}", r.kind.as_str()) } else { r.kind.as_str().to_owned() })
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The destination sections a file may hold: `[ga4], …, [webhooks.<name>]`.
pub(crate) fn section_list() -> String {
    REGISTRY
        .iter()
        .map(|r| if r.many { format!("[{}.<name>]", r.file_key) } else { format!("[{}]", r.file_key) })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A destination's settings type, as a configuration file holds it: the
/// section deserialises straight into it.
pub(crate) trait FileSettings: DeserializeOwned + Serialize + Debug + PartialEq + Send + Sync + 'static {
    /// Adds the settings to the builder; `name` is the section's name for
    /// destinations configured many times (`warehouse` in `[webhooks.warehouse]`).
    fn add_to(self, builder: ServerTrackerBuilder, name: &str) -> ServerTrackerBuilder;

    /// Rewrites keys the file accepts beside the settings' own (GA4's
    /// `eu = true`, Google Ads' `service_account_key_file`) into those
    /// settings, before the section is deserialised. `section` is the
    /// section's path (`ga4`), for errors.
    fn file_shorthands(_table: &mut toml::Table, _section: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Settings with a value other than the default in every field, for the
    /// round trip that proves the file can set each of them.
    #[cfg(test)]
    fn sample() -> Self;
}

/// Settings read from a section, whatever their type.
pub(crate) trait ReadSettings: Any + Debug + Send + Sync {
    /// Adds them to the builder (see [`FileSettings::add_to`]).
    fn add_to(self: Box<Self>, builder: ServerTrackerBuilder, name: &str) -> ServerTrackerBuilder;
}

impl<C: FileSettings> ReadSettings for C {
    fn add_to(self: Box<Self>, builder: ServerTrackerBuilder, name: &str) -> ServerTrackerBuilder {
        FileSettings::add_to(*self, builder, name)
    }
}

/// Reads a section into `C`: `env:NAME` resolved, shorthands rewritten, then
/// deserialised (unknown keys refused), errors naming `section.key`.
fn read<C: FileSettings>(section: &DestinationSection) -> Result<Box<dyn ReadSettings>, ConfigError> {
    let mut table = section.settings().clone();
    resolve_env(section.path(), &mut table)?;
    C::file_shorthands(&mut table, section.path())?;
    let settings: C = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let at = e.path().iter().map(ToString::to_string).collect::<Vec<_>>().join(".");
        ConfigError::InFile {
            setting: if at.is_empty() { section.path().to_owned() } else { format!("{}.{at}", section.path()) },
            reason: e.into_inner().to_string(),
        }
    })?;
    Ok(Box::new(settings))
}

/// Replaces every string `env:NAME` in `table` (at any depth) by the
/// variable's value; a variable that is not set is an error naming the
/// setting (`meta.access_token`) and the variable.
fn resolve_env(path: &str, table: &mut toml::Table) -> Result<(), ConfigError> {
    fn walk(setting: &str, value: &mut toml::Value) -> Result<(), ConfigError> {
        match value {
            toml::Value::String(s) => {
                if let Some(name) = s.strip_prefix("env:") {
                    let name = name.trim();
                    *s = std::env::var(name).map_err(|_| ConfigError::InFile {
                        setting: setting.to_owned(),
                        reason: format!("environment variable {name} is not set"),
                    })?;
                }
                Ok(())
            }
            toml::Value::Array(items) => items.iter_mut().try_for_each(|v| walk(setting, v)),
            toml::Value::Table(t) => t.iter_mut().try_for_each(|(k, v)| walk(&format!("{setting}.{k}"), v)),
            _ => Ok(()),
        }
    }
    table.iter_mut().try_for_each(|(k, v)| walk(&format!("{path}.{k}"), v))
}

/// One destination's section (`[meta]`, `[webhooks.warehouse]`) as the file
/// holds it: its `bots` policy, read when the file is parsed, and its
/// settings, read into the destination's settings type (`MetaConfig`,
/// `WebhookConfig`, …, whose field names are the keys) by
/// [`TallyConfig::tracker_builder`](crate::config_file::TallyConfig::tracker_builder), once `env:NAME` references are resolved.
/// Its `Debug` shows the keys, not the values.
#[derive(Clone, PartialEq)]
pub struct DestinationSection {
    pub(crate) kind: DestinationKind,
    /// `meta`, `webhooks.warehouse`.
    pub(crate) path: String,
    /// The name of one of many (`warehouse`), empty otherwise.
    pub(crate) instance: String,
    /// Known bots' events (crawlers, link previewers, headless browsers):
    /// `"drop"` or `"send"` (see [`crate::bots`]; default `"drop"`, `"send"` for webhooks).
    pub bots: Option<crate::bots::BotPolicy>,
    pub(crate) settings: toml::Table,
}

impl DestinationSection {
    /// A section of `registration`'s destination (`instance`: the name of
    /// one of many), its `bots` key taken out and read.
    pub(crate) fn new(
        registration: &Registration,
        instance: Option<&str>,
        mut settings: toml::Table,
    ) -> Result<Self, String> {
        let path = match instance {
            Some(name) => format!("{}.{name}", registration.file_key),
            None => registration.file_key.to_owned(),
        };
        let bots = match settings.remove("bots") {
            Some(v) => Some(v.try_into().map_err(|e| format!("{path}.bots: {e}"))?),
            None => None,
        };
        Ok(DestinationSection {
            kind: registration.kind,
            path,
            instance: instance.unwrap_or_default().to_owned(),
            bots,
            settings,
        })
    }

    /// The destination's kind.
    pub fn kind(&self) -> DestinationKind {
        self.kind
    }

    /// Where the section is in the file: `meta`, `webhooks.warehouse`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The destination's name in results, `[lanes.<name>]` and metrics:
    /// `meta`, `webhook:warehouse`.
    pub fn destination_name(&self) -> String {
        if self.instance.is_empty() {
            self.kind.as_str().to_owned()
        } else {
            format!("{}:{}", self.kind.as_str(), self.instance)
        }
    }

    /// The settings as written (`env:NAME` unresolved, `bots` taken out).
    pub(crate) fn settings(&self) -> &toml::Table {
        &self.settings
    }
}

impl std::fmt::Debug for DestinationSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationSection")
            .field("path", &self.path)
            .field("bots", &self.bots)
            .field("keys", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::TallyConfig;

    #[test]
    fn one_line_per_destination_kind() {
        let kinds: Vec<DestinationKind> = REGISTRY.iter().map(|r| r.kind).collect();
        for kind in DestinationKind::ALL {
            assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "{kind:?} in REGISTRY");
        }
        assert_eq!(kinds.len(), DestinationKind::ALL.len(), "{kinds:?}");
        for r in REGISTRY {
            assert_eq!(REGISTRY.iter().filter(|o| o.file_key == r.file_key).count(), 1, "{}", r.file_key);
            assert!(!["server", "collector", "lanes"].contains(&r.file_key), "{}", r.file_key);
        }
    }

    /// The file can set every setting the builder can: for every line of
    /// [`REGISTRY`], settings with no field at its default go to TOML (serde
    /// writes every field), come back through `TallyConfig::from_toml`, and
    /// must reach the builder equal. A field serde skips, cannot read, or the
    /// sample leaves at its default fails here, with no list to update.
    #[test]
    fn file_settings_round_trip() {
        let failures: Vec<String> = REGISTRY.iter().filter_map(|r| (r.round_trip)(r).err()).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The top-level field names of a `{:#?}` rendering.
    fn debug_fields(pretty: &str) -> Vec<String> {
        pretty
            .lines()
            .filter_map(|l| l.strip_prefix("    ").filter(|l| !l.starts_with(' ')))
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.to_owned()))
            .collect()
    }

    pub(super) fn round_trip<C: FileSettings>(r: &Registration) -> Result<(), String> {
        let kind = r.kind.as_str();
        let sample = C::sample();
        let table = toml::Table::try_from(&sample).map_err(|e| format!("{kind}: serialising: {e}"))?;
        // Every field is written (Debug lists them all; serde may skip some).
        for field in debug_fields(&format!("{sample:#?}")) {
            if !table.contains_key(&field) {
                return Err(format!("{kind}: the field {field} is not written to the file"));
            }
        }
        // Every key that may be left out differs from what leaving it out gives.
        for key in table.keys() {
            let mut rest = table.clone();
            rest.remove(key);
            if let Ok(default) = toml::Value::Table(rest).try_into::<C>() {
                let default = toml::Table::try_from(&default).map_err(|e| e.to_string())?;
                if default.get(key) == table.get(key) {
                    return Err(format!(
                        "{kind}: the sample leaves {key} at its default; give it another value so the round trip proves the file sets it"
                    ));
                }
            }
        }
        let mut file = toml::Table::new();
        let section = if r.many {
            let named: toml::Table = [("probe".to_owned(), toml::Value::Table(table))].into_iter().collect();
            file.insert(r.file_key.to_owned(), named.into());
            format!("{}.probe", r.file_key)
        } else {
            file.insert(r.file_key.to_owned(), table.into());
            r.file_key.to_owned()
        };
        let text = toml::to_string(&file).map_err(|e| e.to_string())?;
        let config = TallyConfig::from_toml(&text).map_err(|e| format!("{kind}: {e}\n{text}"))?;
        let read = config.destination_settings().map_err(|e| format!("{kind}: {e}\n{text}"))?;
        let [(read_section, settings)] = read.as_slice() else {
            return Err(format!("{kind}: {} sections read from\n{text}", read.len()));
        };
        if read_section.path() != section {
            return Err(format!("{kind}: read [{}], wrote [{section}]", read_section.path()));
        }
        let back = (&**settings as &dyn Any).downcast_ref::<C>().ok_or(format!("{kind}: read another type"))?;
        if *back != sample {
            return Err(format!("{kind}: the file changed the settings:\n wrote {sample:#?}\n read {back:#?}"));
        }
        // And the same settings reach the builder.
        let builder = config.tracker_builder().map_err(|e| format!("{kind}: {e}"))?;
        let shown = format!("{sample:?}");
        if !builder.destinations.iter().any(|d| format!("{d:?}").contains(&shown)) {
            return Err(format!("{kind}: {shown} is not in the builder: {:?}", builder.destinations));
        }
        Ok(())
    }
}
