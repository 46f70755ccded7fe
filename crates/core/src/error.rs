//! The one error type of `tally-core`.

use crate::prelude::*;

/// What was wrong with an input, naming the field so the caller knows what to fix.
///
/// Every parser and builder in the core returns this instead of panicking.
/// Field names use the JSON spelling of the envelope / collector payload
/// (for example `clickIds.gclid`), so a browser developer can find them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A required field is absent or empty.
    #[error("{field} is required")]
    Missing {
        /// The field, e.g. `transactionId`.
        field: &'static str,
    },
    /// A field is present but its value is not acceptable.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field, e.g. `currency`.
        field: &'static str,
        /// What rule the value broke, e.g. `expected a 3-letter ISO 4217 code`.
        reason: &'static str,
    },
    /// A string is longer than the destination or the envelope allows.
    #[error("{field} is too long: at most {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A list has more entries than allowed.
    #[error("{field} has too many entries: at most {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A whole document is over its byte budget.
    #[error("{field} is too large: at most {max} bytes")]
    TooLarge {
        /// The document, e.g. `envelope`.
        field: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// The event is older (or further in the future) than a destination accepts.
    #[error("{field} is outside {destination}'s time window of {max_age_hours} hours")]
    OutsideWindow {
        /// The time field, e.g. `occurredAt`.
        field: &'static str,
        /// The destination, e.g. `ga4`.
        destination: &'static str,
        /// How far back the destination accepts events.
        max_age_hours: u32,
    },
    /// The envelope carries a version this build does not read.
    #[error("envelope version v={found} is not supported; this build reads v=1")]
    UnsupportedVersion {
        /// The version found.
        found: i64,
    },
}

impl Error {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Error::Missing { field }
            | Error::Invalid { field, .. }
            | Error::TooLong { field, .. }
            | Error::TooMany { field, .. }
            | Error::TooLarge { field, .. }
            | Error::OutsideWindow { field, .. } => field,
            Error::UnsupportedVersion { .. } => "v",
        }
    }

    /// A human readable message built without the `fmt` machinery, for the
    /// wasm build where `format!` costs kilobytes.
    pub fn describe(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push_str(self.field());
        match self {
            Error::Missing { .. } => s.push_str(" is required"),
            Error::Invalid { reason, .. } => {
                s.push_str(" is invalid: ");
                s.push_str(reason);
            }
            Error::TooLong { max, .. } => {
                s.push_str(" is too long: at most ");
                crate::json::push_u64(&mut s, *max as u64);
                s.push_str(" characters");
            }
            Error::TooMany { max, .. } => {
                s.push_str(" has too many entries: at most ");
                crate::json::push_u64(&mut s, *max as u64);
            }
            Error::TooLarge { max, .. } => {
                s.push_str(" is too large: at most ");
                crate::json::push_u64(&mut s, *max as u64);
                s.push_str(" bytes");
            }
            Error::OutsideWindow { destination, max_age_hours, .. } => {
                s.push_str(" is outside ");
                s.push_str(destination);
                s.push_str("'s time window of ");
                crate::json::push_u64(&mut s, u64::from(*max_age_hours));
                s.push_str(" hours");
            }
            Error::UnsupportedVersion { found } => {
                s.clear();
                s.push_str("envelope version v=");
                crate::json::push_i64(&mut s, *found);
                s.push_str(" is not supported; this build reads v=1");
            }
        }
        s
    }
}

/// Shorthand for results of the core.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Checks that a string is non-empty after trimming, at most `max` characters
/// and free of control characters; returns the trimmed value.
pub(crate) fn bounded_text(field: &'static str, raw: &str, max: usize) -> Result<String> {
    let v = raw.trim();
    if v.is_empty() {
        return Err(Error::Missing { field });
    }
    if crate::text::char_count(v) > max {
        return Err(Error::TooLong { field, max });
    }
    if v.chars().any(char::is_control) {
        return Err(Error::Invalid { field, reason: "contains control characters" });
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_matches_display() {
        let cases = [
            Error::Missing { field: "transactionId" },
            Error::Invalid { field: "currency", reason: "expected a 3-letter ISO 4217 code" },
            Error::TooLong { field: "clientId", max: 64 },
            Error::TooMany { field: "items", max: 200 },
            Error::TooLarge { field: "envelope", max: 16384 },
            Error::UnsupportedVersion { found: 7 },
            Error::OutsideWindow { field: "occurredAt", destination: "ga4", max_age_hours: 72 },
        ];
        for e in cases {
            assert_eq!(e.describe(), e.to_string());
        }
    }

    #[test]
    fn bounded_text_rules() {
        assert_eq!(bounded_text("f", "  a ", 3).unwrap(), "a");
        assert_eq!(bounded_text("f", "   ", 3), Err(Error::Missing { field: "f" }));
        assert_eq!(bounded_text("f", "abcd", 3), Err(Error::TooLong { field: "f", max: 3 }));
        assert!(bounded_text("f", "a\u{0}b", 3).is_err());
    }
}
