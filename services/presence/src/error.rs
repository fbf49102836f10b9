//! The presence service's one error type, and its mapping to what clients
//! see through `chatmesh_error`'s table.

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::IdError;
use tonic::Status;

/// Everything the presence service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// A `GetPresence` call named more users than allowed.
    #[error("at most {max} user_ids per call, got {got}")]
    TooManyUsers {
        /// The configured limit.
        max: usize,
        /// How many the call named.
        got: usize,
    },
    /// A user ID in a request is malformed.
    #[error("user_ids: {0}")]
    InvalidUser(#[source] IdError),
    /// The channel ID in a request is malformed.
    #[error("channel_id: {0}")]
    InvalidChannel(#[source] IdError),
    /// Redis failed. Its text names cluster nodes, so it is logged and
    /// never returned.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl PresenceError {
    /// The kind clients see; the gRPC code and HTTP status follow from
    /// `chatmesh_error`'s table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TooManyUsers { .. } => ErrorKind::InvalidRequest,
            Self::InvalidUser(_) => ErrorKind::InvalidUser,
            Self::InvalidChannel(_) => ErrorKind::InvalidChannel,
            Self::Redis(_) => ErrorKind::Unavailable,
        }
    }

    /// The error as a client may see it: invalid arguments keep their
    /// explanation; store failures are logged here and the client gets the
    /// table's generic text.
    pub fn to_client(&self) -> ClientError {
        match self {
            Self::Redis(inner) => {
                tracing::error!(error = %inner, "presence store error");
                ClientError::generic(self.kind())
            }
            _ => ClientError::new(self.kind(), self.to_string()),
        }
    }
}

impl From<PresenceError> for Status {
    fn from(err: PresenceError) -> Self {
        err.to_client().to_status()
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_ids::{ChannelId, UserId};
    use tonic::Code;

    use super::*;
    use crate::test_support::unreachable_node;

    #[test]
    fn a_redis_error_reaches_clients_without_its_details() {
        let err = PresenceError::from(unreachable_node());
        assert!(err.to_string().contains("10.0.0.7"), "logs keep the cause");
        let status = Status::from(err);
        assert_eq!(status.code(), Code::Unavailable);
        for secret in ["10.0.0.7", "6379", "refused", "tcp", "redis"] {
            assert!(
                !status.message().to_lowercase().contains(secret),
                "{secret} leaked: {}",
                status.message()
            );
        }
        assert_eq!(
            ClientError::from_status(&status),
            ClientError::generic(ErrorKind::Unavailable)
        );
    }

    #[test]
    fn invalid_arguments_keep_their_code_and_explanation() {
        let too_many = Status::from(PresenceError::TooManyUsers {
            max: 1_000,
            got: 1_001,
        });
        assert_eq!(too_many.code(), Code::InvalidArgument);
        assert_eq!(
            too_many.message(),
            "at most 1000 user_ids per call, got 1001"
        );

        let user = UserId::new("has space").expect_err("spaces are refused");
        let bad_user = Status::from(PresenceError::InvalidUser(user));
        assert_eq!(bad_user.code(), Code::InvalidArgument);
        assert!(bad_user.message().starts_with("user_ids: "));
        assert_eq!(
            ClientError::from_status(&bad_user).kind,
            ErrorKind::InvalidUser
        );

        let channel = ChannelId::new("no/slashes").expect_err("slashes are refused");
        let bad_channel = Status::from(PresenceError::InvalidChannel(channel));
        assert_eq!(bad_channel.code(), Code::InvalidArgument);
        assert!(bad_channel.message().starts_with("channel_id: "));
        assert_eq!(
            ClientError::from_status(&bad_channel).kind,
            ErrorKind::InvalidChannel
        );
    }
}
