//! The GA4 client id, read from `_ga` or minted in the same format.

use crate::error::{Error, Result};
use crate::prelude::*;

/// A GA4 client id: `<random>.<first-seen unix seconds>`, e.g. `1958185836.1757409569`.
///
/// It must equal the browser's `_ga` value for server events to join the
/// browser's user in GA4.
///
/// ```
/// use tally_core::ClientId;
/// let id = ClientId::from_ga_cookie("GA1.1.1958185836.1757409569").unwrap();
/// assert_eq!(id.as_str(), "1958185836.1757409569");
/// assert_eq!(ClientId::mint(42, 1_757_409_569).to_ga_cookie(1), "GA1.1.42.1757409569");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

const MAX_SEGMENT: usize = 20;

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SEGMENT && s.bytes().all(|b| b.is_ascii_digit())
}

impl ClientId {
    /// Parses a bare client id (`123.456`), as the envelope carries it.
    pub fn parse(raw: &str) -> Result<ClientId> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(Error::Missing { field: "clientId" });
        }
        match t.split_once('.') {
            Some((a, b)) if digits(a) && digits(b) => Ok(ClientId(t.to_owned())),
            _ => Err(Error::Invalid {
                field: "clientId",
                reason: "expected two dot-separated numbers such as 1958185836.1757409569",
            }),
        }
    }

    /// Reads the value of a `_ga` cookie (`GA1.<n>.<random>.<seconds>`): the
    /// client id is the last two segments.
    pub fn from_ga_cookie(value: &str) -> Result<ClientId> {
        let parts: Vec<&str> = value.trim().split('.').collect();
        if parts.len() < 4 || !parts[0].starts_with("GA") {
            return Err(Error::Invalid { field: "_ga", reason: "expected GA1.<n>.<random>.<seconds>" });
        }
        let n = parts.len();
        let (a, b) = (parts[n - 2], parts[n - 1]);
        if !digits(a) || !digits(b) {
            return Err(Error::Invalid { field: "_ga", reason: "the last two segments must be numbers" });
        }
        let mut s = String::with_capacity(a.len() + b.len() + 1);
        s.push_str(a);
        s.push('.');
        s.push_str(b);
        Ok(ClientId(s))
    }

    /// Mints a client id in GA4's format from a random number and the current
    /// time in Unix seconds, as gtag.js does.
    pub fn mint(random: u32, now_secs: i64) -> ClientId {
        let mut s = String::with_capacity(22);
        // gtag uses a 31-bit random number; keep the same range.
        crate::json::push_u64(&mut s, u64::from(random & 0x7fff_ffff));
        s.push('.');
        crate::json::push_i64(&mut s, now_secs.max(0));
        ClientId(s)
    }

    /// The value for a `_ga`-format cookie at the given domain level (`GA1.1.…`).
    pub fn to_ga_cookie(&self, domain_level: u8) -> String {
        let mut s = String::with_capacity(self.0.len() + 6);
        s.push_str("GA1.");
        crate::json::push_u64(&mut s, u64::from(domain_level));
        s.push('.');
        s.push_str(&self.0);
        s
    }

    /// The id as GA4 expects it in `client_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Finds the first well-formed `_ga` cookie in a `Cookie:` header or
/// `document.cookie` string. Malformed entries are skipped, not fatal.
pub fn client_id_from_cookie_header(header: &str) -> Option<ClientId> {
    crate::cookie::values(header, "_ga").find_map(|v| ClientId::from_ga_cookie(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_vectors() {
        // `_ga` cookies as gtag.js writes them (GA1.<domain depth>.<random>.<first visit, Unix s>).
        assert_eq!(ClientId::from_ga_cookie("GA1.1.1958185836.1757409569").unwrap().as_str(), "1958185836.1757409569");
        assert_eq!(ClientId::from_ga_cookie("GA1.2.292073357.1767432342").unwrap().as_str(), "292073357.1767432342");
        assert_eq!(ClientId::from_ga_cookie("GA1.1.123.456").unwrap().as_str(), "123.456");
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "GA1.1.123", "XX.1.123.456", "GA1.1.abc.456", "GA1.1..456"] {
            assert!(ClientId::from_ga_cookie(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "123", "a.b", "1.2.3", "123."] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn skips_malformed_cookie_entries() {
        let h = "_ga=broken; other=1; _ga=GA1.1.77.88";
        assert_eq!(client_id_from_cookie_header(h).unwrap().as_str(), "77.88");
        assert!(client_id_from_cookie_header("x=1").is_none());
    }

    #[test]
    fn minted_ids_parse_back() {
        let id = ClientId::mint(u32::MAX, 1_757_409_569);
        assert_eq!(id.as_str(), "2147483647.1757409569");
        assert_eq!(ClientId::from_ga_cookie(&id.to_ga_cookie(1)).unwrap(), id);
        assert_eq!(ClientId::parse(id.as_str()).unwrap(), id);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = ClientId::from_ga_cookie(&s);
            let _ = ClientId::parse(&s);
            let _ = client_id_from_cookie_header(&s);
        }
    }
}
