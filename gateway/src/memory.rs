//! In-memory implementations of the gateway's ports, for unit tests: a chat
//! service, a fan-out feed, a gap source and liveness, each scriptable and
//! able to fail on demand.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatmesh_error::{ClientError, ErrorKind};
use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, UserId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ports::{
    Access, ChangeCommand, ChangeReceipt, ChangeRequest, ChannelUnread, ChatApi, Feed, FeedError,
    GapSource, Liveness, ReadEvent, ReadState, SendCommand, SendReceipt, TypingEvent,
};
use crate::ws::outbound::{Outbox, Outgoing};

/// A message of `channel` numbered `seq`, from `alice`.
pub(crate) fn message(channel: &str, seq: u64) -> ChatMessage {
    ChatMessage {
        id: MessageId::from_raw((seq + 1000) << 22),
        channel: ChannelId::new(channel).expect("test channel"),
        sender: UserId::new("alice").expect("test user"),
        seq,
        body: format!("message {seq}"),
        attachments: Vec::new(),
        created_at_ms: 1_800_000_000_000 + seq as i64,
        idempotency_key: None,
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    }
}

/// An outbox of `capacity` frames and its receiving end.
pub(crate) fn outbox(capacity: usize) -> (Outbox, mpsc::Receiver<std::sync::Arc<Outgoing>>) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        Outbox {
            tx,
            overflow: CancellationToken::new(),
        },
        rx,
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A chat service: channels with members (the first one listed owns the
/// channel), sends and changes numbered per channel, changes checked as
/// the chat service checks them.
#[derive(Debug, Default)]
pub(crate) struct MemoryChat {
    members: Mutex<HashMap<ChannelId, HashSet<UserId>>>,
    owners: Mutex<HashMap<ChannelId, UserId>>,
    seqs: Mutex<HashMap<ChannelId, u64>>,
    keys: Mutex<HashMap<(ChannelId, UserId, String), SendReceipt>>,
    change_keys: Mutex<HashMap<(ChannelId, UserId, String), ChangeReceipt>>,
    /// Each post's author and whether it was deleted, by channel and seq.
    posts: Mutex<HashMap<(ChannelId, u64), (UserId, bool)>>,
    fail_with: Mutex<Option<ClientError>>,
    sends: Mutex<Vec<SendCommand>>,
    changes: Mutex<Vec<ChangeCommand>>,
    next_id: AtomicU64,
    /// Channels whose sends wait for a permit before they are answered.
    held: Mutex<HashMap<ChannelId, Arc<tokio::sync::Semaphore>>>,
    /// Sends being answered per channel, and the most seen at once.
    in_flight: Mutex<HashMap<ChannelId, (usize, usize)>>,
}

impl MemoryChat {
    /// A channel with these members.
    pub(crate) fn with_channel(self, channel: &str, members: &[&str]) -> Self {
        let members: Vec<UserId> = members
            .iter()
            .map(|m| UserId::new(*m).expect("test user"))
            .collect();
        self.add_channel(&ChannelId::new(channel).expect("test channel"), &members);
        self
    }

    /// Creates `channel` with these members.
    pub(crate) fn add_channel(&self, channel: &ChannelId, members: &[UserId]) {
        lock(&self.members).insert(channel.clone(), members.iter().cloned().collect());
        if let Some(owner) = members.first() {
            lock(&self.owners).insert(channel.clone(), owner.clone());
        }
    }

    /// Every call fails with `err` until cleared with `None`.
    pub(crate) fn fail_with(&self, err: Option<ClientError>) {
        *lock(&self.fail_with) = err;
    }

    /// The sends received so far.
    pub(crate) fn sends(&self) -> Vec<SendCommand> {
        lock(&self.sends).clone()
    }

    /// The changes received so far.
    pub(crate) fn changes(&self) -> Vec<ChangeCommand> {
        lock(&self.changes).clone()
    }

    /// Sends and changes to `channel` wait from now on until [`MemoryChat::release`]
    /// lets them through.
    pub(crate) fn hold(&self, channel: &str) {
        let channel = ChannelId::new(channel).expect("test channel");
        lock(&self.held).insert(channel, Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets `n` held sends or changes to `channel` through.
    pub(crate) fn release(&self, channel: &str, n: usize) {
        let channel = ChannelId::new(channel).expect("test channel");
        if let Some(gate) = lock(&self.held).get(&channel) {
            gate.add_permits(n);
        }
    }

    /// The most sends and changes to `channel` that were being answered at
    /// once.
    pub(crate) fn peak_in_flight(&self, channel: &str) -> usize {
        let channel = ChannelId::new(channel).expect("test channel");
        lock(&self.in_flight)
            .get(&channel)
            .map_or(0, |(_, peak)| *peak)
    }

    fn failure(&self) -> Result<(), ClientError> {
        lock(&self.fail_with).clone().map_or(Ok(()), Err)
    }
}

#[async_trait]
impl ChatApi for MemoryChat {
    async fn access(&self, channel: &ChannelId, user: &UserId) -> Result<Access, ClientError> {
        self.failure()?;
        Ok(match lock(&self.members).get(channel) {
            None => Access::UnknownChannel,
            Some(m) if m.contains(user) => Access::Member,
            Some(_) => Access::NotMember,
        })
    }

    async fn send(&self, command: SendCommand) -> Result<SendReceipt, ClientError> {
        self.failure()?;
        lock(&self.sends).push(command.clone());
        let channel = command.channel.clone();
        self.gated(&channel, self.answer(command)).await
    }

    async fn change(&self, command: ChangeCommand) -> Result<ChangeReceipt, ClientError> {
        self.failure()?;
        lock(&self.changes).push(command.clone());
        let channel = command.channel.clone();
        self.gated(&channel, self.answer_change(command)).await
    }
}

impl MemoryChat {
    /// Runs `answer` for a call to `channel`: counted in flight, and held
    /// while the channel is.
    async fn gated<T>(&self, channel: &ChannelId, answer: impl Future<Output = T>) -> T {
        {
            let mut in_flight = lock(&self.in_flight);
            let (now, peak) = in_flight.entry(channel.clone()).or_default();
            *now += 1;
            *peak = (*peak).max(*now);
        }
        let gate = lock(&self.held).get(channel).cloned();
        if let Some(gate) = gate {
            gate.acquire().await.expect("never closed").forget();
        }
        let answer = answer.await;
        if let Some((now, _)) = lock(&self.in_flight).get_mut(channel) {
            *now -= 1;
        }
        answer
    }

    async fn check_member(&self, channel: &ChannelId, user: &UserId) -> Result<(), ClientError> {
        match self.access(channel, user).await? {
            Access::Member => Ok(()),
            Access::NotMember => Err(ClientError::generic(ErrorKind::NotMember)),
            Access::UnknownChannel => Err(ClientError::generic(ErrorKind::UnknownChannel)),
        }
    }

    /// The channel's next sequence number.
    fn next_seq(&self, channel: &ChannelId) -> u64 {
        let mut seqs = lock(&self.seqs);
        let seq = seqs.entry(channel.clone()).or_insert(0);
        *seq += 1;
        *seq
    }

    fn next_id(&self) -> MessageId {
        MessageId::from_raw(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    async fn answer(&self, command: SendCommand) -> Result<SendReceipt, ClientError> {
        self.check_member(&command.channel, &command.sender).await?;
        let key = command
            .idempotency_key
            .clone()
            .map(|k| (command.channel.clone(), command.sender.clone(), k));
        if let Some(key) = &key
            && let Some(original) = lock(&self.keys).get(key)
        {
            return Ok(SendReceipt {
                duplicate: true,
                ..original.clone()
            });
        }
        let seq = self.next_seq(&command.channel);
        let receipt = SendReceipt {
            message_id: self.next_id(),
            seq,
            masked: false,
            duplicate: false,
        };
        lock(&self.posts).insert(
            (command.channel.clone(), seq),
            (command.sender.clone(), false),
        );
        if let Some(key) = key {
            lock(&self.keys).insert(key, receipt.clone());
        }
        Ok(receipt)
    }

    /// A change, checked as chat checks it: the target must be a post not
    /// deleted (a repeated delete excepted), only its author edits it, and
    /// its author or the owner deletes it.
    async fn answer_change(&self, command: ChangeCommand) -> Result<ChangeReceipt, ClientError> {
        let ChangeCommand {
            channel,
            sender,
            target,
            request,
            idempotency_key,
        } = command;
        self.check_member(&channel, &sender).await?;
        let key = idempotency_key
            .clone()
            .map(|k| (channel.clone(), sender.clone(), k));
        if let Some(key) = &key
            && let Some(original) = lock(&self.change_keys).get(key)
        {
            return Ok(ChangeReceipt {
                duplicate: true,
                ..original.clone()
            });
        }
        let not_found = || ClientError::new(ErrorKind::NotFound, "no such message");
        let (author, deleted) = lock(&self.posts)
            .get(&(channel.clone(), target))
            .cloned()
            .ok_or_else(not_found)?;
        let own = author == sender;
        let owner = lock(&self.owners).get(&channel) == Some(&sender);
        let forbidden = |why: &str| ClientError::new(ErrorKind::Forbidden, why);
        let (change, body) = match request {
            ChangeRequest::Delete if !own && !owner => {
                return Err(forbidden(
                    "only the author or an owner of the channel may delete a message",
                ));
            }
            ChangeRequest::Delete => (Change::Delete { target }, String::new()),
            _ if deleted => return Err(not_found()),
            ChangeRequest::Edit { .. } if !own => {
                return Err(forbidden("only its author may edit a message"));
            }
            ChangeRequest::Edit { body } => (Change::Edit { target }, body),
            ChangeRequest::React {
                emoji,
                remove: false,
            } => (Change::React { target, emoji }, String::new()),
            ChangeRequest::React {
                emoji,
                remove: true,
            } => (Change::Unreact { target, emoji }, String::new()),
        };
        if matches!(change, Change::Delete { .. })
            && let Some(post) = lock(&self.posts).get_mut(&(channel.clone(), target))
        {
            post.1 = true;
        }
        let seq = self.next_seq(&channel);
        let id = self.next_id();
        let receipt = ChangeReceipt {
            event: ChatMessage {
                id,
                channel,
                sender,
                seq,
                body,
                attachments: Vec::new(),
                created_at_ms: 1_800_000_000_000 + seq as i64,
                idempotency_key,
                change,
                reply_to: None,
                state: Default::default(),
            },
            masked: false,
            duplicate: false,
        };
        if let Some(key) = key {
            lock(&self.change_keys).insert(key, receipt.clone());
        }
        Ok(receipt)
    }
}

/// A fan-out feed: which channels are subscribed, their counters, and the
/// typing events published.
#[derive(Debug, Default)]
pub(crate) struct MemoryFeed {
    subscribed: Mutex<HashSet<ChannelId>>,
    subscribe_calls: Mutex<HashMap<ChannelId, usize>>,
    seqs: Mutex<HashMap<ChannelId, u64>>,
    failures: AtomicUsize,
    typing: Mutex<Vec<TypingEvent>>,
    /// Read receipts published, in order.
    read_events: Mutex<Vec<ReadEvent>>,
    typing_down: Mutex<bool>,
    /// Where published typing events of subscribed channels go, as Redis
    /// would deliver them back.
    typing_sink: Mutex<Option<mpsc::UnboundedSender<TypingEvent>>>,
}

impl MemoryFeed {
    /// Sets `channel`'s latest sequence number.
    pub(crate) fn set_seq(&self, channel: &ChannelId, seq: u64) {
        lock(&self.seqs).insert(channel.clone(), seq);
    }

    /// Whether the node is subscribed to `channel`.
    pub(crate) fn is_subscribed(&self, channel: &ChannelId) -> bool {
        lock(&self.subscribed).contains(channel)
    }

    /// How often `channel` was subscribed.
    pub(crate) fn subscribe_calls(&self, channel: &ChannelId) -> usize {
        lock(&self.subscribe_calls)
            .get(channel)
            .copied()
            .unwrap_or(0)
    }

    /// The connection dropped: every subscription is gone.
    pub(crate) fn drop_all(&self) {
        lock(&self.subscribed).clear();
    }

    /// The next `n` subscribes fail.
    pub(crate) fn fail_next_subscribes(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// The typing events published since the last call, oldest first.
    pub(crate) fn take_typing(&self) -> Vec<TypingEvent> {
        std::mem::take(&mut *lock(&self.typing))
    }

    /// Typing publishes fail while `down`.
    /// The read receipts published so far.
    pub(crate) fn read_events(&self) -> Vec<ReadEvent> {
        lock(&self.read_events).clone()
    }

    pub(crate) fn typing_down(&self, down: bool) {
        *lock(&self.typing_down) = down;
    }

    /// Typing events published to subscribed channels go to `sink` from now.
    pub(crate) fn deliver_typing_to(&self, sink: mpsc::UnboundedSender<TypingEvent>) {
        *lock(&self.typing_sink) = Some(sink);
    }
}

#[async_trait]
impl Feed for MemoryFeed {
    async fn subscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        *lock(&self.subscribe_calls)
            .entry(channel.clone())
            .or_insert(0) += 1;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(FeedError("connection refused".into()));
        }
        lock(&self.subscribed).insert(channel.clone());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &ChannelId) -> Result<(), FeedError> {
        lock(&self.subscribed).remove(channel);
        Ok(())
    }

    async fn current_seq(&self, channel: &ChannelId) -> Result<u64, FeedError> {
        Ok(lock(&self.seqs).get(channel).copied().unwrap_or(0))
    }

    async fn publish_read(&self, event: &ReadEvent) -> Result<(), FeedError> {
        if *lock(&self.typing_down) {
            return Err(FeedError("connection refused".into()));
        }
        lock(&self.read_events).push(event.clone());
        Ok(())
    }

    async fn publish_typing(&self, event: &TypingEvent) -> Result<(), FeedError> {
        if *lock(&self.typing_down) {
            return Err(FeedError("connection refused".into()));
        }
        lock(&self.typing).push(event.clone());
        if let Some(sink) = &*lock(&self.typing_sink)
            && self.is_subscribed(&event.channel)
        {
            let _ = sink.send(event.clone());
        }
        Ok(())
    }
}

/// Missed messages: per channel, a recent window, a store, and void
/// numbers.
#[derive(Debug, Default)]
pub(crate) struct MemoryGaps {
    recent: Mutex<HashMap<ChannelId, BTreeMap<u64, ChatMessage>>>,
    stored: Mutex<HashMap<ChannelId, BTreeMap<u64, ChatMessage>>>,
    voids: Mutex<HashMap<ChannelId, HashSet<u64>>>,
    page: Mutex<Option<usize>>,
    recent_down: Mutex<bool>,
    store_calls: AtomicUsize,
}

impl MemoryGaps {
    /// Puts `m` in its channel's recent window.
    pub(crate) fn recent(&self, m: ChatMessage) {
        lock(&self.recent)
            .entry(m.channel.clone())
            .or_default()
            .insert(m.seq, m);
    }
    /// Puts `m` in storage.
    pub(crate) fn store(&self, m: ChatMessage) {
        lock(&self.stored)
            .entry(m.channel.clone())
            .or_default()
            .insert(m.seq, m);
    }
    /// Marks `seq` of `channel` as never made durable.
    pub(crate) fn void(&self, channel: &ChannelId, seq: u64) {
        lock(&self.voids)
            .entry(channel.clone())
            .or_default()
            .insert(seq);
    }
    /// Storage answers at most `n` messages a page.
    pub(crate) fn page_size(&self, n: usize) {
        *lock(&self.page) = Some(n);
    }
    /// The page size set by [`Self::page_size`], if any.
    pub(crate) fn page(&self) -> Option<usize> {
        *lock(&self.page)
    }
    /// The recent window cannot be read.
    pub(crate) fn recent_down(&self) {
        *lock(&self.recent_down) = true;
    }
    /// How many storage pages were asked for.
    pub(crate) fn store_calls(&self) -> usize {
        self.store_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl GapSource for MemoryGaps {
    async fn recent(
        &self,
        channel: &ChannelId,
        after: u64,
        upto: u64,
    ) -> Result<(Vec<ChatMessage>, HashSet<u64>), ClientError> {
        if *lock(&self.recent_down) {
            return Err(ClientError::generic(ErrorKind::Unavailable));
        }
        let messages = match lock(&self.recent).get(channel) {
            Some(window) if after < upto => window
                .range(after + 1..=upto)
                .map(|(_, m)| m.clone())
                .collect(),
            _ => Vec::new(),
        };
        let voids = lock(&self.voids).get(channel).cloned().unwrap_or_default();
        Ok((messages, voids))
    }

    async fn stored_since(
        &self,
        channel: &ChannelId,
        _user: &UserId,
        after: u64,
    ) -> Result<(Vec<ChatMessage>, bool), ClientError> {
        self.store_calls.fetch_add(1, Ordering::SeqCst);
        let all: Vec<ChatMessage> = lock(&self.stored)
            .get(channel)
            .map(|stored| stored.range(after + 1..).map(|(_, m)| m.clone()).collect())
            .unwrap_or_default();
        match self.page() {
            Some(n) if all.len() > n => Ok((all[..n].to_vec(), true)),
            _ => Ok((all, false)),
        }
    }
}

/// What liveness heard, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LivenessEvent {
    /// A session opened.
    Open(String),
    /// A session was alive in these channels.
    Alive(Vec<String>),
    /// A session closed, leaving these channels.
    Close(Vec<String>),
}

/// Liveness that records what it is told.
#[derive(Debug, Default)]
pub(crate) struct MemoryLiveness {
    events: Mutex<Vec<LivenessEvent>>,
}

impl MemoryLiveness {
    /// Everything heard so far.
    pub(crate) fn events(&self) -> Vec<LivenessEvent> {
        lock(&self.events).clone()
    }
}

impl Liveness for MemoryLiveness {
    fn open(&self, user: &UserId) -> (String, CancellationToken) {
        lock(&self.events).push(LivenessEvent::Open(user.as_str().to_owned()));
        (format!("s-{}", user.as_str()), CancellationToken::new())
    }

    fn alive(&self, _id: &str, channels: Vec<String>) {
        lock(&self.events).push(LivenessEvent::Alive(channels));
    }

    fn close(&self, _id: &str, channels: Vec<String>) {
        lock(&self.events).push(LivenessEvent::Close(channels));
    }
}

/// Read positions in memory: unread counts are the messages `post`ed
/// after a user's position, for unit tests of the session rules.
#[derive(Debug, Default)]
pub(crate) struct MemoryReads {
    positions: Mutex<HashMap<(ChannelId, UserId), u64>>,
    posts: Mutex<HashMap<ChannelId, Vec<u64>>>,
    writes: AtomicUsize,
    down: Mutex<bool>,
}

impl MemoryReads {
    /// Records a post numbered `seq` in `channel`.
    pub(crate) fn post(&self, channel: &ChannelId, seq: u64) {
        lock(&self.posts)
            .entry(channel.clone())
            .or_default()
            .push(seq);
    }

    /// How many positions were written.
    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Makes every call fail, or work again.
    pub(crate) fn set_down(&self, down: bool) {
        *lock(&self.down) = down;
    }

    fn check(&self) -> Result<(), ClientError> {
        if *lock(&self.down) {
            return Err(ClientError::generic(ErrorKind::Unavailable));
        }
        Ok(())
    }
}

#[async_trait]
impl ReadState for MemoryReads {
    async fn mark_read(
        &self,
        channel: &ChannelId,
        user: &UserId,
        seq: u64,
    ) -> Result<u64, ClientError> {
        self.check()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut positions = lock(&self.positions);
        let held = positions
            .entry((channel.clone(), user.clone()))
            .or_default();
        *held = (*held).max(seq);
        Ok(*held)
    }

    async fn unread(
        &self,
        user: &UserId,
        channels: &[ChannelId],
    ) -> Result<Vec<ChannelUnread>, ClientError> {
        self.check()?;
        let positions = lock(&self.positions);
        let posts = lock(&self.posts);
        Ok(channels
            .iter()
            .map(|channel| {
                let read_seq = positions
                    .get(&(channel.clone(), user.clone()))
                    .copied()
                    .unwrap_or(0);
                let seqs = posts.get(channel).cloned().unwrap_or_default();
                ChannelUnread {
                    channel_id: channel.as_str().to_owned(),
                    read_seq,
                    last_seq: seqs.iter().copied().max().unwrap_or(0),
                    unread: seqs.iter().filter(|s| **s > read_seq).count() as u64,
                    mentions: 0,
                }
            })
            .collect())
    }
}
