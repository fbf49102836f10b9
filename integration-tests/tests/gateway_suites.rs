//! The gateway's port suites (`chatmesh_gateway::testsuite`) on its real
//! adapters: the Redis feed with the node's push reader, the gap source on
//! Redis and the storage service, and the chat service's gRPC client. The
//! in-memory ports pass the same suites in the gateway unit tests.
//!
//! What the adapters read is written by the other services' own code: the
//! chat service's sequencer and fan-out publish messages and void numbers,
//! the presence service's publisher announces joins, and sends through the
//! chat service's API fill storage. Every test uses channels of its own.

use std::time::Duration;

use chatmesh_chat::adapters::{RedisFanOut, RedisSequencer};
use chatmesh_chat::ports::{FanOut as _, Sequencer as _};
use chatmesh_gateway::testsuite::{
    ChatDirectory, ChatUnderTest, FeedUnderTest, GapWriter, GapsUnderTest, Publisher, SuiteResult,
};
use chatmesh_ids::{ChannelId, ChatMessage, UserId};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::{Options, channel as grpc_channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_presence::{EventKind, EventPublisher as _, PresenceEvent, RedisPublisher};
use chatmesh_proto::chat::v1 as chat_pb;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as presence;
use chatmesh_proto::storage::v1 as storage;
use chatmesh_proto::storage::v1::storage_service_client::StorageServiceClient;

/// Messages the recent windows written here keep: more than any test
/// writes.
const RECENT_KEPT: usize = 100;

fn redis_config(infra: &Infra) -> anyhow::Result<chatmesh_config::RedisConfig> {
    Ok(toml::from_str(&format!("nodes = {:?}", infra.redis_nodes))?)
}

/// A sandbox without gateways: the chat and storage services the adapters
/// call.
async fn sandbox() -> anyhow::Result<Sandbox> {
    Sandbox::start_ready(Options {
        gateways: 0,
        ..Options::default()
    })
    .await
}

// ------------------------------------------------------------------ feed

/// Publishes as the chat and presence services do.
struct ServicesPublish {
    sequencer: RedisSequencer,
    fanout: RedisFanOut,
    presence: RedisPublisher,
}

#[tonic::async_trait]
impl Publisher for ServicesPublish {
    async fn publish(&self, message: &ChatMessage) -> SuiteResult<()> {
        let seq = self.sequencer.next(&message.channel).await?;
        anyhow::ensure!(
            seq == message.seq,
            "the sequencer gave {seq} for message {}",
            message.seq
        );
        self.fanout.publish(message, None).await?;
        Ok(())
    }

    async fn announce(&self, event: &presence::PresenceEvent) -> SuiteResult<()> {
        let kind = match event.kind() {
            presence::presence_event::Kind::Join => EventKind::Join,
            presence::presence_event::Kind::Leave => EventKind::Leave,
            other => anyhow::bail!("no such event kind {other:?}"),
        };
        self.presence
            .publish(&PresenceEvent {
                kind,
                channel: ChannelId::new(event.channel_id.clone())?,
                user: UserId::new(event.user_id.clone())?,
                at_ms: u64::try_from(event.at_ms)?,
            })
            .await?;
        Ok(())
    }
}

async fn redis_feed() -> anyhow::Result<FeedUnderTest> {
    let infra = Infra::load()?;
    let redis = infra.redis()?;
    let publisher = ServicesPublish {
        sequencer: infra.sequencer().await?,
        fanout: RedisFanOut::new(redis.clone(), RECENT_KEPT),
        presence: RedisPublisher::new(redis),
    };
    FeedUnderTest::redis(&redis_config(&infra)?, publisher).await
}

chatmesh_gateway::feed_suite!(redis_feed().await?);

// ------------------------------------------------------------------ gaps

/// Writes the recent window and void numbers as the chat service does,
/// and fills storage through sends to a sandbox's chat service.
struct ServicesWrite {
    sequencer: RedisSequencer,
    fanout: RedisFanOut,
    sandbox: Sandbox,
}

#[tonic::async_trait]
impl GapWriter for ServicesWrite {
    async fn add_recent(&self, message: &ChatMessage) -> SuiteResult<()> {
        Ok(self.fanout.publish(message, None).await?)
    }

    async fn add_void(&self, channel: &ChannelId, seq: u64) -> SuiteResult<()> {
        while self.sequencer.next(channel).await? < seq {}
        Ok(self.sequencer.release(channel, seq).await?)
    }

    async fn store(
        &self,
        channel: &ChannelId,
        member: &UserId,
        count: u64,
    ) -> SuiteResult<Vec<ChatMessage>> {
        create_channel(
            &self.sandbox,
            channel.as_str(),
            ModerationPolicy::Reject,
            &[member.as_str()],
        )
        .await?;
        let mut chat = ChatServiceClient::new(grpc_channel(self.sandbox.chat.grpc));
        let mut sent = Vec::new();
        for i in 1..=count {
            let reply = chat
                .send_message(chat_pb::SendMessageRequest {
                    channel_id: channel.as_str().into(),
                    sender_id: member.as_str().into(),
                    body: format!("stored {i}"),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let message = reply
                .message
                .ok_or_else(|| anyhow::anyhow!("a send without its message"))?;
            sent.push(ChatMessage::try_from(message)?);
        }
        let history = StorageServiceClient::new(grpc_channel(self.sandbox.storage.grpc));
        wait::until("the last message stored", Duration::from_secs(60), || {
            let mut history = history.clone();
            async move {
                let page = history
                    .get_since(storage::GetSinceRequest {
                        channel_id: channel.as_str().into(),
                        user_id: member.as_str().into(),
                        after_seq: count - 1,
                        limit: 1,
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(!page.messages.is_empty(), "not yet");
                anyhow::Ok(())
            }
        })
        .await?;
        Ok(sent)
    }

    fn page_size(&self) -> usize {
        // The gateway asks for the storage service's default page.
        chatmesh_storage::history::DEFAULT_PAGE as usize
    }
}

async fn stored_gaps() -> anyhow::Result<GapsUnderTest> {
    let infra = Infra::load()?;
    let redis = infra.redis()?;
    let sandbox = sandbox().await?;
    let storage = grpc_channel(sandbox.storage.grpc);
    let writer = ServicesWrite {
        sequencer: infra.sequencer().await?,
        fanout: RedisFanOut::new(redis.clone(), RECENT_KEPT),
        sandbox,
    };
    Ok(GapsUnderTest::stored(redis, storage, writer))
}

chatmesh_gateway::gap_source_suite!(stored_gaps().await?);

// ------------------------------------------------------------------ chat

/// Channels made through a sandbox's chat service.
struct SandboxDirectory(Sandbox);

#[tonic::async_trait]
impl ChatDirectory for SandboxDirectory {
    async fn create_channel(&self, channel: &ChannelId, members: &[UserId]) -> SuiteResult<()> {
        let members: Vec<&str> = members.iter().map(UserId::as_str).collect();
        create_channel(
            &self.0,
            channel.as_str(),
            ModerationPolicy::Reject,
            &members,
        )
        .await
    }
}

async fn grpc_chat() -> anyhow::Result<ChatUnderTest> {
    let sandbox = sandbox().await?;
    let chat = grpc_channel(sandbox.chat.grpc);
    Ok(ChatUnderTest::grpc(chat, SandboxDirectory(sandbox)))
}

chatmesh_gateway::chat_api_suite!(grpc_chat().await?);
