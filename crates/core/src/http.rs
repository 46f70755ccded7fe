//! What an HTTP status means for a delivery: the one rule every destination,
//! the server's engine and the browser's queue share.
//!
//! | status | class |
//! |---|---|
//! | 2xx | [`StatusClass::Success`] |
//! | 408, 425, 429, 5xx | [`StatusClass::Transient`]: try again later (honouring `Retry-After`) |
//! | 401, 403 | [`StatusClass::Credentials`]: fix the credentials; retrying cannot help |
//! | other | [`StatusClass::Permanent`]: the request is wrong; retrying cannot help |
//!
//! An API whose statuses mean something else says so in its own classifier,
//! as an explicit override of this rule (Meta's and Google's 403 are
//! permission errors of the request, for instance).

/// The coarse meaning of an HTTP status (see the [module](self) table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 408, 425, 429, 5xx.
    Transient,
    /// 401, 403.
    Credentials,
    /// Any other status.
    Permanent,
}

/// The class of `status`.
///
/// ```
/// use tally_core::http::{status_class, StatusClass};
/// assert_eq!(status_class(204), StatusClass::Success);
/// assert_eq!(status_class(503), StatusClass::Transient);
/// assert_eq!(status_class(401), StatusClass::Credentials);
/// assert_eq!(status_class(400), StatusClass::Permanent);
/// ```
pub const fn status_class(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 425 | 429 | 500..=599 => StatusClass::Transient,
        401 | 403 => StatusClass::Credentials,
        _ => StatusClass::Permanent,
    }
}

/// What to do after a failed call, once a destination has read its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again with backoff.
    Transient,
    /// The credentials are missing, invalid or lack permission.
    Credentials,
    /// The request itself is wrong.
    Permanent,
}

impl ErrorClass {
    /// The class a failed call's bare HTTP status gives, by [`status_class`]
    /// (a 2xx that still failed, e.g. a body that cannot be read, is permanent).
    pub const fn of_status(status: u16) -> ErrorClass {
        match status_class(status) {
            StatusClass::Transient => ErrorClass::Transient,
            StatusClass::Credentials => ErrorClass::Credentials,
            StatusClass::Success | StatusClass::Permanent => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_class() {
        for s in 0..1000u16 {
            let expected = if (200..300).contains(&s) {
                StatusClass::Success
            } else if s == 408 || s == 425 || s == 429 || (500..600).contains(&s) {
                StatusClass::Transient
            } else if s == 401 || s == 403 {
                StatusClass::Credentials
            } else {
                StatusClass::Permanent
            };
            assert_eq!(status_class(s), expected, "{s}");
        }
        assert_eq!(ErrorClass::of_status(200), ErrorClass::Permanent);
        assert_eq!(ErrorClass::of_status(501), ErrorClass::Transient);
    }
}
