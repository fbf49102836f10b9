//! One upgraded WebSocket: the read loop that feeds the session, and the
//! writer task that drains its outbound queue and closes the socket with
//! the right code.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use chatmesh_ids::{ChannelId, UserId};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Gateway;
use crate::ws::codec::Codec;
use crate::ws::outbound::{Outbox, Outgoing};
use crate::ws::session::Session;

/// Close code for a client that could not keep up (private range).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a node going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a session that stopped pinging (private range).
pub const CLOSE_SESSION_EXPIRED: u16 = 4009;

/// Close code for a frame far over the size limit.
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a text frame that is not UTF-8.
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code for any other breach of the WebSocket protocol.
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// How long a send to a client that overflowed may stay blocked.
const STALLED_SEND: Duration = Duration::from_secs(5);

/// How long a draining node waits for a connection's sends to be answered.
const SETTLE_SENDS: Duration = Duration::from_secs(5);

/// Why the server closes a connection, if it does.
type CloseReason = Arc<std::sync::Mutex<Option<(u16, String)>>>;

/// Serves one upgraded connection until either side closes it.
pub(crate) async fn run(
    gw: Arc<Gateway>,
    socket: WebSocket,
    user: UserId,
    initial: Option<ChannelId>,
    codec: Codec,
) {
    let id = gw.next_session.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Arc<Outgoing>>(gw.config.limits.outbound_queue);
    let outbox = Outbox {
        tx,
        overflow: CancellationToken::new(),
    };
    let close = CancellationToken::new();
    let close_reason: CloseReason = Arc::default();
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write(
        sink,
        rx,
        codec,
        outbox.overflow.clone(),
        close.clone(),
        close_reason.clone(),
    ));
    metrics::gauge!("chatmesh_gateway_connections").increment(1.0);

    let overflow = outbox.overflow.clone();
    let (mut session, expired) = Session::open(gw.sessions.clone(), id, user, outbox);
    if let Some(channel) = initial {
        Box::pin(session.on_initial_channel(channel)).await;
    }
    let mut routes = gw.sessions.placement.routes.clone();
    let going_away = gw.going_away.clone();
    // An idle connection's cost is mostly this future, which is as large
    // as the largest state it can await in. Handling a frame takes about
    // 2 KiB of state (a send, a subscribe with its replay), so those
    // branches are boxed: the memory is taken per frame, for the frame's
    // time, instead of being held by every connection for its lifetime.
    let reason = loop {
        tokio::select! {
            // At the send window, no more frames are read until an answer.
            frame = stream.next(), if !session.sends_full() => match frame {
                Some(Ok(WsMessage::Text(text))) => Box::pin(session.on_text(&text)).await,
                Some(Ok(WsMessage::Binary(bytes))) => Box::pin(session.on_binary(&bytes)).await,
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Ok(WsMessage::Ping(_))) => session.alive(),
                Some(Ok(WsMessage::Pong(_))) => {}
                Some(Err(err)) => {
                    tracing::debug!(session = id, error = %err, "websocket read failed");
                    let (code, reason) = read_failure_close(&err);
                    break Some((code, reason.to_owned()));
                }
            },
            channel = session.sends.answered() => session.on_send_answered(channel),
            Ok(()) = routes.changed() => Box::pin(session.on_ring_change()).await,
            () = overflow.cancelled() => break None,
            () = expired.cancelled() => {
                let ttl = gw.config.presence.session_ttl;
                break Some((CLOSE_SESSION_EXPIRED, Session::expiry_reason(ttl)));
            }
            () = going_away.cancelled() => {
                // What was sent is answered before the node says goodbye.
                Box::pin(async {
                    session.settle_sends(SETTLE_SENDS).await;
                    session.going_away().await;
                })
                .await;
                break Some((CLOSE_GOING_AWAY, "node shutting down".to_owned()));
            }
        }
    };
    if let Some(r) = reason {
        *close_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
    close.cancel();
    Box::pin(session.close()).await;
    let _ = writer.await;
    metrics::gauge!("chatmesh_gateway_connections").decrement(1.0);
    gw.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The close code and reason for a failed read. The socket layer refuses
/// frames far beyond the frame limit and text that is not UTF-8 here.
fn read_failure_close(err: &axum::Error) -> (u16, &'static str) {
    use tungstenite::Error as WsError;
    match std::error::Error::source(err).and_then(|e| e.downcast_ref::<WsError>()) {
        Some(WsError::Capacity(_)) => (CLOSE_TOO_BIG, "frame too large"),
        Some(WsError::Utf8(_)) => (CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8"),
        _ => (CLOSE_PROTOCOL_ERROR, "websocket protocol error"),
    }
}

async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Arc<Outgoing>>,
    codec: Codec,
    overflow: CancellationToken,
    close: CancellationToken,
    reason: CloseReason,
) {
    let frame = loop {
        tokio::select! {
            biased;
            () = overflow.cancelled() => {
                break Some((CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full".to_owned()));
            }
            next = rx.recv() => match next {
                Some(out) => {
                    // A client that stops reading blocks this send; once it
                    // has overflowed it gets a bounded wait, not forever.
                    let sent = tokio::select! {
                        r = sink.send(out.message(codec)) => r.is_ok(),
                        () = async { overflow.cancelled().await; tokio::time::sleep(STALLED_SEND).await } => false,
                    };
                    if !sent {
                        if overflow.is_cancelled() {
                            break Some((CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full".to_owned()));
                        }
                        return;
                    }
                }
                // Every sender is gone: the session ended, maybe before this
                // task saw `close`, so the reason still applies.
                None => break reason.lock().unwrap_or_else(|p| p.into_inner()).take(),
            },
            () = close.cancelled() => {
                // Flush what is already queued, such as a final reconnect frame.
                while let Ok(out) = rx.try_recv() {
                    if sink.send(out.message(codec)).await.is_err() {
                        return;
                    }
                }
                break reason.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
        }
    };
    let close = frame.map(|(code, reason)| CloseFrame {
        code,
        reason: reason.into(),
    });
    // The close frame may not fit a stalled socket either; then just drop it.
    let _ = tokio::time::timeout(STALLED_SEND, async {
        let _ = sink.send(WsMessage::Close(close)).await;
        let _ = sink.close().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tungstenite::error::{CapacityError, ProtocolError};

    use super::*;

    #[test]
    fn read_failures_close_with_the_standard_codes() {
        let close = |err: tungstenite::Error| read_failure_close(&axum::Error::new(err)).0;
        assert_eq!(close(tungstenite::Error::Utf8("bad".into())), 1007);
        let too_long = CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        };
        assert_eq!(close(tungstenite::Error::Capacity(too_long)), 1009);
        let masked = ProtocolError::UnmaskedFrameFromClient;
        assert_eq!(close(tungstenite::Error::Protocol(masked)), 1002);
    }
}
