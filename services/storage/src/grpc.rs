//! gRPC transport of the storage service: requests to domain types, and
//! results and errors back to the wire.

use chatmesh_ids::{ChannelId, UserId};
use chatmesh_proto::common::v1::Message;
use chatmesh_proto::storage::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::StorageError;
use crate::history::{History, page_of};
use crate::members::Members;
use crate::store::{HistoryPage, MessageStore};

/// The storage service's gRPC front.
#[derive(Debug)]
pub(crate) struct StorageGrpc<S, M> {
    history: History<S, M>,
}

impl<S, M> StorageGrpc<S, M> {
    pub(crate) fn new(history: History<S, M>) -> Self {
        Self { history }
    }
}

fn ids(channel: String, user: String) -> Result<(ChannelId, UserId), StorageError> {
    let channel = ChannelId::new(channel).map_err(StorageError::InvalidChannel)?;
    let user = UserId::new(user).map_err(StorageError::InvalidUser)?;
    Ok((channel, user))
}

fn wire(page: HistoryPage) -> (Vec<Message>, bool) {
    (
        page.messages.into_iter().map(Message::from).collect(),
        page.more,
    )
}

#[tonic::async_trait]
impl<S, M> pb::storage_service_server::StorageService for StorageGrpc<S, M>
where
    S: MessageStore + 'static,
    M: Members + 'static,
{
    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let page = page_of(req.before, req.after)?;
        let (channel, user) = ids(req.channel_id, req.user_id)?;
        let (messages, has_more) = wire(self.history.page(&channel, &user, page, req.limit).await?);
        Ok(Response::new(pb::GetHistoryResponse { messages, has_more }))
    }

    async fn get_since(
        &self,
        request: Request<pb::GetSinceRequest>,
    ) -> Result<Response<pb::GetSinceResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = ids(req.channel_id, req.user_id)?;
        let (messages, truncated) = wire(
            self.history
                .since(&channel, &user, req.after_seq, req.limit)
                .await?,
        );
        Ok(Response::new(pb::GetSinceResponse {
            messages,
            truncated,
        }))
    }

    async fn get_thread(
        &self,
        request: Request<pb::GetThreadRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let page = page_of(req.before, req.after)?;
        let (channel, user) = ids(req.channel_id, req.user_id)?;
        let read = self
            .history
            .thread(&channel, &user, req.root_seq, page, req.limit);
        let (messages, has_more) = wire(read.await?);
        Ok(Response::new(pb::GetHistoryResponse { messages, has_more }))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let req = request.into_inner();
        let channel = ChannelId::new(req.channel_id).map_err(StorageError::InvalidChannel)?;
        let message = self.history.message(&channel, req.seq).await?;
        Ok(Response::new(pb::GetMessageResponse {
            message: Some(Message::from(message)),
        }))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = ids(req.channel_id, req.user_id)?;
        let seq = self.history.mark_read(&channel, &user, req.seq).await?;
        Ok(Response::new(pb::MarkReadResponse { seq }))
    }

    async fn get_read_positions(
        &self,
        request: Request<pb::GetReadPositionsRequest>,
    ) -> Result<Response<pb::GetReadPositionsResponse>, Status> {
        let req = request.into_inner();
        let (channel, user) = ids(req.channel_id, req.user_id)?;
        let positions = self
            .history
            .read_positions(&channel, &user)
            .await?
            .into_iter()
            .map(|p| pb::ReadPosition {
                user_id: p.user.into(),
                seq: p.seq,
                updated_at_ms: p.updated_at_ms,
            })
            .collect();
        Ok(Response::new(pb::GetReadPositionsResponse { positions }))
    }

    async fn get_unread(
        &self,
        request: Request<pb::GetUnreadRequest>,
    ) -> Result<Response<pb::GetUnreadResponse>, Status> {
        let req = request.into_inner();
        let user = UserId::new(req.user_id).map_err(StorageError::InvalidUser)?;
        let requested = req
            .channel_ids
            .into_iter()
            .map(ChannelId::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StorageError::InvalidChannel)?;
        let channels: Vec<pb::ChannelUnread> = self
            .history
            .unread(&user, &requested)
            .await?
            .into_iter()
            .map(|u| pb::ChannelUnread {
                channel_id: u.channel.into(),
                read_seq: u.read_seq,
                last_seq: u.last_seq,
                unread: u.unread,
                mentions: u.mentions,
            })
            .collect();
        Ok(Response::new(pb::GetUnreadResponse {
            total: channels.iter().map(|c| c.unread).sum(),
            total_mentions: channels.iter().map(|c| c.mentions).sum(),
            channels,
        }))
    }

    async fn list_mentions(
        &self,
        request: Request<pb::ListMentionsRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let user = UserId::new(req.user_id).map_err(StorageError::InvalidUser)?;
        let channel = Some(req.channel_id)
            .filter(|c| !c.is_empty())
            .map(ChannelId::new)
            .transpose()
            .map_err(StorageError::InvalidChannel)?;
        let read = self
            .history
            .mentions(&user, channel.as_ref(), req.before, req.limit);
        let (messages, has_more) = wire(read.await?);
        Ok(Response::new(pb::GetHistoryResponse { messages, has_more }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chatmesh_error::{ClientError, ErrorKind};
    use pb::storage_service_server::StorageService as _;
    use tonic::Code;

    use chatmesh_ids::{Change, ChatMessage};

    use super::*;
    use crate::members::MemoryMembers;
    use crate::store::MemoryStore;
    use crate::testsuite::{message, unique_channel};

    fn grpc() -> (
        StorageGrpc<Arc<MemoryStore>, MemoryMembers>,
        Arc<MemoryStore>,
        ChannelId,
    ) {
        let store = Arc::new(MemoryStore::with_shards(2));
        let channel = unique_channel("grpc");
        let members = MemoryMembers::new();
        members.add(&channel, &UserId::new("bob").unwrap());
        let grpc = StorageGrpc::new(History::new(store.clone(), members, 100));
        (grpc, store, channel)
    }

    fn history(channel: &ChannelId, user: &str) -> pb::GetHistoryRequest {
        pb::GetHistoryRequest {
            channel_id: channel.as_str().into(),
            user_id: user.into(),
            before: None,
            after: None,
            limit: 10,
        }
    }

    #[tokio::test]
    async fn history_goes_out_in_wire_form() {
        let (grpc, store, channel) = grpc();
        let stored: Vec<_> = (1..=3).map(|seq| message(&channel, seq)).collect();
        store
            .insert(store.shard_of(&channel), &stored)
            .await
            .unwrap();
        let page = grpc
            .get_history(Request::new(history(&channel, "bob")))
            .await
            .unwrap()
            .into_inner();
        let expected: Vec<Message> = stored.into_iter().map(Message::from).collect();
        assert_eq!((page.messages, page.has_more), (expected, false));
    }

    #[tokio::test]
    async fn a_message_goes_out_by_number_and_a_missing_one_is_not_found() {
        let (grpc, store, channel) = grpc();
        let post = message(&channel, 1);
        let reaction = ChatMessage {
            change: Change::React {
                target: 1,
                emoji: "👍".into(),
            },
            ..message(&channel, 2)
        };
        store
            .insert(store.shard_of(&channel), &[post.clone(), reaction])
            .await
            .unwrap();
        let get = |seq| pb::GetMessageRequest {
            channel_id: channel.as_str().into(),
            seq,
        };
        let found = grpc.get_message(Request::new(get(1))).await.unwrap();
        let found = found.into_inner().message.unwrap();
        assert_eq!((found.message_id, found.body), (post.id.get(), post.body));
        assert_eq!((found.version, found.reactions.len()), (2, 1));
        for seq in [2, 3] {
            let status = grpc.get_message(Request::new(get(seq))).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "seq {seq}");
        }
        let bad = pb::GetMessageRequest {
            channel_id: "no spaces".into(),
            seq: 1,
        };
        let status = grpc.get_message(Request::new(bad)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = grpc
            .get_message(Request::new(get(u64::MAX)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn history_marks_the_callers_own_reactions() {
        let (grpc, store, channel) = grpc();
        let reaction = |seq, sender: &str| ChatMessage {
            sender: UserId::new(sender).unwrap(),
            change: Change::React {
                target: 1,
                emoji: "👍".into(),
            },
            ..message(&channel, seq)
        };
        let events = [
            message(&channel, 1),
            reaction(2, "bob"),
            reaction(3, "carol"),
        ];
        store
            .insert(store.shard_of(&channel), &events)
            .await
            .unwrap();
        let page = grpc
            .get_history(Request::new(history(&channel, "bob")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.messages.len(), 1);
        let counts: Vec<_> = page.messages[0]
            .reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.count, r.me))
            .collect();
        assert_eq!(counts, vec![("👍", 2, true)]);
        let since = pb::GetSinceRequest {
            channel_id: channel.as_str().into(),
            user_id: "bob".into(),
            after_seq: 0,
            limit: 10,
        };
        let since = grpc.get_since(Request::new(since)).await.unwrap();
        let since = since.into_inner();
        assert_eq!(since.messages.len(), 3);
        assert!(since.messages[0].reactions[0].me);
    }

    #[tokio::test]
    async fn a_shard_outage_reaches_the_client_as_a_generic_unavailable() {
        let (grpc, store, channel) = grpc();
        store.set_down(store.shard_of(&channel), true);
        let status = grpc
            .get_history(Request::new(history(&channel, "bob")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("shard"), "{}", status.message());
        assert_eq!(
            ClientError::from_status(&status),
            ClientError::generic(ErrorKind::Unavailable)
        );
    }

    #[tokio::test]
    async fn bad_requests_keep_their_codes_and_explanations() {
        let (grpc, _, channel) = grpc();
        let bad_channel = pb::GetHistoryRequest {
            channel_id: "no spaces".into(),
            ..history(&channel, "bob")
        };
        let status = grpc
            .get_history(Request::new(bad_channel))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("channel_id"),
            "{}",
            status.message()
        );

        let both = pb::GetHistoryRequest {
            before: Some(1),
            after: Some(2),
            ..history(&channel, "bob")
        };
        let status = grpc.get_history(Request::new(both)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("not both"),
            "{}",
            status.message()
        );

        let stranger = grpc
            .get_history(Request::new(history(&channel, "mallory")))
            .await
            .unwrap_err();
        assert_eq!(stranger.code(), Code::PermissionDenied);

        let since = pb::GetSinceRequest {
            channel_id: channel.as_str().into(),
            user_id: "bob".into(),
            after_seq: u64::MAX,
            limit: 0,
        };
        let status = grpc.get_since(Request::new(since)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
