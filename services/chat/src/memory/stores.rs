//! In-memory counterparts of the Redis-backed seams: sequence numbers,
//! fan-out, idempotency keys and rate limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, ChatMessage, Clock, UserId, seq};
use tokio::time::Instant;

use super::{Failure, ManualClock, lock};
use crate::ports::{
    Claim, EpochSource, FanOut, IdempotencyKey, IdempotencyStore, RateLimiter, Sequencer,
};
use crate::{ChatError, SendLimits};

/// Sequence numbers per channel, and the numbers voided. [`Self::lose`]
/// forgets every counter, as a Redis restart without data does, and the
/// next number then starts a new epoch from `epochs`.
#[derive(Debug, Default)]
pub struct MemorySequencer {
    // channel → (latest number, void numbers)
    channels: Mutex<HashMap<ChannelId, (u64, BTreeSet<u64>)>>,
    // Channels whose counter may have lost numbers, as after a failover.
    untrusted: Mutex<BTreeSet<ChannelId>>,
    epochs: MemoryEpochs,
    /// Fails `next` and `release` while on.
    pub failure: Failure,
}

impl MemorySequencer {
    /// The numbers of `channel` marked void, ascending.
    pub fn void(&self, channel: &ChannelId) -> Vec<u64> {
        lock(&self.channels)
            .get(channel)
            .map(|(_, void)| void.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets `channel`'s counter and void numbers, as a flush does.
    pub fn lose(&self, channel: &ChannelId) {
        lock(&self.channels).remove(channel);
    }

    /// Moves `channel`'s counter back by `behind` and marks it untrusted,
    /// as a promoted replica that missed the last increments is.
    pub fn fail_over(&self, channel: &ChannelId, behind: u64) {
        if let Some((latest, _)) = lock(&self.channels).get_mut(channel) {
            *latest = latest.saturating_sub(behind);
        }
        lock(&self.untrusted).insert(channel.clone());
    }
}

#[async_trait]
impl Sequencer for MemorySequencer {
    async fn next(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        self.failure.redis()?;
        // One lock over the check and the start: racing callers start one
        // epoch between them, as the Redis adapter's starting right does.
        let mut channels = lock(&self.channels);
        let mut untrusted = lock(&self.untrusted);
        if !channels.contains_key(channel) || untrusted.contains(channel) {
            let base = seq::epoch_base(self.epochs.start(channel));
            let (latest, _) = channels.entry(channel.clone()).or_default();
            *latest = (*latest).max(base);
            untrusted.remove(channel);
        }
        let (latest, _) = channels.entry(channel.clone()).or_default();
        *latest += 1;
        Ok(*latest)
    }

    async fn release(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        self.failure.redis()?;
        lock(&self.channels)
            .entry(channel.clone())
            .or_default()
            .1
            .insert(seq);
        Ok(())
    }

    async fn give_back(&self, channel: &ChannelId, seq: u64) -> Result<(), ChatError> {
        self.failure.redis()?;
        let mut channels = lock(&self.channels);
        let (latest, void) = channels.entry(channel.clone()).or_default();
        if *latest == seq {
            *latest -= 1;
        } else {
            void.insert(seq);
        }
        Ok(())
    }
}

/// Epochs counted per channel in memory.
#[derive(Debug, Default)]
pub struct MemoryEpochs {
    started: Mutex<HashMap<ChannelId, u64>>,
}

impl MemoryEpochs {
    fn start(&self, channel: &ChannelId) -> u64 {
        let mut started = lock(&self.started);
        let count = started.entry(channel.clone()).or_default();
        *count += 1;
        *count - 1
    }
}

#[async_trait]
impl EpochSource for MemoryEpochs {
    async fn next_epoch(&self, channel: &ChannelId) -> Result<u64, ChatError> {
        Ok(self.start(channel))
    }
}

/// Fan-out into a list of what was published, and recent windows per channel.
#[derive(Debug)]
pub struct MemoryFanOut {
    keep: usize,
    // Each published message with the trace context it carried.
    published: Mutex<Vec<(ChatMessage, Option<String>)>>,
    recent: Mutex<HashMap<ChannelId, BTreeMap<u64, ChatMessage>>>,
    /// Fails `publish` and `recent` while on.
    pub failure: Failure,
}

impl MemoryFanOut {
    /// A fan-out whose recent windows keep `keep` messages.
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            published: Mutex::default(),
            recent: Mutex::default(),
            failure: Failure::default(),
        }
    }

