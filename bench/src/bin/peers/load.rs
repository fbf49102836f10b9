//! The load client, the same for every system: receivers that time each
//! delivery against the send time written in its body, and senders that
//! publish at a fixed total rate over their connection to each channel's
//! node.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::SplitSink;
use futures::{SinkExt as _, StreamExt as _};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::system::{Incoming, Layout, System, Ws};

/// Receivers connecting at once.
const CONNECT_CONCURRENCY: usize = 64;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The body of message `n` of `sender` in step `step`, sent `sent_us`
/// after the clock started. Only digits and dots between two `~`, so every
/// protocol carries it verbatim, however it escapes strings.
pub(crate) fn body(step: u32, sender: usize, n: u64, sent_us: u64) -> String {
    format!("~{step}.{sender}.{n}.{sent_us}~")
}

/// The parts of a [`body`] found in a frame.
fn parse_body(frame: &str) -> Option<(u32, u64, u64)> {
    let start = frame.find('~')? + 1;
    let len = frame[start..].find('~')?;
    let mut parts = frame[start..start + len].split('.');
    let step = parts.next()?.parse().ok()?;
    let sender: u64 = parts.next()?.parse().ok()?;
    let n: u64 = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some((step, (sender << 40) | n, sent_us))
}

/// What one receiver saw of the current step.
#[derive(Debug, Default)]
struct Seen {
    /// Send-to-receive latency of each delivery, in µs.
    latencies: Vec<u32>,
    /// Messages delivered, to tell duplicates.
    ids: HashSet<u64>,
    duplicates: u64,
    /// Deliveries of an earlier step, arriving after it was counted.
    late: u64,
    /// Error frames the server sent.
    errors: Vec<String>,
}

/// Connected receivers; their tasks end when this is dropped.
pub(crate) struct Receivers {
    seen: Vec<Arc<Mutex<Seen>>>,
    /// The step deliveries are counted for.
    step: Arc<AtomicU32>,
    delivered: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

/// One step's deliveries, over all receivers.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Sorted send-to-receive latencies, in µs.
    pub(crate) latencies: Vec<u32>,
    pub(crate) duplicates: u64,
    pub(crate) late: u64,
    pub(crate) errors: Vec<String>,
}

