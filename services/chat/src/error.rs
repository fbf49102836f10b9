use chatmesh_db::DbError;
use chatmesh_ids::IdError;
use tonic::{Code, Status};

/// Everything the chat service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The channel does not exist.
    #[error("channel not found")]
    ChannelNotFound,
    /// A channel with this ID already exists.
    #[error("channel already exists")]
    ChannelExists,
    /// The user is not a member of the channel.
    #[error("not a member of this channel")]
    NotMember,
    /// A backing store failed; details are logged, not returned.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl ChatError {
    /// Wraps an identifier error for request `field`.
    pub fn invalid_id(field: &'static str, err: IdError) -> Self {
        Self::InvalidArgument {
            field,
            reason: err.to_string(),
        }
    }

    /// The gRPC code for this error; the single place errors map to codes.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::ChannelNotFound => Code::NotFound,
            Self::ChannelExists => Code::AlreadyExists,
            Self::NotMember => Code::PermissionDenied,
            Self::Database(DbError::Connection(_)) => Code::Unavailable,
            Self::Database(_) => Code::Internal,
        }
    }
}

impl From<ChatError> for Status {
    fn from(err: ChatError) -> Self {
        let code = err.code();
        match &err {
            // Store errors carry SQL and hosts: log them, return a generic text.
            ChatError::Database(inner) => {
                tracing::error!(error = %inner, "directory database error");
                let text = if code == Code::Unavailable {
                    "directory temporarily unavailable, retry later"
                } else {
                    "internal error"
                };
                Status::new(code, text)
            }
            _ => Status::new(code, err.to_string()),
        }
    }
}
