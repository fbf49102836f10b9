//! Sockudo 5.2, a Pusher-protocol server in Rust, scaled out the way its
//! docs scale it: one process per node over its Redis Cluster adapter.
//! Clients speak Pusher protocol 7 over a plain WebSocket. Pusher has no
//! client publish into a channel other than a client event, and the server
//! takes client events only on private (or presence) channels the sending
//! socket is subscribed to, so every connection here subscribes with a
//! signed `private-` channel, and senders subscribe to every channel of
//! their node before they send.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_bench::free_port;
use chatmesh_integration_tests::process::scratch_dir;
use chatmesh_integration_tests::{Infra, wait};
use futures::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::system::{Incoming, Layout, System, Ws};

/// The one app every node serves; any values do, they only have to agree
/// between the config and the clients.
const APP_ID: &str = "bench";
const APP_KEY: &str = "bench-key";
const APP_SECRET: &str = "bench-secret";

/// How long a node may take from spawn to answering its health check.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may take to be established and subscribed; the
/// server answers each step at once, so this only bounds a hung server.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to the server's `pusher:ping`, which it sends to a socket
/// silent for its activity timeout and closes the socket without.
const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

#[derive(Debug)]
pub(crate) struct Sockudo {
    nodes: Vec<Node>,
    /// Channels of the layout, which senders subscribe to by owner node.
    channels: usize,
}

#[derive(Debug)]
struct Node {
    port: u16,
    /// Killed on drop.
    child: Child,
}

impl Sockudo {
    fn url(&self, node: usize) -> String {
        format!(
            "ws://127.0.0.1:{}/app/{APP_KEY}?protocol=7&client=chatmesh-bench&version=1",
            self.nodes[node].port
        )
    }

