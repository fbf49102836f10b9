//! Storage benchmark against the local infrastructure, with the release
//! storage binary as its own process:
//!
//! - ingest: N messages produced to a fresh topic with acks while storage
//!   consumes them; throughput from the first send to the last row visible,
//!   next to a raw `COPY ... FROM STDIN` of N equivalent rows into the same
//!   shard tables (one stream per shard, in parallel, as storage writes);
//! - history: `GetHistory` pages of 50 at random `before` cursors on one
//!   channel of a million rows or more, p50 and p99 latency. The channel is
//!   bulk-loaded once and reused by later runs.
//!
//! Parameters come from the environment: BENCH_STORAGE_MESSAGES (N),
//! BENCH_STORAGE_CHANNELS, BENCH_HISTORY_ROWS, BENCH_HISTORY_REQUESTS.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use chatmesh_bench::param;
use chatmesh_integration_tests::messages::{MessageLog, Shards};
use chatmesh_integration_tests::sandbox::channel;
use chatmesh_integration_tests::storage_process::{self, StorageProcess, samples};
use chatmesh_integration_tests::{Infra, wait};
use chatmesh_proto::common::v1::Message;
use chatmesh_proto::storage::v1 as pb;
use futures::{SinkExt as _, StreamExt as _};
use rand::Rng as _;

/// The history channel, kept between runs.
const HISTORY_CHANNEL: &str = "bench-history-channel";
const HISTORY_USER: &str = "bench-reader";
/// Message IDs of the history channel are this plus 1..=rows.
const HISTORY_ID_BASE: i64 = 1 << 40;
const PAGE: u32 = 50;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn postgres(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages = param("BENCH_STORAGE_MESSAGES", 200_000) as usize;
    let channels = param("BENCH_STORAGE_CHANNELS", 1_000).max(1) as usize;
    let history_rows = param("BENCH_HISTORY_ROWS", 1_000_000).max(u64::from(PAGE) + 1) as i64;
    let requests = param("BENCH_HISTORY_REQUESTS", 2_000).max(1) as usize;
    println!(
        "chatmesh storage bench: {messages} messages over {channels} channels; history on {history_rows} rows, {requests} pages of {PAGE}"
    );

    let infra = Infra::load()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("chatmesh.bench.storage-{run}");
    infra.create_topic(&topic).await?;
    let shards = Shards::new(&infra)?;
    let mut storage = StorageProcess::start(&storage_process::config(
        &infra,
        &topic,
        &format!("chatmesh-storage-bench-{run}"),
        "1s",
        "",
    ))
    .await?;
    // Assigned partitions show up as lag readings.
    wait::until("storage to join its group", Duration::from_secs(60), || {
        let storage = &storage;
        async move {
            let text = storage.metrics().await?;
            anyhow::ensure!(
                !samples(&text, "chatmesh_storage_consumer_lag").is_empty(),
                "no partitions assigned yet"
            );
            Ok(())
        }
    })
    .await?;

    let log = Arc::new(MessageLog::new(&infra, &topic)?);
    let ingest_rooms: Vec<String> = (0..channels)
        .map(|i| format!("bench-ingest-{run}-{i}"))
        .collect();
    let ingest = ingest(&log, &storage, &shards, &ingest_rooms, messages).await?;
    let copy_rooms: Vec<String> = (0..channels)
        .map(|i| format!("bench-copy-{run}-{i}"))
        .collect();
    let copied = copy(&log, &shards, &copy_rooms, messages).await?;

    println!();
    println!(
        "ingest: {messages} acked in {:.1}s ({:.0} msg/s); last row visible {:.2}s after the last ack",
        ingest.acked.as_secs_f64(),
        messages as f64 / ingest.acked.as_secs_f64(),
        ingest.visible.saturating_sub(ingest.acked).as_secs_f64()
    );
    let ingest_rate = messages as f64 / ingest.visible.as_secs_f64();
    let copy_rate = messages as f64 / copied.as_secs_f64();
    println!(
        "ingest, acked send -> row visible: {ingest_rate:.0} msg/s ({:.1}s)",
        ingest.visible.as_secs_f64()
    );
    println!(
        "raw COPY of {messages} rows into the same shards: {copy_rate:.0} rows/s ({:.1}s)",
        copied.as_secs_f64()
    );
    println!(
        "ingest / COPY: {:.2} ({:.1}x slower than COPY)",
        ingest_rate / copy_rate,
        copy_rate / ingest_rate
    );

    let loaded = load_history(&infra, &shards, history_rows).await?;
    let mut latencies = history(&storage, history_rows, requests).await?;
    latencies.sort_unstable();
    println!();
    println!(
        "history channel: {history_rows} rows ({})",
        if loaded == 0 {
            "reused".to_owned()
        } else {
            format!("{loaded} loaded now")
        }
    );
    println!(
        "GetHistory, {PAGE} per page, random before: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms over {requests} pages",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    anyhow::ensure!(storage.is_running(), "storage exited:\n{}", storage.log());
    Ok(())
}

struct Ingest {
    /// From the first send to the last ack.
    acked: Duration,
    /// From the first send to the last row visible.
    visible: Duration,
}

/// Produces `count` messages round-robin over `rooms` while storage runs,
/// and times acks and stored rows.
async fn ingest(
    log: &Arc<MessageLog>,
    storage: &StorageProcess,
    shards: &Shards,
    rooms: &[String],
    count: usize,
) -> anyhow::Result<Ingest> {
    let batch: Vec<Message> = (0..count)
        .map(|i| log.message(&rooms[i % rooms.len()], (i / rooms.len()) as u64 + 1))
        .collect();
    let start = Instant::now();
    let producing = tokio::spawn({
        let log = log.clone();
        async move {
            let mut sends = futures::stream::iter(batch)
                .map(|m| {
                    let log = log.clone();
                    async move { log.send(&m).await }
                })
                .buffer_unordered(10_000);
            while let Some(sent) = sends.next().await {
                sent?;
            }
            anyhow::Ok(start.elapsed())
        }
    });
    // Rows are visible once their insert committed, which is when storage
    // counts them; the count is checked against the shards below.
    wait::until("every message stored", Duration::from_secs(600), || async {
        let text = storage.metrics().await?;
        let stored: f64 = samples(&text, "chatmesh_storage_rows_inserted_total")
            .iter()
            .map(|(_, v)| v)
            .sum();
        anyhow::ensure!(stored >= count as f64, "{stored} of {count} stored");
        Ok(())
    })
    .await?;
    let visible = start.elapsed();
    let acked = producing.await??;
    let stored = shards.count(rooms).await?;
    anyhow::ensure!(stored == count as i64, "{stored} rows stored, {count} sent");
    Ok(Ingest { acked, visible })
}

/// COPYs rows equivalent to `count` messages into their shards, one COPY
/// per shard, all at once. Rows are formatted before the clock starts.
async fn copy(
    log: &MessageLog,
    shards: &Shards,
    rooms: &[String],
    count: usize,
) -> anyhow::Result<Duration> {
    let n = shards.map().shards().len();
    let mut text: Vec<String> = vec![String::new(); n];
    for i in 0..count {
        let m = log.message(&rooms[i % rooms.len()], (i / rooms.len()) as u64 + 1);
        let at = chrono::DateTime::from_timestamp_millis(m.created_at_ms)
            .context("created_at out of range")?
            .format("%Y-%m-%d %H:%M:%S%.3f+00");
        text[shards.home(&m.channel_id)?].push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{{}}\t{at}\n",
            m.channel_id, m.message_id, m.seq, m.sender_id, m.body
        ));
    }
    let mut clients = Vec::new();
    for shard in shards.map().shards() {
        clients.push(postgres(&shard.url).await?);
    }
    let start = Instant::now();
    let copies = clients.iter().zip(text).map(|(client, text)| async move {
        let sink = client
            .copy_in::<_, Bytes>(
                "COPY messages (channel_id, message_id, seq, sender_id, body, attachments, created_at) FROM STDIN",
            )
            .await?;
        futures::pin_mut!(sink);
        let bytes = Bytes::from(text);
        for start in (0..bytes.len()).step_by(1 << 20) {
            let end = (start + (1 << 20)).min(bytes.len());
            sink.send(bytes.slice(start..end)).await?;
        }
        sink.finish().await
    });
    let copied: u64 = futures::future::try_join_all(copies).await?.iter().sum();
    let took = start.elapsed();
    anyhow::ensure!(copied == count as u64, "COPY stored {copied} of {count}");
    Ok(took)
}

