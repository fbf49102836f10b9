//! The Protobuf form of the client protocol over a real gateway: a client
//! that asks for the `chatmesh.v1.proto` subprotocol subscribes, sends and
//! receives in binary frames, while a JSON client in the same channel sees
//! the same messages as text.

use anyhow::Context as _;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::Options;
use chatmesh_integration_tests::{Sandbox, logs};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::gateway::v1 as pb;
use chatmesh_proto::gateway::v1::client_frame::Frame as In;
use chatmesh_proto::gateway::v1::server_frame::Frame as Out;
use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Socket, request_id: &str, frame: In) -> anyhow::Result<()> {
    let bytes = pb::ClientFrame {
        request_id: request_id.into(),
        frame: Some(frame),
    }
    .encode_to_vec();
    ws.send(Message::Binary(bytes.into())).await?;
    Ok(())
}

async fn next(ws: &mut Socket) -> anyhow::Result<pb::ServerFrame> {
    loop {
        let msg =
            tokio::time::timeout(chatmesh_integration_tests::client::FRAME_TIMEOUT, ws.next())
                .await
                .context("timed out waiting for a frame")?
                .context("connection closed")??;
        match msg {
            Message::Binary(bytes) => return Ok(pb::ServerFrame::decode(bytes.as_ref())?),
            Message::Text(text) => anyhow::bail!("a text frame on a binary connection: {text}"),
            _ => {}
        }
    }
}

/// The next frame that is not a presence event.
async fn next_frame(ws: &mut Socket) -> anyhow::Result<pb::ServerFrame> {
    loop {
        let frame = next(ws).await?;
        if !matches!(frame.frame, Some(Out::Presence(_))) {
            return Ok(frame);
        }
    }
}

#[tokio::test]
async fn a_binary_client_speaks_protobuf_end_to_end() -> anyhow::Result<()> {
    logs();
    let sandbox = Sandbox::start_ready(Options {
        gateways: 1,
        ..Default::default()
    })
    .await?;
    let gateway = sandbox.gateways[0];
    let room = channel_id("binary");
    create_channel(&sandbox, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;

    let token = dev_token(gateway, "alice").await?;
    let mut request = format!("ws://{gateway}/v1/ws?token={token}").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chatmesh.v1.proto".parse()?);
    let (mut alice, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "chatmesh.v1.proto"
    );
    let mut bob = Client::connect(gateway, &dev_token(gateway, "bob").await?, None).await?;
    bob.subscribe(&room).await?;

    send(
        &mut alice,
        "s1",
        In::Subscribe(pb::Subscribe {
            channel_id: room.clone(),
            last_seq: None,
        }),
    )
    .await?;
    let frame = next_frame(&mut alice).await?;
    assert_eq!(frame.request_id, "s1");
    assert!(
        matches!(frame.frame, Some(Out::Subscribed(ref s)) if s.channel_id == room),
        "{frame:?}"
    );

    send(
        &mut alice,
        "m1",
        In::Send(pb::Send {
            channel_id: room.clone(),
            body: "hello in binary".into(),
            ..Default::default()
        }),
    )
    .await?;
    let mut ack = None;
    let mut message = None;
    while ack.is_none() || message.is_none() {
        let frame = next_frame(&mut alice).await?;
        match frame.frame {
            Some(Out::SendAck(a)) => {
                assert_eq!(frame.request_id, "m1");
                ack = Some(a);
            }
            Some(Out::Message(m)) => message = Some(m),
            other => anyhow::bail!("unexpected frame {other:?}"),
        }
    }
    let (ack, message) = (ack.unwrap(), message.unwrap());
    assert_eq!(message.body, "hello in binary");
    assert_eq!(message.message_id, ack.message_id);
    assert_eq!(message.seq, ack.seq);

    // The JSON client got the same message, as text.
    let text = bob.expect("message").await?;
    assert_eq!(text["message_id"], ack.message_id.to_string());
    assert_eq!(text["body"], "hello in binary");

    // Errors come back in binary too, with the table's codes.
    send(
        &mut alice,
        "bad",
        In::Subscribe(pb::Subscribe {
            channel_id: "no spaces".into(),
            last_seq: None,
        }),
    )
    .await?;
    let frame = next_frame(&mut alice).await?;
    assert_eq!(frame.request_id, "bad");
    match frame.frame {
        Some(Out::Error(e)) => {
            assert_eq!(e.code, "invalid_channel");
            assert!(!e.retryable);
        }
        other => anyhow::bail!("expected an error, got {other:?}"),
    }
    alice.send(Message::Binary(vec![0xff, 0x01].into())).await?;
    match next_frame(&mut alice).await?.frame {
        Some(Out::Error(e)) => assert_eq!(e.code, "malformed_frame"),
        other => anyhow::bail!("expected an error, got {other:?}"),
    }
    sandbox.stop().await
}
