//! A WebSocket client speaking the gateway's JSON protocol, for tests.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// A connected client.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// One user's calls to one gateway's HTTP API, with a development token.
#[derive(Debug, Clone)]
pub struct HttpUser {
    gateway: SocketAddr,
    token: String,
    http: reqwest::Client,
}

impl HttpUser {
    /// `user`, signed in at `gateway`.
    pub async fn new(gateway: SocketAddr, user: &str) -> anyhow::Result<Self> {
        Ok(Self {
            gateway,
            token: dev_token(gateway, user).await?,
            http: reqwest::Client::new(),
        })
    }

    /// `method path` with `body` as JSON: the status and the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.gateway))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let value =
            serde_json::from_str(&text).with_context(|| format!("{status} {path}: {text:?}"))?;
        Ok((status, value))
    }

    /// The user's token, for a WebSocket of the same user.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `GET path`: the status and the JSON answer.
    pub async fn get(&self, path: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with `body`: the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `GET path`, which must succeed: the JSON answer.
    pub async fn get_ok(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.get(path).await?;
        anyhow::ensure!(status.is_success(), "{status} {path}: {body}");
        Ok(body)
    }
}

/// Asks a gateway's development endpoint for a token for `user`.
pub async fn dev_token(gateway: SocketAddr, user: &str) -> anyhow::Result<String> {
    let response: Value = reqwest::Client::new()
        .post(format!("http://{gateway}/v1/dev/token"))
        .json(&json!({ "user_id": user }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    response["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in response")
}

impl Client {
    /// Connects to `gateway` with `token`, optionally for `channel`.
    pub async fn connect(
        gateway: SocketAddr,
        token: &str,
        channel: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut url = format!("ws://{gateway}/v1/ws?token={token}");
        if let Some(c) = channel {
            url.push_str(&format!("&channel={c}"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    /// Connects with a tiny socket receive buffer, so a client that stops
    /// reading backs up the server quickly.
    pub async fn connect_small_buffer(gateway: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(gateway).await?;
        let url = format!("ws://{gateway}/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?;
        Ok(Self { ws })
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.send_text(&frame.to_string()).await
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next JSON frame, or an error on close or timeout.
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .context("timed out waiting for a frame")?
                .context("connection ended")??;
            match msg {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Reads frames until one of `kind` arrives, failing on an unexpected
    /// error frame.
    pub async fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        loop {
            let frame = self.next().await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
            if frame["type"] == "error" {
                anyhow::bail!("expected {kind}, got error {frame}");
            }
        }
    }

    /// Reads frames until an error frame arrives.
    pub async fn expect_error(&mut self) -> anyhow::Result<Value> {
        loop {
            let frame = self.next().await?;
            if frame["type"] == "error" {
                return Ok(frame);
            }
        }
    }

    /// Sends `frame`, which should carry a `request_id`, and waits for its
    /// answer: the `ack`'s `seq`, or the frame that refused it. Frames in
    /// between are skipped.
    pub async fn ask(&mut self, frame: Value) -> anyhow::Result<Result<u64, Value>> {
        let request_id = frame["request_id"].clone();
        self.send(frame).await?;
        loop {
            let answer = self.next().await?;
            if answer["request_id"] != request_id {
                continue;
            }
            return Ok(match answer["type"].as_str() {
                Some("ack") => Ok(answer["seq"].as_u64().context("ack without seq")?),
                _ => Err(answer),
            });
        }
    }

    /// Subscribes and waits for the confirmation; returns the channel's seq.
    pub async fn subscribe(&mut self, channel: &str) -> anyhow::Result<u64> {
        self.send(json!({ "type": "subscribe", "channel_id": channel }))
            .await?;
        let frame = self.expect("subscribed").await?;
        frame["seq"].as_u64().context("subscribed without seq")
    }

    /// Waits for the close frame and returns its code and reason.
    pub async fn closed(&mut self) -> anyhow::Result<(u16, String)> {
        loop {
            let msg = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .context("timed out waiting for close")?;
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok((frame.code.into(), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None => return Ok((1005, String::new())),
                Some(Err(e)) => anyhow::bail!("connection error before close: {e}"),
                Some(Ok(_)) => {}
            }
        }
    }
}
