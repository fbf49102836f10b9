//! Every error kind travels from a service's gRPC status through a real
//! gateway to WebSocket and HTTP clients, and each client sees the code,
//! status and retryability the error table gives it. Statuses that do not
//! come from a chatmesh service (transport failures and the like) reach
//! clients with the table's generic text, never their own.
//!
//! The chat and storage services here are small gRPC servers that answer
//! each request with the error its body names, so that every kind, even
//! those real services raise only on rare faults, is exercised; the
//! gateway, Redis and the connections are real.

use std::net::SocketAddr;

use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::{Infra, logs, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_server::{ChatService, ChatServiceServer};
use chatmesh_proto::storage::v1 as storage;
use chatmesh_proto::storage::v1::storage_service_server::{StorageService, StorageServiceServer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Text a foreign status carries that no client may see.
const LEAK: &str = "connection refused by 10.1.2.3:6379: ERR syntax error near SELECT";

/// The status a stub answers for `name`: the kind whose client code it
/// is, or a foreign status carrying internal details.
fn status_for(name: &str) -> Status {
    match ErrorKind::from_client_code(&name.replace('.', "_")) {
        Some(kind) => ClientError::new(kind, format!("because {}", kind.client_code())).to_status(),
        None => Status::unavailable(LEAK),
    }
}

struct StubChat;

#[tonic::async_trait]
impl ChatService for StubChat {
    async fn send_message(
        &self,
        request: Request<chat::SendMessageRequest>,
    ) -> Result<Response<chat::SendMessageResponse>, Status> {
        Err(status_for(&request.into_inner().body))
    }
    async fn create_channel(
        &self,
        _: Request<chat::CreateChannelRequest>,
    ) -> Result<Response<chat::CreateChannelResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_channel(
        &self,
        _: Request<chat::GetChannelRequest>,
    ) -> Result<Response<chat::GetChannelResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn join_channel(
        &self,
        _: Request<chat::JoinChannelRequest>,
    ) -> Result<Response<chat::JoinChannelResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn leave_channel(
        &self,
        _: Request<chat::LeaveChannelRequest>,
    ) -> Result<Response<chat::LeaveChannelResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn list_user_channels(
        &self,
        _: Request<chat::ListUserChannelsRequest>,
    ) -> Result<Response<chat::ListUserChannelsResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn check_membership(
        &self,
        _: Request<chat::CheckMembershipRequest>,
    ) -> Result<Response<chat::CheckMembershipResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn list_public_channels(
        &self,
        _: Request<chat::ListPublicChannelsRequest>,
    ) -> Result<Response<chat::ListPublicChannelsResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn list_members(
        &self,
        _: Request<chat::ListMembersRequest>,
    ) -> Result<Response<chat::ListMembersResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn add_member(
        &self,
        _: Request<chat::AddMemberRequest>,
    ) -> Result<Response<chat::AddMemberResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn remove_member(
        &self,
        _: Request<chat::RemoveMemberRequest>,
    ) -> Result<Response<chat::RemoveMemberResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn edit_message(
        &self,
        _: Request<chat::EditMessageRequest>,
    ) -> Result<Response<chat::ChangeMessageResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn delete_message(
        &self,
        _: Request<chat::DeleteMessageRequest>,
    ) -> Result<Response<chat::ChangeMessageResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn react(
        &self,
        _: Request<chat::ReactRequest>,
    ) -> Result<Response<chat::ChangeMessageResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
}

struct StubStorage;

#[tonic::async_trait]
impl StorageService for StubStorage {
    async fn get_history(
        &self,
        request: Request<storage::GetHistoryRequest>,
    ) -> Result<Response<storage::GetHistoryResponse>, Status> {
        Err(status_for(&request.into_inner().channel_id))
    }
    async fn get_since(
        &self,
        _: Request<storage::GetSinceRequest>,
    ) -> Result<Response<storage::GetSinceResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_message(
        &self,
        _: Request<storage::GetMessageRequest>,
    ) -> Result<Response<storage::GetMessageResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_thread(
        &self,
        _: Request<storage::GetThreadRequest>,
    ) -> Result<Response<storage::GetHistoryResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn mark_read(
        &self,
        _: Request<storage::MarkReadRequest>,
    ) -> Result<Response<storage::MarkReadResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_read_positions(
        &self,
        _: Request<storage::GetReadPositionsRequest>,
    ) -> Result<Response<storage::GetReadPositionsResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn get_unread(
        &self,
        _: Request<storage::GetUnreadRequest>,
    ) -> Result<Response<storage::GetUnreadResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
    async fn list_mentions(
        &self,
        _: Request<storage::ListMentionsRequest>,
    ) -> Result<Response<storage::GetHistoryResponse>, Status> {
        Err(Status::unimplemented("stub"))
    }
}

async fn serve_stubs(shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ChatServiceServer::new(StubChat))
            .add_service(StorageServiceServer::new(StubStorage))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown.cancelled_owned(),
            ),
    );
    Ok(addr)
}

