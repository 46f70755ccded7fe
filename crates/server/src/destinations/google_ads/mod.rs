//! Delivery to Google Ads.
//!
//! Two APIs, chosen by [`GoogleAdsConfig::api`]:
//!
//! * [`GoogleAdsApi::DataManager`] (the default): the Data Manager API's
//!   `events:ingest`. Since 2026-06-15 the Google Ads API
//!   takes no new adopters of offline conversion imports
//!   (<https://developers.google.com/ads/blog/posts/2026/05/changes-to-offline-click-conversion>),
//!   so this is the path that works for a shop setting up today. Events of
//!   many visitors share requests of up to 2,000; partial refunds restate the
//!   order's value at once; full refunds, which Data Manager cannot retract,
//!   go through the Google Ads API when [`GoogleAdsConfig::retractions`] says
//!   so and are otherwise `Skipped(RetractionUnsupported)`.
//! * [`GoogleAdsApi::GoogleAdsApi`]: the Google Ads API's
//!   `:uploadClickConversions` and `:uploadConversionAdjustments`
//!   for developers Google still allowlists.
//!
//! Which conversion action an event feeds, on either path:
//!
//! 1. its own label (`track_conversion`), else
//! 2. the helper label of its name ([`AdsLabels`]), and for a
//!    refund the `purchase` label;
//! 3. no label, or a label that names no configured action: `Skipped(NoLabelConfigured)`.
//!
//! Both paths share one OAuth token cache (refresh-token grant; the token
//! must carry the scope of the API it calls).

mod config;
pub(crate) mod data_manager;
pub(crate) mod legacy;
pub mod oauth;

use std::collections::BTreeMap;
use std::sync::Arc;

use tally_core::destinations::VisitorEvents;
use tally_core::destinations::google_ads::AdsTarget;
use tally_core::{Event, EventName, RefundScope};

use crate::destinations::google_ads::oauth::TokenCache;
use std::time::Duration;

use crate::destinations::DestinationSettings;
use crate::engine::{BoxFuture, Deliver, by_merge};
use crate::error::ConfigError;
use crate::outcome::{Outcome, SkipReason};
use tally_core::DestinationKind;

pub use crate::diagnostics::DiagnosticsReport;
pub use config::{AdsLabels, GoogleAdsApi, GoogleAdsConfig, Retractions};

/// A configured Google Ads destination.
#[derive(Debug, Clone)]
pub struct GoogleAdsDestination {
    cfg: Arc<GoogleAdsConfig>,
    data_manager: Option<data_manager::DataManagerSender>,
    /// The Google Ads API: the whole path, or retractions only.
    google_ads_api: Option<legacy::GoogleAdsApiSender>,
}

impl GoogleAdsDestination {
    /// From checked configuration.
    pub fn new(cfg: GoogleAdsConfig) -> Result<GoogleAdsDestination, ConfigError> {
        let cfg = Arc::new(cfg);
        let scopes = cfg.scopes();
        let oauth = Arc::new(match cfg.service_account_key()? {
            Some(key) => TokenCache::service_account(cfg.token_url.clone(), key, scopes.join(" ")),
            None => TokenCache::new(
                cfg.token_url.clone(),
                cfg.client_id.trim(),
                cfg.client_secret.expose(),
                cfg.refresh_token.expose(),
            )
            .require_scope(scopes[0]),
        });
        let (data_manager, google_ads_api) = match cfg.api {
            GoogleAdsApi::DataManager => {
                let dm = data_manager::DataManagerSender::new(cfg.clone(), oauth.clone())?;
                let retract = match cfg.retractions {
                    Retractions::GoogleAdsApi => Some(legacy::GoogleAdsApiSender::new(cfg.clone(), oauth.clone())?),
                    Retractions::Skip => None,
                };
                (Some(dm), retract)
            }
            GoogleAdsApi::GoogleAdsApi => (None, Some(legacy::GoogleAdsApiSender::new(cfg.clone(), oauth.clone())?)),
        };
        if cfg.api == GoogleAdsApi::GoogleAdsApi {
            for note in cfg.notes() {
                tracing::warn!("{note}");
            }
        }
        Ok(GoogleAdsDestination { cfg, data_manager, google_ads_api })
    }

    /// What a person setting this up should know ([`GoogleAdsConfig::notes`]).
    pub fn notes(&self) -> Vec<String> {
        self.cfg.notes()
    }

    /// What Google reported about the requests sent so far (Data Manager
    /// only): field warnings and the processing results of the request
    /// status polls.
    pub fn diagnostics(&self) -> Option<DiagnosticsReport> {
        self.data_manager.as_ref().map(data_manager::DataManagerSender::diagnostics)
    }

