//! The media service's one error type, and what clients see of it.

use chatmesh_db::DbError;
use chatmesh_error::{ClientError, ErrorKind};
use tonic::Status;

use crate::store::StoreError;

/// Everything the media service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The declared size is over the limit.
    #[error("size {size} bytes is over the upload limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The content type is well-formed but not on the allow-list.
    #[error("content type {content_type} is not allowed; allowed: {allowed}")]
    TypeNotAllowed {
        /// The declared type.
        content_type: String,
        /// The allow-list, for the message.
        allowed: String,
    },
    /// The channel does not exist.
    #[error("channel not found")]
    ChannelNotFound,
    /// No media has this ID.
    #[error("media not found")]
    MediaNotFound,
    /// The user is not a member of the media's channel.
    #[error("not a member of this channel")]
    NotMember,
    /// Someone other than the uploader tried to complete an upload.
    #[error("only the uploader can complete this upload")]
    NotUploader,
    /// Completion was asked for before the bytes were stored.
    #[error("upload not found; PUT the bytes to the upload URL first")]
    NotUploaded,
    /// The stored object's size differs from the declared one; it was
    /// deleted.
    #[error("uploaded {stored} bytes but {declared} were declared; the object was discarded")]
    SizeMismatch {
        /// Declared size.
        declared: u64,
        /// Stored size.
        stored: u64,
    },
    /// The stored object's type differs from the declared one; it was
    /// deleted.
    #[error(
        "uploaded content type {stored:?} differs from the declared {declared}; the object was discarded"
    )]
    TypeMismatch {
        /// Declared type.
        declared: String,
        /// Stored type, if any.
        stored: Option<String>,
    },
    /// Download asked for before the upload was completed.
    #[error("media is not ready; complete the upload first")]
    NotReady,
    /// The object store failed; details are logged, not returned.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory database failed; details are logged, not returned.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl MediaError {
    /// The kind clients see; the gRPC code, HTTP status and client code
    /// follow from `chatmesh_error`'s table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. } | Self::TypeNotAllowed { .. } => ErrorKind::InvalidRequest,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::ChannelNotFound => ErrorKind::UnknownChannel,
            Self::MediaNotFound => ErrorKind::NotFound,
            Self::NotMember => ErrorKind::NotMember,
            Self::NotUploader => ErrorKind::Forbidden,
            Self::NotUploaded
            | Self::SizeMismatch { .. }
            | Self::TypeMismatch { .. }
            | Self::NotReady => ErrorKind::FailedPrecondition,
            Self::Store(_) => ErrorKind::Unavailable,
            Self::Database(err) if err.is_transient() => ErrorKind::Unavailable,
            Self::Database(_) => ErrorKind::Internal,
        }
    }

    /// The error as a client may see it. Store and database errors carry
    /// hosts, keys and SQL: they are logged here and the client gets the
    /// table's text.
    pub fn to_client(&self) -> ClientError {
        match self {
            Self::Database(inner) => {
                tracing::error!(error = %inner, "directory database error");
                ClientError::generic(self.kind())
            }
            Self::Store(inner) => {
                tracing::error!(error = %inner, "object store error");
                ClientError::generic(self.kind())
            }
            _ => ClientError::new(self.kind(), self.to_string()),
        }
    }
}

impl From<MediaError> for Status {
    fn from(err: MediaError) -> Self {
        err.to_client().to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures whose text names hosts, addresses, paths or SQL.
    fn leaky() -> Vec<MediaError> {
        vec![
            MediaError::Store(StoreError::ObjectStore(object_store::Error::Generic {
                store: "S3",
                source:
                    "error sending request for url (http://10.1.2.3:9000/media-bucket/uploads/0a/x)"
                        .into(),
            })),
            MediaError::Store(StoreError::Io(std::io::Error::other(
                "/var/lib/chatmesh/media/.partial/abc: permission denied",
            ))),
            MediaError::Database(DbError::Connection(
                "error connecting to server at \"10.9.8.7\", port 5432".into(),
            )),
            MediaError::Database(DbError::Query(diesel::result::Error::QueryBuilderError(
                "SELECT media_id FROM media WHERE host = 'db.internal:5432'".into(),
            ))),
        ]
    }

    #[test]
    fn store_and_database_details_reach_clients_only_as_the_generic_message() {
        for err in leaky() {
            let detail = err.to_string();
            let kind = err.kind();
            let client = err.to_client();
            assert_eq!(client, ClientError::generic(kind), "{detail}");
            let status = Status::from(err);
            assert_eq!(status.message(), kind.spec().message, "{detail}");
            assert_eq!(status.code(), kind.spec().grpc);
            for secret in ["10.", "5432", "9000", "/var/lib", "SELECT", "bucket"] {
                assert!(
                    !status.message().contains(secret),
                    "{secret:?} leaked from {detail}"
                );
            }
        }
    }

    #[test]
    fn outages_are_unavailable_and_faults_internal() {
        let kinds: Vec<_> = leaky().iter().map(MediaError::kind).collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::Unavailable,
                ErrorKind::Unavailable,
                ErrorKind::Unavailable,
                ErrorKind::Internal
            ]
        );
    }

    #[test]
    fn rule_violations_keep_their_own_message() {
        let err = MediaError::SizeMismatch {
            declared: 10,
            stored: 11,
        };
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "uploaded 11 bytes but 10 were declared; the object was discarded"
        );
    }
}
