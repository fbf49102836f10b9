//! One client connection: reads frames, enforces limits, calls the chat
//! service, and writes replies and fanned-out messages.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use chatmesh_ids::{ChannelId, Clock as _, SystemClock, UserId};
use chatmesh_proto::chat::v1 as chat;
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::Gateway;
use crate::config::PinMode;
use crate::hub::Subscriber;
use crate::protocol::{self, ClientFrame, ServerFrame};

/// Close code for a client that could not keep up (private range).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code for a node going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a session that stopped pinging (private range).
pub const CLOSE_SESSION_EXPIRED: u16 = 4009;

/// A token bucket: `rate` frames per second, bursts up to `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(rate));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Session {
    gw: Arc<Gateway>,
    id: u64,
    user: UserId,
    tx: mpsc::Sender<Utf8Bytes>,
    overflow: CancellationToken,
    channels: HashSet<String>,
    bucket: Bucket,
    /// The session's ID in presence state.
    presence_id: String,
}

/// Serves one upgraded connection until either side closes it.
pub(crate) async fn run(
    gw: Arc<Gateway>,
    socket: WebSocket,
    user: UserId,
    initial: Option<ChannelId>,
) {
    let id = gw.next_session.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Utf8Bytes>(gw.config.limits.outbound_queue);
    let overflow = CancellationToken::new();
    let close = CancellationToken::new();
    let close_reason: Arc<std::sync::Mutex<Option<(u16, String)>>> = Arc::default();
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write(
        sink,
        rx,
        overflow.clone(),
        close.clone(),
        close_reason.clone(),
    ));
    metrics::gauge!("chatmesh_gateway_connections").increment(1.0);

    let limits = &gw.config.limits;
    let (presence_id, expired) = gw.presence.open(user.as_str());
    let mut session = Session {
        bucket: Bucket::new(limits.frames_per_second, limits.frame_burst),
        gw: gw.clone(),
        id,
        user,
        tx,
        overflow: overflow.clone(),
        channels: HashSet::new(),
        presence_id,
    };
    if let Some(channel) = initial {
        session
            .subscribe(None, channel.as_str().to_owned(), None)
            .await;
    }
    let mut routes = gw.routes.clone();
    let shutting_down = gw.shutdown.clone();
    let reason = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => session.on_text(&text).await,
                Some(Ok(WsMessage::Binary(_))) => {
                    session.reply(ServerFrame::error(None, "unsupported_frame", "binary frames are not supported; send JSON text frames", false)).await;
                }
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Ok(WsMessage::Ping(_))) => session.alive(),
                Some(Ok(WsMessage::Pong(_))) => {}
                Some(Err(err)) => {
                    // Oversized frames end up here: the socket layer refuses
                    // anything far beyond the frame limit.
                    tracing::debug!(session = id, error = %err, "websocket read failed");
                    break Some((1009, "frame too large or protocol error".to_owned()));
                }
            },
            Ok(()) = routes.changed() => session.on_ring_change().await,
            () = overflow.cancelled() => break None,
            () = expired.cancelled() => {
                let ttl = gw.config.presence.session_ttl;
                break Some((CLOSE_SESSION_EXPIRED, format!("session expired: no ping for {}s", ttl.as_secs_f64())));
            }
            () = shutting_down.cancelled() => {
                let channels = session.channels.iter().cloned().collect();
                session.reply(ServerFrame::Reconnect { reason: "node shutting down".into(), url: None, channel_ids: channels }).await;
                break Some((CLOSE_GOING_AWAY, "node shutting down".to_owned()));
            }
        }
    };
    if let Some(r) = reason {
        *close_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    }
    close.cancel();
    gw.presence.close(
        &session.presence_id,
        session.channels.iter().cloned().collect(),
    );
    for channel in std::mem::take(&mut session.channels) {
        gw.hub.unsubscribe(&channel, id).await;
    }
    drop(session);
    let _ = writer.await;
    metrics::gauge!("chatmesh_gateway_connections").decrement(1.0);
    gw.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    overflow: CancellationToken,
    close: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<(u16, String)>>>,
) {
    let frame = loop {
        tokio::select! {
            biased;
            () = overflow.cancelled() => {
                break Some((CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full".to_owned()));
            }
            text = rx.recv() => match text {
                Some(text) => {
                    // A client that stops reading blocks this send; once it
                    // has overflowed it gets a bounded wait, not forever.
                    let sent = tokio::select! {
                        r = sink.send(WsMessage::Text(text)) => r.is_ok(),
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
                while let Ok(text) = rx.try_recv() {
                    if sink.send(WsMessage::Text(text)).await.is_err() {
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

/// How long a send to a client that overflowed may stay blocked.
const STALLED_SEND: Duration = Duration::from_secs(5);

/// The client-facing code for a chat service status, and whether retrying
/// can help.
fn chat_error(status: &tonic::Status) -> (&'static str, bool) {
    match status.code() {
        Code::InvalidArgument => ("invalid_message", false),
        Code::PermissionDenied => ("not_member", false),
        Code::NotFound => ("unknown_channel", false),
        Code::FailedPrecondition => ("blocked", false),
        Code::ResourceExhausted => ("rate_limited", true),
        Code::Aborted => ("in_progress", true),
        Code::Unavailable | Code::DeadlineExceeded => ("unavailable", true),
        _ => ("internal", true),
    }
}

impl Session {
    async fn reply(&self, frame: ServerFrame) {
        // Replies wait for queue space: a client that does not read is
        // closed by the overflow path, which never blocks on it.
        tokio::select! {
            _ = self.tx.send(frame.to_json().into()) => {}
            () = self.overflow.cancelled() => {}
        }
    }

    async fn on_text(&mut self, text: &str) {
        let limits = &self.gw.config.limits;
        if text.len() > limits.max_frame_bytes {
            let msg = format!(
                "frame is {} bytes; the limit is {}",
                text.len(),
                limits.max_frame_bytes
            );
            return self
                .reply(ServerFrame::error(None, "frame_too_large", msg, false))
                .await;
        }
        if !self.bucket.take(Instant::now()) {
            metrics::counter!("chatmesh_gateway_rate_limited_total").increment(1);
            let msg = format!(
                "more than {} frames per second; slow down",
                limits.frames_per_second
            );
            return self
                .reply(ServerFrame::error(None, "rate_limited", msg, true))
                .await;
        }
        let frame = match protocol::parse(text) {
            Ok(frame) => frame,
            Err(err) => {
                return self
                    .reply(ServerFrame::error(None, err.code(), err.message(), false))
                    .await;
            }
        };
        match frame {
            ClientFrame::Subscribe {
                request_id,
                channel_id,
                last_seq,
            } => self.subscribe(request_id, channel_id, last_seq).await,
            ClientFrame::Unsubscribe {
                request_id,
                channel_id,
            } => {
                if self.channels.remove(&channel_id) {
                    self.gw.hub.unsubscribe(&channel_id, self.id).await;
                    self.alive();
                }
                self.reply(ServerFrame::Unsubscribed {
                    request_id,
                    channel_id,
                })
                .await;
            }
            ClientFrame::Send {
                request_id,
                channel_id,
                body,
                attachments,
                idempotency_key,
            } => {
                self.send(request_id, channel_id, body, attachments, idempotency_key)
                    .await;
            }
            ClientFrame::Ack { .. } => {}
            ClientFrame::Ping {
                request_id,
                client_time_ms,
            } => {
                self.alive();
                let server_time_ms = SystemClock.now_ms() as i64;
                self.reply(ServerFrame::Pong {
                    request_id,
                    client_time_ms,
                    server_time_ms,
                })
                .await;
            }
        }
    }

    async fn subscribe(
        &mut self,
        request_id: Option<String>,
        channel_id: String,
        last_seq: Option<u64>,
    ) {
        if let Err(err) = ChannelId::new(channel_id.as_str()) {
            return self
                .reply(ServerFrame::error(
                    request_id,
                    "invalid_channel",
                    err.to_string(),
                    false,
                ))
                .await;
        }
        if self.channels.contains(&channel_id) {
            let seq = self.current_seq(&channel_id).await;
            return self
                .reply(ServerFrame::Subscribed {
                    request_id,
                    channel_id,
                    seq,
                })
                .await;
        }
        if self.channels.len() >= self.gw.config.limits.max_subscriptions {
            let msg = format!(
                "at most {} channels per connection",
                self.gw.config.limits.max_subscriptions
            );
            return self
                .reply(ServerFrame::error(
                    request_id,
                    "too_many_subscriptions",
                    msg,
                    false,
                ))
                .await;
        }
        if self.gw.config.routing.mode == PinMode::Redirect
            && let Some(url) = self.gw.redirect_url(&channel_id)
        {
            return self.reply(ServerFrame::Redirect { channel_id, url }).await;
        }
        let mut chat = self.gw.chat.clone();
        let member = chat
            .check_membership(chat::CheckMembershipRequest {
                channel_id: channel_id.clone(),
                user_id: self.user.as_str().to_owned(),
            })
            .await;
        match member {
            Ok(r) if r.get_ref().member => {}
            Ok(_) => {
                let exists = chat
                    .get_channel(chat::GetChannelRequest {
                        channel_id: channel_id.clone(),
                    })
                    .await;
                let (code, msg) = match exists {
                    Err(s) if s.code() == Code::NotFound => ("unknown_channel", "no such channel"),
                    _ => ("not_member", "join the channel before subscribing"),
                };
                return self
                    .reply(ServerFrame::error(request_id, code, msg, false))
                    .await;
            }
            Err(status) => {
                let (code, retryable) = chat_error(&status);
                return self
                    .reply(ServerFrame::error(
                        request_id,
                        code,
                        status.message(),
                        retryable,
                    ))
                    .await;
            }
        }
        let sub = Subscriber {
            tx: self.tx.clone(),
            overflow: self.overflow.clone(),
            held: last_seq.map(|_| Vec::new()),
        };
        match self.gw.hub.subscribe(&channel_id, self.id, sub).await {
            Ok(seq) => {
                self.channels.insert(channel_id.clone());
                self.alive();
                self.reply(ServerFrame::Subscribed {
                    request_id,
                    channel_id: channel_id.clone(),
                    seq,
                })
                .await;
                if let Some(last) = last_seq {
                    self.replay(&channel_id, last, seq).await;
                    self.gw.hub.release(&channel_id, self.id);
                }
            }
            Err(err) => {
                tracing::warn!(channel = %channel_id, error = %err, "subscribe failed");
                self.reply(ServerFrame::error(
                    request_id,
                    "unavailable",
                    "fan-out temporarily unavailable, retry",
                    true,
                ))
                .await;
            }
        }
    }

    /// Sends the messages of `channel` after `last` up to `current`, from
    /// the recent window in Redis and, for older ones, from storage. Numbers
    /// that were never made durable are skipped. When the gap cannot be
    /// filled the client is told to reload.
    async fn replay(&self, channel: &str, last: u64, current: u64) {
        tracing::debug!(channel, last, current, "replaying a gap");
        if last >= current {
            return;
        }
        match crate::recovery::fill(&self.gw, channel, self.user.as_str(), last, current).await {
            Some(messages) => {
                metrics::counter!("chatmesh_gateway_replayed_total")
                    .increment(messages.len() as u64);
                for m in &messages {
                    self.reply(ServerFrame::Message(crate::protocol::MessageBody::from(m)))
                        .await;
                }
            }
            None => {
                metrics::counter!("chatmesh_gateway_reloads_total").increment(1);
                self.reply(ServerFrame::ReloadRequired {
                    channel_id: channel.to_owned(),
                    from_seq: last + 1,
                    to_seq: current,
                })
                .await;
            }
        }
    }

    async fn current_seq(&self, channel: &str) -> u64 {
        let Ok(mut conn) = self.gw.redis.conn().await else {
            return 0;
        };
        redis::cmd("GET")
            .arg(chatmesh_redis::keys::seq(channel))
            .query_async::<Option<u64>>(&mut conn)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    #[tracing::instrument(name = "gateway.send", skip_all, fields(channel = %channel_id, user = %self.user))]
    async fn send(
        &mut self,
        request_id: Option<String>,
        channel_id: String,
        body: String,
        attachments: Vec<String>,
        idempotency_key: Option<String>,
    ) {
        let request = chat::SendMessageRequest {
            channel_id: channel_id.clone(),
            sender_id: self.user.as_str().to_owned(),
            body,
            attachments,
            idempotency_key: idempotency_key.unwrap_or_default(),
        };
        let mut chat = self.gw.chat.clone();
        let started = Instant::now();
        let mut request = tonic::Request::new(request);
        chatmesh_telemetry::inject_trace_context(request.metadata_mut());
        let result =
            tokio::time::timeout(Duration::from_secs(15), chat.send_message(request)).await;
        metrics::histogram!("chatmesh_gateway_send_seconds")
            .record(started.elapsed().as_secs_f64());
        let frame = match result {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                match response.message {
                    Some(m) => ServerFrame::Ack {
                        request_id,
                        channel_id,
                        message_id: m.message_id.to_string(),
                        seq: m.seq,
                        masked: response.masked,
                        duplicate: response.duplicate,
                    },
                    None => ServerFrame::error(
                        request_id,
                        "internal",
                        "chat service returned no message",
                        true,
                    ),
                }
            }
            Ok(Err(status)) => {
                let (code, retryable) = chat_error(&status);
                ServerFrame::error(request_id, code, status.message(), retryable)
            }
            Err(_) => ServerFrame::error(
                request_id,
                "unavailable",
                "send timed out; retry with the same idempotency_key",
                true,
            ),
        };
        self.reply(frame).await;
    }

    /// Reports the session alive, in its current channels.
    fn alive(&self) {
        self.gw
            .presence
            .alive(&self.presence_id, self.channels.iter().cloned().collect());
    }

    /// Tells the client to move the channels the ring now gives to another node.
    async fn on_ring_change(&mut self) {
        if self.gw.config.routing.mode != PinMode::Redirect {
            return;
        }
        let mut moved: Vec<(String, String)> = Vec::new();
        for channel in &self.channels {
            if let Some(url) = self.gw.redirect_url(channel) {
                moved.push((channel.clone(), url));
            }
        }
        // One reconnect frame per destination node.
        moved.sort_by(|a, b| a.1.cmp(&b.1));
        for group in moved.chunk_by(|a, b| a.1 == b.1) {
            let url = group[0].1.clone();
            let channel_ids = group.iter().map(|(c, _)| c.clone()).collect();
            self.reply(ServerFrame::Reconnect {
                reason: "channel moved to another node".into(),
                url: Some(url),
                channel_ids,
            })
            .await;
        }
    }
}
