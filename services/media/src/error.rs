use chatmesh_db::DbError;
use tonic::{Code, Status};

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
    /// The gRPC code for this error; the single place errors map to codes.
    /// The gateway maps codes to HTTP statuses (`OUT_OF_RANGE` → 413,
    /// `FAILED_PRECONDITION` → 409, and so on).
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } | Self::TypeNotAllowed { .. } => Code::InvalidArgument,
            Self::TooLarge { .. } => Code::OutOfRange,
            Self::ChannelNotFound | Self::MediaNotFound => Code::NotFound,
            Self::NotMember | Self::NotUploader => Code::PermissionDenied,
            Self::NotUploaded
            | Self::SizeMismatch { .. }
            | Self::TypeMismatch { .. }
            | Self::NotReady => Code::FailedPrecondition,
            Self::Store(_) => Code::Unavailable,
            Self::Database(err) => err.code(),
        }
    }
}

impl From<MediaError> for Status {
    fn from(err: MediaError) -> Self {
        let code = err.code();
        match &err {
            // Store and database errors carry hosts, keys and SQL: log them,
            // return a generic text.
            MediaError::Database(inner) => inner.to_status(),
            MediaError::Store(inner) => {
                tracing::error!(error = %inner, "object store error");
                Status::new(code, "media store temporarily unavailable, retry later")
            }
            _ => Status::new(code, err.to_string()),
        }
    }
}
