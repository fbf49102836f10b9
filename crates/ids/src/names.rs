use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than allowed.
    #[error("{kind} must be 1 to {max} bytes long")]
    Length {
        /// Which identifier.
        kind: &'static str,
        /// The longest allowed.
        max: usize,
    },
    /// Holds a character outside the allowed set.
    #[error("{kind} may only contain {allowed}")]
    Charset {
        /// Which identifier.
        kind: &'static str,
        /// The allowed characters, for the message.
        allowed: &'static str,
    },
    /// `.` or `..`, which URL normalisation removes from paths.
    #[error("{kind} may not be \".\" or \"..\"")]
    DotSegment {
        /// Which identifier.
        kind: &'static str,
    },
    /// A message kind this build does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(i32),
}

/// A chat channel. Channel IDs appear in Redis channel names, Kafka keys and
/// URLs, so they are limited to a URL- and key-safe set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId(String);

impl ChannelId {
    /// Longest channel ID, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a channel ID.
    pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                kind: "channel_id",
                max: Self::MAX_LEN,
            });
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(IdError::Charset {
                kind: "channel_id",
                allowed: "ASCII letters, digits, '-', '_', '.' and ':'",
            });
        }
        // Channel IDs are path segments of the HTTP API; clients and
        // proxies resolve these two away before the request is sent.
        if raw == "." || raw == ".." {
            return Err(IdError::DotSegment { kind: "channel_id" });
        }
        Ok(Self(raw))
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user, as named by the `sub` claim of their token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Longest user ID, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates and wraps a user ID.
    pub fn new(raw: impl Into<String>) -> Result<Self, IdError> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(IdError::Length {
                kind: "user_id",
                max: Self::MAX_LEN,
            });
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IdError::Charset {
                kind: "user_id",
                allowed: "printable characters without spaces",
            });
        }
        Ok(Self(raw))
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_impls {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::new(raw)
            }
        }

        impl TryFrom<&str> for $t {
            type Error = IdError;
            fn try_from(raw: &str) -> Result<Self, IdError> {
                Self::new(raw)
            }
        }

        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id_impls!(ChannelId);
string_id_impls!(UserId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_are_key_safe() {
        assert!(ChannelId::new("general").is_ok());
        assert!(ChannelId::new("team:eng.backend-2_x").is_ok());
        assert!(matches!(ChannelId::new(""), Err(IdError::Length { .. })));
        assert!(matches!(
            ChannelId::new("a".repeat(65)),
            Err(IdError::Length { .. })
        ));
        for dots in [".", ".."] {
            assert_eq!(
                ChannelId::new(dots),
                Err(IdError::DotSegment { kind: "channel_id" }),
                "{dots}"
            );
        }
        for dotted in ["...", ".a", "a..", "..b"] {
            assert!(ChannelId::new(dotted).is_ok(), "{dotted}");
        }
        for bad in ["a b", "a/b", "../x", "a{b}", "é", "a\0"] {
            assert!(
                matches!(ChannelId::new(bad), Err(IdError::Charset { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_ids_refuse_control_characters() {
        assert!(UserId::new("alice@example.com").is_ok());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("a b").is_err());
        assert!(UserId::new("").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: ChannelId = serde_json::from_str("\"room-1\"").unwrap();
        assert_eq!(ok.as_str(), "room-1");
        assert!(serde_json::from_str::<ChannelId>("\"bad room\"").is_err());
    }
}