    /// Opens a connection to `node` and reads its socket ID, which private
    /// channel signatures cover.
    async fn connect(&self, node: usize) -> anyhow::Result<(Ws, String)> {
        let url = self.url(node);
        let (mut ws, _) = crate::system::connect(&url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        loop {
            let frame = next_event(&mut ws).await?;
            match frame["event"].as_str() {
                Some("pusher:connection_established") => {
                    let socket_id = data(&frame)["socket_id"]
                        .as_str()
                        .with_context(|| format!("no socket_id in {frame}"))?
                        .to_owned();
                    return Ok((ws, socket_id));
                }
                Some("pusher:error") => anyhow::bail!("{url} refused the connection: {frame}"),
                _ => {}
            }
        }
    }

    /// Subscribes `ws` to every channel of `channels` at once and waits
    /// until the server confirmed each one.
    async fn subscribe(ws: &mut Ws, socket_id: &str, channels: &[String]) -> anyhow::Result<()> {
        for channel in channels {
            let auth = channel_auth(APP_KEY, APP_SECRET, socket_id, channel);
            let frame = json!({
                "event": "pusher:subscribe",
                "data": {"channel": channel, "auth": auth},
            });
            ws.send(Message::text(frame.to_string()))
                .await
                .with_context(|| format!("subscribing to {channel}"))?;
        }
        let mut pending = channels.len();
        while pending > 0 {
            let frame = next_event(ws).await?;
            match frame["event"].as_str() {
                Some("pusher_internal:subscription_succeeded") => pending -= 1,
                Some("pusher:error" | "pusher:subscription_error") => {
                    anyhow::bail!("subscription refused: {frame}")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl System for Sockudo {
    const NAME: &'static str = "Sockudo 5.2";

    async fn start(infra: &Infra, layout: Layout) -> anyhow::Result<Self> {
        let binary = install().await?;
        let dir = scratch_dir("sockudo")?;
        // Runs share the Redis Cluster: a prefix of their own keeps one
        // run's nodes from hearing another's broadcasts.
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut nodes = Vec::with_capacity(layout.nodes);
        for i in 0..layout.nodes {
            let port = free_port()?;
            let config = dir.join(format!("node-{i}.json"));
            let text = serde_json::to_string_pretty(&node_config(infra, &run, i, port)?)?;
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
            let child = spawn(&binary, &dir, &config, &dir.join(format!("node-{i}.log")))?;
            nodes.push(Node { port, child });
        }
        // All nodes start at once; then each is waited for in turn.
        for (i, node) in nodes.iter_mut().enumerate() {
            ready(node, &dir.join(format!("node-{i}.log")))
                .await
                .with_context(|| format!("sockudo node {i}"))?;
        }
        Ok(Self {
            nodes,
            channels: layout.channels,
        })
    }

    fn owner(&self, channel: usize) -> usize {
        channel % self.nodes.len()
    }

    fn channel_id(&self, channel: usize) -> String {
        format!("private-room-{channel}")
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((format!("node {i}"), n.child.id()?)))
            .collect()
    }

    async fn open_receiver(&self, channel: usize, index: usize) -> anyhow::Result<Ws> {
        let open = async {
            let (mut ws, socket_id) = self.connect(self.owner(channel)).await?;
            Self::subscribe(&mut ws, &socket_id, &[self.channel_id(channel)]).await?;
            anyhow::Ok(ws)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {HANDSHAKE_TIMEOUT:?}")))
            .with_context(|| format!("receiver {index} of channel {channel}"))
    }

    async fn open_sender(&self, node: usize, index: usize) -> anyhow::Result<Ws> {
        let channels: Vec<String> = (0..self.channels)
            .filter(|&c| self.owner(c) == node)
            .map(|c| self.channel_id(c))
            .collect();
        let open = async {
            let (mut ws, socket_id) = self.connect(node).await?;
            Self::subscribe(&mut ws, &socket_id, &channels).await?;
            anyhow::Ok(ws)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {HANDSHAKE_TIMEOUT:?}")))
            .with_context(|| format!("sender {index} to node {node}"))
    }

    fn publish(&self, _sender: usize, channel: usize, body: &str, _request: u64) -> String {
        json!({"event": "client-msg", "channel": self.channel_id(channel), "data": {"b": body}})
            .to_string()
    }

    fn classify(&self, frame: &str) -> Incoming {
        // Deliveries are most frames by far, and the server writes `event`
        // first: tell them by their prefix before parsing anything.
        if frame.starts_with(r#"{"event":"client-msg""#) {
            return Incoming::Message;
        }
        let Ok(v) = serde_json::from_str::<Value>(frame) else {
            return Incoming::Error(format!("not JSON: {frame}"));
        };
        match v["event"].as_str() {
            Some("client-msg") => Incoming::Message,
            Some("pusher:ping") => Incoming::Answer(PONG.to_owned()),
            Some("pusher:error") => Incoming::Error(frame.to_owned()),
            _ => Incoming::Other,
        }
    }

    fn keepalive(&self) -> Option<(Duration, String)> {
        // The server pings a socket that has been silent for its activity
        // timeout (120 s) and `classify` answers; clients need not ping.
        None
    }

    async fn wait_stored(&self, _newest: &[(String, u64)]) -> anyhow::Result<bool> {
        // Client events are relayed, never stored.
        Ok(false)
    }
}

/// Runs `scripts/peer-sockudo`, which builds the server once into the tool
/// cache, and returns the binary's path.
async fn install() -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peer-sockudo");
    // Its progress goes to our stderr: a first build takes many minutes.
    let output = Command::new(&script)
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
    let path = String::from_utf8(output.stdout).context("binary path is not UTF-8")?;
    Ok(PathBuf::from(path.trim()))
}

/// Node `index`'s configuration, complete in itself: `spawn` clears the
/// environment, which Sockudo would otherwise read overrides from.
fn node_config(infra: &Infra, run: &str, index: usize, port: u16) -> anyhow::Result<Value> {
    Ok(json!({
        "host": "127.0.0.1",
        "port": port,
        "instance": {"process_id": format!("bench-{run}-{index}")},
        "adapter": {
            "driver": "redis-cluster",
            // Without this a node that cannot reach the cluster serves
            // alone, and cross-node deliveries silently vanish.
            "fallback_to_local": false,
            "cluster": {
                "nodes": infra.redis_nodes,
                "prefix": format!("sockudo-bench-{run}"),
                // SPUBLISH to the one shard owning the broadcast channel,
                // instead of PUBLISH copied to every cluster node; the
                // Socket.IO peer uses sharded pub/sub too.
                "use_sharded_pubsub": true,
            },
        },
        "app_manager": {
            "driver": "memory",
            "array": {"apps": [{
                "id": APP_ID,
                "key": APP_KEY,
                "secret": APP_SECRET,
                "enabled": true,
                "policy": {
                    "limits": {
                        // 0 is unlimited.
                        "max_connections": 0,
                        // Per socket and second (0 would be unlimited too,
                        // but drop the limiter from the path); far above
                        // what one sender sends, so it never refuses.
                        "max_client_events_per_second": 1_000_000,
                    },
                    "features": {"enable_client_messages": true},
                },
            }]},
        },
        "cache": {"driver": "memory"},
        // It deduplicates HTTP publishes that carry an idempotency key;
        // client events carry none. On (the default) over a cluster it
        // wants the cache in Redis, which nothing else here needs.
        "idempotency": {"enabled": false},
        // Webhooks are off; the default queue driver would dial a Redis on
        // 127.0.0.1:6379 for them.
        "queue": {"driver": "none"},
        // Its WebSocket limit (20 connections a minute from one address)
        // would refuse all but the first receivers.
        "rate_limiter": {"enabled": false},
        // On, as in production, on a port of each node's own (the default
        // 9601 would be shared).
        "metrics": {"enabled": true, "host": "127.0.0.1", "port": free_port()?},
        "logging": {"colors_enabled": false, "include_target": true},
    }))
}

/// Starts a node on `config`, logging to `log`. The working directory and
/// the environment are emptied of anything Sockudo reads besides the file:
/// it loads `config/config.toml` from its working directory first, and
/// variables such as `PORT`, `REDIS_URL` or `KAFKA_BROKERS` override it.
fn spawn(binary: &Path, dir: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Waits until `node` answers its app's health check, which passes once
/// the app is loaded and the adapter reaches the Redis Cluster; fails at
/// once if the node exits first.
async fn ready(node: &mut Node, log: &Path) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{}/up/{APP_ID}", node.port);
    let what = format!("{url} to answer");
    let up = wait::until(&what, START_TIMEOUT, || {
        let url = url.clone();
        async move { reqwest::get(&url).await?.error_for_status().map(|_| ()) }
    });
    let log_tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    tokio::select! {
        up = up => up.with_context(|| format!("{}:\n{}", log.display(), log_tail())),
        status = node.child.wait() => anyhow::bail!(
            "exited with {status:?} on start; {}:\n{}",
            log.display(),
            log_tail()
        ),
    }
}

/// The next text frame of `ws`, parsed; the handshake's frames are all
/// JSON objects.
async fn next_event(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"));
            }
            Some(Ok(Message::Close(close))) => anyhow::bail!("closed by the server: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading from the server"),
            None => anyhow::bail!("closed by the server"),
        }
    }
}

/// An event's `data`, which Pusher sends as a JSON string holding the
/// object, or as the object itself.
fn data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// The signature that admits `socket_id` to the private `channel`:
/// `key:hex(HMAC-SHA256(secret, "socket_id:channel"))`.
fn channel_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(format!("{socket_id}:{channel}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{key}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_auth_matches_the_pusher_docs_example() {
        assert_eq!(
            channel_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                "1234.1234",
                "private-foobar"
            ),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn deliveries_pings_and_errors_are_told_apart() {
        let s = Sockudo {
            nodes: Vec::new(),
            channels: 0,
        };
        let delivery =
            r#"{"event":"client-msg","channel":"private-room-3","data":{"b":"~1.2.3.4~"}}"#;
        assert_eq!(s.classify(delivery), Incoming::Message);
        assert_eq!(
            s.classify(r#"{"channel":"private-room-3","event":"client-msg","data":{}}"#),
            Incoming::Message
        );
        assert_eq!(
            s.classify(r#"{"event":"pusher:ping"}"#),
            Incoming::Answer(PONG.to_owned())
        );
        assert!(matches!(
            s.classify(r#"{"event":"pusher:error","data":{"code":4301,"message":"x"}}"#),
            Incoming::Error(_)
        ));
        let confirmation = r#"{"event":"pusher_internal:subscription_succeeded","data":"{}"}"#;
        assert_eq!(s.classify(confirmation), Incoming::Other);
    }

    #[test]
    fn a_published_frame_is_a_client_event_on_the_channel() {
        let s = Sockudo {
            nodes: Vec::new(),
            channels: 1,
        };
        let frame: Value = serde_json::from_str(&s.publish(0, 7, "~1.2.3.4~", 1)).unwrap();
        assert_eq!(
            frame,
            json!({"event": "client-msg", "channel": "private-room-7", "data": {"b": "~1.2.3.4~"}})
        );
    }
}
