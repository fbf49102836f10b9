use chatmesh_db::DbError;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::IdError;
use tonic::Status;

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
    /// The channel is private: only an owner can add someone to it.
    #[error("this channel is private: ask an owner to add you")]
    PrivateChannel,
    /// Only the channel's owners may do this.
    #[error("only an owner of this channel may do this")]
    NotOwner,
    /// The body is over the size limit.
    #[error("message body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The moderation filter refused the message.
    #[error("message blocked by the channel's moderation policy")]
    Blocked,
    /// Too many sends in the current window.
    #[error("too many messages for this {scope}, slow down")]
    RateLimited {
        /// `user` or `channel`.
        scope: &'static str,
    },
    /// An attachment is unknown, not ready, or from another channel.
    #[error("attachment {0} is not a ready upload of this channel")]
    Attachment(String),
    /// A send with the same idempotency key is still in flight.
    #[error("a send with this idempotency key is in progress, retry shortly")]
    InFlight,
    /// The message log is unreachable; nothing was stored or fanned out.
    #[error("message log unavailable, nothing was sent; retry later")]
    LogUnavailable,
    /// This instance holds no Snowflake worker ID lease.
    #[error("this chat instance cannot mint message IDs right now, retry")]
    NoWorkerId,
    /// The channel has used every sequence epoch; it takes an operator
    /// to retire it.
    #[error("this channel cannot take more messages")]
    EpochsExhausted,
    /// Another instance is starting the channel's new sequence epoch and
    /// has not finished; retry.
    #[error("this channel's message numbering is being restored, retry shortly")]
    EpochStartStalled,
    /// The message a change names is not a stored post of the channel
    /// (or, for an edit or a reaction, it was deleted).
    #[error("no such message in this channel")]
    MessageNotFound,
    /// The caller may not make this change.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The storage service, which changes are checked against, failed;
    /// details are logged, not returned.
    #[error("message store unavailable, nothing was changed; retry later")]
    StorageUnavailable(String),
    /// Redis failed; details are logged, not returned.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A backing store failed; details are logged, not returned.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Kafka failed; details are logged, not returned.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl ChatError {
    /// Wraps an identifier error for request `field`.
    pub fn invalid_id(field: &'static str, err: IdError) -> Self {
        Self::InvalidArgument {
            field,
            reason: err.to_string(),
        }
    }

    /// The kind clients see; the gRPC code, HTTP status and client code
    /// follow from `chatmesh_error`'s table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. } | Self::TooLarge { .. } | Self::Attachment(_) => {
                ErrorKind::InvalidMessage
            }
            Self::ChannelNotFound => ErrorKind::UnknownChannel,
            Self::ChannelExists => ErrorKind::AlreadyExists,
            Self::NotMember => ErrorKind::NotMember,
            Self::PrivateChannel => ErrorKind::PrivateChannel,
            Self::NotOwner => ErrorKind::NotOwner,
            Self::MessageNotFound => ErrorKind::NotFound,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Blocked => ErrorKind::Blocked,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::InFlight => ErrorKind::InProgress,
            Self::LogUnavailable
            | Self::Redis(_)
            | Self::Kafka(_)
            | Self::NoWorkerId
            | Self::StorageUnavailable(_)
            | Self::EpochStartStalled => ErrorKind::Unavailable,
            Self::Database(err) if err.is_transient() => ErrorKind::Unavailable,
            Self::Database(_) | Self::EpochsExhausted => ErrorKind::Internal,
        }
    }

    /// The error as a client may see it. Store errors carry hosts, keys and
    /// SQL: they are logged here and the client gets the table's text.
    pub fn to_client(&self) -> ClientError {
        match self {
            Self::Database(inner) => {
                tracing::error!(error = %inner, "directory database error");
                ClientError::generic(self.kind())
            }
            Self::Redis(inner) => {
                tracing::error!(error = %inner, "redis error");
                ClientError::generic(self.kind())
            }
            Self::Kafka(inner) => {
                tracing::error!(error = %inner, "kafka error");
                ClientError::generic(self.kind())
            }
            Self::StorageUnavailable(inner) => {
                tracing::error!(error = %inner, "storage error");
                ClientError::new(self.kind(), self.to_string())
            }
            _ => ClientError::new(self.kind(), self.to_string()),
        }
    }
}

impl From<ChatError> for Status {
    fn from(err: ChatError) -> Self {
        err.to_client().to_status()
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    /// Errors as the clients render them: the Redis address, the SQL and the
    /// broker must stay in the logs.
    #[test]
    fn store_errors_render_without_hosts_or_sql() {
        let sql = "duplicate key value violates unique constraint \"channels_pkey\" \
                   in INSERT INTO channels (channel_id) VALUES ($1)";
        let cases = [
            (
                ChatError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connection refused",
                    "10.1.2.3:6379".to_owned(),
                ))),
                "10.1.2.3",
            ),
            (
                ChatError::Database(DbError::Connection(
                    "could not connect to server at 10.4.5.6:5432".into(),
                )),
                "10.4.5.6",
            ),
            (
                ChatError::Database(DbError::Query(DieselError::DatabaseError(
                    DatabaseErrorKind::Unknown,
                    Box::new(sql.to_owned()),
                ))),
                "INSERT INTO",
            ),
            (
                ChatError::Kafka(rdkafka::error::KafkaError::ClientCreation(
                    "broker 10.7.8.9:9092 unreachable".into(),
                )),
                "10.7.8.9",
            ),
        ];
        for (err, leak) in cases {
            assert!(err.to_string().contains(leak), "{err} should name {leak}");
            let client = err.to_client();
            assert!(!client.message.contains(leak), "{client}");
            assert_eq!(client, ClientError::generic(err.kind()));
            let status = Status::from(err);
            assert!(!status.message().contains(leak), "{}", status.message());
        }
    }

    #[test]
    fn transient_store_errors_are_retryable_and_broken_queries_are_not() {
        let down = ChatError::Database(DbError::Connection("timed out".into()));
        assert_eq!(down.kind(), ErrorKind::Unavailable);
        let broken = ChatError::Database(DbError::Query(DieselError::NotFound));
        assert_eq!(broken.kind(), ErrorKind::Internal);
        assert_eq!(ChatError::LogUnavailable.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn domain_errors_keep_their_own_text() {
        let err = ChatError::RateLimited { scope: "user" };
        let client = err.to_client();
        assert_eq!(client.kind, ErrorKind::RateLimited);
        assert_eq!(client.message, "too many messages for this user, slow down");
    }
}
