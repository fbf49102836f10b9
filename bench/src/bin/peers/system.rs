//! What the side-by-side benchmark needs from each system it drives: how to
//! start its servers, open a receiver's and a sender's WebSocket, publish a
//! message and read what comes back. The load client is the same for all;
//! only these differ.

use std::future::Future;
use std::time::Duration;

use chatmesh_integration_tests::Infra;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The scenario's layout, the same for every system.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Server nodes (WebSocket edges) sharing the Redis Cluster.
    pub(crate) nodes: usize,
    /// Channels (rooms); channel `c` is pinned to node [`System::owner`].
    pub(crate) channels: usize,
    /// Receiving clients; client `i` subscribes to channel `i % channels`
    /// on that channel's node.
    pub(crate) receivers: usize,
    /// Sending clients; each holds one connection per node and sends each
    /// channel's messages over its connection to the channel's node.
    pub(crate) senders: usize,
}

/// What an incoming text frame is to the load client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A delivered benchmark message. Its body is in the frame verbatim,
    /// between the two `~` of [`crate::body`], and the load client finds it
    /// there, so systems need not parse deliveries.
    Message,
    /// The server's keep-alive or probe, to be answered with this frame.
    Answer(String),
    /// A send accepted. Systems that store messages name the channel (as
    /// [`System::channel_id`] spells it) and the sequence number taken, so
    /// the benchmark can wait until storage holds each channel's last one.
    Ack(Option<(String, u64)>),
    /// A send refused, with the server's words.
    Error(String),
    /// Anything else (presence, subscription confirmations, …).
    Other,
}

/// One system under load.
pub(crate) trait System: Send + Sync + Sized + 'static {
    /// Its name in the report.
    const NAME: &'static str;

    /// Starts its server processes on `layout.nodes` nodes over the Redis
    /// Cluster of `infra`, and returns once every one is ready. The
    /// processes die when the value is dropped.
    fn start(infra: &Infra, layout: Layout) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Creates the layout's channels and their members where the system
    /// keeps such state, once, before any client connects. Systems whose
    /// rooms exist while they have members have nothing to create.
    fn prepare(&self, layout: Layout) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = layout;
        async { Ok(()) }
    }

    /// The node owning channel `c`.
    fn owner(&self, channel: usize) -> usize;

    /// The channel's ID in the system.
    fn channel_id(&self, channel: usize) -> String;

    /// Every server process: a label (`node 0`, `chat`, `broker` …) and
    /// its pid, for the CPU table.
    fn processes(&self) -> Vec<(String, u32)>;

    /// The pids of the WebSocket edge processes, whose memory the idle
    /// connections occupy: every process, unless the system has others.
    fn edge_pids(&self) -> Vec<u32> {
        self.processes().into_iter().map(|(_, pid)| pid).collect()
    }

    /// Opens receiver `index`'s connection, subscribed to `channel` on its
    /// owner node by the time this returns.
    fn open_receiver(
        &self,
        channel: usize,
        index: usize,
    ) -> impl Future<Output = anyhow::Result<Ws>> + Send;

    /// Opens sender `index`'s connection to `node`, ready to publish into
    /// every channel that node owns when this returns.
    fn open_sender(
        &self,
        node: usize,
        index: usize,
    ) -> impl Future<Output = anyhow::Result<Ws>> + Send;

    /// The frame sender `sender` sends to publish `body` into `channel`;
    /// `request` numbers the sender's frames, for systems that match
    /// acknowledgements to requests.
    fn publish(&self, sender: usize, channel: usize, body: &str, request: u64) -> String;

    /// What an incoming text frame is.
    fn classify(&self, frame: &str) -> Incoming;

    /// A frame every client sends every so often to keep its session,
    /// when the protocol leaves keep-alive to the client.
    fn keepalive(&self) -> Option<(Duration, String)>;

    /// Waits until the system stored the messages acknowledged with these
    /// `(channel ID, sequence)` pairs (the newest of each channel), and
    /// says whether it stores messages at all.
    fn wait_stored(
        &self,
        newest: &[(String, u64)],
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
}

/// Opens a client WebSocket with Nagle's algorithm off, as every system's
/// servers have it on their side, so small frames leave at once both ways.
pub(crate) async fn connect(
    url: &str,
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    tokio_tungstenite::connect_async_with_config(url, None, true).await
}
