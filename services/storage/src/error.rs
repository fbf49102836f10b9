//! The storage service's errors and how clients see them.

use chatmesh_db::DbError;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::IdError;
use tonic::Status;

/// Everything the storage service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A request field or a message field is out of range or inconsistent.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A channel ID is malformed.
    #[error("{0}")]
    InvalidChannel(#[source] IdError),
    /// A user ID is malformed.
    #[error("{0}")]
    InvalidUser(#[source] IdError),
    /// The user is not a member of the channel.
    #[error("not a member of this channel")]
    NotMember,
    /// No post has the sequence number asked for.
    #[error("no message with this sequence number")]
    MessageNotFound,
    /// The work was abandoned because the service is stopping.
    #[error("storage is shutting down")]
    ShuttingDown,
    /// A stored row no longer converts to a message; details are logged.
    #[error("stored message {channel}/{message_id} is corrupt: {reason}")]
    Corrupt {
        /// The row's channel column.
        channel: String,
        /// The row's message ID column.
        message_id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The message log failed; details are logged, not returned.
    #[error("message log failed: {0}")]
    Log(String),
    /// A database failed; details are logged, not returned.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl StorageError {
    /// The kind clients see; the gRPC code, HTTP status and client code
    /// follow from `chatmesh_error`'s table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. } => ErrorKind::InvalidRequest,
            Self::InvalidChannel(_) => ErrorKind::InvalidChannel,
            Self::InvalidUser(_) => ErrorKind::InvalidUser,
            Self::NotMember => ErrorKind::NotMember,
            Self::MessageNotFound => ErrorKind::NotFound,
            Self::ShuttingDown => ErrorKind::ShuttingDown,
            Self::Log(_) => ErrorKind::Unavailable,
            Self::Database(err) if err.is_transient() => ErrorKind::Unavailable,
            Self::Database(_) | Self::Corrupt { .. } => ErrorKind::Internal,
        }
    }

    /// The error as a client may see it. Database and log errors carry
    /// hosts and SQL: they are logged here and the client gets the table's
    /// generic text. Request errors keep their explanation.
    pub fn to_client(&self) -> ClientError {
        match self {
            Self::Database(inner) => {
                tracing::error!(error = %inner, "storage database error");
                ClientError::generic(self.kind())
            }
            Self::Log(_) | Self::Corrupt { .. } => {
                tracing::error!(error = %self, "storage error");
                ClientError::generic(self.kind())
            }
            _ => ClientError::new(self.kind(), self.to_string()),
        }
    }
}

// Diesel's transactions need their error type to hold a failed query.
impl From<diesel::result::Error> for StorageError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Database(DbError::from(err))
    }
}

impl From<StorageError> for Status {
    fn from(err: StorageError) -> Self {
        err.to_client().to_status()
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_ids::ChannelId;
    use tonic::Code;

    use super::*;

    #[test]
    fn a_database_error_reaches_the_client_without_sql_or_hosts() {
        let query = DbError::Query(diesel::result::Error::QueryBuilderError(
            "SELECT * FROM messages WHERE channel_id = 'x' on 10.0.0.7:5432".into(),
        ));
        let status = Status::from(StorageError::Database(query));
        assert_eq!(status.code(), Code::Internal);
        let connection =
            DbError::Connection("connection to 10.0.0.7:5432 refused for user postgres".into());
        let transient = Status::from(StorageError::Database(connection));
        assert_eq!(transient.code(), Code::Unavailable);
        for status in [status, transient] {
            for secret in ["SELECT", "messages", "10.0.0.7", "5432", "postgres"] {
                assert!(
                    !status.message().contains(secret),
                    "{secret} leaked: {}",
                    status.message()
                );
            }
            assert!(ClientError::from_status(&status).retryable());
        }
    }

    #[test]
    fn request_errors_keep_their_explanation() {
        let bad = ChannelId::new("no spaces").unwrap_err();
        let status = Status::from(StorageError::InvalidChannel(bad.clone()));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), bad.to_string());
        assert_eq!(
            ClientError::from_status(&status).kind,
            ErrorKind::InvalidChannel
        );

        let cursor = StorageError::InvalidArgument {
            field: "before",
            reason: "not a message ID",
        };
        let status = Status::from(cursor);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "before: not a message ID");

        let denied = Status::from(StorageError::NotMember);
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(denied.message(), "not a member of this channel");
    }

    #[test]
    fn a_log_failure_is_retryable_and_sanitized() {
        let status = Status::from(StorageError::Log("broker 10.0.0.9:9092 down".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.9"));
    }
}
