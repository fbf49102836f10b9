//! The one error vocabulary of chatmesh.
//!
//! Every failure a client can see has an [`ErrorKind`]. The table in
//! [`ErrorKind::spec`] is the only place a kind is mapped to a gRPC code,
//! an HTTP status, a client error code and whether retrying can help.
//! Services put the kind into the gRPC status details (a `google.rpc.ErrorInfo`
//! whose `reason` is the client code) with a message that is safe to show a
//! client; the gateway decodes it once with [`ClientError::from_status`] and
//! renders it for WebSocket and HTTP from the same table.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `ErrorInfo.domain` chatmesh services put in their statuses.
pub const DOMAIN: &str = "chatmesh";

/// What went wrong, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A request field is malformed.
    InvalidRequest,
    /// A channel ID is malformed.
    InvalidChannel,
    /// A user ID is malformed.
    InvalidUser,
    /// A message is empty, too long, has control characters or a bad attachment.
    InvalidMessage,
    /// A declared size is over a limit.
    TooLarge,
    /// A WebSocket frame is not a JSON object with a string `type`.
    MalformedFrame,
    /// A WebSocket frame has a `type` the server does not know.
    UnknownFrameType,
    /// A WebSocket frame has missing, extra or mistyped fields.
    InvalidFrame,
    /// A WebSocket frame is over the node's frame limit.
    FrameTooLarge,
    /// No token, or a token that does not verify.
    Unauthorized,
    /// The token has expired.
    TokenExpired,
    /// The user is not a member of the channel.
    NotMember,
    /// The caller may not do this (e.g. complete someone else's upload).
    Forbidden,
    /// The channel is private: only an owner can add someone to it.
    PrivateChannel,
    /// Only the channel's owners may do this.
    NotOwner,
    /// The channel does not exist.
    UnknownChannel,
    /// The thing asked for does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// Refused by the channel's moderation policy.
    Blocked,
    /// The state does not allow it yet (e.g. download before upload).
    FailedPrecondition,
    /// Over a rate limit.
    RateLimited,
    /// Over the subscriptions a connection may hold.
    TooManySubscriptions,
    /// The node is at its connection cap.
    TooManyConnections,
    /// The node is draining.
    ShuttingDown,
    /// No gateway node is registered in the ring yet.
    NoNodes,
    /// Development tokens are switched off on this node.
    DevTokensDisabled,
    /// The same idempotent request is still in flight.
    InProgress,
    /// A backing service is down; nothing was done.
    Unavailable,
    /// A service is at its limit of requests in flight and refused this
    /// one at once; nothing was done.
    Overloaded,
    /// The request took longer than its deadline; it may or may not have
    /// taken effect, so only a request that is safe to repeat (a read, a
    /// send with an idempotency key) should be retried.
    TimedOut,
    /// Anything unexpected.
    Internal,
}

/// One row of the table: how a kind travels and how a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSpec {
    /// The gRPC code services answer with.
    pub grpc: Code,
    /// The HTTP status the gateway answers with.
    pub http: u16,
    /// The `code` clients see in error frames and HTTP error bodies.
    pub client_code: &'static str,
    /// Whether the same request may succeed if retried.
    pub retryable: bool,
    /// A message safe for clients when no better one is known.
    pub message: &'static str,
}

