//! Frames on their way to clients. A fanned-out message goes to many
//! sessions; it is wrapped once in an [`Outgoing`] and each encoding is made
//! at most once, by the first session that needs it, so a thousand
//! receivers cost one serialisation per form, not a thousand.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::{Message as WsMessage, Utf8Bytes};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ws::codec::{self, Codec};
use crate::ws::protocol::ServerFrame;

/// A server frame shared by every session it goes to.
#[derive(Debug)]
pub(crate) struct Outgoing {
    frame: ServerFrame,
    json: OnceLock<Utf8Bytes>,
    proto: OnceLock<Bytes>,
}

impl Outgoing {
    /// Wraps `frame` for sending.
    pub(crate) fn new(frame: ServerFrame) -> Arc<Self> {
        Arc::new(Self {
            frame,
            json: OnceLock::new(),
            proto: OnceLock::new(),
        })
    }

    /// The frame itself.
    #[cfg(any(test, feature = "testsuite"))]
    pub(crate) fn frame(&self) -> &ServerFrame {
        &self.frame
    }

    /// The JSON text form, encoded on first use.
    pub(crate) fn json(&self) -> Utf8Bytes {
        self.json
            .get_or_init(|| self.frame.to_json().into())
            .clone()
    }

    /// The Protobuf form, encoded on first use.
    pub(crate) fn proto(&self) -> Bytes {
        self.proto
            .get_or_init(|| codec::encode(&self.frame).into())
            .clone()
    }

    /// The WebSocket message for a connection speaking `codec`.
    pub(crate) fn message(&self, codec: Codec) -> WsMessage {
        match codec {
            Codec::Json => WsMessage::Text(self.json()),
            Codec::Proto => WsMessage::Binary(self.proto()),
        }
    }
}

/// A session's outbound queue and the switch that closes it when the
/// client cannot keep up.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    /// Bounded queue to the connection's writer.
    pub(crate) tx: mpsc::Sender<Arc<Outgoing>>,
    /// Cancelled once the client fell behind; the connection then closes
    /// with 4008.
    pub(crate) overflow: CancellationToken,
}

impl Outbox {
    /// Queues `frame` without waiting. A full queue marks the client slow.
    /// Returns false when the frame was not queued.
    pub(crate) fn offer(&self, channel: &str, frame: Arc<Outgoing>) -> bool {
        if self.overflow.is_cancelled() {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(channel, "closing a client whose outbound queue is full");
                metrics::counter!("chatmesh_gateway_slow_consumers_total").increment(1);
                self.overflow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a reply, waiting for room: a client that does not read is
    /// closed by the overflow path, which never blocks on it.
    pub(crate) async fn reply(&self, frame: ServerFrame) {
        tokio::select! {
            _ = self.tx.send(Outgoing::new(frame)) => {}
            () = self.overflow.cancelled() => {}
        }
    }
}
