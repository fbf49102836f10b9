//! The bench's channels and members, made through the chat service's gRPC
//! API, and the sends the bench makes straight to chat.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_integration_tests::fixtures::create_channel_at;
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use futures::StreamExt as _;

use crate::client::Fleet;

/// The user that owns every channel and sends into them.
pub(crate) const SENDER: &str = "edge-sender";
/// Membership writes in flight while the channels fill.
const JOIN_CONCURRENCY: usize = 32;

/// The bench's channels.
#[derive(Debug)]
pub(crate) struct Channels {
    /// Channels the idle and storm clients spread over; user `u{i}` is a
    /// member of `spread[i mod M]`.
    pub(crate) spread: Vec<String>,
    /// The one channel the fan-out clients share; users `u0..` are members.
    pub(crate) fanout: String,
}

/// Creates the channels, makes `spread_users` users members of the spread
/// channels and `fanout_users` of the fan-out channel, and sends one
/// message into each channel.
pub(crate) async fn channels(
    chat_addr: SocketAddr,
    spread_channels: usize,
    spread_users: usize,
    fanout_users: usize,
) -> anyhow::Result<Channels> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let spread: Vec<String> = (0..spread_channels)
        .map(|c| format!("edge-{run}-{c}"))
        .collect();
    let fanout = format!("edge-{run}-fanout");
    let start = Instant::now();
    for id in spread.iter().chain([&fanout]) {
        create_channel_at(chat_addr, id, ModerationPolicy::Reject, &[SENDER])
            .await
            .with_context(|| format!("creating {id}"))?;
    }
    let client = ChatServiceClient::new(channel(chat_addr));
    let joins = (0..spread_users)
        .map(|i| (format!("u{i}"), spread[i % spread.len()].clone()))
        .chain((0..fanout_users).map(|i| (format!("u{i}"), fanout.clone())));
    let mut joined = futures::stream::iter(joins)
        .map(|(user_id, channel_id)| {
            let mut client = client.clone();
            async move {
                client
                    .join_channel(chat::JoinChannelRequest {
                        channel_id: channel_id.clone(),
                        user_id: user_id.clone(),
                        public_only: false,
                    })
                    .await
                    .with_context(|| format!("{user_id} joining {channel_id}"))
            }
        })
        .buffer_unordered(JOIN_CONCURRENCY);
    while let Some(result) = joined.next().await {
        result?;
    }
    drop(joined);
    // A channel's first send takes its epoch; sending one before anyone
    // subscribes keeps every `seq` the clients see in that epoch.
    for id in spread.iter().chain(std::iter::once(&fanout)) {
        send(&client, id, "warm-up".into(), format!("{id}-warm-up"))
            .await
            .with_context(|| format!("first send into {id}"))?;
    }
    println!(
        "setup: {} channels, {} memberships, one message each, in {:.1}s",
        spread.len() + 1,
        spread_users + fanout_users,
        start.elapsed().as_secs_f64()
    );
    Ok(Channels { spread, fanout })
}

/// Sends `body` into `channel_id` as [`SENDER`]; answers the `seq` taken.
pub(crate) async fn send(
    client: &ChatServiceClient<tonic::transport::Channel>,
    channel_id: &str,
    body: String,
    idempotency_key: String,
) -> Result<u64, tonic::Status> {
    let response = client
        .clone()
        .send_message(chat::SendMessageRequest {
            channel_id: channel_id.to_owned(),
            sender_id: SENDER.to_owned(),
            body,
            idempotency_key,
            ..Default::default()
        })
        .await?
        .into_inner();
    response
        .message
        .map(|m| m.seq)
        .ok_or_else(|| tonic::Status::internal("send answered without a message"))
}

/// Sends one message into each of the fleet's channels and waits until
/// every client holds its channel's: frames reach a client in order, so
/// whatever the connection burst queued for it (presence events above
/// all) has been delivered by then, and the connections are idle.
/// Answers how long that took.
pub(crate) async fn drain_queues(
    chat_addr: SocketAddr,
    fleet: &Fleet,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let client = ChatServiceClient::new(channel(chat_addr));
    let mut marks = Vec::new();
    for id in &fleet.shared().channels {
        let key = format!("{id}-mark-{}", uuid::Uuid::new_v4().simple());
        marks.push(
            send(&client, id, "mark".into(), key)
                .await
                .with_context(|| format!("marking {id}"))?,
        );
    }
    fleet.retarget(&marks);
    while fleet.caught_up() < fleet.len() {
        anyhow::ensure!(
            start.elapsed() < deadline,
            "only {} of {} clients received their channel's mark within {deadline:?}",
            fleet.caught_up(),
            fleet.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(start.elapsed())
}
