//! Media as the service knows it.

use std::fmt;

use chatmesh_ids::{ChannelId, UserId};
use chrono::{DateTime, Utc};

use crate::store::ObjectKey;

/// A media ID: 32 lowercase hex digits, random, so IDs reveal nothing and
/// cannot be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaId(String);

impl MediaId {
    /// A fresh random ID.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Validates and wraps an ID received from a client.
    pub fn new(raw: &str) -> Result<Self, &'static str> {
        if raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 32 lowercase hex digits")
        }
    }

    /// The ID as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the bytes have been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaState {
    /// Created; the bytes may or may not have been uploaded.
    Pending,
    /// Verified and attachable to messages.
    Ready,
}

impl MediaState {
    pub(crate) fn to_db(self) -> i16 {
        match self {
            Self::Pending => 1,
            Self::Ready => chatmesh_db::directory::MEDIA_READY,
        }
    }

    pub(crate) fn from_db(raw: i16) -> Self {
        if raw == chatmesh_db::directory::MEDIA_READY {
            Self::Ready
        } else {
            Self::Pending
        }
    }
}

/// One upload and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media ID.
    pub id: MediaId,
    /// The channel it was uploaded to; only its members may see it.
    pub channel: ChannelId,
    /// Who uploaded it.
    pub uploader: UserId,
    /// Sanitised display name; never part of a path.
    pub filename: String,
    /// Declared and verified content type.
    pub content_type: String,
    /// Declared and verified size in bytes.
    pub size: u64,
    /// Where the bytes live.
    pub key: ObjectKey,
    /// Pending or ready.
    pub state: MediaState,
    /// When the upload was created.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_strict_hex() {
        let id = MediaId::generate();
        assert_eq!(MediaId::new(id.as_str()), Ok(id.clone()));
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "../../0123456789abcdef0123456789",
        ] {
            assert!(MediaId::new(bad).is_err(), "{bad}");
        }
    }
}