impl Receivers {
    pub(crate) async fn connect<S: System>(
        system: &Arc<S>,
        layout: Layout,
        clock: Instant,
    ) -> anyhow::Result<Self> {
        let step = Arc::new(AtomicU32::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let opened: Vec<anyhow::Result<(usize, Ws)>> = futures::stream::iter(0..layout.receivers)
            .map(|i| {
                let system = system.clone();
                async move { Ok((i, system.open_receiver(i % layout.channels, i).await?)) }
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
        let mut this = Self {
            seen: Vec::with_capacity(layout.receivers),
            step: step.clone(),
            delivered: delivered.clone(),
            tasks: Vec::with_capacity(layout.receivers),
        };
        for opened in opened {
            let (_, ws) = opened?;
            let seen = Arc::<Mutex<Seen>>::default();
            this.tasks.push(tokio::spawn(receive(
                system.clone(),
                ws,
                seen.clone(),
                step.clone(),
                delivered.clone(),
                clock,
            )));
            this.seen.push(seen);
        }
        Ok(this)
    }

    /// Starts counting deliveries of `step`.
    pub(crate) fn begin(&self, step: u32) {
        self.step.store(step, Ordering::Relaxed);
        for seen in &self.seen {
            *lock(seen) = Seen::default();
        }
    }

    /// Deliveries counted since the step began.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Everything the step delivered.
    pub(crate) fn take(&self) -> Deliveries {
        let mut all = Deliveries::default();
        for seen in &self.seen {
            let mut seen = lock(seen);
            all.latencies.append(&mut seen.latencies);
            all.duplicates += seen.duplicates;
            all.late += seen.late;
            all.errors.append(&mut seen.errors);
        }
        all.latencies.sort_unstable();
        all
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn receive<S: System>(
    system: Arc<S>,
    mut ws: Ws,
    seen: Arc<Mutex<Seen>>,
    step: Arc<AtomicU32>,
    delivered: Arc<AtomicU64>,
    clock: Instant,
) {
    let keepalive = system.keepalive();
    let mut tick = tokio::time::interval(keepalive.as_ref().map_or(Duration::MAX / 4, |k| k.0));
    tick.tick().await;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                match system.classify(&text) {
                    Incoming::Message => {
                        let at_us = clock.elapsed().as_micros() as u64;
                        let Some((of_step, id, sent_us)) = parse_body(&text) else {
                            lock(&seen).errors.push(format!("no body in {text}"));
                            continue;
                        };
                        let mut seen = lock(&seen);
                        if of_step != step.load(Ordering::Relaxed) {
                            seen.late += 1;
                        } else if !seen.ids.insert(id) {
                            seen.duplicates += 1;
                        } else {
                            let latency = at_us.saturating_sub(sent_us);
                            seen.latencies.push(u32::try_from(latency).unwrap_or(u32::MAX));
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Incoming::Answer(answer) => {
                        if ws.send(Message::text(answer)).await.is_err() {
                            return;
                        }
                    }
                    Incoming::Error(e) => lock(&seen).errors.push(e),
                    Incoming::Ack(_) | Incoming::Other => {}
                }
            }
            _ = tick.tick() => {
                if let Some((_, frame)) = &keepalive
                    && ws.send(Message::text(frame.clone())).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

type Sink = Arc<tokio::sync::Mutex<SplitSink<Ws, Message>>>;

/// What a sender's connections heard back during a step.
#[derive(Debug, Default)]
struct Answers {
    acks: u64,
    /// Each channel's newest acknowledged sequence number.
    newest: BTreeMap<String, u64>,
    errors: Vec<String>,
}

/// The senders' connections, one per sender and node.
pub(crate) struct Senders {
    /// `sinks[sender][node]`.
    sinks: Vec<Vec<Sink>>,
    answers: Arc<Mutex<Answers>>,
    tasks: Vec<JoinHandle<()>>,
}

/// One step's sends.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// Messages sent into each channel.
    pub(crate) per_channel: Vec<u64>,
    /// Seconds the sends took, against the step's length.
    pub(crate) secs: f64,
    pub(crate) acks: u64,
    pub(crate) newest: Vec<(String, u64)>,
    pub(crate) errors: Vec<String>,
}

impl Sent {
    pub(crate) fn total(&self) -> u64 {
        self.per_channel.iter().sum()
    }
}

impl Senders {
    pub(crate) async fn connect<S: System>(
        system: &Arc<S>,
        layout: Layout,
    ) -> anyhow::Result<Self> {
        let answers = Arc::<Mutex<Answers>>::default();
        let mut this = Self {
            sinks: Vec::new(),
            answers: answers.clone(),
            tasks: Vec::new(),
        };
        for s in 0..layout.senders {
            let mut per_node = Vec::new();
            for node in 0..layout.nodes {
                let ws = system.open_sender(node, s).await?;
                let (sink, stream) = ws.split();
                let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
                this.tasks.push(tokio::spawn(hear(
                    system.clone(),
                    stream,
                    sink.clone(),
                    answers.clone(),
                )));
                per_node.push(sink);
            }
            this.sinks.push(per_node);
        }
        Ok(this)
    }

    /// Sends `rate` messages a second in total for `secs` seconds, spread
    /// over the senders, each sender's messages going round the channels.
    pub(crate) async fn run<S: System>(
        &self,
        system: &Arc<S>,
        layout: Layout,
        step: u32,
        rate: u64,
        secs: u64,
        clock: Instant,
    ) -> anyhow::Result<Sent> {
        *lock(&self.answers) = Answers::default();
        let senders = self.sinks.len();
        let period = Duration::from_secs_f64(senders as f64 / rate.max(1) as f64);
        let per_sender = rate * secs / senders as u64;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (s, sinks) in self.sinks.iter().enumerate() {
            let (system, sinks) = (system.clone(), sinks.clone());
            tasks.push(tokio::spawn(async move {
                let mut per_channel = vec![0u64; layout.channels];
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                // Senders start at different channels, so the channels
                // get the same share of the rate.
                let mut channel = s * layout.channels / senders;
                for n in 0..per_sender {
                    tick.tick().await;
                    let sent_us = clock.elapsed().as_micros() as u64;
                    let frame = system.publish(s, channel, &body(step, s, n, sent_us), n + 1);
                    let sink = &sinks[system.owner(channel)];
                    sink.lock().await.send(Message::text(frame)).await?;
                    per_channel[channel] += 1;
                    channel = (channel + 1) % layout.channels;
                }
                anyhow::Ok(per_channel)
            }));
        }
        let mut sent = Sent {
            per_channel: vec![0; layout.channels],
            ..Sent::default()
        };
        for task in tasks {
            for (total, n) in sent.per_channel.iter_mut().zip(task.await??) {
                *total += n;
            }
        }
        sent.secs = started.elapsed().as_secs_f64();
        Ok(sent)
    }

    /// The answers heard so far this step, into `sent`.
    pub(crate) fn collect(&self, sent: &mut Sent) {
        let mut answers = lock(&self.answers);
        sent.acks = answers.acks;
        sent.newest = std::mem::take(&mut answers.newest).into_iter().collect();
        sent.errors = std::mem::take(&mut answers.errors);
    }

    /// Acks heard so far this step.
    pub(crate) fn acks(&self) -> u64 {
        lock(&self.answers).acks
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn hear<S: System>(
    system: Arc<S>,
    mut stream: futures::stream::SplitStream<Ws>,
    sink: Sink,
    answers: Arc<Mutex<Answers>>,
) {
    let keepalive = system.keepalive();
    let mut tick = tokio::time::interval(keepalive.as_ref().map_or(Duration::MAX / 4, |k| k.0));
    tick.tick().await;
    loop {
        let answer = tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                match system.classify(&text) {
                    Incoming::Ack(stored) => {
                        let mut answers = lock(&answers);
                        answers.acks += 1;
                        if let Some((channel, seq)) = stored {
                            let newest = answers.newest.entry(channel).or_default();
                            *newest = (*newest).max(seq);
                        }
                        continue;
                    }
                    Incoming::Error(e) => {
                        lock(&answers).errors.push(e);
                        continue;
                    }
                    Incoming::Answer(answer) => answer,
                    Incoming::Message | Incoming::Other => continue,
                }
            }
            _ = tick.tick() => match &keepalive {
                Some((_, frame)) => frame.clone(),
                None => continue,
            },
        };
        if sink.lock().await.send(Message::text(answer)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_found_inside_any_framing() {
        let b = body(3, 7, 42, 123_456);
        for frame in [
            format!(r#"{{"type":"message","body":"{b}"}}"#),
            format!(r#"42["msg","{b}"]"#),
            format!(r#"{{"event":"client-msg","data":"{{\"b\":\"{b}\"}}"}}"#),
        ] {
            assert_eq!(
                parse_body(&frame),
                Some((3, (7 << 40) | 42, 123_456)),
                "{frame}"
            );
        }
        assert_eq!(parse_body(r#"{"type":"message","body":"~1.2~"}"#), None);
        assert_eq!(parse_body("no marks"), None);
    }
}
