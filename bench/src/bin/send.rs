//! What one send costs the chat service: Redis round trips and directory
//! (Postgres) queries per send, and the latency of sends made straight to
//! chat over gRPC, one at a time and with many in flight. Measured twice in
//! one run on the same infrastructure: with the send-rights cache (the
//! default) and with it off (`member_cache.ttl = "0s"`), the baseline.
//!
//! Round trips are counted by the services' Redis client (a pipeline is
//! one), less the sandbox's background traffic measured over an idle
//! second. Commands are counted exactly: a `MONITOR` connection on every
//! master sees each command a client sends (commands a script runs are
//! marked and skipped), and only commands naming this run's channels or
//! sender count.
//!
//! Parameters: BENCH_SEND_CALLS (sends per latency measurement),
//! BENCH_SEND_COUNTED (sends watched by `MONITOR`), BENCH_SEND_CHANNELS,
//! BENCH_SEND_IN_FLIGHT.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_bench::{counter, param, percentile};
use chatmesh_integration_tests::fixtures::create_channel;
use chatmesh_integration_tests::sandbox::{Options, channel};
use chatmesh_integration_tests::{Infra, Sandbox};
use chatmesh_proto::chat::v1 as chat;
use chatmesh_proto::common::v1::ModerationPolicy;
use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

type Client = chat::chat_service_client::ChatServiceClient<tonic::transport::Channel>;

/// Top-level commands naming `needle`, per command name, seen by MONITOR
/// connections on `masters`. Each connection's task ends when it sees
/// [`end_marker`] of `needle` (not counted), or at `stop`.
async fn monitor(
    masters: &[String],
    needle: &str,
    stop: CancellationToken,
) -> anyhow::Result<(
    Arc<Mutex<BTreeMap<String, u64>>>,
    Vec<tokio::task::JoinHandle<()>>,
)> {
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for addr in masters {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        // "+OK" before the first command.
        lines.next_line().await?;
        let (counts, needle, stop) = (counts.clone(), needle.to_owned(), stop.clone());
        let end = end_marker(&needle);
        tasks.push(tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    l = lines.next_line() => l,
                    () = stop.cancelled() => return,
                };
                let Ok(Some(line)) = line else { return };
                // +1700000000.123456 [0 127.0.0.1:50000] "EVALSHA" "…" …
                let Some((client, command)) = line.split_once("] ") else {
                    continue;
                };
                if client.ends_with(" lua") || !command.contains(&needle) {
                    continue;
                }
                if command.contains(&end) {
                    return;
                }
                let name = command
                    .split('"')
                    .nth(1)
                    .unwrap_or("?")
                    .to_ascii_uppercase();
                *counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name)
                    .or_default() += 1;
            }
        }));
    }
    Ok((counts, tasks))
}

fn end_marker(needle: &str) -> String {
    format!("{needle}-end-of-count")
}