const fn spec(
    grpc: Code,
    http: u16,
    client_code: &'static str,
    retryable: bool,
    message: &'static str,
) -> KindSpec {
    KindSpec {
        grpc,
        http,
        client_code,
        retryable,
        message,
    }
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 31] = [
        Self::InvalidRequest,
        Self::InvalidChannel,
        Self::InvalidUser,
        Self::InvalidMessage,
        Self::TooLarge,
        Self::MalformedFrame,
        Self::UnknownFrameType,
        Self::InvalidFrame,
        Self::FrameTooLarge,
        Self::Unauthorized,
        Self::TokenExpired,
        Self::NotMember,
        Self::Forbidden,
        Self::PrivateChannel,
        Self::NotOwner,
        Self::UnknownChannel,
        Self::NotFound,
        Self::AlreadyExists,
        Self::Blocked,
        Self::FailedPrecondition,
        Self::RateLimited,
        Self::TooManySubscriptions,
        Self::TooManyConnections,
        Self::ShuttingDown,
        Self::NoNodes,
        Self::DevTokensDisabled,
        Self::InProgress,
        Self::Unavailable,
        Self::Overloaded,
        Self::TimedOut,
        Self::Internal,
    ];

    /// The error table: the single mapping of kinds to codes and statuses.
    #[rustfmt::skip]
    pub const fn spec(self) -> KindSpec {
        use Code as G;
        match self {
            Self::InvalidRequest => spec(G::InvalidArgument, 400, "invalid_request", false, "invalid request"),
            Self::InvalidChannel => spec(G::InvalidArgument, 400, "invalid_channel", false, "invalid channel ID"),
            Self::InvalidUser => spec(G::InvalidArgument, 400, "invalid_user", false, "invalid user ID"),
            Self::InvalidMessage => spec(G::InvalidArgument, 400, "invalid_message", false, "invalid message"),
            Self::TooLarge => spec(G::OutOfRange, 413, "too_large", false, "over the size limit"),
            Self::MalformedFrame => spec(G::InvalidArgument, 400, "malformed_frame", false, "malformed frame"),
            Self::UnknownFrameType => spec(G::InvalidArgument, 400, "unknown_frame_type", false, "unknown frame type"),
            Self::InvalidFrame => spec(G::InvalidArgument, 400, "invalid_frame", false, "invalid frame"),
            Self::FrameTooLarge => spec(G::OutOfRange, 413, "frame_too_large", false, "frame too large"),
            Self::Unauthorized => spec(G::Unauthenticated, 401, "unauthorized", false, "missing or invalid token"),
            Self::TokenExpired => spec(G::Unauthenticated, 401, "token_expired", false, "token expired"),
            Self::NotMember => spec(G::PermissionDenied, 403, "not_member", false, "not a member of this channel"),
            Self::Forbidden => spec(G::PermissionDenied, 403, "forbidden", false, "not allowed"),
            Self::PrivateChannel => spec(G::PermissionDenied, 403, "private_channel", false, "this channel is private: ask an owner to add you"),
            Self::NotOwner => spec(G::PermissionDenied, 403, "not_owner", false, "only an owner of this channel may do this"),
            Self::UnknownChannel => spec(G::NotFound, 404, "unknown_channel", false, "no such channel"),
            Self::NotFound => spec(G::NotFound, 404, "not_found", false, "not found"),
            Self::AlreadyExists => spec(G::AlreadyExists, 409, "already_exists", false, "already exists"),
            Self::Blocked => spec(G::FailedPrecondition, 422, "blocked", false, "refused by the channel's moderation policy"),
            Self::FailedPrecondition => spec(G::FailedPrecondition, 409, "failed_precondition", false, "not possible in the current state"),
            Self::RateLimited => spec(G::ResourceExhausted, 429, "rate_limited", true, "too many requests, slow down"),
            Self::TooManySubscriptions => spec(G::ResourceExhausted, 429, "too_many_subscriptions", false, "too many subscriptions on this connection"),
            Self::TooManyConnections => spec(G::ResourceExhausted, 503, "too_many_connections", true, "node at its connection limit"),
            Self::ShuttingDown => spec(G::Unavailable, 503, "shutting_down", true, "node shutting down"),
            Self::NoNodes => spec(G::Unavailable, 503, "no_nodes", true, "no gateway node is registered yet"),
            Self::DevTokensDisabled => spec(G::NotFound, 404, "dev_tokens_disabled", false, "dev tokens need an HS256 secret"),
            Self::InProgress => spec(G::Aborted, 409, "in_progress", true, "the same request is in progress, retry shortly"),
            Self::Unavailable => spec(G::Unavailable, 503, "unavailable", true, "temporarily unavailable, retry later"),
            Self::Overloaded => spec(G::Unavailable, 503, "overloaded", true, "the service is at its request limit, retry shortly"),
            Self::TimedOut => spec(G::DeadlineExceeded, 504, "timed_out", true, "the request took too long; retry with the same idempotency key"),
            Self::Internal => spec(G::Internal, 500, "internal", true, "internal error"),
        }
    }

    /// The client code, e.g. `not_member`.
    pub const fn client_code(self) -> &'static str {
        self.spec().client_code
    }

    /// The kind whose client code is `code`.
    pub fn from_client_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.client_code() == code)
    }

    /// The kind for a status that carries no chatmesh details: a transport
    /// failure, a timeout, or a service that is not chatmesh's.
    pub fn from_grpc_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument => Self::InvalidRequest,
            Code::OutOfRange => Self::TooLarge,
            Code::Unauthenticated => Self::Unauthorized,
            Code::PermissionDenied => Self::Forbidden,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::ResourceExhausted => Self::RateLimited,
            Code::Aborted => Self::InProgress,
            Code::DeadlineExceeded => Self::TimedOut,
            Code::Unavailable | Code::Cancelled => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.client_code())
    }
}

/// A kind and a message that is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Client-safe text: never hosts, SQL or Redis replies.
    pub message: String,
}

