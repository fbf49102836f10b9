//! The edge between the log's wire format and the domain: a record's
//! payload is a Protobuf `Message`, and only a message the store can hold
//! goes on.

use chatmesh_ids::{ChatMessage, IdError};
use chatmesh_proto::common::v1::Message;
use prost::Message as _;

use crate::error::StorageError;
use crate::store::check_storable;

/// Why a record is not a storable chat message.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    /// The record has no payload.
    #[error("no payload")]
    NoPayload,
    /// The payload is not a Protobuf message.
    #[error("not a message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// An identifier in it is malformed.
    #[error("bad identifier: {0}")]
    Id(#[from] IdError),
    /// A field does not fit the store.
    #[error("unstorable: {0}")]
    Unstorable(#[from] StorageError),
}

/// The chat message in a record's `payload`.
pub fn decode(payload: Option<&[u8]>) -> Result<ChatMessage, Undecodable> {
    let wire = Message::decode(payload.ok_or(Undecodable::NoPayload)?)?;
    let message = ChatMessage::try_from(wire)?;
    check_storable(&message)?;
    Ok(message)
}
