//! Stored history: every acknowledged message lands once on its channel's
//! shard, and pages in either direction neither overlap nor skip, with the
//! page size capped and members only.

use std::time::Duration;

use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::storage::v1 as storage;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn history(
    channel_id: &str,
    user: &str,
    before: Option<u64>,
    after: Option<u64>,
    limit: u32,
) -> storage::GetHistoryRequest {
    storage::GetHistoryRequest {
        channel_id: channel_id.into(),
        user_id: user.into(),
        before,
        after,
        limit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_are_stored_once_and_paged_cleanly() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let sb = Sandbox::start_ready(Options {
        gateways: 0,
        ..Options::default()
    })
    .await?;
    let room = channel_id("history");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;

    let mut chat = chat::chat_service_client::ChatServiceClient::new(channel(sb.chat.grpc));
    let mut acked = Vec::new();
    for i in 0..120 {
        let sent = chat
            .send_message(chat::SendMessageRequest {
                channel_id: room.clone(),
                sender_id: "alice".into(),
                body: format!("message {i}"),
                idempotency_key: format!("k{i}"),
                ..Default::default()
            })
            .await?
            .into_inner();
        acked.push(sent.message.expect("message").message_id);
    }
    // A retried send is not stored twice.
    let again = chat
        .send_message(chat::SendMessageRequest {
            channel_id: room.clone(),
            sender_id: "alice".into(),
            body: "message 7".into(),
            idempotency_key: "k7".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(again.duplicate);

    let mut history_client =
        storage::storage_service_client::StorageServiceClient::new(channel(sb.storage.grpc));
    let last = *acked.last().unwrap();
    wait::until("the newest message stored", Duration::from_secs(60), || {
        let mut client = history_client.clone();
        let room = room.clone();
        async move {
            let r = client
                .get_history(history(&room, "bob", None, None, 1))
                .await?
                .into_inner();
            let newest = <[_]>::first(&r.messages).map(|m| m.message_id);
            anyhow::ensure!(newest == Some(last), "newest stored is {newest:?}");
            Ok(())
        }
    })
    .await?;

    // Gap filling by sequence: capped pages, `truncated` until the end.
    let since = |after_seq| storage::GetSinceRequest {
        channel_id: room.clone(),
        user_id: "bob".into(),
        after_seq,
        limit: 500,
    };
    let first = history_client.get_since(since(0)).await?.into_inner();
    assert_eq!((first.messages.len(), first.truncated), (100, true));
    let rest = history_client
        .get_since(since(first.messages[99].seq))
        .await?
        .into_inner();
    assert_eq!((rest.messages.len(), rest.truncated), (20, false));
    let all: Vec<_> = first.messages.iter().chain(&rest.messages).collect();
    assert_eq!(all.iter().map(|m| m.message_id).collect::<Vec<_>>(), acked);
    assert!(
        all.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "dense sequence"
    );

    // Backwards from the newest: 50, 50, 20, no overlap or gap.
    let mut pages = Vec::new();
    let mut backward: Vec<u64> = Vec::new();
    let mut before = None;
    loop {
        let r = history_client
            .get_history(history(&room, "bob", before, None, 50))
            .await?
            .into_inner();
        assert!(
            r.messages
                .windows(2)
                .all(|w| w[0].message_id < w[1].message_id),
            "pages are oldest first"
        );
        before = <[_]>::first(&r.messages).map(|m| m.message_id);
        pages.push(r.messages.len());
        let page: Vec<u64> = r.messages.iter().map(|m| m.message_id).collect();
        backward.splice(0..0, page);
        if !r.has_more {
            break;
        }
    }
    assert_eq!(pages, vec![50, 50, 20]);
    assert_eq!(backward, acked, "backward pages cover every message once");

    // Forwards from the start, with a page size over the cap (100).
    let mut forward = Vec::new();
    let mut after = Some(0);
    loop {
        let r = history_client
            .get_history(history(&room, "bob", None, after, 1000))
            .await?
            .into_inner();
        assert!(
            r.messages.len() <= 100,
            "page of {} over the cap",
            r.messages.len()
        );
        after = <[_]>::last(&r.messages).map(|m| m.message_id);
        forward.extend(r.messages.iter().map(|m| m.message_id));
        if !r.has_more {
            break;
        }
    }
    assert_eq!(
        forward, acked,
        "forward pages cover every message once, in order"
    );

    let denied = history_client
        .get_history(history(&room, "mallory", None, None, 10))
        .await
        .expect_err("non-member read history");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // Every row sits on the channel's own shard and nowhere else.
    let buckets = 256;
    let bucket = chatmesh_db::bucket_of(&chatmesh_ids::ChannelId::new(room.as_str())?, buckets);
    let n = infra.shard_urls.len() as u32;
    let home = (0..n)
        .find(|i| (buckets * i / n..buckets * (i + 1) / n).contains(&bucket))
        .unwrap() as usize;
    for (i, url) in infra.shard_urls.iter().enumerate() {
        let mut conn = AsyncPgConnection::establish(url).await?;
        let count: Count =
            diesel::sql_query("SELECT count(*) AS n FROM messages WHERE channel_id = $1")
                .bind::<diesel::sql_types::Text, _>(&room)
                .get_result(&mut conn)
                .await?;
        assert_eq!(
            count.n,
            if i == home { 120 } else { 0 },
            "shard {i} ({url})"
        );
    }
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_history_for_members_only() -> anyhow::Result<()> {
    use chatmesh_integration_tests::client::{Client, dev_token};
    use serde_json::{Value, json};

    let sb = Sandbox::start_ready(Options::default()).await?;
    let gw = sb.gateways[0];
    let room = channel_id("http-history");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["alice", "bob"]).await?;
    let alice_token = dev_token(gw, "alice").await?;
    let mut alice = Client::connect(gw, &alice_token, None).await?;
    let mut ids = Vec::new();
    for i in 0..3 {
        alice
            .send(json!({"type": "send", "channel_id": room, "body": format!("h{i}")}))
            .await?;
        ids.push(
            alice.expect("ack").await?["message_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let http = reqwest::Client::new();
    let url = format!("http://{gw}/v1/channels/{room}/messages");
    let bob = dev_token(gw, "bob").await?;
    let page: Value = wait::until("history over HTTP", Duration::from_secs(30), || {
        let (http, url, bob) = (http.clone(), url.clone(), bob.clone());
        async move {
            let page: Value = http
                .get(&url)
                .bearer_auth(&bob)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::ensure!(
                page["messages"].as_array().map(Vec::len) == Some(3),
                "{page}"
            );
            Ok(page)
        }
    })
    .await?;
    let got: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert_eq!(page["has_more"], false);

    let older: Value = http
        .get(format!("{url}?before={}&limit=1", ids[2]))
        .bearer_auth(&bob)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(older["messages"][0]["message_id"], ids[1].as_str());
    assert_eq!(older["has_more"], true);

    let stranger = dev_token(gw, "mallory").await?;
    assert_eq!(
        http.get(&url).bearer_auth(&stranger).send().await?.status(),
        403
    );
    assert_eq!(http.get(&url).send().await?.status(), 401);
    assert_eq!(
        http.get(format!("{url}?before=nope"))
            .bearer_auth(&bob)
            .send()
            .await?
            .status(),
        400
    );
    sb.stop().await
}