/// Sends the end marker to every master, after the counted commands on
/// each of its connections.
async fn end_count(masters: &[String], needle: &str) -> anyhow::Result<()> {
    for addr in masters {
        let mut conn = redis::Client::open(format!("redis://{addr}"))?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("ECHO")
            .arg(end_marker(needle))
            .query_async::<String>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Directory queries and Redis round trips so far, from the sandbox's
/// metrics (its services share one registry).
async fn trips(sb: &Sandbox) -> anyhow::Result<(u64, u64)> {
    let page = reqwest::get(format!("http://{}/metrics", sb.chat.admin))
        .await?
        .text()
        .await?;
    Ok((
        counter(&page, "chatmesh_chat_directory_queries_total"),
        counter(&page, "chatmesh_redis_round_trips_total"),
    ))
}

struct Setup {
    client: Client,
    rooms: Vec<String>,
    sender: String,
}

impl Setup {
    async fn send(&self, i: usize) -> anyhow::Result<Duration> {
        let mut client = self.client.clone();
        let started = Instant::now();
        client
            .send_message(chat::SendMessageRequest {
                channel_id: self.rooms[i % self.rooms.len()].clone(),
                sender_id: self.sender.clone(),
                body: format!("message {i}"),
                attachments: Vec::new(),
                idempotency_key: format!("k{i}"),
                reply_to: 0,
            })
            .await?;
        Ok(started.elapsed())
    }

    /// Latencies in µs, sorted, and sends per second.
    async fn timed(
        &self,
        from: usize,
        calls: usize,
        in_flight: usize,
    ) -> anyhow::Result<(Vec<u64>, f64)> {
        let start = Instant::now();
        let mut results = futures::stream::iter((from..from + calls).map(|i| self.send(i)))
            .buffer_unordered(in_flight);
        let mut lat = Vec::with_capacity(calls);
        while let Some(took) = results.next().await {
            lat.push(took?.as_micros() as u64);
        }
        let rate = calls as f64 / start.elapsed().as_secs_f64();
        lat.sort_unstable();
        Ok((lat, rate))
    }
}

struct Figures {
    redis_per_send: f64,
    commands_per_send: f64,
    by_command: BTreeMap<String, u64>,
    queries_per_send: f64,
    one_p50: f64,
    one_p99: f64,
    many_p50: f64,
    many_p99: f64,
    many_rate: f64,
}

async fn measure(
    infra: &Infra,
    label: &str,
    cache: chatmesh_chat::MemberCacheConfig,
) -> anyhow::Result<Figures> {
    let calls = param("BENCH_SEND_CALLS", 2000) as usize;
    let counted = param("BENCH_SEND_COUNTED", 500) as usize;
    let channels = param("BENCH_SEND_CHANNELS", 10) as usize;
    let in_flight = param("BENCH_SEND_IN_FLIGHT", 16) as usize;
    let mut options = Options {
        gateways: 0,
        chat_member_cache: cache,
        ..Options::default()
    };
    options.chat_limits.user_per_second = 1_000_000;
    options.chat_limits.channel_per_second = 1_000_000;
    let sb = Sandbox::start(infra, options).await?;
    sb.wait_ready(Duration::from_secs(60)).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sender = format!("bench-sender-{run}");
    let rooms: Vec<String> = (0..channels)
        .map(|i| format!("bench-send-{run}-{i}"))
        .collect();
    for room in &rooms {
        create_channel(&sb, room, ModerationPolicy::Reject, &[&sender]).await?;
    }
    let setup = Setup {
        client: Client::new(channel(sb.chat.grpc)),
        rooms,
        sender,
    };
    // Warm: connections, scripts, epochs, and the cache.
    setup.timed(0, channels * 20, 1).await?;

    // Counted sends, one at a time, with MONITOR on every master.
    let masters: Vec<String> = infra
        .redis_masters()
        .await?
        .into_iter()
        .map(|m| m.addr)
        .collect();
    let stop = CancellationToken::new();
    // The sandbox's other traffic (presence, leases, topology reads) over
    // an idle second, to subtract from the round trips counted.
    let idle_from = (trips(&sb).await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = (trips(&sb).await?.1 - idle_from.0.1) as f64 / idle_from.1.elapsed().as_secs_f64();
    let (counts, tasks) = monitor(&masters, &run, stop.clone()).await?;
    let (queries_before, trips_before) = trips(&sb).await?;
    let counting = Instant::now();
    setup.timed(100_000, counted, 1).await?;
    let (queries_after, trips_after) = trips(&sb).await?;
    let queries = queries_after - queries_before;
    let round_trips =
        ((trips_after - trips_before) as f64 - idle * counting.elapsed().as_secs_f64()).max(0.0);
    // Every send was answered, so its commands were sent before the marker
    // (MONITOR shows a node's commands in the order it ran them).
    end_count(&masters, &run).await?;
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .is_err()
        {
            anyhow::bail!("a MONITOR connection never saw the end marker");
        }
    }
    stop.cancel();
    let by_command = std::mem::take(&mut *counts.lock().unwrap_or_else(|e| e.into_inner()));
    let commands: u64 = by_command.values().sum();

    let (one, _) = setup.timed(200_000, calls, 1).await?;
    let (many, many_rate) = setup.timed(300_000, calls, in_flight).await?;
    sb.stop().await?;
    let figures = Figures {
        redis_per_send: round_trips / counted as f64,
        commands_per_send: commands as f64 / counted as f64,
        by_command,
        queries_per_send: queries as f64 / counted as f64,
        one_p50: percentile(&one, 0.5),
        one_p99: percentile(&one, 0.99),
        many_p50: percentile(&many, 0.5),
        many_p99: percentile(&many, 0.99),
        many_rate,
    };
    println!("{label}:");
    let commands: Vec<String> = figures
        .by_command
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / counted as f64))
        .collect();
    println!(
        "  redis round trips per send: {:.2}; commands per send: {:.2} ({}); directory queries per send: {:.2}",
        figures.redis_per_send,
        figures.commands_per_send,
        commands.join(", "),
        figures.queries_per_send
    );
    println!(
        "  one at a time: p50 {:.2} ms, p99 {:.2} ms; {in_flight} in flight: p50 {:.2} ms, p99 {:.2} ms, {:.0} sends/s",
        figures.one_p50, figures.one_p99, figures.many_p50, figures.many_p99, figures.many_rate
    );
    Ok(figures)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    println!("chatmesh send-path bench: straight to chat over gRPC, keyed sends, one sender");
    let infra = Infra::load()?;
    let off = measure(
        &infra,
        "member cache off (baseline)",
        chatmesh_chat::MemberCacheConfig {
            ttl: Duration::ZERO,
            ..Default::default()
        },
    )
    .await?;
    let on = measure(&infra, "member cache on (default)", Default::default()).await?;
    println!(
        "ratios, on ÷ off: directory queries per send {:.2} ÷ {:.2}; redis round trips {:.2} ÷ {:.2}; one-at-a-time p50 {:.2}, p99 {:.2}; sends/s in flight {:.2}",
        on.queries_per_send,
        off.queries_per_send,
        on.redis_per_send,
        off.redis_per_send,
        on.one_p50 / off.one_p50,
        on.one_p99 / off.one_p99,
        on.many_rate / off.many_rate
    );
    Ok(())
}
