//! Presence on the real Redis Cluster: heartbeats keep sessions online,
//! silent sessions are closed by expiry events from whichever master holds
//! their key, and channel members see each other join and leave.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use chatmesh_redis::{key_slot, keys};
use serde_json::{Value, json};

const TTL: Duration = Duration::from_secs(2);

fn presence(sb: &Sandbox) -> PresenceServiceClient<tonic::transport::Channel> {
    PresenceServiceClient::new(channel(sb.presence.grpc))
}

async fn status(sb: &Sandbox, user: &str) -> anyhow::Result<pb::UserPresence> {
    presence(sb)
        .get_presence(pb::GetPresenceRequest {
            user_ids: vec![user.to_owned()],
        })
        .await?
        .into_inner()
        .users
        .pop()
        .context("no status returned")
}

async fn online(sb: &Sandbox, room: &str) -> anyhow::Result<Vec<String>> {
    Ok(presence(sb)
        .list_online(pb::ListOnlineRequest {
            channel_id: room.to_owned(),
        })
        .await?
        .into_inner()
        .user_ids)
}

async fn ping(client: &mut Client) -> anyhow::Result<()> {
    client.send(json!({ "type": "ping" })).await?;
    client.expect("pong").await?;
    Ok(())
}

/// The next presence frame, skipping anything else.
async fn presence_event(client: &mut Client) -> anyhow::Result<(String, String)> {
    let frame: Value = client.expect("presence").await?;
    Ok((
        frame["event"].as_str().unwrap_or_default().to_owned(),
        frame["user_id"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn short_ttl(sweep: Duration) -> Options {
    Options {
        gateway_presence: chatmesh_gateway::PresenceSettings {
            session_ttl: TTL,
            flush_interval: Duration::from_millis(100),
            sweep_interval: sweep,
            topology_refresh: Duration::from_secs(1),
        },
        presence: chatmesh_presence::PresenceSettings {
            instance_refresh: Duration::from_millis(100),
            instance_ttl: Duration::from_secs(1),
            sweep_interval: Duration::from_millis(500),
            ..Default::default()
        },
        gateways: 1,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_client_is_closed_by_its_keys_master_and_shown_offline() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let masters = infra.redis_masters().await?;
    assert_eq!(masters.len(), 3);

    // One user whose session keys live on each master.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let users: Vec<(String, String)> = masters
        .iter()
        .map(|m| {
            let user = (0..)
                .map(|i| format!("quiet-{run}-{i}"))
                .find(|u| m.owns(key_slot(keys::session(u, "s").as_bytes())))
                .expect("some user maps to every master");
            (user, m.addr.clone())
        })
        .collect();

    // The sweep is off, so only expiry events can close these sessions.
    let sb = Sandbox::start_ready(short_ttl(Duration::from_secs(3600))).await?;
    let gw = sb.gateways[0];
    let room = channel_id("quiet");
    let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
    create_channel(&sb, &room, ModerationPolicy::Reject, &names).await?;

    let mut checks = Vec::new();
    for (user, addr) in users {
        let sb_presence = sb.presence.grpc;
        let room = room.clone();
        let token = dev_token(gw, &user).await?;
        checks.push(tokio::spawn(async move {
            let mut client = Client::connect(gw, &token, None).await?;
            client.subscribe(&room).await?;
            ping(&mut client).await?;
            let mut api = PresenceServiceClient::new(channel(sb_presence));
            let user_ids = vec![user.clone()];
            wait::until(&format!("{user} online"), Duration::from_secs(10), || {
                let (mut api, user_ids) = (api.clone(), user_ids.clone());
                async move {
                    let r = api
                        .get_presence(pb::GetPresenceRequest { user_ids })
                        .await?
                        .into_inner();
                    anyhow::ensure!(r.users.first().is_some_and(|u| u.online), "offline");
                    Ok::<_, anyhow::Error>(())
                }
            })
            .await?;

            // The session key really is on this master.
            let mut direct = redis::Client::open(format!("redis://{addr}"))?
                .get_multiplexed_async_connection()
                .await?;
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(keys::session(&user, "*"))
                .query_async(&mut direct)
                .await?;
            anyhow::ensure!(
                found.len() == 1,
                "{user}: session keys on {addr}: {found:?}"
            );

            // Redis finds an expired key by an incremental scan of about
            // 20 × hz (100) keys with a TTL a second, so the event comes
            // later the more such keys this master holds (other tests'
            // idempotency keys, say): the bound allows for the scan.
            let keyspace: String = redis::cmd("INFO")
                .arg("keyspace")
                .query_async(&mut direct)
                .await?;
            let volatile: f64 = keyspace
                .split("expires=")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            let scan = Duration::from_secs_f64(volatile / (20.0 * 100.0));
            let bound = TTL + Duration::from_secs(4) + scan;

            // Last sign of life, then silence.
            ping(&mut client).await?;
            let quiet_since = Instant::now();
            let (code, reason) = client.closed().await?;
            let after = quiet_since.elapsed();
            anyhow::ensure!(
                code == chatmesh_gateway::CLOSE_SESSION_EXPIRED,
                "{user}: closed with {code} {reason}"
            );
            anyhow::ensure!(reason.contains("session expired"), "{reason}");
            anyhow::ensure!(
                after >= TTL && after < bound,
                "{user}: closed {after:?} after the last ping (TTL {TTL:?}, \
                 {volatile} keys with a TTL on its master, bound {bound:?})"
            );
            let r = api
                .get_presence(pb::GetPresenceRequest {
                    user_ids: vec![user.clone()],
                })
                .await?
                .into_inner();
            let status = r.users.first().context("no status")?;
            anyhow::ensure!(!status.online, "{user} still online after close");
            anyhow::ensure!(status.last_seen_ms > 0, "{user} has no last-seen time");
            Ok::<_, anyhow::Error>(user)
        }));
    }
    for check in checks {
        check.await??;
    }
    wait::until("channel empty", Duration::from_secs(10), || {
        let sb = &sb;
        let room = room.clone();
        async move {
            let users = online(sb, &room).await?;
            anyhow::ensure!(users.is_empty(), "still online: {users:?}");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinging_client_stays_connected_across_several_ttls() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let sb = Sandbox::start_ready(short_ttl(Duration::from_millis(500))).await?;
    let gw = sb.gateways[0];
    let room = channel_id("alive");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["lively", "idle"]).await?;
    let mut lively = Client::connect(gw, &dev_token(gw, "lively").await?, None).await?;
    lively.subscribe(&room).await?;
    // A control client that never pings, in the same sandbox: the short TTL
    // is really in force.
    let mut idle = Client::connect(gw, &dev_token(gw, "idle").await?, None).await?;
    idle.subscribe(&room).await?;
    let idle_closed = tokio::spawn(async move { idle.closed().await });

    let start = Instant::now();
    let mut checks = 0;
    while start.elapsed() < TTL * 4 {
        ping(&mut lively).await?;
        if start.elapsed() > Duration::from_millis(500) {
            anyhow::ensure!(
                status(&sb, "lively").await?.online,
                "offline {:?} in",
                start.elapsed()
            );
            checks += 1;
        }
        tokio::time::sleep(TTL / 5).await;
    }
    assert!(checks >= 10, "only {checks} checks");
    ping(&mut lively).await?;
    assert!(online(&sb, &room).await?.contains(&"lively".to_owned()));

    let (code, _) = idle_closed.await??;
    assert_eq!(code, chatmesh_gateway::CLOSE_SESSION_EXPIRED);
    assert!(!status(&sb, "idle").await?.online);
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_see_joins_and_leaves_and_list_online_agrees() -> anyhow::Result<()> {
    // Carol must be offline at first: a name of her own keeps sessions of
    // another test's "carol", still alive in the shared Redis, out of it.
    let carol_id = format!("carol-{}", uuid::Uuid::new_v4().simple());
    let sb = Sandbox::start_ready(Options::default()).await?;
    let (gw0, gw1) = (sb.gateways[0], sb.gateways[1]);
    let room = channel_id("lobby");
    create_channel(
        &sb,
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob", &carol_id],
    )
    .await?;

    let mut alice = Client::connect(gw0, &dev_token(gw0, "alice").await?, None).await?;
    alice.subscribe(&room).await?;
    assert_eq!(
        presence_event(&mut alice).await?,
        ("join".into(), "alice".into())
    );

    // Bob comes online on the other node.
    let mut bob = Client::connect(gw1, &dev_token(gw1, "bob").await?, None).await?;
    bob.subscribe(&room).await?;
    assert_eq!(
        presence_event(&mut alice).await?,
        ("join".into(), "bob".into())
    );
    assert_eq!(online(&sb, &room).await?, vec!["alice", "bob"]);

    // Clients see the same over HTTP; only members may ask.
    let http = reqwest::Client::new();
    let carol = dev_token(gw0, &carol_id).await?;
    let listed: Value = http
        .get(format!("http://{gw0}/v1/channels/{room}/online"))
        .bearer_auth(&carol)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(listed["user_ids"], json!(["alice", "bob"]));
    let outsider = http
        .get(format!("http://{gw0}/v1/channels/{room}/online"))
        .bearer_auth(dev_token(gw0, "mallory").await?)
        .send()
        .await?;
    assert_eq!(outsider.status(), 403);
    let statuses: Value = http
        .get(format!(
            "http://{gw0}/v1/presence?user_ids=alice,bob,{carol_id}"
        ))
        .bearer_auth(&carol)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let online_flags: Vec<(String, bool)> = statuses["users"]
        .as_array()
        .context("users")?
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap_or_default().to_owned(),
                u["online"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        online_flags,
        vec![
            ("alice".into(), true),
            ("bob".into(), true),
            (carol_id.clone(), false)
        ]
    );
    let unauthenticated = http
        .get(format!("http://{gw0}/v1/presence?user_ids=alice"))
        .send()
        .await?;
    assert_eq!(unauthenticated.status(), 401);

    // A second session of Alice neither joins nor leaves her again: the
    // next event Alice sees after it comes and goes is Carol's join.
    let mut alice_phone = Client::connect(gw1, &dev_token(gw1, "alice").await?, None).await?;
    alice_phone.subscribe(&room).await?;
    drop(alice_phone);
    let mut carol_client = Client::connect(gw0, &carol, None).await?;
    carol_client.subscribe(&room).await?;
    assert_eq!(
        presence_event(&mut alice).await?,
        ("join".into(), carol_id.clone())
    );

    // Bob leaves the channel but stays connected: he leaves, yet is online.
    bob.send(json!({ "type": "unsubscribe", "channel_id": room }))
        .await?;
    bob.expect("unsubscribed").await?;
    assert_eq!(
        presence_event(&mut alice).await?,
        ("leave".into(), "bob".into())
    );
    assert_eq!(
        online(&sb, &room).await?,
        vec!["alice".to_owned(), carol_id.clone()]
    );
    assert!(status(&sb, "bob").await?.online);

    // Carol disconnects: she leaves and goes offline.
    drop(carol_client);
    assert_eq!(
        presence_event(&mut alice).await?,
        ("leave".into(), carol_id.clone())
    );
    assert_eq!(online(&sb, &room).await?, vec!["alice"]);
    let carol_status = status(&sb, &carol_id).await?;
    assert!(!carol_status.online);
    assert!(carol_status.last_seen_ms > 0);
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_queries_reject_bad_input() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let mut api = presence(&sb);
    let too_many = api
        .get_presence(pb::GetPresenceRequest {
            user_ids: (0..1_001).map(|i| format!("u{i}")).collect(),
        })
        .await
        .expect_err("1,001 users accepted");
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    let bad_user = api
        .get_presence(pb::GetPresenceRequest {
            user_ids: vec!["has space".into()],
        })
        .await
        .expect_err("bad user accepted");
    assert_eq!(bad_user.code(), tonic::Code::InvalidArgument);
    let bad_channel = api
        .list_online(pb::ListOnlineRequest {
            channel_id: "no/slashes".into(),
        })
        .await
        .expect_err("bad channel accepted");
    assert_eq!(bad_channel.code(), tonic::Code::InvalidArgument);
    let never_seen = status(&sb, &channel_id("ghost")).await?;
    assert!(!never_seen.online);
    assert_eq!(never_seen.last_seen_ms, 0);
    sb.stop().await
}
