//! The one delivery engine: lanes, the retry policy and the HTTP plumbing every
//! destination shares.

pub(crate) mod lane;
pub(crate) mod retry;
