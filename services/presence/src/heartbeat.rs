//! Heartbeat batches from the wire: the `HeartbeatBatch` protobuf the
//! gateways publish, decoded once into validated domain types.

use std::time::Duration;

use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::presence::v1 as pb;
use prost::Message as _;

/// One gateway's batch of session heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The gateway node holding the sessions.
    pub(crate) node: String,
    /// The TTL the gateway asks for, if it named one.
    pub(crate) ttl: Option<Duration>,
    /// The well-formed sessions.
    pub(crate) sessions: Vec<Beat>,
    /// Sessions dropped for an empty session ID or a malformed user ID.
    pub(crate) invalid: usize,
}

/// One session's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beat {
    /// The session ID.
    pub(crate) session: String,
    /// Whose session.
    pub(crate) user: UserId,
    /// Every channel the session is in now; malformed IDs are dropped, so
    /// they never reach a Redis key.
    pub(crate) channels: Vec<ChannelId>,
    /// When the gateway saw the session, if it said.
    pub(crate) at_ms: Option<u64>,
    /// The session ended.
    pub(crate) closed: bool,
}

/// A positive millisecond count, or `None`.
fn positive_ms(ms: i64) -> Option<u64> {
    u64::try_from(ms).ok().filter(|ms| *ms > 0)
}

impl Beat {
    fn from_proto(hb: pb::SessionHeartbeat) -> Option<Self> {
        if hb.session_id.is_empty() {
            return None;
        }
        let user = UserId::new(hb.user_id).ok()?;
        Some(Self {
            session: hb.session_id,
            user,
            channels: hb
                .channel_ids
                .into_iter()
                .filter_map(|c| ChannelId::new(c).ok())
                .collect(),
            at_ms: positive_ms(hb.at_ms),
            closed: hb.closed,
        })
    }
}

impl Batch {
    /// Decodes a `HeartbeatBatch` payload.
    pub(crate) fn decode(payload: &[u8]) -> Result<Self, prost::DecodeError> {
        let batch = pb::HeartbeatBatch::decode(payload)?;
        let total = batch.sessions.len();
        let sessions: Vec<Beat> = batch
            .sessions
            .into_iter()
            .filter_map(Beat::from_proto)
            .collect();
        Ok(Self {
            node: batch.gateway_node,
            ttl: positive_ms(batch.ttl_ms).map(Duration::from_millis),
            invalid: total - sessions.len(),
            sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: &str, channels: &[&str]) -> pb::SessionHeartbeat {
        pb::SessionHeartbeat {
            session_id: id.into(),
            user_id: user.into(),
            channel_ids: channels.iter().map(|c| (*c).to_owned()).collect(),
            at_ms: 0,
            closed: false,
        }
    }

    #[test]
    fn malformed_entries_are_dropped_and_the_rest_kept() {
        let payload = pb::HeartbeatBatch {
            gateway_node: "gw-1".into(),
            sessions: vec![
                session("s1", "alice", &["room", "bad room", "a/b", "ok:2"]),
                session("", "bob", &["room"]),
                session("s3", "", &["room"]),
                session("s4", "has space", &["room"]),
            ],
            ttl_ms: -5,
        }
        .encode_to_vec();
        let batch = Batch::decode(&payload).expect("decodes");
        assert_eq!(batch.node, "gw-1");
        assert_eq!(batch.ttl, None, "a negative TTL names none");
        assert_eq!(batch.invalid, 3);
        let [beat] = batch.sessions.as_slice() else {
            panic!("one valid session expected: {:?}", batch.sessions);
        };
        assert_eq!(beat.user.as_str(), "alice");
        let channels: Vec<&str> = beat.channels.iter().map(ChannelId::as_str).collect();
        assert_eq!(channels, ["room", "ok:2"]);
        assert_eq!(beat.at_ms, None);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(Batch::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
