//! Time formats each destination wants, computed from Unix milliseconds (no clock here).

use crate::error::{Error, Result};
use crate::prelude::*;

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn push_2(out: &mut String, v: u32) {
    out.push((b'0' + (v / 10 % 10) as u8) as char);
    out.push((b'0' + (v % 10) as u8) as char);
}

fn push_date_time(out: &mut String, secs: i64, sep: char) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    push_2(out, y / 100);
    push_2(out, y % 100);
    out.push('-');
    push_2(out, m);
    out.push('-');
    push_2(out, d);
    out.push(sep);
    push_2(out, sod / 3600);
    out.push(':');
    push_2(out, sod / 60 % 60);
    out.push(':');
    push_2(out, sod % 60);
}

/// Google Ads `conversionDateTime`: `yyyy-mm-dd hh:mm:ss+hh:mm` in the given
/// UTC offset (minutes), seconds precision.
///
/// ```
/// assert_eq!(tally_core::time::google_ads_datetime(1_777_667_565_000, 0), "2026-05-01 20:32:45+00:00");
/// assert_eq!(tally_core::time::google_ads_datetime(1_777_667_565_000, -480), "2026-05-01 12:32:45-08:00");
/// ```
pub fn google_ads_datetime(unix_ms: i64, offset_minutes: i32) -> String {
    let secs = unix_ms.div_euclid(1000) + i64::from(offset_minutes) * 60;
    let mut s = String::with_capacity(25);
    push_date_time(&mut s, secs, ' ');
    s.push(if offset_minutes < 0 { '-' } else { '+' });
    let off = offset_minutes.unsigned_abs();
    push_2(&mut s, off / 60);
    s.push(':');
    push_2(&mut s, off % 60);
    s
}

/// RFC 3339 in UTC with milliseconds: `2026-05-01T20:32:45.000Z`.
pub fn rfc3339_utc(unix_ms: i64) -> String {
    let mut s = String::with_capacity(24);
    push_date_time(&mut s, unix_ms.div_euclid(1000), 'T');
    s.push('.');
    let ms = unix_ms.rem_euclid(1000) as u32;
    push_2(&mut s, ms / 10);
    s.push((b'0' + (ms % 10) as u8) as char);
    s.push('Z');
    s
}

/// Parses RFC 3339 (`2026-05-01T20:32:45Z`, `…45.123+02:00`) to Unix ms.
pub fn parse_rfc3339(raw: &str) -> Result<i64> {
    let bad = Error::Invalid { field: "occurredAt", reason: "expected RFC 3339 such as 2026-05-01T20:32:45Z" };
    let s = raw.trim().as_bytes();
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !(s[10] == b'T' || s[10] == b't' || s[10] == b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return Err(bad);
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d, h, mi, se) = match (num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19)) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) => (y, mo, d, h, mi, se),
        _ => return Err(bad),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad);
    }
    let mut i = 19;
    let mut ms = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad);
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_secs = match s.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == s.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == s.len() && s[i + 3] == b':' => {
            let (oh, om) = match (num(i + 1, i + 3), num(i + 4, i + 6)) {
                (Some(oh), Some(om)) if oh < 24 && om < 60 => (oh, om),
                _ => return Err(bad),
            };
            let v = oh * 3600 + om * 60;
            if *sign == b'-' { -v } else { v }
        }
        _ => return Err(bad),
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Ok((days * 86_400 + h * 3600 + mi * 60 + se - offset_secs) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vectors() {
        // 2026-05-01T20:32:45Z, worked out by hand
        let ms = 1_777_667_565_000;
        assert_eq!(parse_rfc3339("2026-05-01T20:32:45Z").unwrap(), ms);
        assert_eq!(google_ads_datetime(ms, 0), "2026-05-01 20:32:45+00:00");
        assert_eq!(google_ads_datetime(ms, -480), "2026-05-01 12:32:45-08:00");
        assert_eq!(rfc3339_utc(ms + 7), "2026-05-01T20:32:45.007Z");
        assert_eq!(parse_rfc3339("2026-05-01T12:32:45.5-08:00").unwrap(), ms + 500);
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rejects_bad() {
        for bad in [
            "",
            "2026-05-01",
            "2026-13-01T00:00:00Z",
            "2026-05-01T20:32:45",
            "2026-05-01T20:32:45+0800",
            "x026-05-01T20:32:45Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(ms in 0i64..253_402_300_799_000) {
            prop_assert_eq!(parse_rfc3339(&rfc3339_utc(ms)).unwrap(), ms);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
