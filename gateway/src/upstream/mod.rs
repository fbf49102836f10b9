//! Adapters from the gateway's ports to the services and Redis behind them.

pub(crate) mod chat;
pub(crate) mod feed;
pub(crate) mod gaps;
pub(crate) mod reads;
