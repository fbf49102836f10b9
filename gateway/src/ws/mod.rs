//! The WebSocket side of the gateway: one connection per client, its
//! session's frame handling, fan-out to local sessions and gap replay.

pub(crate) mod codec;
mod connection;
mod control;
pub(crate) mod hub;
mod limits;
pub(crate) mod outbound;
pub(crate) mod protocol;
pub(crate) mod read;
mod replay;
mod send;
pub(crate) mod session;
mod subscribe;
mod typing;

#[cfg(test)]
mod tests;

pub(crate) use codec::{Codec, JSON_SUBPROTOCOL, PROTO_SUBPROTOCOL};
pub(crate) use connection::run;
pub use connection::{CLOSE_GOING_AWAY, CLOSE_SESSION_EXPIRED, CLOSE_SLOW_CONSUMER};
