//! Watchers: one subscription each, kept through every failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{PING_EVERY, connect, ws_url};

/// What a watcher saw in its channel, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The first subscription's latest number: messages after it are the
    /// watcher's to receive.
    Start(u64),
    /// A message.
    Message {
        /// Its ID.
        id: u64,
        /// Its sequence number.
        seq: u64,
    },
    /// The numbers `from..=to` must be reloaded.
    Reload {
        /// First number.
        from: u64,
        /// Last number.
        to: u64,
    },
    /// The connection was replaced.
    Reconnected,
}

/// A client subscribed to one channel that never gives up on it.
#[derive(Debug, Clone)]
pub struct Watcher {
    /// Gateway base URLs (`ws://host:port`), tried in turn.
    pub gateways: Vec<String>,
    /// The watcher's token.
    pub token: String,
    /// The channel watched.
    pub channel: String,
}

/// The frames of one watcher, shared with the test while it runs.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

impl Watcher {
    /// Subscribes and records what arrives in `seen` until `stop`.
    /// Returns once the first subscription is confirmed.
    pub async fn start(self, stop: CancellationToken) -> anyhow::Result<SeenLog> {
        let seen: SeenLog = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(self.run(seen.clone(), stop, ready_tx));
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("watcher never subscribed")?
            .context("watcher stopped before subscribing")?;
        Ok(seen)
    }

    async fn run(
        self,
        seen: SeenLog,
        stop: CancellationToken,
        ready: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut last_seq: Option<u64> = None;
        let mut next_url: Option<String> = None;
        let mut gateway = 0_usize;
        let mut first = true;
        while !stop.is_cancelled() {
            let base = next_url.take().unwrap_or_else(|| {
                gateway += 1;
                self.gateways[(gateway - 1) % self.gateways.len()].clone()
            });
            let mut ws = match connect(&ws_url(&base, &self.token)).await {
                Ok(ws) => ws,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if !first {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Seen::Reconnected);
            }
            first = false;
            let mut subscribe =
                json!({"type": "subscribe", "request_id": "sub", "channel_id": self.channel});
            if let Some(last) = last_seq {
                subscribe["last_seq"] = json!(last);
            }
            if ws
                .send(Message::Text(subscribe.to_string().into()))
                .await
                .is_err()
            {
                continue;
            }
            let mut ping = tokio::time::interval(PING_EVERY);
            loop {
                let msg = tokio::select! {
                    msg = ws.next() => msg,
                    _ = ping.tick() => {
                        let frame = json!({"type": "ping"}).to_string();
                        if ws.send(Message::Text(frame.into())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    () = stop.cancelled() => return,
                };
                let Some(Ok(Message::Text(text))) = msg else {
                    match msg {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let mut log = seen.lock().unwrap_or_else(|p| p.into_inner());
                match frame["type"].as_str().unwrap_or_default() {
                    "subscribed" => {
                        if last_seq.is_none() {
                            let start = frame["seq"].as_u64().unwrap_or(0);
                            log.push(Seen::Start(start));
                            last_seq = Some(start);
                        }
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    "message" if frame["channel_id"] == self.channel => {
                        let id = frame["message_id"].as_str().and_then(|s| s.parse().ok());
                        if let (Some(id), Some(seq)) = (id, frame["seq"].as_u64()) {
                            log.push(Seen::Message { id, seq });
                            last_seq = Some(seq);
                        }
                    }
                    "reload_required" if frame["channel_id"] == self.channel => {
                        let (from, to) = (frame["from_seq"].as_u64(), frame["to_seq"].as_u64());
                        if let (Some(from), Some(to)) = (from, to) {
                            log.push(Seen::Reload { from, to });
                            last_seq = Some(to.max(last_seq.unwrap_or(0)));
                        }
                    }
                    "redirect" => {
                        next_url = frame["url"].as_str().map(str::to_owned);
                        break;
                    }
                    "reconnect" => {
                        next_url = frame["url"].as_str().map(str::to_owned);
                        break;
                    }
                    "error" if frame["request_id"] == "sub" => {
                        drop(log);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}
