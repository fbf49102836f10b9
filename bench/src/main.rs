//! Load benchmark of the message path: K WebSocket clients on N gateway
//! processes, subscribed to M channels (each client on its channel's owner
//! node), and S senders publishing R messages per second in total for D
//! seconds. Prints delivered messages per second, send-to-receive latency
//! and gateway memory per connection.
//!
//! Parameters come from the environment: BENCH_CLIENTS (K), BENCH_CHANNELS
//! (M), BENCH_RATE (R), BENCH_SECONDS (D), BENCH_SENDERS (S),
//! BENCH_GATEWAYS (N, 2 by default; 1 puts every connection on one
//! process), and
//! BENCH_SEND_WINDOW, the gateways' `limits.max_sends_in_flight` (their
//! default when unset; 1 answers each connection's sends one at a time).
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::{SECRET, free_port, param, percentile, rss_kib, token};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox, wait};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::common::v1::ModerationPolicy;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct GatewayProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
}

async fn start_gateway(
    infra: &Infra,
    sb: &Sandbox,
    node: &str,
    cluster: &str,
    dir: &std::path::Path,
) -> anyhow::Result<GatewayProcess> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = format!(
        "node_id = \"{node}\"\nhttp_addr = \"{addr}\"\npublic_url = \"http://{addr}\"\n{}[services]\nchat = \"http://{}\"\npresence = \"http://{}\"\nstorage = \"http://{}\"\nmedia = \"http://{}\"\n[auth]\nhs256_secret = \"{SECRET}\"\n[routing]\ncluster = \"{cluster}\"\nmode = \"redirect\"\nrefresh_interval = \"200ms\"\nnode_ttl = \"2s\"\n[limits]\nframes_per_second = 1000000\nframe_burst = 1000000\nmax_connections = 100000\n{}[telemetry]\nlog = \"warn\"\n",
        infra.redis_toml(),
        sb.chat.grpc,
        sb.presence.grpc,
        sb.storage.grpc,
        sb.media.grpc,
        std::env::var("BENCH_SEND_WINDOW")
            .ok()
            .and_then(|w| w.parse::<usize>().ok())
            .map_or_else(String::new, |w| format!("max_sends_in_flight = {w}\n")),
    );
    let file = dir.join(format!("{node}.toml"));
    std::fs::write(&file, config)?;
    let exe = std::env::current_exe()?;
    let binary: PathBuf = exe.parent().context("exe dir")?.join("chatmesh-gateway");
    let child = tokio::process::Command::new(&binary)
        .env("CHATMESH_CONFIG", &file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let url = format!("http://{addr}/readyz");
    wait::until(&format!("{node} ready"), Duration::from_secs(60), || {
        let url = url.clone();
        async move { reqwest::get(&url).await?.error_for_status().map(|_| ()) }
    })
    .await?;
    Ok(GatewayProcess { child, addr })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = param("BENCH_CLIENTS", 2000) as usize;
    let channels = param("BENCH_CHANNELS", 100) as usize;
    let rate = param("BENCH_RATE", 500);
    let seconds = param("BENCH_SECONDS", 20);
    let senders = param("BENCH_SENDERS", 10) as usize;
    let nodes = param("BENCH_GATEWAYS", 2).max(1) as usize;
    println!(
        "chatmesh bench: K={clients} clients, M={channels} channels, R={rate} msg/s from S={senders} senders, D={seconds}s, {nodes} gateway nodes"
    );

    let infra = Infra::load()?;
    let mut options = Options {
        gateways: 0,
        ..Options::default()
    };
    // The bench measures the mesh, not the chat service's rate limits.
    options.chat_limits.user_per_second = 1_000_000;
    options.chat_limits.channel_per_second = 1_000_000;
    let sb = Sandbox::start(&infra, options).await?;
    sb.wait_ready(Duration::from_secs(60)).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("chatmesh-bench-{run}"));
    std::fs::create_dir_all(&dir)?;
    let cluster = format!("bench-{run}");
    let mut gateways = Vec::new();
    let mut node_addr: HashMap<String, SocketAddr> = HashMap::new();
    for i in 0..nodes {
        let node = format!("bench-{i}");
        let gateway = start_gateway(&infra, &sb, &node, &cluster, &dir).await?;
        node_addr.insert(node, gateway.addr);
        gateways.push(gateway);
    }

    // Channels, members and owners.
    let rooms: Vec<String> = (0..channels).map(|i| format!("bench-{run}-{i}")).collect();
    let mut grpc = chat::chat_service_client::ChatServiceClient::new(channel(sb.chat.grpc));
    let mut owner = Vec::new();
    for room in &rooms {
        create_channel(&sb, room, ModerationPolicy::Reject, &["bench-owner"]).await?;
        for s in 0..senders {
            grpc.join_channel(chat::JoinChannelRequest {
                channel_id: room.clone(),
                user_id: format!("sender-{s}"),
                ..Default::default()
            })
            .await?;
        }
        let gw = gateways[0].addr;
        let node_addr_ref = &node_addr;
        let route = wait::until("route", Duration::from_secs(10), || {
            let url = format!("http://{gw}/v1/route/{room}");
            let node_addr = node_addr_ref;
            async move {
                let v: Value = reqwest::get(&url).await?.json().await?;
                let node = v["node"].as_str().context("no node")?.to_owned();
                anyhow::ensure!(node_addr.contains_key(&node), "unknown node {node}");
                Ok(node)
            }
        })
        .await?;
        owner.push(node_addr[&route]);
    }
    for i in 0..clients {
        grpc.join_channel(chat::JoinChannelRequest {
            channel_id: rooms[i % channels].clone(),
            user_id: format!("user-{i}"),
            ..Default::default()
        })
        .await?;
    }

    let rss_before: u64 = gateways
        .iter()
        .map(|g| rss_kib(g.child.id().unwrap_or(0)).unwrap_or(0))
        .sum();
    let start = Instant::now();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let mut connected = Vec::new();
    let mut pingers = Vec::new();
    for i in 0..clients {
        let room = rooms[i % channels].clone();
        let url = format!(
            "ws://{}/v1/ws?token={}&channel={room}",
            owner[i % channels],
            token(&format!("user-{i}"))
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("client {i}"))?;
        // Wait for the subscription before counting the client as connected.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
                Some(Ok(_)) => {}
                other => anyhow::bail!("client {i} failed to subscribe: {other:?}"),
            }
        }
        // Ping as a browser client does, so sessions connected early in a
        // long connection phase stay alive (the session TTL is 30 s).
        let (mut sink, stream) = ws.split();
        pingers.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            every.tick().await;
            loop {
                every.tick().await;
                let ping = json!({"type": "ping", "request_id": "bench"}).to_string();
                if sink.send(Message::text(ping)).await.is_err() {
                    break;
                }
            }
        }));
        connected.push(stream);
    }
    let connect_secs = start.elapsed().as_secs_f64();
    let rss_after: u64 = gateways
        .iter()
        .map(|g| rss_kib(g.child.id().unwrap_or(0)).unwrap_or(0))
        .sum();
    for mut ws in connected {
        let latencies = latencies.clone();
        let delivered = delivered.clone();
        readers.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let now = start.elapsed().as_micros() as u64;
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if v["type"] == "message"
                    && let Some(sent) = v["body"]
                        .as_str()
                        .and_then(|b| b.strip_prefix("t="))
                        .and_then(|t| t.parse::<u64>().ok())
                {
                    local.push(now.saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                if local.len() >= 1024 {
                    latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .append(&mut local);
                }
            }
            latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut local);
        }));
    }

    // Let the connection burst settle first: every client's join has been
    // processed by presence and fanned out to its channel.
    let presence =
        chatmesh_proto::presence::v1::presence_service_client::PresenceServiceClient::new(channel(
            sb.presence.grpc,
        ));
    for room in &rooms {
        let expected = (0..clients)
            .filter(|i| rooms[i % channels] == *room)
            .count();
        wait::until("joins processed", Duration::from_secs(60), || {
            let (mut presence, room) = (presence.clone(), room.clone());
            async move {
                let online = presence
                    .list_online(chatmesh_proto::presence::v1::ListOnlineRequest {
                        channel_id: room,
                    })
                    .await?
                    .into_inner()
                    .user_ids
                    .len();
                anyhow::ensure!(online >= expected, "{online} of {expected} online");
                Ok::<_, anyhow::Error>(())
            }
        })
        .await?;
    }

    // Senders: each sends at R/S per second round-robin over the channels,
    // without waiting for acks (they are counted by a reader half).
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let send_start = Instant::now();
    let mut sender_tasks = Vec::new();
    for s in 0..senders {
        let url = format!(
            "ws://{}/v1/ws?token={}",
            gateways[s % nodes].addr,
            token(&format!("sender-{s}"))
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut sink, mut stream) = ws.split();
        let (acked, failed) = (acked.clone(), failed.clone());
        let ack_reader = tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = stream.next().await {
                if t.contains("\"type\":\"ack\"") {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else if t.contains("\"type\":\"error\"") {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let rooms = rooms.clone();
        let sent = sent.clone();
        let per_sender = (rate as f64 / senders as f64).max(0.001);
        sender_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sender));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = s;
            while send_start.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let body = format!("t={}", start.elapsed().as_micros());
                let frame =
                    json!({"type": "send", "channel_id": rooms[n % rooms.len()], "body": body});
                if sink
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                n += senders;
            }
            (sink, ack_reader)
        }));
    }
    let mut keep = Vec::new();
    for t in sender_tasks {
        keep.push(t.await?);
    }
    let send_secs = send_start.elapsed().as_secs_f64();
    let total_sent = sent.load(Ordering::Relaxed);
    let expected = total_sent * (clients / channels) as u64;
    // Drain: wait for every ack, then for every delivery, or give up.
    let drain = Instant::now();
    while acked.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < total_sent
        && drain.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while delivered.load(Ordering::Relaxed)
        < acked.load(Ordering::Relaxed) * (clients / channels) as u64
        && drain.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_secs = send_start.elapsed().as_secs_f64();
    for pinger in &pingers {
        pinger.abort();
    }
    for g in &mut gateways {
        let _ = g.child.start_kill();
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    drop(keep);

    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let got = delivered.load(Ordering::Relaxed);
    println!();
    println!("connected {clients} clients in {connect_secs:.1}s");
    println!(
        "sent {total_sent} messages in {send_secs:.1}s ({:.0} msg/s); acked {}, send errors {}",
        total_sent as f64 / send_secs,
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "delivered {got} of {expected} expected ({:.2}%)",
        100.0 * got as f64 / expected.max(1) as f64
    );
    println!(
        "delivered messages per second: {:.0}",
        got as f64 / total_secs
    );
    println!(
        "send->receive latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 1.0)
    );
    println!(
        "gateway memory: {} KiB before, {} KiB after connecting; {:.1} KiB per connection",
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64
    );
    sb.stop().await
}
