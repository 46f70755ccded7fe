//! [`Secret`]: a credential as written in a configuration, never printed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An API secret, access token, key or signing secret as written in a
/// configuration file: literally, or `env:NAME` to read it from the
/// environment when the tracker is built. Its `Debug` and `Display` show
/// `env:NAME` references (not secret) and `[redacted]` for everything else,
/// so a logged configuration never leaks a credential. It deserialises from a
/// string (an `env:NAME` reference stays as written until the tracker is
/// built) and serialises as written, for writing a configuration file: never
/// serialise settings into logs. The default is empty (a setting not given,
/// refused where it is required).
///
/// ```
/// use tally_server::Secret;
/// let s = Secret::from("sk_live_123");
/// assert_eq!(format!("{s:?}"), "Secret([redacted])");
/// assert_eq!(s.expose(), "sk_live_123");
/// assert_eq!(format!("{:?}", Secret::from("env:META_TOKEN")), "Secret(env:META_TOKEN)");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value as written (`env:NAME` unresolved): only for code that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({self})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.trim().strip_prefix("env:") {
            Some(name) if !name.is_empty() => write!(f, "env:{name}"),
            _ => f.write_str("[redacted]"),
        }
    }
}