async fn start_gateway(
    infra: &Infra,
    stubs: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let config: chatmesh_gateway::GatewayConfig = toml::from_str(&format!(
        "node_id = \"gw-0\"\nhttp_addr = \"{addr}\"\npublic_url = \"http://{addr}\"\n{}\
         [services]\nchat = \"http://{stubs}\"\npresence = \"http://{stubs}\"\n\
         storage = \"http://{stubs}\"\nmedia = \"http://{stubs}\"\n\
         [auth]\nhs256_secret = \"error-table-secret-0123456789\"\ndev_tokens = true\n\
         [routing]\ncluster = \"errors-{run}\"\nmode = \"serve\"\n\
         [limits]\nframes_per_second = 1000\nframe_burst = 1000\n",
        infra.redis_toml()
    ))?;
    tokio::spawn(chatmesh_gateway::serve(config, listener, shutdown));
    wait::until(
        "gateway answering",
        std::time::Duration::from_secs(30),
        || async move {
            reqwest::get(format!("http://{addr}/livez"))
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        },
    )
    .await?;
    Ok(addr)
}

#[tokio::test]
async fn every_error_kind_reaches_websocket_and_http_clients_as_the_table_says()
-> anyhow::Result<()> {
    logs();
    let infra = Infra::load()?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let stubs = serve_stubs(shutdown.clone()).await?;
    let gateway = start_gateway(&infra, stubs, shutdown.clone()).await?;
    let token = dev_token(gateway, "alice").await?;
    let mut ws = Client::connect(gateway, &token, None).await?;
    let http = reqwest::Client::new();

    for kind in ErrorKind::ALL {
        let spec = kind.spec();
        let code = spec.client_code;
        // WebSocket: a send the chat service refuses with this kind.
        ws.send(json!({"type": "send", "request_id": code, "channel_id": "general", "body": code}))
            .await?;
        let frame = ws.expect_error().await?;
        assert_eq!(frame["request_id"], code, "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
        assert_eq!(frame["retryable"], spec.retryable, "{code}: {frame}");
        assert_eq!(frame["message"], format!("because {code}"), "{frame}");

        // HTTP: a history read the storage service refuses with this kind.
        let channel = code.replace('_', ".");
        let response = http
            .get(format!("http://{gateway}/v1/channels/{channel}/messages"))
            .bearer_auth(&token)
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), spec.http, "{code}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["retryable"], spec.retryable, "{body}");
        assert_eq!(
            body["error"]["message"],
            format!("because {code}"),
            "{body}"
        );
    }

    // A status from outside chatmesh keeps its code's meaning and loses its
    // text: no address, SQL or Redis reply reaches either client.
    ws.send(json!({"type": "send", "channel_id": "general", "body": "foreign"}))
        .await?;
    let frame = ws.expect_error().await?;
    assert_eq!(frame["code"], "unavailable", "{frame}");
    assert_eq!(frame["retryable"], true);
    let response = http
        .get(format!("http://{gateway}/v1/channels/foreign/messages"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await?;
    for text in [frame.to_string(), body] {
        for secret in ["10.1.2.3", "6379", "ERR", "SELECT"] {
            assert!(
                !text.contains(secret),
                "{secret} leaked to a client: {text}"
            );
        }
    }
    Ok(())
}
