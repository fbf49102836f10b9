//! Socket.IO 4 with its sharded Redis adapter on the shared Redis Cluster:
//! one Node.js process per node (`bench/peers/socketio/server.mjs`,
//! installed by `scripts/peer-socketio`). Clients speak Engine.IO 4 and
//! Socket.IO 5 by hand over a plain WebSocket, as the official client does
//! once it skips long-polling: one Engine.IO packet per text frame.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_integration_tests::Infra;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::system::{Incoming, Layout, System, Ws};

/// How long a node may take to connect to Redis and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to connect, and a receiver to join its room.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Engine.IO's ping, which the server sends every `pingInterval` and
/// which the client must answer with a pong within `pingTimeout`.
const PING: &str = "2";
const PONG: &str = "3";

#[derive(Debug)]
pub(crate) struct SocketIo {
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    /// Killed when dropped.
    _child: Child,
    pid: u32,
    port: u16,
    /// The server's stdout, read up to its readiness line. Held open so a
    /// later write there cannot fail with a broken pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl SocketIo {
    /// Where a client connects: the WebSocket transport straight away,
    /// since the servers accept no long-polling.
    fn url(&self, node: usize) -> String {
        format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            self.nodes[node].port
        )
    }

    /// A connection to `node`'s main namespace, through both handshakes.
    async fn connect(&self, node: usize, who: &str) -> anyhow::Result<Ws> {
        let url = self.url(node);
        let (mut ws, _) = crate::system::connect(&url)
            .await
            .with_context(|| format!("{who}: connecting to {url}"))?;
        // Engine.IO's open packet (`0` and the session's settings) comes
        // unasked.
        let open = next_text(&mut ws).await.context("engine.io open")?;
        anyhow::ensure!(
            open.starts_with('0'),
            "{who}: expected engine.io's open packet, got {open:?}"
        );
        // A Socket.IO CONNECT (`4` message, `0` connect) to the main
        // namespace, which names none; the server answers with the
        // socket's ID or a CONNECT_ERROR.
        ws.send(Message::text("40")).await?;
        loop {
            let frame = next_text(&mut ws).await.context("socket.io connect")?;
            match frame.as_str() {
                f if f.starts_with("40") => return Ok(ws),
                f if f.starts_with("44") => anyhow::bail!("{who}: connect refused: {f}"),
                PING => ws.send(Message::text(PONG)).await?,
                f => anyhow::bail!("{who}: unexpected frame before connect: {f:?}"),
            }
        }
    }

    async fn join(&self, channel: usize, index: usize) -> anyhow::Result<Ws> {
        let who = format!("receiver {index}");
        let mut ws = self.connect(self.owner(channel), &who).await?;
        // Event `join` with ack ID 0; the connection is fresh, so no other
        // ack can carry that ID.
        let join = format!("420{}", json!(["join", self.channel_id(channel)]));
        ws.send(Message::text(join)).await?;
        loop {
            let frame = next_text(&mut ws).await.context("join ack")?;
            match classify(&frame) {
                Incoming::Ack(_) if frame.starts_with("430[") => return Ok(ws),
                Incoming::Error(e) => anyhow::bail!("{who}: join refused: {e}"),
                Incoming::Answer(answer) => ws.send(Message::text(answer)).await?,
                // The server adds the socket to the room before it acks,
                // so a message sent meanwhile could land here, and would
                // be counted lost: the benchmark opens every receiver
                // before it sends.
                _ => {}
            }
        }
    }
}

impl System for SocketIo {
    const NAME: &'static str = "Socket.IO 4";

    async fn start(infra: &Infra, layout: Layout) -> anyhow::Result<Self> {
        let server = install().await?;
        let logs = chatmesh_integration_tests::process::scratch_dir("chatmesh-peer-socketio")?;
        let redis_nodes = infra.redis_nodes.join(",");
        let nodes = futures::future::try_join_all(
            (0..layout.nodes).map(|i| start_node(&server, &redis_nodes, &logs, i)),
        )
        .await?;
        Ok(Self { nodes })
    }

    fn owner(&self, channel: usize) -> usize {
        channel % self.nodes.len()
    }

