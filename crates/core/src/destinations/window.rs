//! The time window a set of destinations accepts, for the collector to refuse
//! an event time that no destination would take, instead of answering
//! `accepted` and then sending it nowhere.
//!
//! Each destination checks its own window when it builds its request (an
//! event outside it is withheld as `outside_window` there); this module is
//! the union of those windows: the widest clock-skew allowance into the
//! future, and the longest age any configured destination accepts.

use crate::consent::DestinationKind;
use crate::error::{Error, Result};

use super::{ga4, google_ads, meta, pinterest, rokt, tiktok};

/// How far ahead of the receiving server's clock an event time may lie: the
/// widest clock-skew allowance of the destinations (15 minutes at GA4, Google
/// Ads, Meta and TikTok; Rokt allows 5).
pub const MAX_FUTURE_MS: i64 = 15 * 60_000;

/// The age, in hours, of the oldest event a destination of `kind` accepts
/// under any of its settings, or `None` when it takes events of any age (a
/// webhook, Servoki).
///
/// GA4 72 hours; Google Ads 90 days (click conversions; adjustments 54);
/// Meta 62 days (`physical_store`; `website` 7); TikTok and Pinterest 7 days; Rokt
/// 540 days.
///
/// ```
/// use tally_core::DestinationKind;
/// use tally_core::destinations::window::max_event_age_hours;
/// assert_eq!(max_event_age_hours(DestinationKind::Ga4), Some(72));
/// assert_eq!(max_event_age_hours(DestinationKind::Webhook), None);
/// ```
pub fn max_event_age_hours(kind: DestinationKind) -> Option<u32> {
    match kind {
        DestinationKind::Ga4 => Some(ga4::MAX_AGE_HOURS),
        DestinationKind::GoogleAds => Some(google_ads::MAX_CLICK_AGE_DAYS * 24),
        DestinationKind::Meta => Some(meta::MAX_AGE_DAYS_PHYSICAL_STORE * 24),
        DestinationKind::Rokt => Some(rokt::MAX_AGE_DAYS * 24),
        DestinationKind::TikTok => Some(tiktok::MAX_AGE_DAYS * 24),
        DestinationKind::Pinterest => Some(pinterest::MAX_AGE_DAYS * 24),
        DestinationKind::Servoki | DestinationKind::Webhook => None,
    }
}

/// Checks an event time (`occurredAt`, Unix ms; 0 when not given, which is
/// sent as the time of sending) at `now_ms` against what the destinations of
/// `kinds` accept together:
///
/// * more than [`MAX_FUTURE_MS`] ahead: [`Error::Invalid`] (no destination
///   takes it, and a date such as the year 9999 is a bug in the caller);
/// * older than the longest window of `kinds`: [`Error::OutsideWindow`]
///   naming the destination with that window. With a destination that
///   accepts any age among `kinds`, or no destination at all, there is no
///   lower bound.
///
/// A destination with a shorter window still withholds the event itself,
/// with the reason `outside_window`.
///
/// ```
/// use tally_core::DestinationKind;
/// use tally_core::destinations::window::check_event_time;
/// let now = 1_777_667_565_000;
/// let ga4 = [DestinationKind::Ga4];
/// assert!(check_event_time(now - 3_600_000, now, &ga4).is_ok());
/// assert!(check_event_time(253_402_300_799_000, now, &ga4).is_err()); // the year 9999
/// assert!(check_event_time(now - 4 * 86_400_000, now, &ga4).is_err());
/// assert!(check_event_time(now - 4 * 86_400_000, now, &[DestinationKind::Ga4, DestinationKind::Webhook]).is_ok());
/// ```
pub fn check_event_time(occurred_at_ms: i64, now_ms: i64, kinds: &[DestinationKind]) -> Result<()> {
    if occurred_at_ms == 0 {
        return Ok(());
    }
    if occurred_at_ms.saturating_sub(now_ms) > MAX_FUTURE_MS {
        return Err(Error::Invalid {
            field: "occurredAt",
            reason: "more than 15 minutes ahead of the collector's clock; send the time the event happened, in Unix \
                     milliseconds",
        });
    }
    let mut longest: Option<(DestinationKind, u32)> = None;
    for &kind in kinds {
        match max_event_age_hours(kind) {
            None => return Ok(()),
            Some(hours) if longest.is_none_or(|(_, h)| hours > h) => longest = Some((kind, hours)),
            Some(_) => {}
        }
    }
    let Some((kind, hours)) = longest else { return Ok(()) };
    if now_ms.saturating_sub(occurred_at_ms) > i64::from(hours) * 3_600_000 {
        return Err(Error::OutsideWindow { field: "occurredAt", destination: kind.as_str(), max_age_hours: hours });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DestinationKind::*;

    const NOW: i64 = 1_777_667_565_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_future_is_refused_beyond_the_clock_skew_allowance() {
        for kinds in [&[Ga4][..], &[Webhook], &[]] {
            assert!(check_event_time(NOW + MAX_FUTURE_MS, NOW, kinds).is_ok());
            let err = check_event_time(NOW + MAX_FUTURE_MS + 1, NOW, kinds).unwrap_err();
            assert_eq!(err.field(), "occurredAt");
            assert!(err.to_string().contains("ahead of the collector's clock"), "{err}");
            // 9999-12-31T23:59:59Z
            assert!(check_event_time(253_402_300_799_000, NOW, kinds).is_err());
            assert!(check_event_time(i64::MAX, NOW, kinds).is_err());
        }
    }

    #[test]
    fn the_past_is_refused_beyond_the_longest_window_configured() {
        assert!(check_event_time(NOW - 72 * HOUR, NOW, &[Ga4]).is_ok());
        assert_eq!(
            check_event_time(NOW - 72 * HOUR - 1, NOW, &[Ga4]),
            Err(Error::OutsideWindow { field: "occurredAt", destination: "ga4", max_age_hours: 72 })
        );
        // Ten days old: too old for GA4 and TikTok, not for Google Ads.
        let ten_days = NOW - 240 * HOUR;
        assert!(check_event_time(ten_days, NOW, &[Ga4, TikTok]).is_err());
        assert!(check_event_time(ten_days, NOW, &[Ga4, GoogleAds, TikTok]).is_ok());
        let err = check_event_time(NOW - 2_000 * 24 * HOUR, NOW, &[Ga4, GoogleAds, Meta, Rokt, TikTok]).unwrap_err();
        assert_eq!(err, Error::OutsideWindow { field: "occurredAt", destination: "rokt", max_age_hours: 540 * 24 });
        // A webhook takes any age; without destinations there is nothing to judge by.
        assert!(check_event_time(1, NOW, &[Ga4, Webhook]).is_ok());
        assert!(check_event_time(1, NOW, &[]).is_ok());
        // No time given: sent as the time of sending.
        assert!(check_event_time(0, NOW, &[Ga4]).is_ok());
    }

    #[test]
    fn each_window_ends_exactly_at_its_destination_age() {
        for kind in DestinationKind::ALL {
            if let Some(hours) = max_event_age_hours(kind) {
                assert!(check_event_time(NOW - i64::from(hours) * HOUR, NOW, &[kind]).is_ok(), "{kind:?}");
                assert!(check_event_time(NOW - i64::from(hours) * HOUR - 1, NOW, &[kind]).is_err(), "{kind:?}");
            }
        }
    }
}
