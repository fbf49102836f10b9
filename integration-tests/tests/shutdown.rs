//! SIGTERM to the real binaries runs their whole shutdown path before the
//! process exits: a gateway leaves the ring, sends every client `reconnect`
//! and closes it with 1001, and publishes its sessions' last heartbeats;
//! it then exits 0 within its grace period.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel};
use chatmesh_integration_tests::process::{self, log_fields};
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, logs, wait};
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as presence;
use chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient;
use futures::future::try_join_all;

const CLIENTS: usize = 100;
const SUBSCRIBED: usize = 20;
const GRACE: Duration = Duration::from_secs(5);

/// The address of a gateway's `gateway serving` log line.
fn gateway_addr(line: &serde_json::Value) -> Option<SocketAddr> {
    log_fields(line, "gateway serving")?["addr"]
        .as_str()?
        .parse()
        .ok()
}

async fn online(sandbox: &Sandbox, users: &[String]) -> anyhow::Result<Vec<bool>> {
    let mut client = PresenceServiceClient::new(channel(sandbox.presence.grpc));
    let reply = client
        .get_presence(presence::GetPresenceRequest {
            user_ids: users.to_vec(),
        })
        .await?
        .into_inner();
    Ok(reply.users.iter().map(|u| u.online).collect())
}

#[tokio::test]
async fn sigterm_drains_a_gateway_with_100_clients() -> anyhow::Result<()> {
    logs();
    let sandbox = Sandbox::start_ready(Options {
        gateways: 0,
        ..Default::default()
    })
    .await?;
    let dir = process::scratch_dir("chatmesh-gateway")?;
    let config = dir.join("gateway.toml");
    let node = format!("gw-term-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(
        &config,
        sandbox
            .gateway_toml(&node, "127.0.0.1:0", "http://127.0.0.1:1")
            .replace(
                "shutdown_grace = \"2s\"",
                &format!("shutdown_grace = \"{}s\"", GRACE.as_secs()),
            )
            + "[telemetry]\nlog = \"info\"\njson = true\n",
    )?;
    let log = dir.join("gateway.log");
    let (mut child, gateway) = process::spawn_until(
        &process::binary("chatmesh-gateway")?,
        &config,
        &log,
        gateway_addr,
    )
    .await?;
    wait::until("gateway ready", Duration::from_secs(30), || async move {
        reqwest::get(format!("http://{gateway}/readyz"))
            .await?
            .error_for_status()?;
        anyhow::Ok(())
    })
    .await?;

    let room = channel_id("drain");
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("drain-{i}")).collect();
    let members: Vec<&str> = users[..SUBSCRIBED].iter().map(String::as_str).collect();
    create_channel(&sandbox, &room, ModerationPolicy::Reject, &members).await?;
    let mut clients = try_join_all(users.iter().map(|user| async move {
        let token = dev_token(gateway, user).await?;
        Client::connect(gateway, &token, None).await
    }))
    .await?;
    for client in &mut clients[..SUBSCRIBED] {
        client.subscribe(&room).await?;
    }
    wait::until("every client online", Duration::from_secs(20), || async {
        let states = online(&sandbox, &users).await?;
        anyhow::ensure!(
            states.iter().all(|o| *o),
            "{} online",
            states.iter().filter(|o| **o).count()
        );
        Ok(())
    })
    .await?;
    let redis = Infra::load()?.redis()?;
    let ring_key = chatmesh_redis::keys::gateway_nodes(&sandbox.ring_cluster);
    let mut conn = redis.conn().await?;
    let ring: Vec<String> = redis::cmd("ZRANGE")
        .arg(&ring_key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    anyhow::ensure!(ring.contains(&node), "{node} not on the ring: {ring:?}");

    let started = Instant::now();
    process::terminate(&child)?;
    let closes = try_join_all(clients.iter_mut().enumerate().map(|(i, client)| {
        let room = room.clone();
        async move {
            let frame = client
                .expect("reconnect")
                .await
                .with_context(|| format!("client {i}"))?;
            let expected: Vec<&str> = if i < SUBSCRIBED {
                vec![room.as_str()]
            } else {
                vec![]
            };
            anyhow::ensure!(
                frame["channel_ids"] == serde_json::json!(expected),
                "client {i}: {frame}"
            );
            let (code, reason) = client.closed().await?;
            anyhow::ensure!(
                code == chatmesh_gateway::CLOSE_GOING_AWAY,
                "client {i}: {code} {reason}"
            );
            Ok(())
        }
    }));
    closes.await?;
    let status = process::wait_exit(&mut child, GRACE + Duration::from_secs(2)).await?;
    let took = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status}:\n{text}");
    assert!(
        took < GRACE,
        "shutdown took {took:?}, over the {GRACE:?} grace period"
    );

    // It left the ring, and its sessions' last heartbeats reached presence:
    // the users are offline now, not after their session TTL (10 minutes).
    let ring: Vec<String> = redis::cmd("ZRANGE")
        .arg(&ring_key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    assert!(!ring.contains(&node), "{node} still on the ring: {ring:?}");
    wait::until("every client offline", Duration::from_secs(10), || async {
        let states = online(&sandbox, &users).await?;
        anyhow::ensure!(
            states.iter().all(|o| !*o),
            "{} online",
            states.iter().filter(|o| **o).count()
        );
        Ok(())
    })
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    sandbox.stop().await
}

/// The gRPC address of a service's `serving` log line.
fn grpc_addr(line: &serde_json::Value) -> Option<SocketAddr> {
    log_fields(line, "serving")?["grpc_addr"]
        .as_str()?
        .parse()
        .ok()
}

#[tokio::test]
async fn sigterm_releases_the_chat_worker_lease() -> anyhow::Result<()> {
    logs();
    let infra = Infra::load()?;
    let topic = format!("chatmesh.test.{}", uuid::Uuid::new_v4().simple());
    infra.create_topic(&topic).await?;
    // A worker ID no other test asks for by number.
    let worker: u16 = 1000 + rand::random::<u16>() % 24;
    let dir = process::scratch_dir("chatmesh-chat")?;
    let config = dir.join("chat.toml");
    std::fs::write(
        &config,
        format!(
            "worker_id = {worker}\n[server]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n\
             probe_interval = \"200ms\"\nshutdown_grace = \"{}s\"\n[telemetry]\nlog = \"info\"\njson = true\n\
             {}{}[directory]\nurl = {:?}\n",
            GRACE.as_secs(),
            infra.redis_toml(),
            infra.kafka_toml_for(&topic),
            infra.directory_url,
        ),
    )?;
    let log = dir.join("chat.log");
    let (mut child, _grpc) =
        process::spawn_until(&process::binary("chatmesh-chat")?, &config, &log, grpc_addr).await?;
    let key = chatmesh_chat::lease::lease_key(worker);
    let redis = infra.redis()?;
    wait::until("the lease is held", Duration::from_secs(30), || {
        let (redis, key) = (redis.clone(), key.clone());
        async move {
            let mut conn = redis.conn().await?;
            let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            anyhow::ensure!(holder.is_some(), "{key} not set yet");
            anyhow::Ok(())
        }
    })
    .await?;

    let started = Instant::now();
    process::terminate(&child)?;
    let status = process::wait_exit(&mut child, GRACE + Duration::from_secs(2)).await?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit status {status}:\n{text}");
    assert!(
        started.elapsed() < GRACE,
        "shutdown took {:?}",
        started.elapsed()
    );
    let mut conn = redis.conn().await?;
    let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(holder, None, "the lease survived the process:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