    /// Every message published, in order.
    pub fn published(&self) -> Vec<ChatMessage> {
        lock(&self.published)
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The `traceparent` each published message carried, in order.
    pub fn published_traceparents(&self) -> Vec<Option<String>> {
        lock(&self.published)
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }
}

#[async_trait]
impl FanOut for MemoryFanOut {
    async fn publish(
        &self,
        message: &ChatMessage,
        traceparent: Option<&str>,
    ) -> Result<(), ChatError> {
        self.failure.redis()?;
        lock(&self.published).push((message.clone(), traceparent.map(str::to_owned)));
        let mut recent = lock(&self.recent);
        let window = recent.entry(message.channel.clone()).or_default();
        window.insert(message.seq, message.clone());
        while window.len() > self.keep {
            window.pop_first();
        }
        Ok(())
    }

    async fn recent(&self, channel: &ChannelId) -> Result<Vec<ChatMessage>, ChatError> {
        self.failure.redis()?;
        Ok(lock(&self.recent)
            .get(channel)
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default())
    }
}

#[derive(Debug)]
enum Entry {
    Held(ChatMessage),
    Sent(ChatMessage),
}

/// Idempotency keys with expiry on Tokio's clock, so tests with paused time
/// can let them lapse.
#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    keys: Mutex<HashMap<IdempotencyKey, (Entry, Instant)>>,
    /// Fails every call while on.
    pub failure: Failure,
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<Claim, ChatError> {
        self.failure.redis()?;
        let now = Instant::now();
        let mut keys = lock(&self.keys);
        match keys.get(key) {
            Some((Entry::Sent(message), expiry)) if *expiry > now => {
                Ok(Claim::Duplicate(message.clone()))
            }
            Some((Entry::Held(message), expiry)) if *expiry > now => {
                Ok(Claim::Resume(message.clone()))
            }
            _ => {
                keys.insert(key.clone(), (Entry::Held(message.clone()), now + ttl));
                Ok(Claim::New)
            }
        }
    }

    async fn record(
        &self,
        key: &IdempotencyKey,
        message: &ChatMessage,
        ttl: Duration,
    ) -> Result<(), ChatError> {
        self.failure.redis()?;
        lock(&self.keys).insert(
            key.clone(),
            (Entry::Sent(message.clone()), Instant::now() + ttl),
        );
        Ok(())
    }
}

/// The counts of the current one-second window; older ones are dropped.
#[derive(Debug, Default)]
struct Window {
    second: u64,
    users: HashMap<UserId, u32>,
    channels: HashMap<ChannelId, u32>,
}

/// Fixed one-second windows counted in memory: the same rule as the Redis
/// limiter, for one process.
#[derive(Debug)]
pub struct MemoryRateLimiter<C = ManualClock> {
    user_per_second: u32,
    channel_per_second: u32,
    clock: C,
    counts: Mutex<Window>,
    /// Fails `check` while on.
    pub failure: Failure,
}

impl<C: Clock> MemoryRateLimiter<C> {
    /// A limiter with the per-second limits of `limits`, on `clock`.
    pub fn new(limits: &SendLimits, clock: C) -> Self {
        Self {
            user_per_second: limits.user_per_second,
            channel_per_second: limits.channel_per_second,
            clock,
            counts: Mutex::default(),
            failure: Failure::default(),
        }
    }
}

impl<C: Clock> MemoryRateLimiter<C> {
    /// The counts of the current second.
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        let window = self.clock.now_ms() / 1000;
        let mut counts = lock(&self.counts);
        if counts.second != window {
            *counts = Window {
                second: window,
                ..Window::default()
            };
        }
        counts
    }
}

#[async_trait]
impl<C: Clock> RateLimiter for MemoryRateLimiter<C> {
    async fn check_user(&self, sender: &UserId) -> Result<(), ChatError> {
        self.failure.redis()?;
        let mut counts = self.window();
        let count = counts.users.entry(sender.clone()).or_default();
        *count += 1;
        if *count > self.user_per_second {
            return Err(ChatError::RateLimited { scope: "user" });
        }
        Ok(())
    }

    async fn check_channel(&self, channel: &ChannelId) -> Result<(), ChatError> {
        self.failure.redis()?;
        let mut counts = self.window();
        let count = counts.channels.entry(channel.clone()).or_default();
        *count += 1;
        if *count > self.channel_per_second {
            return Err(ChatError::RateLimited { scope: "channel" });
        }
        Ok(())
    }
}
