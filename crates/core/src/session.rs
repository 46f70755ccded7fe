//! The GA4 session, read from the `_ga_<stream>` cookie (GS1 and GS2 formats).

use crate::error::{Error, Result};
use crate::prelude::*;

/// A GA4 session: its id (the session start in Unix seconds) and number.
///
/// ```
/// use tally_core::GaSession;
/// let s = GaSession::from_cookie("GS2.1.s1757409568$o1$g0$t1757409591$j37$l0$h0").unwrap();
/// assert_eq!((s.session_id.as_str(), s.session_number), ("1757409568", Some(1)));
/// let s = GaSession::from_cookie("GS1.1.1700000123.4.1.1700000456.0.0.0").unwrap();
/// assert_eq!((s.session_id.as_str(), s.session_number), ("1700000123", Some(4)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GaSession {
    /// The session id, digits only, sent as GA4's `session_id` param.
    pub session_id: String,
    /// The session count for this client, when the cookie has it.
    pub session_number: Option<u32>,
}

fn is_session_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

impl GaSession {
    /// Parses a `_ga_<stream>` cookie value in GS1 (`GS1.1.<id>.<n>.…`) or
    /// GS2 (`GS2.1.s<id>$o<n>$…`) format.
    pub fn from_cookie(value: &str) -> Result<GaSession> {
        // Digits only, without `str::parse` (and its code in the browser's wasm).
        let session_number = |n: &str| crate::browser::parse_u64(n).and_then(|n| u32::try_from(n).ok());
        let bad = Error::Invalid {
            field: "_ga_<stream>",
            reason: "expected GS1.1.<session>.<number>… or GS2.1.s<session>$o<number>…",
        };
        let v = value.trim();
        let mut parts = v.splitn(3, '.');
        let version = parts.next().unwrap_or_default();
        let _domain = parts.next().ok_or(bad.clone())?;
        let rest = parts.next().ok_or(bad.clone())?;
        match version {
            "GS1" => {
                let mut f = rest.split('.');
                let id = f.next().unwrap_or_default();
                if !is_session_id(id) {
                    return Err(bad);
                }
                let number = f.next().and_then(session_number);
                Ok(GaSession { session_id: id.to_owned(), session_number: number })
            }
            "GS2" => {
                let mut id = None;
                let mut number = None;
                for field in rest.split('$') {
                    if let Some(s) = field.strip_prefix('s') {
                        id = Some(s);
                    } else if let Some(o) = field.strip_prefix('o') {
                        number = session_number(o);
                    }
                }
                match id {
                    Some(id) if is_session_id(id) => {
                        Ok(GaSession { session_id: id.to_owned(), session_number: number })
                    }
                    _ => Err(bad),
                }
            }
            _ => Err(bad),
        }
    }

    /// Parses a bare session id as the envelope carries it.
    pub fn parse_id(raw: &str) -> Result<String> {
        let t = raw.trim();
        if is_session_id(t) {
            Ok(t.to_owned())
        } else {
            Err(Error::Invalid { field: "sessionId", reason: "expected the digits of a GA4 session id" })
        }
    }
}

/// The session cookie name for a GA4 measurement id: `G-ABC123` → `_ga_ABC123`.
pub fn session_cookie_name(measurement_id: &str) -> String {
    let id = measurement_id.trim();
    let stream = id.strip_prefix("G-").unwrap_or(id);
    let mut s = String::with_capacity(stream.len() + 4);
    s.push_str("_ga_");
    s.push_str(stream);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn both_formats() {
        let s = GaSession::from_cookie("GS2.1.s1757409568$o1$g0$t1757409591$j37$l0$h0").unwrap();
        assert_eq!(s.session_id, "1757409568");
        assert_eq!(s.session_number, Some(1));
        let s = GaSession::from_cookie("GS1.1.1700000123.4.1.1700000456.0.0.0").unwrap();
        assert_eq!(s.session_id, "1700000123");
        assert_eq!(s.session_number, Some(4));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "GS1", "GS1.1", "GS1.1.abc.1", "GS2.1.o1$g0", "GS3.1.1.1", "GS2.1.sX$o1"] {
            assert!(GaSession::from_cookie(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cookie_name() {
        assert_eq!(session_cookie_name("G-ABC123"), "_ga_ABC123");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = GaSession::from_cookie(&s);
        }
    }
}