    /// Sends the events of one or several visitors; one outcome per event, in
    /// the order of the visitors and their events.
    pub(crate) async fn deliver_many(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        visitors: &[VisitorEvents<'_>],
    ) -> Vec<Outcome> {
        let Some(dm) = &self.data_manager else {
            let mut out = Vec::new();
            for (events, ctx) in visitors {
                if let Some(api) = &self.google_ads_api {
                    out.extend(api.deliver(http, timeout, events, ctx).await);
                }
            }
            return out;
        };
        let total: usize = visitors.iter().map(|(e, _)| e.len()).sum();
        let mut out: Vec<Option<Outcome>> = vec![None; total];
        // Per action, each visitor's events for it, with their places in `out`.
        let mut by_action: BTreeMap<(String, String), ActionWork> = BTreeMap::new();
        let mut retractions: Vec<(usize, usize, Vec<usize>)> = Vec::new();
        let mut offset = 0;
        for (v, (events, _)) in visitors.iter().enumerate() {
            let mut retract = Vec::new();
            for (i, e) in events.iter().enumerate() {
                let at = offset + i;
                match route(&self.cfg.labels, dm.actions(), e) {
                    Err(reason) => out[at] = Some(Outcome::Skipped(reason)),
                    Ok(_) if self.google_ads_api.is_some() && is_retraction(e) => retract.push(i),
                    Ok((action, target_event)) => {
                        let work = by_action
                            .entry((action.clone(), target_event.as_str().to_owned()))
                            .or_insert_with(|| ActionWork { action, event: target_event, visitors: BTreeMap::new() });
                        let (picked, places) = work.visitors.entry(v).or_default();
                        picked.push(e.clone());
                        places.push(at);
                    }
                }
            }
            if !retract.is_empty() {
                retractions.push((v, offset, retract));
            }
            offset += events.len();
        }
        for work in by_action.into_values() {
            let groups: Vec<(Vec<Event>, Vec<usize>, usize)> =
                work.visitors.into_iter().map(|(v, (events, places))| (events, places, v)).collect();
            let visitors_for: Vec<VisitorEvents<'_>> =
                groups.iter().map(|(events, _, v)| (events.as_slice(), visitors[*v].1)).collect();
            let places: Vec<usize> = groups.iter().flat_map(|(_, p, _)| p.iter().copied()).collect();
            let outcomes = dm.deliver(http, timeout, &visitors_for, &work.action, work.event).await;
            for (place, o) in places.into_iter().zip(outcomes) {
                out[place] = Some(o);
            }
        }
        if let Some(api) = &self.google_ads_api {
            for (v, offset, indices) in retractions {
                let (events, ctx) = visitors[v];
                let picked: Vec<Event> = indices.iter().map(|&i| events[i].clone()).collect();
                let outcomes = api.deliver(http, timeout, &picked, ctx).await;
                for (i, o) in indices.into_iter().zip(outcomes) {
                    out[offset + i] = Some(o);
                }
            }
        }
        crate::engine::finish(out)
    }
}

/// One conversion action's share of a round.
struct ActionWork {
    action: String,
    event: EventName,
    /// By visitor (index into the round): the events and their places in the answer.
    visitors: BTreeMap<usize, (Vec<Event>, Vec<usize>)>,
}

fn is_retraction(e: &Event) -> bool {
    e.name == EventName::Refund && e.refund_scope() == RefundScope::Full
}

/// The conversion action ids, by label, with each checked.
pub(crate) fn actions(cfg: &GoogleAdsConfig, customer_id: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut actions = BTreeMap::new();
    for (label, action) in &cfg.conversion_actions {
        let t = AdsTarget::new(customer_id, action)
            .map_err(|e| ConfigError::Invalid { setting: "google_ads.conversion_actions", reason: e.to_string() })?;
        actions.insert(label.clone(), t.conversion_action_id);
    }
    Ok(actions)
}

/// The conversion action id an event feeds, and the event the action is
/// configured for (`purchase` for refunds), or why there is none.
pub(crate) fn route(
    labels: &AdsLabels,
    actions: &BTreeMap<String, String>,
    e: &Event,
) -> Result<(String, EventName), SkipReason> {
    let label = match (&e.conversion_label, &e.name) {
        (Some(l), _) => Some(l.as_str()),
        (None, EventName::Refund) => labels.purchase.as_deref(),
        (None, name) => labels.label_for(name),
    };
    let action = label.and_then(|l| actions.get(l)).ok_or(SkipReason::NoLabelConfigured)?;
    let target_event = if e.name == EventName::Refund { EventName::Purchase } else { e.name.clone() };
    Ok((action.clone(), target_event))
}

impl DestinationSettings for GoogleAdsConfig {
    fn name(&self) -> String {
        DestinationKind::GoogleAds.as_str().to_owned()
    }

    fn check(&self) -> Result<(), ConfigError> {
        GoogleAdsConfig::check(self)
    }

    fn destination(&self) -> Result<Box<dyn Deliver>, ConfigError> {
        Ok(Box::new(GoogleAdsDestination::new(self.clone())?))
    }
}

/// Google Ads delivers itself: two APIs, routing by conversion action, OAuth
/// and status polls do not fit one request per batch.
impl Deliver for GoogleAdsDestination {
    fn name(&self) -> &str {
        DestinationKind::GoogleAds.as_str()
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::GoogleAds
    }

    fn merges_visitors(&self) -> bool {
        self.data_manager.is_some()
    }

    fn lane_defaults(&self) -> crate::LaneSettings {
        crate::LaneSettings::for_kind(DestinationKind::GoogleAds)
    }

    fn deliver<'a>(
        &'a self,
        http: &'a reqwest::Client,
        timeout: Duration,
        visitors: &'a [VisitorEvents<'a>],
    ) -> BoxFuture<'a, Vec<Outcome>> {
        by_merge(Deliver::merges_visitors(self), visitors, move |group| self.deliver_many(http, timeout, group))
    }

    fn diagnostics(&self) -> Option<DiagnosticsReport> {
        GoogleAdsDestination::diagnostics(self)
    }

    fn notes(&self) -> Vec<String> {
        GoogleAdsDestination::notes(self)
    }
}
