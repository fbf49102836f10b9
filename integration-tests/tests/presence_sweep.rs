//! A ghost session is closed even when its expiry event never arrives: the
//! expiry subscriptions are killed and every master stops publishing
//! keyspace events, so only the gateway's sweep can notice. Runs alone in
//! its binary because it changes the cluster's notification settings.

use std::time::{Duration, Instant};

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as pb;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde_json::{Value, json};

const TTL: Duration = Duration::from_secs(3);
const SWEEP: Duration = Duration::from_secs(1);

/// Restores each master's `notify-keyspace-events` when dropped, even if
/// the test fails.
struct Notifications {
    saved: Vec<(String, String)>,
}

impl Notifications {
    fn disable(addrs: &[String]) -> anyhow::Result<Self> {
        let mut saved = Vec::new();
        for addr in addrs {
            let mut conn = redis::Client::open(format!("redis://{addr}"))?.get_connection()?;
            let reply: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query(&mut conn)?;
            saved.push((addr.clone(), reply.get(1).cloned().unwrap_or_default()));
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg("")
                .query::<()>(&mut conn)?;
        }
        Ok(Self { saved })
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        for (addr, flags) in &self.saved {
            let restored = redis::Client::open(format!("redis://{addr}"))
                .and_then(|c| c.get_connection())
                .and_then(|mut conn| {
                    redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("notify-keyspace-events")
                        .arg(flags)
                        .query::<()>(&mut conn)
                });
            if let Err(err) = restored {
                eprintln!("could not restore notify-keyspace-events on {addr}: {err}");
            }
        }
    }
}

/// Pings and reads up to the pong; returns the presence frames seen on the way.
async fn ping(client: &mut Client) -> anyhow::Result<Vec<(String, String)>> {
    client.send(json!({ "type": "ping" })).await?;
    let mut events = Vec::new();
    loop {
        let frame: Value = client.next().await?;
        match frame["type"].as_str() {
            Some("pong") => return Ok(events),
            Some("error") => anyhow::bail!("ping refused: {frame}"),
            Some("presence") => events.push((
                frame["event"].as_str().unwrap_or_default().to_owned(),
                frame["user_id"].as_str().unwrap_or_default().to_owned(),
            )),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ghost_is_closed_by_the_sweep_when_expiry_events_are_lost() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let infra = Infra::load()?;
    let addrs: Vec<String> = infra
        .redis_masters()
        .await?
        .into_iter()
        .map(|m| m.addr)
        .collect();
    assert_eq!(addrs.len(), 3);

    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        gateway_presence: chatmesh_gateway::PresenceSettings {
            session_ttl: TTL,
            flush_interval: Duration::from_millis(100),
            sweep_interval: SWEEP,
            ..Default::default()
        },
        presence: chatmesh_presence::PresenceSettings {
            instance_refresh: Duration::from_millis(100),
            instance_ttl: Duration::from_secs(1),
            ..Default::default()
        },
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let room = channel_id("haunted");
    create_channel(&sb, &room, ModerationPolicy::Reject, &["watcher", "ghost"]).await?;
    let mut watcher = Client::connect(gw, &dev_token(gw, "watcher").await?, None).await?;
    watcher.subscribe(&room).await?;
    let mut ghost = Client::connect(gw, &dev_token(gw, "ghost").await?, None).await?;
    ghost.subscribe(&room).await?;
    ping(&mut ghost).await?;
    let mut events = Vec::new();
    let mut presence = PresenceServiceClient::new(channel(sb.presence.grpc));
    wait::until("both online", Duration::from_secs(10), || {
        let mut presence = presence.clone();
        let room = room.clone();
        async move {
            let users = presence
                .list_online(pb::ListOnlineRequest { channel_id: room })
                .await?
                .into_inner()
                .user_ids;
            anyhow::ensure!(users == ["ghost", "watcher"], "online: {users:?}");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;

    events.extend(ping(&mut watcher).await?);

    // Lose every expiry event from here on: no master publishes them, and
    // the existing subscriptions are cut.
    let _restore = Notifications::disable(&addrs)?;
    for addr in &addrs {
        let mut direct = redis::Client::open(format!("redis://{addr}"))?
            .get_multiplexed_async_connection()
            .await?;
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut direct)
            .await?;
    }

    // The ghost falls silent while the watcher keeps pinging.
    events.extend(ping(&mut watcher).await?);
    ping(&mut ghost).await?;
    let quiet_since = Instant::now();
    let ghost_closed = tokio::spawn(async move { ghost.closed().await });
    while !ghost_closed.is_finished() {
        anyhow::ensure!(
            quiet_since.elapsed() < TTL + SWEEP + Duration::from_secs(5),
            "the ghost is still connected after {:?}",
            quiet_since.elapsed()
        );
        events.extend(ping(&mut watcher).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = quiet_since.elapsed();
    let (code, reason) = ghost_closed.await??;
    assert_eq!(code, chatmesh_gateway::CLOSE_SESSION_EXPIRED, "{reason}");
    assert!(
        after >= TTL && after < TTL + SWEEP + Duration::from_secs(2),
        "closed {after:?} after the last ping"
    );
    let metrics = reqwest::get(format!("http://{gw}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("chatmesh_gateway_sessions_expired_total{by=\"sweep\"}")),
        "the sweep did not close it:\n{metrics}"
    );

    // The watcher sees the ghost leave and is still served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events.contains(&("leave".to_owned(), "ghost".to_owned())) {
        anyhow::ensure!(Instant::now() < deadline, "no leave event; saw {events:?}");
        events.extend(ping(&mut watcher).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let users = presence
        .list_online(pb::ListOnlineRequest {
            channel_id: room.clone(),
        })
        .await?
        .into_inner()
        .user_ids;
    assert_eq!(users, ["watcher"]);
    let ghost_status = presence
        .get_presence(pb::GetPresenceRequest {
            user_ids: vec!["ghost".into()],
        })
        .await?
        .into_inner()
        .users;
    assert!(!ghost_status[0].online);
    sb.stop().await
}
