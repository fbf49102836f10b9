//! Generated Protobuf and gRPC types for every chatmesh API.
//!
//! Packages are versioned (`chatmesh.chat.v1`); each module mirrors one.
#![allow(missing_docs, unreachable_pub, clippy::large_enum_variant)]

mod convert;

/// Types shared by every API.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.common.v1");
    }
}

/// The chat service: sending messages and the channel directory.
pub mod chat {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.chat.v1");
    }
}

/// The presence service.
pub mod presence {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.presence.v1");
    }
}

/// The storage service: persistence and history.
pub mod storage {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.storage.v1");
    }
}

/// The media service: presigned uploads and downloads.
pub mod media {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.media.v1");
    }
}

/// The client wire protocol spoken over the gateway's WebSocket.
pub mod gateway {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("chatmesh.gateway.v1");
    }
}

/// Encoded `FileDescriptorSet` of every chatmesh proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("chatmesh_descriptor");