impl ClientError {
    /// An error of `kind` with a client-safe `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An error of `kind` with the table's generic message. Use it wherever
    /// the cause carries details a client must not see.
    pub fn generic(kind: ErrorKind) -> Self {
        Self::new(kind, kind.spec().message)
    }

    /// Decodes a status from a chatmesh service. A status without chatmesh
    /// details (a transport error, a deadline, a foreign service) gets its
    /// kind from the code and the table's generic message, since its text
    /// may name addresses.
    pub fn from_status(status: &Status) -> Self {
        let details = status.get_error_details();
        let kind = details
            .error_info()
            .filter(|info| info.domain == DOMAIN)
            .and_then(|info| ErrorKind::from_client_code(&info.reason));
        match kind {
            Some(kind) => Self::new(kind, status.message()),
            // Every status a chatmesh service answers carries its kind; an
            // `unknown` one without it came from the connection (a stream
            // reset by an instance that died mid-call), which another
            // attempt, on another instance, may well get past.
            None if status.code() == Code::Unknown => Self::generic(ErrorKind::Unavailable),
            None => Self::generic(ErrorKind::from_grpc_code(status.code())),
        }
    }

    /// The status a service answers with.
    pub fn to_status(&self) -> Status {
        let details = ErrorDetails::with_error_info(
            self.kind.client_code(),
            DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        Status::with_error_details(self.kind.spec().grpc, self.message.clone(), details)
    }

    /// Whether retrying the same request may succeed.
    pub fn retryable(&self) -> bool {
        self.kind.spec().retryable
    }
}

impl From<ClientError> for Status {
    fn from(err: ClientError) -> Self {
        err.to_status()
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_codes_are_unique() {
        let mut codes: Vec<_> = ErrorKind::ALL.iter().map(|k| k.client_code()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before);
    }

    #[test]
    fn every_kind_survives_a_status_round_trip() {
        for kind in ErrorKind::ALL {
            let status = ClientError::new(kind, "why").to_status();
            assert_eq!(status.code(), kind.spec().grpc, "{kind}");
            let back = ClientError::from_status(&status);
            assert_eq!(back, ClientError::new(kind, "why"));
        }
    }

    #[test]
    fn foreign_statuses_get_a_generic_message() {
        let status = Status::unavailable("tcp connect error: 10.0.0.7:6379 refused");
        let err = ClientError::from_status(&status);
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(!err.message.contains("10.0.0.7"), "{}", err.message);
        assert!(err.retryable());
    }

    #[test]
    fn another_domain_is_not_trusted() {
        let details = ErrorDetails::with_error_info(
            "not_member",
            "example.com",
            std::collections::HashMap::<String, String>::new(),
        );
        let status = Status::with_error_details(Code::PermissionDenied, "secret", details);
        assert_eq!(
            ClientError::from_status(&status),
            ClientError::generic(ErrorKind::Forbidden)
        );
    }

    #[test]
    fn a_bare_unknown_status_is_a_lost_connection() {
        let reset = Status::unknown("h2 protocol error: stream reset");
        assert_eq!(
            ClientError::from_status(&reset),
            ClientError::generic(ErrorKind::Unavailable)
        );
        let internal = Status::internal("boom");
        assert_eq!(
            ClientError::from_status(&internal).kind,
            ErrorKind::Internal
        );
    }

    #[test]
    fn the_protocol_document_lists_every_kind_as_the_table_does() {
        let doc = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.md"
        ));
        let rows: std::collections::HashMap<&str, (u16, bool)> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let http = cells.get(2)?.parse().ok()?;
                let retryable = match *cells.get(3)? {
                    "yes" => true,
                    "no" => false,
                    _ => return None,
                };
                Some((code, (http, retryable)))
            })
            .collect();
        for kind in ErrorKind::ALL {
            let spec = kind.spec();
            assert_eq!(
                rows.get(spec.client_code),
                Some(&(spec.http, spec.retryable)),
                "docs/protocol.md disagrees on {kind}"
            );
        }
        assert_eq!(
            rows.len(),
            ErrorKind::ALL.len(),
            "docs list codes the table lacks"
        );
    }

    #[test]
    fn retryable_kinds_are_the_transient_ones() {
        for kind in ErrorKind::ALL {
            let transient = matches!(
                kind.spec().grpc,
                Code::Unavailable | Code::Aborted | Code::Internal | Code::DeadlineExceeded
            ) || kind == ErrorKind::RateLimited
                || kind == ErrorKind::TooManyConnections;
            assert_eq!(kind.spec().retryable, transient, "{kind}");
        }
    }
}
