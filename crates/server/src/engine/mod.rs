//! The one delivery engine: the destination contract, lanes, the retry
//! policy and the HTTP helper every destination shares.

mod destination;
pub(crate) mod http;
pub(crate) mod lane;
pub(crate) mod retry;
mod route;

pub(crate) use destination::{BoxFuture, Deliver, Destination, Judgement, fan_out, finish, open};
pub(crate) use route::Route;