/// Tops the history channel up to `rows` messages straight in its shard and
/// makes the reader a member. Returns how many rows were added.
async fn load_history(infra: &Infra, shards: &Shards, rows: i64) -> anyhow::Result<u64> {
    chatmesh_db::migrate(&infra.directory_url, chatmesh_db::MigrationSet::Directory).await?;
    let directory = postgres(&infra.directory_url).await?;
    directory
        .execute(
            "INSERT INTO channels (channel_id, name, created_by) VALUES ($1, $1, $2) ON CONFLICT DO NOTHING",
            &[&HISTORY_CHANNEL, &HISTORY_USER],
        )
        .await?;
    directory
        .execute(
            "INSERT INTO memberships (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&HISTORY_CHANNEL, &HISTORY_USER],
        )
        .await?;
    let shard = &shards.map().shards()[shards.home(HISTORY_CHANNEL)?];
    let db = postgres(&shard.url).await?;
    let have: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE channel_id = $1",
            &[&HISTORY_CHANNEL],
        )
        .await?
        .get(0);
    if have >= rows {
        return Ok(0);
    }
    let started = Instant::now();
    print!("loading the history channel to {rows} rows ... ");
    let added = db
        .execute(
            "INSERT INTO messages (channel_id, message_id, seq, sender_id, body, created_at)
             SELECT $1, $2 + g, g, 'bench-writer', 'history message ' || g,
                    to_timestamp(1735689600 + g / 1000.0)
             FROM generate_series(1, $3::bigint) AS g
             ON CONFLICT DO NOTHING",
            &[&HISTORY_CHANNEL, &HISTORY_ID_BASE, &rows],
        )
        .await?;
    db.execute("ANALYZE messages", &[]).await?;
    println!("{added} rows in {:.1}s", started.elapsed().as_secs_f64());
    Ok(added)
}

/// Latency of `requests` pages at random cursors, after a warm-up.
async fn history(
    storage: &StorageProcess,
    rows: i64,
    requests: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut client = pb::storage_service_client::StorageServiceClient::new(channel(storage.grpc));
    let mut rng = rand::rng();
    let mut latencies = Vec::with_capacity(requests);
    let warm_up = requests / 10;
    for i in 0..warm_up + requests {
        let before = HISTORY_ID_BASE + rng.random_range(i64::from(PAGE) + 1..=rows);
        let start = Instant::now();
        let page = client
            .get_history(pb::GetHistoryRequest {
                channel_id: HISTORY_CHANNEL.into(),
                user_id: HISTORY_USER.into(),
                before: Some(before as u64),
                after: None,
                limit: PAGE,
            })
            .await?
            .into_inner();
        let took = start.elapsed();
        anyhow::ensure!(
            page.messages.len() == PAGE as usize,
            "page of {} before {before}",
            page.messages.len()
        );
        if i >= warm_up {
            latencies.push(took);
        }
    }
    Ok(latencies)
}
