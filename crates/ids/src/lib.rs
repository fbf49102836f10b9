//! Identifiers used across chatmesh and the Snowflake generator for message
//! IDs. Domain code takes these newtypes; raw strings and integers are
//! converted once, at the proto or HTTP boundary.

mod mentions;
mod message;
mod names;
pub mod seq;
mod snowflake;

pub use mentions::{MAX_MENTIONS, mentions};
pub use message::{Change, ChatMessage, MessageState, Reaction};
pub use names::{ChannelId, IdError, UserId};
pub use snowflake::{CHATMESH_EPOCH_MS, Clock, MAX_WORKER_ID, MessageId, Snowflake, SystemClock};
