//! Opening a client's WebSocket and getting its subscription confirmed,
//! and sorting what can go wrong into the protocol's retryable and final
//! failures.

use std::net::SocketAddr;
use std::time::Duration;

use chatmesh_bench::token_signed;
use chatmesh_integration_tests::sandbox::SANDBOX_SECRET;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long opening the WebSocket, then getting `subscribed`, may each
/// take; covers the kernel's first SYN retransmissions (after 1 s and 3 s)
/// when a storm overflows the accept backlog.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries back off exponentially from this, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A failure to connect or subscribe, or a frame that says something went
/// wrong.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong, as the report counts it.
    pub(crate) kind: String,
    /// Whether the protocol says the same request may succeed later.
    pub(crate) retryable: bool,
    /// The text of what happened, for failures worth reading.
    pub(crate) detail: String,
}

impl Failure {
    pub(crate) fn new(kind: impl Into<String>, retryable: bool, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            retryable,
            detail: detail.into(),
        }
    }
}

/// Full jitter over an exponential backoff, so retries spread out instead
/// of meeting the gateway in waves.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(10))
        .min(BACKOFF_MAX);
    cap.mul_f64(rand::random::<f64>())
}

/// Connects and subscribes: through the URL's `channel` for a first
/// subscription, or with a `subscribe` frame naming `last_seq` to resume.
/// Opening the WebSocket and getting `subscribed` each have
/// [`ATTEMPT_TIMEOUT`], and a timeout says which, so a storm shows whether
/// the accept backlog or the subscription lagged. Answers the stream and
/// the `subscribed` seq.
pub(crate) async fn connect_subscribed(
    gateway: SocketAddr,
    user: &str,
    channel_id: &str,
    last_seq: Option<u64>,
) -> Result<(Ws, u64), Failure> {
    let token = token_signed(user, SANDBOX_SECRET);
    let url = match last_seq {
        None => format!("ws://{gateway}/v1/ws?token={token}&channel={channel_id}"),
        Some(_) => format!("ws://{gateway}/v1/ws?token={token}"),
    };
    // Small buffers: the bench holds as many connections as the gateway,
    // and tungstenite's default 128 KiB each would cost gigabytes.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio::time::timeout(
        ATTEMPT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    .map_err(|_| {
        Failure::new(
            "timed out opening the WebSocket",
            true,
            format!("no handshake within {ATTEMPT_TIMEOUT:?}"),
        )
    })?
    .map_err(connect_failure)?;
    if let Some(last) = last_seq {
        let frame = json!({
            "type": "subscribe",
            "request_id": "resume",
            "channel_id": channel_id,
            "last_seq": last,
        });
        ws.send(Message::text(frame.to_string()))
            .await
            .map_err(|e| Failure::new("send failed before subscribed", true, e.to_string()))?;
    }
    let seq = tokio::time::timeout(ATTEMPT_TIMEOUT, await_subscribed(&mut ws))
        .await
        .map_err(|_| {
            Failure::new(
                "timed out waiting for subscribed",
                true,
                format!("no subscribed frame within {ATTEMPT_TIMEOUT:?}"),
            )
        })??;
    Ok((ws, seq))
}

/// Reads frames until `subscribed`, answering its `seq`.
async fn await_subscribed(ws: &mut Ws) -> Result<u64, Failure> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => {
                let code = close.as_ref().map(|c| u16::from(c.code));
                return Err(Failure::new(
                    format!("closed before subscribed ({code:?})"),
                    true,
                    format!("{close:?}"),
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(Failure::new(
                    "connection failed before subscribed",
                    true,
                    e.to_string(),
                ));
            }
            None => {
                return Err(Failure::new(
                    "connection ended before subscribed",
                    true,
                    "end of stream",
                ));
            }
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::new("unreadable frame", false, format!("{e}: {text}")))?;
        match v["type"].as_str() {
            Some("subscribed") => return Ok(v["seq"].as_u64().unwrap_or(0)),
            Some("error") => {
                let code = v["code"].as_str().unwrap_or("unknown");
                return Err(Failure::new(
                    format!("error frame {code}"),
                    v["retryable"].as_bool().unwrap_or(false),
                    text.to_string(),
                ));
            }
            // Before the subscription nothing else is expected; presence
            // or typing frames of a channel would only follow it.
            Some("pong" | "presence" | "typing") => {}
            _ => {
                return Err(Failure::new(
                    "unexpected frame before subscribed",
                    false,
                    text.to_string(),
                ));
            }
        }
    }
}

/// Sorts a failed handshake into the protocol's retryable and final
/// refusals: a refused or reset connection is the transport's, a refusal
/// with a body says whether it is retryable.
fn connect_failure(err: tungstenite::Error) -> Failure {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("no code");
            Failure::new(
                format!("HTTP {} {code}", status.as_u16()),
                body["error"]["retryable"]
                    .as_bool()
                    .unwrap_or(status.is_server_error()),
                body.to_string(),
            )
        }
        tungstenite::Error::Io(e) => {
            Failure::new(format!("connect: {}", e.kind()), true, e.to_string())
        }
        e @ (tungstenite::Error::Url(_)
        | tungstenite::Error::Tls(_)
        | tungstenite::Error::Utf8(_)
        | tungstenite::Error::AttackAttempt) => {
            Failure::new("connect: refused by the client", false, e.to_string())
        }
        e => Failure::new("connect: handshake failed", true, e.to_string()),
    }
}