    fn channel_id(&self, channel: usize) -> String {
        format!("room-{channel}")
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (format!("node {i}"), node.pid))
            .collect()
    }

    async fn open_receiver(&self, channel: usize, index: usize) -> anyhow::Result<Ws> {
        tokio::time::timeout(OPEN_TIMEOUT, self.join(channel, index))
            .await
            .with_context(|| format!("receiver {index}: no join ack within {OPEN_TIMEOUT:?}"))?
    }

    async fn open_sender(&self, node: usize, index: usize) -> anyhow::Result<Ws> {
        let who = format!("sender {index} to node {node}");
        tokio::time::timeout(OPEN_TIMEOUT, self.connect(node, &who))
            .await
            .with_context(|| format!("{who}: not connected within {OPEN_TIMEOUT:?}"))?
    }

    fn publish(&self, _sender: usize, channel: usize, body: &str, request: u64) -> String {
        // Event `send` with `request` as its ack ID (written between the
        // packet type and the arguments), so the server acks it.
        format!(
            "42{request}{}",
            json!(["send", self.channel_id(channel), body])
        )
    }

    fn classify(&self, frame: &str) -> Incoming {
        classify(frame)
    }

    fn keepalive(&self) -> Option<(Duration, String)> {
        // Engine.IO 4 servers ping and clients answer (see `classify`).
        None
    }

    async fn wait_stored(&self, _newest: &[(String, u64)]) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// What an Engine.IO packet is to the load client. Only the main
/// namespace is used, so no packet carries a namespace.
fn classify(frame: &str) -> Incoming {
    // Deliveries are most frames by far: tell them by their prefix.
    if frame.starts_with(r#"42["msg","#) {
        return Incoming::Message;
    }
    if frame == PING {
        return Incoming::Answer(PONG.into());
    }
    if let Some(ack) = frame.strip_prefix("43") {
        // The server acks with no arguments, or with `{ error }` when it
        // refuses; a body never comes back in an ack.
        return if ack.contains(r#""error""#) {
            Incoming::Error(frame.to_owned())
        } else {
            Incoming::Ack(None)
        };
    }
    if frame.starts_with("44") {
        return Incoming::Error(frame.to_owned());
    }
    if frame == "41" || frame.starts_with('1') {
        // The server ended the socket (`41`) or the whole session (`1`).
        return Incoming::Error(format!("closed by the server: {frame}"));
    }
    Incoming::Other
}

/// The next text frame; WebSocket pings are answered by tungstenite.
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(close))) => anyhow::bail!("closed by the server: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection ended"),
        }
    }
}

/// Installs the server's npm packages if needed (`scripts/peer-socketio`)
/// and returns the path of the server it installed.
async fn install() -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer-socketio");
    let output = Command::new(&script)
        .stdin(Stdio::null())
        // The script's progress goes to stderr, for whoever watches.
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed with {}",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout).context("the script's output")?;
    let server = PathBuf::from(stdout.trim());
    anyhow::ensure!(
        server.is_file(),
        "{} named {server:?}, which is no file",
        script.display()
    );
    Ok(server)
}

/// Starts node `index` on a port of its choosing and waits for its
/// readiness line, which names the port.
async fn start_node(
    server: &Path,
    redis_nodes: &str,
    logs: &Path,
    index: usize,
) -> anyhow::Result<Node> {
    let log = logs.join(format!("node-{index}.log"));
    let mut child = Command::new("node")
        .arg(server)
        // Next to its node_modules, where its imports resolve.
        .current_dir(server.parent().context("the server has no directory")?)
        .env("REDIS_NODES", redis_nodes)
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting node (Node.js)")?;
    let pid = child.id().context("node exited at once")?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?).lines();
    let line = tokio::time::timeout(START_TIMEOUT, stdout.next_line())
        .await
        .with_context(|| {
            format!(
                "socket.io node {index} not ready within {START_TIMEOUT:?}; log {}",
                log.display()
            )
        })?
        .context("reading the server's stdout")?;
    let port = line
        .as_deref()
        .and_then(|l| l.strip_prefix("ready "))
        .and_then(|addr| addr.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let Some(port) = port else {
        // No readiness line: most likely the process died on start-up,
        // and its log says why.
        let status = child.try_wait().ok().flatten();
        anyhow::bail!(
            "socket.io node {index} did not start (said {line:?}, exit status {status:?}); {}:\n{}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    Ok(Node {
        _child: child,
        pid,
        port,
        _stdout: stdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart() {
        assert_eq!(classify(r#"42["msg","~1.2.3.4~"]"#), Incoming::Message);
        assert_eq!(classify("2"), Incoming::Answer("3".into()));
        assert_eq!(classify("4317[]"), Incoming::Ack(None));
        assert!(matches!(
            classify(r#"4317[{"error":"send: room must be a non-empty string"}]"#),
            Incoming::Error(_)
        ));
        assert!(matches!(
            classify(r#"44{"message":"Invalid namespace"}"#),
            Incoming::Error(_)
        ));
        assert!(matches!(classify("41"), Incoming::Error(_)));
        assert_eq!(classify(r#"40{"sid":"x"}"#), Incoming::Other);
    }

    #[test]
    fn a_send_carries_its_ack_id_and_an_escaped_body() {
        let system = SocketIo { nodes: Vec::new() };
        assert_eq!(
            system.publish(0, 7, "~a \"b\"~", 12),
            r#"4212["send","room-7","~a \"b\"~"]"#
        );
    }
}
