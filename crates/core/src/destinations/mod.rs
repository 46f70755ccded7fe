//! Destination payload builders: typed structs that serialise to exactly what
//! each API takes, with its limits enforced before anything is sent.
//!
//! Each builder takes canonical [`Event`]s plus a
//! [`DeliveryContext`] (who, consent, when) and applies the consent
//! [`policy`](crate::policy) itself, so no caller can forget it.

pub mod data_manager;
pub mod ga4;
pub mod google_ads;
pub mod json_body;
pub mod json_size;
pub mod meta;
pub mod pinterest;
pub mod rokt;
pub mod servoki;
pub mod tiktok;
pub mod webhook;
pub mod window;

use crate::click_ids::ClickIds;
use crate::client_id::ClientId;
use crate::consent::ConsentState;
use crate::event::{Event, ParamValue};
use crate::ids::{UserId, VisitorId};
use crate::user_data::HashedUserData;

/// Why a builder left an event out. Every destination's builder uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Consent forbids sending this event to the destination.
    Consent(crate::consent::ConsentDenial),
    /// The event breaks one of the destination's rules, is outside its time
    /// window (`Error::OutsideWindow`) or is too large.
    Invalid(crate::error::Error),
    /// The destination has no such concept (refunds at Meta, events a Google Ads
    /// target is not for).
    Unsupported,
    /// Nothing left to attribute with after consent (no click id, no user data).
    NoAttribution,
    /// A full refund at a destination that cannot retract a conversion (Google
    /// Ads through the Data Manager API).
    RetractionUnsupported,
}

/// What a builder returns for destinations that batch: the request bodies,
/// the input indices each carries, and why the others were left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<R> {
    /// Request bodies, each within the destination's limits.
    pub requests: Vec<R>,
    /// For each request, the indices (into the input) of the events it carries.
    pub indices: Vec<Vec<usize>>,
    /// `(index into the input, reason)` for events not sent, by index.
    pub skipped: Vec<(usize, Skip)>,
}

impl<R> Default for Batch<R> {
    fn default() -> Self {
        Batch { requests: Vec::new(), indices: Vec::new(), skipped: Vec::new() }
    }
}

/// `value` for the event at `index` of `len` input events: cloned for every
/// event but the last, which takes it, so building one event (the usual
/// server call) copies nothing. `value` must not be read after the last event.
pub(crate) fn share<T: Clone + Default>(value: &mut T, index: usize, len: usize) -> T {
    if index + 1 == len { core::mem::take(value) } else { value.clone() }
}

/// A SHA-256 in lowercase hex: the only form hashed user data is forwarded in.
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One visitor's events with what is known about that visitor: the unit the
/// builders that batch across visitors (Meta, TikTok, Rokt) take several of.
pub type VisitorEvents<'a> = (&'a [Event], &'a DeliveryContext);

/// Everything about the visitor a destination may use, before consent is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryContext {
    /// GA4 client id.
    pub client_id: Option<ClientId>,
    /// GA4 session id.
    pub session_id: Option<String>,
    /// Signed-in user.
    pub user_id: Option<UserId>,
    /// Site visitor id.
    pub visitor_id: Option<VisitorId>,
    /// Click ids.
    pub click_ids: ClickIds,
    /// Consent.
    pub consent: ConsentState,
    /// Hashed user data.
    pub user_data: Option<HashedUserData>,
    /// The page URL the event belongs to.
    pub page_url: Option<String>,
    /// The end user's IP address (already truncated if the shop wants that).
    pub ip_address: Option<String>,
    /// The end user's browser user agent.
    pub user_agent: Option<String>,
    /// The time of sending, Unix ms (for time-window checks).
    pub now_ms: i64,
    /// How the order id fills order and transaction id fields (the shop's
    /// setting, not the visitor's: the browser must use the same).
    pub order_id: crate::ids::OrderIdForm,
}

/// Removes the query parameters that carry ad click ids
/// ([`is_click_id_param`](crate::click_ids::is_click_id_param), any case) from
/// a URL, keeping everything else as it was. Used on page URLs forwarded to a
/// destination when `ad_storage` is not granted.
///
/// ```
/// use tally_core::destinations::strip_click_ids;
/// assert_eq!(strip_click_ids("https://s.example/p?a=1&gclid=X&FBCLID=y#top"), "https://s.example/p?a=1#top");
/// assert_eq!(strip_click_ids("https://s.example/p?gclid=X"), "https://s.example/p");
/// ```
pub fn strip_click_ids(url: &str) -> String {
    let (before_frag, frag) = match url.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (url, None),
    };
    let Some((path, query)) = before_frag.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !crate::click_ids::is_click_id_param(key)
        })
        .collect();
    let mut s = String::with_capacity(url.len());
    s.push_str(path);
    if !(kept.is_empty() || kept.len() == 1 && kept[0].is_empty()) {
        s.push('?');
        s.push_str(&kept.join("&"));
    }
    if let Some(f) = frag {
        s.push('#');
        s.push_str(f);
    }
    s
}

