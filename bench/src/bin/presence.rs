//! Presence load benchmark. N WebSocket sessions on two gateway processes,
//! each subscribed to one of M channels, ping every P ms; one presence
//! process keeps their keys alive. Prints heartbeats handled per second,
//! Redis commands per heartbeat and the presence process's CPU, then the
//! presence process's ceiling with synthetic heartbeat batches published
//! straight to `HEARTBEAT`.
//!
//! Parameters: BENCH_SESSIONS (N), BENCH_CHANNELS (M), BENCH_PING_MS (P),
//! BENCH_SECONDS (measurement window).
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::{SECRET, counter, cpu_time, free_port, param, spawn_service, token};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::common::v1::ModerationPolicy;
use chatmesh_proto::presence::v1 as pb;
use futures::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

/// Calls per command across every master, from `INFO commandstats`.
async fn command_calls(masters: &[String]) -> anyhow::Result<HashMap<String, u64>> {
    let mut total: HashMap<String, u64> = HashMap::new();
    for addr in masters {
        let mut conn = redis::Client::open(format!("redis://{addr}"))?
            .get_multiplexed_async_connection()
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        for line in info.lines() {
            let Some((name, stats)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls: u64 = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            *total.entry(name.to_owned()).or_default() += calls;
        }
    }
    Ok(total)
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

struct Snapshot {
    at: Instant,
    handled: u64,
    cpu: Duration,
    commands: HashMap<String, u64>,
}

async fn snapshot(metrics_url: &str, pid: u32, masters: &[String]) -> anyhow::Result<Snapshot> {
    let page = reqwest::get(metrics_url).await?.text().await?;
    Ok(Snapshot {
        at: Instant::now(),
        handled: counter(&page, "chatmesh_presence_heartbeats_total"),
        cpu: cpu_time(pid)?,
        commands: command_calls(masters).await?,
    })
}

fn report(label: &str, a: &Snapshot, b: &Snapshot) {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let handled = b.handled - a.handled;
    let commands = delta(&b.commands, &a.commands);
    let total: u64 = commands.values().sum();
    let evalsha = commands.get("evalsha").copied().unwrap_or(0);
    let cpu = (b.cpu - a.cpu).as_secs_f64();
    println!("{label}:");
    println!(
        "  heartbeats handled: {handled} in {secs:.1}s = {:.0}/s",
        handled as f64 / secs
    );
    let publish = commands.get("publish").copied().unwrap_or(0);
    println!(
        "  redis round trips per heartbeat: {:.2} (EVALSHA {:.2}, PUBLISH {:.4}); commands executed per heartbeat, script internals and all other traffic included: {:.2}",
        (evalsha + publish) as f64 / handled.max(1) as f64,
        evalsha as f64 / handled.max(1) as f64,
        publish as f64 / handled.max(1) as f64,
        total as f64 / handled.max(1) as f64,
    );
    let mut top: Vec<_> = commands.into_iter().collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    let top: Vec<String> = top
        .iter()
        .take(6)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("  busiest commands: {}", top.join(" "));
    println!(
        "  presence CPU: {:.1}% of one core ({:.1} µs per heartbeat)",
        100.0 * cpu / secs,
        1e6 * cpu / handled.max(1) as f64
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sessions = param("BENCH_SESSIONS", 10_000) as usize;
    let channels = param("BENCH_CHANNELS", 1_000).max(1) as usize;
    let ping_ms = param("BENCH_PING_MS", 5_000);
    let seconds = param("BENCH_SECONDS", 20);
    println!(
        "chatmesh presence bench: N={sessions} sessions, M={channels} channels, ping every {ping_ms} ms, D={seconds}s, 2 gateway nodes, 1 presence process"
    );

    let infra = Infra::load()?;
    let sb = Sandbox::start(
        &infra,
        Options {
            gateways: 0,
            presence_instance: false,
            ..Options::default()
        },
    )
    .await?;
    sb.wait_ready(Duration::from_secs(60)).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // Users are new in every run: a run whose gateways are killed leaves its
    // sessions' records behind, and reusing the names would make the next
    // run clean them up, measuring that instead of steady state.
    let tag = &run[..8];
    let dir = std::env::temp_dir().join(format!("chatmesh-presence-bench-{run}"));
    std::fs::create_dir_all(&dir)?;

    // The presence process under test.
    let (grpc, admin) = (free_port()?, free_port()?);
    let file = dir.join("presence.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ngrpc_addr = \"127.0.0.1:{grpc}\"\nadmin_addr = \"127.0.0.1:{admin}\"\n{}[presence]\ngroup = \"bench-{run}\"\n[telemetry]\nlog = \"warn\"\n",
            infra.redis_toml()
        ),
    )?;
    let presence = spawn_service(
        "chatmesh-presence",
        &file,
        &format!("http://127.0.0.1:{admin}/readyz"),
    )
    .await?;
    let presence_pid = presence.id().context("presence pid")?;
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");

    let mut gateways: Vec<(tokio::process::Child, SocketAddr)> = Vec::new();
    for node in ["pbench-0", "pbench-1"] {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let file = dir.join(format!("{node}.toml"));
        std::fs::write(
            &file,
            format!(
                "node_id = \"{node}\"\nhttp_addr = \"{addr}\"\npublic_url = \"http://{addr}\"\n{}[services]\nchat = \"http://{}\"\npresence = \"http://127.0.0.1:{grpc}\"\nstorage = \"http://{}\"\nmedia = \"http://{}\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[routing]\ncluster = \"pbench-{run}\"\nmode = \"serve\"\n[limits]\nmax_connections = 100000\n[presence]\nsession_ttl = \"30s\"\nflush_interval = \"1s\"\n[telemetry]\nlog = \"warn\"\n",
                infra.redis_toml(),
                sb.chat.grpc,
                sb.storage.grpc,
                sb.media.grpc
            ),
        )?;
        let child =
            spawn_service("chatmesh-gateway", &file, &format!("http://{addr}/readyz")).await?;
        gateways.push((child, addr));
    }

    // Channels and memberships.
    let rooms: Vec<String> = (0..channels).map(|i| format!("pb-{run}-{i}")).collect();
    for room in &rooms {
        create_channel(&sb, room, ModerationPolicy::Reject, &["pbench-owner"]).await?;
    }
    let grpc_chat = chat::chat_service_client::ChatServiceClient::new(channel(sb.chat.grpc));
    let joins: Vec<anyhow::Result<()>> = futures::stream::iter(0..sessions)
        .map(|i| {
            let mut grpc_chat = grpc_chat.clone();
            let room = rooms[i % channels].clone();
            async move {
                grpc_chat
                    .join_channel(chat::JoinChannelRequest {
                        channel_id: room,
                        user_id: format!("pu-{tag}-{i}"),
                        ..Default::default()
                    })
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    joins.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    // Sessions: connect, subscribe, then ping forever at a jittered phase.
    let start = Instant::now();
    let pongs = Arc::new(AtomicU64::new(0));
    let connected: Vec<anyhow::Result<tokio::task::JoinHandle<()>>> =
        futures::stream::iter(0..sessions)
            .map(|i| {
                let gw = gateways[i % 2].1;
                let room = rooms[i % channels].clone();
                let pongs = pongs.clone();
                async move {
                    let url = format!(
                        "ws://{gw}/v1/ws?token={}&channel={room}",
                        token(&format!("pu-{tag}-{i}"))
                    );
                    let (mut ws, _) = tokio_tungstenite::connect_async(url)
                        .await
                        .with_context(|| format!("session {i}"))?;
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
                            Some(Ok(_)) => {}
                            other => anyhow::bail!("session {i} did not subscribe: {other:?}"),
                        }
                    }
                    Ok(tokio::spawn(async move {
                        let phase = Duration::from_millis((i as u64 * 7919) % ping_ms.max(1));
                        tokio::time::sleep(phase).await;
                        let mut tick = tokio::time::interval(Duration::from_millis(ping_ms));
                        loop {
                            tick.tick().await;
                            if ws
                                .send(Message::Text("{\"type\":\"ping\"}".into()))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            // Read up to the pong; presence events may come first.
                            loop {
                                match ws.next().await {
                                    Some(Ok(Message::Text(t))) if t.contains("\"pong\"") => {
                                        pongs.fetch_add(1, Ordering::Relaxed);
                                        break;
                                    }
                                    Some(Ok(_)) => {}
                                    _ => return,
                                }
                            }
                        }
                    }))
                }
            })
            .buffer_unordered(200)
            .collect()
            .await;
    let pingers = connected.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "connected and subscribed {sessions} sessions in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    let mut redis_conn = infra.redis()?.conn().await?;
    let masters: Vec<String> = infra
        .redis_masters()
        .await?
        .into_iter()
        .map(|m| m.addr)
        .collect();

    // Every session online before measuring.
    let mut presence_api = pb::presence_service_client::PresenceServiceClient::new(channel(
        format!("127.0.0.1:{grpc}").parse()?,
    ));
    let sample: Vec<String> = (0..sessions)
        .step_by((sessions / 200).max(1))
        .map(|i| format!("pu-{tag}-{i}"))
        .collect();
    wait::until("sessions online", Duration::from_secs(60), || {
        let (mut api, sample) = (presence_api.clone(), sample.clone());
        async move {
            let r = api
                .get_presence(pb::GetPresenceRequest { user_ids: sample })
                .await?
                .into_inner();
            let offline = r.users.iter().filter(|u| !u.online).count();
            anyhow::ensure!(offline == 0, "{offline} offline");
            Ok::<_, anyhow::Error>(())
        }
    })
    .await?;

    // Phase 1: the sessions' own pings.
    let a = snapshot(&metrics_url, presence_pid, &masters).await?;
    let pongs_before = pongs.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let b = snapshot(&metrics_url, presence_pid, &masters).await?;
    let pong_rate = (pongs.load(Ordering::Relaxed) - pongs_before) as f64
        / b.at.duration_since(a.at).as_secs_f64();
    println!();
    println!("client pings answered: {pong_rate:.0}/s");
    report(
        &format!("{sessions} sessions pinging every {ping_ms} ms"),
        &a,
        &b,
    );
    let online: usize = {
        let mut n = 0;
        for room in rooms.iter().take(50) {
            n += presence_api
                .list_online(pb::ListOnlineRequest {
                    channel_id: room.clone(),
                })
                .await?
                .into_inner()
                .user_ids
                .len();
        }
        n
    };
    let expected: usize = (0..sessions)
        .filter(|i| i % channels < 50.min(channels))
        .count();
    println!("  ListOnline over the first 50 channels: {online} of {expected} sessions online");

    // Phase 2: the presence process's ceiling. Synthetic batches of 2,000
    // sessions (one channel each) go straight to HEARTBEAT, keeping at most
    // 20,000 heartbeats in flight.
    let synthetic = 50_000usize;
    let mut sent = 0u64;
    let c = snapshot(&metrics_url, presence_pid, &masters).await?;
    let base = c.handled;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut handled_now = base;
    while Instant::now() < deadline {
        if sent.saturating_sub(handled_now - base) < 20_000 {
            let offset = (sent as usize) % synthetic;
            let batch = pb::HeartbeatBatch {
                gateway_node: "pbench-synthetic".into(),
                ttl_ms: 30_000,
                sessions: (0..2_000)
                    .map(|k| {
                        let n = (offset + k) % synthetic;
                        pb::SessionHeartbeat {
                            session_id: format!("syn-{run}-{n}"),
                            user_id: format!("syn-{tag}-{n}"),
                            channel_ids: vec![rooms[n % channels].clone()],
                            at_ms: 0,
                            closed: false,
                        }
                    })
                    .collect(),
            };
            let _: i64 = redis::cmd("PUBLISH")
                .arg("HEARTBEAT")
                .arg(batch.encode_to_vec())
                .query_async(&mut redis_conn)
                .await?;
            sent += 2_000;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let page = reqwest::get(&metrics_url).await?.text().await?;
        handled_now = counter(&page, "chatmesh_presence_heartbeats_total");
    }
    let d = snapshot(&metrics_url, presence_pid, &masters).await?;
    println!();
    report(
        "ceiling: synthetic batches of 2,000 sessions straight to HEARTBEAT (plus the live sessions)",
        &c,
        &d,
    );

    for p in pingers {
        p.abort();
    }
    for (mut child, _) in gateways {
        let _ = child.start_kill();
    }
    drop(presence);
    sb.stop().await
}
