//! Measurement 2: one channel with many subscribers on one node, and one
//! sender on a WebSocket of its own, pacing sends that carry their send
//! time so every delivery is timed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chatmesh_bench::{cpu_time, load_average, percentile, token_signed};
use chatmesh_integration_tests::mesh::Mesh;
use chatmesh_integration_tests::sandbox::SANDBOX_SECRET;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Fleet, grow_to, print_errors};
use crate::cpu::Machine;
use crate::idle::{DRAIN_DEADLINE, gateway_pid, wait_online};
use crate::setup::{SENDER, drain_queues};

/// How long the run waits for the last acks, then the last deliveries.
const DRAIN: Duration = Duration::from_secs(30);
/// The sender pings like any client: sends do not keep a session alive.
const PING_EVERY: Duration = Duration::from_secs(10);

/// The sender's answers: acked `seq`s and error frames by code.
#[derive(Debug, Default)]
struct Answers {
    acked: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

pub(crate) async fn run(
    mesh: &Mesh,
    channel: &str,
    subscribers: usize,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    println!();
    println!(
        "2. one channel, {subscribers} subscribers on one node, {rate} msg/s for {seconds}s (load {})",
        load_average()
    );
    let mut fleet = Fleet::new(mesh.gateways[0], vec![channel.to_owned()], "u");
    let took = grow_to(&mut fleet, subscribers).await?;
    println!(
        "  {subscribers} subscribers connected in {:.1}s",
        took.as_secs_f64()
    );
    wait_online(mesh, &fleet).await?;
    let drained = drain_queues(mesh.chats[0], &fleet, DRAIN_DEADLINE).await?;
    println!(
        "  every subscriber received a message sent after the burst {:.1}s later",
        drained.as_secs_f64()
    );

    let clock = fleet.shared().clock;
    let url = format!(
        "{}/v1/ws?token={}",
        mesh.gateway_url(0),
        token_signed(SENDER, SANDBOX_SECRET)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("connecting the sender")?;
    let (mut sink, stream) = ws.split();
    let answers = Arc::new(Mutex::new(Answers::default()));
    let answered = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn(read_answers(stream, answers.clone(), answered.clone()));

    let gw_pid = gateway_pid(mesh)?;
    let me = std::process::id();
    let (gw_cpu0, me_cpu0) = (cpu_time(gw_pid)?, cpu_time(me)?);
    let machine = Machine::now();
    let total = rate * seconds;
    let first_send_us = clock.elapsed().as_micros() as u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut pinged = Instant::now();
    for k in 0..total {
        tick.tick().await;
        let sent_us = clock.elapsed().as_micros() as u64;
        let frame = json!({
            "type": "send",
            "request_id": k.to_string(),
            "channel_id": channel,
            "body": format!("t={sent_us}"),
            "idempotency_key": format!("fanout-{k}"),
        });
        sink.send(Message::text(frame.to_string()))
            .await
            .context("the sender's connection failed")?;
        if pinged.elapsed() >= PING_EVERY {
            pinged = Instant::now();
            let ping = json!({"type": "ping", "request_id": "ping"}).to_string();
            sink.send(Message::text(ping)).await?;
        }
    }
    let send_secs = (clock.elapsed().as_micros() as u64 - first_send_us) as f64 / 1e6;

    // Polling counters against a deadline: a benchmark's drain, not a
    // synchronisation the system owes anything to.
    let drain = Instant::now();
    while answered.load(Ordering::Acquire) < total && drain.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked = lock(&answers).acked.len() as u64;
    let expected = acked * subscribers as u64;
    while fleet.delivered().0 < expected && drain.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (gw_cpu, me_cpu) = (cpu_time(gw_pid)?, cpu_time(me)?);
    let machine = machine.map_or_else(|| "unknown".to_owned(), Machine::busy_since);
    let (delivered, last_us) = fleet.delivered();
    let window = (last_us.saturating_sub(first_send_us)) as f64 / 1e6;
    reader.abort();

    let mut latencies: Vec<u64> = Vec::with_capacity(delivered as usize);
    // A subscriber's k-th timed delivery is the k-th message sent: the
    // first and last messages' latencies show whether a backlog grew.
    let (mut first, mut last) = (Vec::new(), Vec::new());
    let (mut gapped, mut repeats) = (0usize, 0u64);
    for state in fleet.states() {
        let mine = lock(&state.latencies_us);
        first.extend(mine.first().copied());
        if mine.len() as u64 == acked {
            last.extend(mine.last().copied());
        }
        latencies.extend(mine.iter().copied());
        drop(mine);
        gapped += usize::from(!lock(&state.gaps).is_empty());
        repeats += state.repeats.load(Ordering::Acquire);
    }
    latencies.sort_unstable();
    first.sort_unstable();
    last.sort_unstable();
    let answers = lock(&answers);
    println!(
        "  sent {total} in {send_secs:.1}s; {acked} acked; sender errors: {}",
        if answers.errors.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", answers.errors)
        }
    );
    println!(
        "  deliveries: {delivered} of {expected} ({} lost, {:.3}%); {:.0} deliveries/s (first send to last delivery, {window:.1}s)",
        expected.saturating_sub(delivered),
        100.0 * expected.saturating_sub(delivered) as f64 / expected.max(1) as f64,
        delivered as f64 / window.max(f64::EPSILON),
    );
    println!(
        "  send->receive: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&latencies, 1.0),
    );
    println!(
        "  first message: p50 {:.1} ms, p99 {:.1} ms; last message: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&first, 0.50),
        percentile(&first, 0.99),
        percentile(&last, 0.50),
        percentile(&last, 0.99),
    );
    if gapped > 0 || repeats > 0 {
        println!("  {gapped} subscribers skipped a seq; {repeats} messages arrived twice");
    }
    let busy = drain.elapsed() + Duration::from_secs_f64(send_secs);
    println!(
        "  CPU from first send to drained ({:.1}s): gateway {:.0}% of one core, bench clients {:.0}%; machine {machine} busy",
        busy.as_secs_f64(),
        100.0 * gw_cpu.saturating_sub(gw_cpu0).as_secs_f64() / busy.as_secs_f64(),
        100.0 * me_cpu.saturating_sub(me_cpu0).as_secs_f64() / busy.as_secs_f64(),
    );
    if fleet.disconnects() > 0 {
        println!(
            "  {} subscribers lost their connection",
            fleet.disconnects()
        );
    }
    print_errors("subscribers", &fleet.take_errors());
    Ok(())
}

/// Settles each send by its `request_id`: an `ack` with its `seq`, or an
/// error frame by code.
async fn read_answers<S>(mut stream: S, answers: Arc<Mutex<Answers>>, answered: Arc<AtomicU64>)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let is_send = v["request_id"]
            .as_str()
            .is_some_and(|id| id.parse::<u64>().is_ok());
        if !is_send {
            continue;
        }
        match v["type"].as_str() {
            Some("ack") => {
                let seq = v["seq"].as_u64().unwrap_or(0);
                lock(&answers).acked.push(seq);
            }
            Some("error") => {
                let code = v["code"].as_str().unwrap_or("unknown").to_owned();
                *lock(&answers).errors.entry(code).or_default() += 1;
            }
            _ => continue,
        }
        answered.fetch_add(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
