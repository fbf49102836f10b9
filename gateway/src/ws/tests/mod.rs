//! The session's rules against in-memory ports: frame handling, sends,
//! subscribe and gap replay, shutdown and ring changes. No network.

use std::collections::HashMap;
use std::sync::Arc;

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::ChannelId;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::config::{GatewayLimits, PinMode};
use crate::memory::{
    LivenessEvent, MemoryChat, MemoryFeed, MemoryGaps, MemoryLiveness, MemoryReads, message, outbox,
};
use crate::ring::Ring;
use crate::ring::nodes::Routes;
use crate::ws::hub::Hub;
use crate::ws::outbound::Outgoing;
use crate::ws::replay::{MAX_REPLAY, STORAGE_CATCH_UP};
use crate::ws::session::{Placement, Session, SessionContext};

struct Harness {
    chat: Arc<MemoryChat>,
    feed: Arc<MemoryFeed>,
    gaps: Arc<MemoryGaps>,
    reads: Arc<MemoryReads>,
    liveness: Arc<MemoryLiveness>,
    hub: Hub,
    ctx: Arc<SessionContext>,
    routes: watch::Sender<Arc<Routes>>,
}

fn harness_with(chat: MemoryChat, limits: GatewayLimits, mode: PinMode) -> Harness {
    let chat = Arc::new(chat);
    let feed = Arc::new(MemoryFeed::default());
    let gaps = Arc::new(MemoryGaps::default());
    let liveness = Arc::new(MemoryLiveness::default());
    let reads = Arc::new(MemoryReads::default());
    let hub = Hub::with_gaps(
        feed.clone(),
        gaps.clone(),
        std::time::Duration::from_millis(500),
    );
    let (routes, routes_rx) = watch::channel(Arc::new(Routes::default()));
    let ctx = Arc::new(SessionContext {
        chat: chat.clone(),
        hub: hub.clone(),
        gaps: gaps.clone(),
        reads: reads.clone(),
        liveness: liveness.clone(),
        limits,
        placement: Placement {
            node_id: "gw-0".into(),
            mode,
            routes: routes_rx,
        },
    });
    Harness {
        chat,
        feed,
        gaps,
        reads,
        liveness,
        hub,
        ctx,
        routes,
    }
}

fn harness() -> Harness {
    let chat = MemoryChat::default()
        .with_channel("general", &["alice", "bob"])
        .with_channel("random", &["alice"])
        .with_channel("private", &["carol"]);
    harness_with(chat, GatewayLimits::default(), PinMode::Serve)
}

fn channel(name: &str) -> ChannelId {
    ChannelId::new(name).unwrap()
}

struct Client {
    session: Session,
    rx: mpsc::Receiver<Arc<Outgoing>>,
}

impl Client {
    fn open(h: &Harness, id: u64, user: &str) -> Self {
        let (outbox, rx) = outbox(64);
        let (session, _expired) = Session::open(
            h.ctx.clone(),
            id,
            chatmesh_ids::UserId::new(user).unwrap(),
            outbox,
        );
        Self { session, rx }
    }

    /// Hands the session a frame and lets every send it took be answered.
    async fn text(&mut self, frame: Value) {
        self.session.on_text(&frame.to_string()).await;
        self.session
            .settle_sends(std::time::Duration::from_secs(5))
            .await;
    }

    /// The next queued frame, as the client would read it.
    fn next(&mut self) -> Value {
        let out = self.rx.try_recv().expect("a frame was queued");
        serde_json::from_str(&out.json()).unwrap()
    }

    fn nothing_more(&mut self) {
        if let Ok(out) = self.rx.try_recv() {
            panic!("unexpected frame {}", out.json());
        }
    }

    async fn subscribe(&mut self, name: &str, last_seq: Option<u64>) -> Value {
        let mut frame =
            serde_json::json!({"type": "subscribe", "request_id": "s", "channel_id": name});
        if let Some(last) = last_seq {
            frame["last_seq"] = last.into();
        }
        self.text(frame).await;
        self.next()
    }
}

fn assert_error(frame: &Value, kind: ErrorKind) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], kind.client_code(), "{frame}");
    assert_eq!(frame["retryable"], kind.spec().retryable, "{frame}");
}

mod changes;
mod frames;
mod lifecycle;
mod reads;
mod replay;
mod send;
mod subscribe;
mod typing;