/// The page URL of an event: the context's, else the event's `page_location`.
pub(crate) fn page_url(e: &Event, ctx: &DeliveryContext) -> Option<String> {
    ctx.page_url
        .as_deref()
        .or(match e.params.get("page_location") {
            Some(ParamValue::Text(s)) => Some(s.as_str()),
            _ => None,
        })
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Batches that fit, and the entries too large to fit any batch.
pub type Split<T> = (Vec<Vec<T>>, Vec<T>);

/// Splits `items` into batches of at most `max_count` entries whose sizes
/// (UTF-8 bytes, as returned by `exact`) add up to at most `max_bytes`,
/// keeping order. An entry larger than `max_bytes` on its own is returned in
/// `oversized` instead of sinking a batch.
///
/// `upper` is a cheap size that is never below `exact`: batches are filled by
/// upper sizes, and exact sizes are only taken for a batch that gets near its
/// limit, so the usual small batch is never sized exactly.
pub fn split_batches<T>(
    items: Vec<T>,
    max_count: usize,
    max_bytes: usize,
    upper: impl Fn(&T) -> usize,
    exact: impl Fn(&T) -> usize,
) -> Split<T> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let mut oversized = Vec::new();
    let mut current: Vec<T> = Vec::new();
    // An upper bound of the current batch's size; exact once `refined`.
    let mut bytes = 0usize;
    let mut refined = false;
    for it in items {
        if current.len() >= max_count {
            batches.push(core::mem::take(&mut current));
            (bytes, refined) = (0, false);
        }
        let guess = upper(&it);
        if bytes.saturating_add(guess) <= max_bytes {
            bytes += guess;
            refined = false;
            current.push(it);
            continue;
        }
        if !refined {
            bytes = current.iter().map(&exact).fold(0, usize::saturating_add);
            refined = true;
        }
        let n = exact(&it);
        if n > max_bytes {
            oversized.push(it);
            continue;
        }
        if bytes.saturating_add(n) > max_bytes {
            batches.push(core::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(it);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    (batches, oversized)
}

/// The requests of a builder that batches across visitors: `visitor` sorts
/// each visitor's events into accepted (`ok`) and `skipped`, indexed from the
/// offset it is given; the accepted ones are split into requests of at most
/// `max_count` events and `max_bytes` of events, each made by `request`. An
/// event too large for any request is skipped as such (the API's body limit
/// `body_limit` named in the error).
pub(crate) fn pack_visitors<E: serde::Serialize, R>(
    groups: &[VisitorEvents<'_>],
    mut visitor: impl FnMut(&[Event], &DeliveryContext, usize, &mut Vec<(usize, E)>, &mut Vec<(usize, Skip)>),
    (max_count, max_bytes, body_limit): (usize, usize, usize),
    mut request: impl FnMut(Vec<E>) -> R,
) -> Batch<R> {
    let mut skipped = Vec::new();
    let mut ok = Vec::new();
    let mut offset = 0;
    for &(events, ctx) in groups {
        visitor(events, ctx, offset, &mut ok, &mut skipped);
        offset += events.len();
    }
    let (batches, oversized) = split_json_batches(ok, max_count, max_bytes);
    for (i, _) in oversized {
        skipped.push((i, Skip::Invalid(crate::Error::TooLarge { field: "event", max: body_limit })));
    }
    skipped.sort_by_key(|(i, _)| *i);
    let mut batch = Batch { skipped, ..Batch::default() };
    for b in batches {
        let (idx, data): (Vec<usize>, Vec<E>) = b.into_iter().unzip();
        batch.indices.push(idx);
        batch.requests.push(request(data));
    }
    batch
}

/// [`split_batches`] for payload entries tagged with their input index, sized
/// as compact JSON (each with its separating comma).
pub(crate) fn split_json_batches<E: serde::Serialize>(
    items: Vec<(usize, E)>,
    max_count: usize,
    max_bytes: usize,
) -> Split<(usize, E)> {
    split_batches(items, max_count, max_bytes, |(_, e)| json_size::upper_bound(e), |(_, e)| json_size::exact(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_by_count_and_bytes() {
        let (b, o) = split_batches((0..60).collect(), 25, 1000, |_| 10, |_| 10);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 10]);
        assert!(o.is_empty());
        let (b, o) = split_batches(vec![600, 600, 2000, 300], 25, 1000, |n| *n, |n| *n);
        assert_eq!(b, vec![vec![600], vec![600, 300]]);
        assert_eq!(o, vec![2000]);
    }

    #[test]
    fn loose_upper_sizes_do_not_split_batches_early() {
        // Upper sizes of 6x the real size: ten entries of 150 bytes fit in
        // 1,500 bytes, although their upper sizes add up to 9,000.
        let (b, o) = split_batches(vec![150; 10], 25, 1500, |n| n * 6, |n| *n);
        assert_eq!(b, vec![vec![150; 10]]);
        assert!(o.is_empty());
        // An entry whose upper size is over the limit but whose real size is not.
        let (b, o) = split_batches(vec![900, 500], 25, 1000, |n| n * 6, |n| *n);
        assert_eq!(b, vec![vec![900], vec![500]]);
        assert!(o.is_empty());
    }

    #[test]
    fn json_batches_fit_the_byte_limit_as_serialised() {
        let items: Vec<(usize, String)> = (0..40).map(|i| (i, "\u{1}x".repeat(i * 5))).collect();
        let (b, o) = split_json_batches(items, 25, 600);
        for batch in &b {
            let values: Vec<&String> = batch.iter().map(|(_, s)| s).collect();
            assert!(serde_json::to_string(&values).unwrap().len() <= 600 + 1);
        }
        let kept: usize = b.iter().map(Vec::len).sum();
        assert_eq!(kept + o.len(), 40);
        assert!(o.iter().all(|(_, s)| serde_json::to_string(s).unwrap().len() > 600));
    }

    proptest! {
        #[test]
        fn batches_respect_limits(sizes in proptest::collection::vec(1usize..500, 0..200), count in 1usize..30) {
            let total = sizes.len();
            let (b, o) = split_batches(sizes, count, 1000, |n| n * 3, |n| *n);
            prop_assert_eq!(b.iter().map(Vec::len).sum::<usize>() + o.len(), total);
            for batch in &b {
                prop_assert!(batch.len() <= count);
                prop_assert!(batch.iter().sum::<usize>() <= 1000);
            }
        }
    }
}
