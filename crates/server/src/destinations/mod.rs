//! The destinations, one folder each: its settings (`config.rs`, checked when
//! the tracker is built) and its [`Destination`](crate::engine::Destination)
//! (`mod.rs`: the core call that builds its requests, the request, the
//! judgement of an answer). The engine does everything else alike for all.

pub(crate) mod ga4;
pub(crate) mod google_ads;
pub(crate) mod meta;
pub(crate) mod pinterest;
pub(crate) mod registry;
pub(crate) mod rokt;
pub(crate) mod servoki;
pub(crate) mod tiktok;
pub(crate) mod webhook;

use crate::engine::Deliver;
use crate::error::ConfigError;

/// A destination's settings as the builder holds them: checked when the
/// tracker is built, then turned into what the engine delivers through.
pub(crate) trait DestinationSettings: std::fmt::Debug + Send + Sync + 'static {
    /// The name its results will carry (replacing settings of the same name).
    fn name(&self) -> String;
    /// Refuses settings that cannot work, naming the setting and the fix.
    fn check(&self) -> Result<(), ConfigError>;
    /// The destination for checked settings.
    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError>;
}
