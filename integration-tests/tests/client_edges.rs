//! What clients send at the edges of the protocol, through a real mesh:
//! tokens that are not valid yet or not tokens at all, header spellings,
//! channels that do not exist or whose IDs are path segments, bodies with
//! nothing visible in them, text frames that are not UTF-8, media types in
//! the wrong case, and replies that must echo the frame's `request_id`.

use std::net::SocketAddr;

use chatmesh_gateway::PinMode;
use chatmesh_gateway::ring::{DEFAULT_VNODES, Ring};
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, SANDBOX_SECRET, channel};
use chatmesh_integration_tests::{Sandbox, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::chat::v1::chat_service_client::ChatServiceClient;
use chatmesh_proto::common::v1::ModerationPolicy;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SANDBOX_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The HTTP status and error body of a history request with `auth` as the
/// whole Authorization header.
async fn history(gw: SocketAddr, channel: &str, auth: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(format!("http://{gw}/v1/channels/{channel}/messages"))
        .header("authorization", auth)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_refused_in_plain_words_and_the_scheme_is_case_insensitive() -> anyhow::Result<()>
{
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("tokens");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let token = dev_token(gw, "alice").await?;

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, body) = history(gw, &room, &format!("{scheme} {token}")).await?;
        assert_eq!(status, 200, "{scheme}: {body}");
    }

    let later = sign(json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600}));
    let unsigned =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-sandbox-secret"),
    )?;
    let no_sub = sign(json!({"exp": now() + 600}));
    let cases = [
        (later.as_str(), "not yet valid"),
        (unsigned, "unsupported algorithm"),
        (forged.as_str(), "bad signature"),
        ("garbage", "malformed"),
        (no_sub.as_str(), "missing claim sub"),
    ];
    for (bad, says) in cases {
        let (status, body) = history(gw, &room, &format!("Bearer {bad}")).await?;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
        assert!(message.contains(says), "{says}: {message}");
        for internal in ["variant", "Invalid", "Signature", "Base64", "Json"] {
            assert!(!message.contains(internal), "{message}");
        }
        let refused = Client::connect(gw, bad, None).await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("401")),
            "{says}"
        );
    }
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_channels_are_unknown_and_dot_segments_are_not_ids() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let token = dev_token(gw, "alice").await?;
    let missing = channel_id("missing");
    let http = reqwest::Client::new();
    for path in ["messages", "online"] {
        let response = http
            .get(format!("http://{gw}/v1/channels/{missing}/{path}"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("unknown_channel")),
            "{path}: {body}"
        );
    }
    // An outsider of a channel that exists is still told so.
    let room = channel_id("members");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["bob"]).await?;
    let (status, body) = history(gw, &room, &format!("Bearer {token}")).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("not_member"))
    );

    // `.` and `..` are refused as channel IDs wherever they could enter (an
    // HTTP client resolves them out of a path before it is sent).
    let mut chat = ChatServiceClient::new(channel(sb.chat.grpc));
    for dots in [".", ".."] {
        let created = chat
            .create_channel(chat::CreateChannelRequest {
                channel_id: dots.into(),
                name: String::new(),
                created_by: "alice".into(),
                moderation: ModerationPolicy::Reject as i32,
                ..Default::default()
            })
            .await;
        assert_eq!(
            created.map(drop).map_err(|s| s.code()),
            Err(tonic::Code::InvalidArgument),
            "{dots}"
        );
    }
    let mut alice = Client::connect(gw, &token, None).await?;
    for dots in [".", ".."] {
        alice
            .send(json!({"type": "subscribe", "request_id": dots, "channel_id": dots}))
            .await?;
        let err = alice.expect_error().await?;
        assert_eq!(
            (err["code"].as_str(), err["request_id"].as_str()),
            (Some("invalid_channel"), Some(dots))
        );
    }
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_get_their_request_id_back_and_bad_text_closes_with_1007() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("edges");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let token = dev_token(gw, "alice").await?;
    let mut alice = Client::connect(gw, &token, None).await?;

    // Nothing visible to show: refused like an empty body.
    for (i, invisible) in ["\u{202e}", "\u{200b}\u{2066}\u{feff}", " \u{2069} "]
        .into_iter()
        .enumerate()
    {
        let id = format!("invisible-{i}");
        alice
            .send(json!({"type": "send", "request_id": id, "channel_id": room, "body": invisible}))
            .await?;
        let err = alice.expect_error().await?;
        assert_eq!(
            (err["code"].as_str(), err["request_id"].as_str()),
            (Some("invalid_message"), Some(id.as_str())),
            "{err}"
        );
    }

    // A flood past the frame budget: every reply, pong or rate_limited,
    // names the frame it answers.
    for i in 0..60 {
        alice
            .send(json!({"type": "ping", "request_id": format!("p{i}")}))
            .await?;
    }
    let mut limited = 0;
    for i in 0..60 {
        let reply = alice.next().await?;
        assert_eq!(reply["request_id"], format!("p{i}"), "{reply}");
        if reply["type"] == "error" {
            assert_eq!(reply["code"], "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 15, "only {limited} of 60 frames were limited");

    // Media types are exact and lowercase.
    let response = reqwest::Client::new()
        .post(format!("http://{gw}/v1/channels/{room}/media"))
        .bearer_auth(&token)
        .json(&json!({"filename": "cat.png", "content_type": "IMAGE/PNG", "size": 10}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lowercase")),
        "{body}"
    );

    // A text frame that is not UTF-8 closes the connection with 1007.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{gw}/v1/ws?token={token}")).await?;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await?;
    let close = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => anyhow::bail!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1007));
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_owner_knows_unknown_channels_and_its_redirects_echo_the_request_id()
-> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        pin_mode: PinMode::Redirect,
        ..Options::default()
    })
    .await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let two = Ring::new(["gw-0", "gw-1"], DEFAULT_VNODES);
    let owned_by_gw1 = || {
        std::iter::repeat_with(|| channel_id("elsewhere"))
            .find(|c| two.owner(c) == Some("gw-1"))
            .unwrap()
    };
    let (room, missing) = (owned_by_gw1(), owned_by_gw1());
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice"]).await?;
    let token = dev_token(gw0, "alice").await?;
    let mut alice = Client::connect(gw0, &token, None).await?;
    // Once gw-0 sees both nodes, `room` is gw-1's and gw-0 redirects.
    wait::until(
        "gw-0 routes to gw-1",
        std::time::Duration::from_secs(10),
        || {
            let url = format!("http://{gw0}/v1/route/{room}");
            async move {
                let route: Value = reqwest::get(url).await?.json().await?;
                anyhow::ensure!(route["node"] == "gw-1", "{route}");
                Ok(())
            }
        },
    )
    .await?;

    alice
        .send(json!({"type": "subscribe", "request_id": "r1", "channel_id": room}))
        .await?;
    let redirect = alice.next().await?;
    assert_eq!(
        (
            redirect["type"].as_str(),
            redirect["request_id"].as_str(),
            redirect["url"].as_str()
        ),
        (
            Some("redirect"),
            Some("r1"),
            Some(format!("http://{gw1}").as_str())
        ),
        "{redirect}"
    );
    alice
        .send(json!({"type": "subscribe", "request_id": "r2", "channel_id": missing}))
        .await?;
    let err = alice.next().await?;
    assert_eq!(
        (err["code"].as_str(), err["request_id"].as_str()),
        (Some("unknown_channel"), Some("r2")),
        "{err}"
    );
    sb.stop().await
}
