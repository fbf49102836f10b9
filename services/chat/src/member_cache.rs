//! Send rights cached in the chat instance, so a steady stream of sends
//! asks the directory database nothing.
//!
//! Only rights are cached: "`user` may send to `channel`, under this
//! moderation policy". A refusal (no such channel, not a member) is never
//! cached, so a join or a new channel takes effect at once everywhere.
//! What can make a cached right wrong is a member leaving or being
//! removed, and every instance that changes a membership announces the
//! channel on a Redis broadcast channel; each instance drops what it holds
//! for that channel when the announcement arrives.
//!
//! The cache is used only while this instance's subscription to those
//! announcements is up. Each time it is made again (after a lost node
//! connection, say) everything cached is dropped, since announcements made
//! while it was down are lost. Entries also expire after `member_cache.ttl`
//! whatever happens, so a lost announcement costs at most that long.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatmesh_ids::{ChannelId, UserId};
use chatmesh_redis::{Cluster, Scope, Subscriber, SubscriberProbe};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ports::MemberDirectory;
use crate::{ChatError, Moderation};

/// The Redis broadcast channel memberships changes are announced on. A
/// classic (unsharded) channel: Redis Cluster carries it to every node.
pub const CHANGES_CHANNEL: &str = "cm:directory:member-changes";

/// Settings of the send-rights cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemberCacheConfig {
    /// How long a cached right lives at most; `"0s"` turns the cache off,
    /// so every send asks the directory.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Channels held at most (each with the members seen sending).
    pub channels: u64,
}

impl Default for MemberCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            channels: 100_000,
        }
    }
}

/// Whether change announcements are arriving, and which subscription
/// carries them.
pub trait ChangeFeed: Send + Sync {
    /// `Some(n)` while subscribed, `n` counting the subscriptions made so
    /// far; `None` while not.
    fn subscription(&self) -> Option<u64>;
}

impl ChangeFeed for SubscriberProbe {
    fn subscription(&self) -> Option<u64> {
        self.is_subscribed().then(|| self.subscriptions_made())
    }
}

/// The members of one channel known to hold the right to send.
#[derive(Debug)]
struct Rights {
    policy: Moderation,
    members: std::sync::RwLock<HashSet<UserId>>,
}

/// A [`MemberDirectory`] that answers repeated rights from memory.
pub struct MemberCache {
    inner: Arc<dyn MemberDirectory>,
    feed: Arc<dyn ChangeFeed>,
    channels: moka::sync::Cache<ChannelId, Arc<Rights>>,
    /// Bumped by every drop; a lookup that saw another value before it
    /// asked the directory does not cache the answer, which may predate
    /// the change that caused the drop.
    generation: AtomicU64,
    /// The subscription the cached entries were made under.
    subscription: AtomicU64,
    enabled: bool,
}

impl std::fmt::Debug for MemberCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCache")
            .field("channels", &self.channels.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemberCache {
    /// A cache in front of `inner`, used while `feed` is subscribed.
    pub fn new(
        inner: Arc<dyn MemberDirectory>,
        feed: Arc<dyn ChangeFeed>,
        config: &MemberCacheConfig,
    ) -> Self {
        let ttl = config.ttl.max(Duration::from_millis(1));
        Self {
            inner,
            feed,
            channels: moka::sync::Cache::builder()
                .max_capacity(config.channels)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            subscription: AtomicU64::new(0),
            enabled: !config.ttl.is_zero(),
        }
    }

    /// Drops what is cached for `channel`.
    pub fn forget(&self, channel: &ChannelId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.channels.invalidate(channel);
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.channels.invalidate_all();
    }

    /// Whether the cache may answer now: on, and subscribed to the
    /// announcements. A new subscription drops everything first.
    fn usable(&self) -> bool {
        if !self.enabled {
            return false;
        }
        let Some(current) = self.feed.subscription() else {
            return false;
        };
        if self.subscription.swap(current, Ordering::SeqCst) != current {
            self.forget_all();
        }
        true
    }

    /// Runs until `shutdown`, dropping the channels announced on `rx`.
    pub async fn apply(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let payload = tokio::select! {
                p = rx.recv() => p,
                () = shutdown.cancelled() => return,
            };
            let Some(payload) = payload else {
                return;
            };
            match std::str::from_utf8(&payload)
                .ok()
                .and_then(|s| ChannelId::new(s).ok())
            {
                Some(channel) => self.forget(&channel),
                // Not ours to read; dropping everything is always safe.
                None => self.forget_all(),
            }
        }
    }
}

#[async_trait]
impl MemberDirectory for MemberCache {
    async fn policy_for_member(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> Result<Moderation, ChatError> {
        if !self.usable() {
            return self.inner.policy_for_member(channel, user).await;
        }
        if let Some(rights) = self.channels.get(channel)
            && rights
                .members
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(user)
        {
            metrics::counter!("chatmesh_chat_member_cache_total", "result" => "hit").increment(1);
            return Ok(rights.policy);
        }
        metrics::counter!("chatmesh_chat_member_cache_total", "result" => "miss").increment(1);
        let generation = self.generation.load(Ordering::SeqCst);
        let policy = self.inner.policy_for_member(channel, user).await?;
        if self.generation.load(Ordering::SeqCst) == generation {
            let rights = self.channels.get_with(channel.clone(), || {
                Arc::new(Rights {
                    policy,
                    members: Default::default(),
                })
            });
            rights
                .members
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.clone());
            // A drop that raced the insert may have missed it.
            if self.generation.load(Ordering::SeqCst) != generation {
                self.channels.invalidate(channel);
            }
        }
        Ok(policy)
    }

    async fn check_attachments(
        &self,
        channel: &ChannelId,
        ids: &[String],
    ) -> Result<(), ChatError> {
        self.inner.check_attachments(channel, ids).await
    }

    /// Not cached: asked only when a member deletes someone else's message.
    async fn is_owner(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
        self.inner.is_owner(channel, user).await
    }

    async fn moderation_allow(&self, channel: &ChannelId) -> Result<Vec<String>, ChatError> {
        self.inner.moderation_allow(channel).await
    }
}

/// Announces membership changes to every chat instance, this one first.
#[derive(Debug, Clone)]
pub struct Announcer {
    cache: Arc<MemberCache>,
    redis: Option<Cluster>,
}

impl Announcer {
    /// Announces on `redis`, or only to `cache` without it.
    pub fn new(cache: Arc<MemberCache>, redis: Option<Cluster>) -> Self {
        Self { cache, redis }
    }

    /// `channel` lost a member: drops it here, then tells the others. A
    /// failed announcement is logged; the others' entries then live out
    /// their time to live.
    pub async fn member_left(&self, channel: &ChannelId) {
        self.cache.forget(channel);
        let Some(redis) = &self.redis else {
            return;
        };
        let published: Result<(), redis::RedisError> = async {
            let mut conn = redis.conn().await?;
            redis::cmd("PUBLISH")
                .arg(CHANGES_CHANNEL)
                .arg(channel.as_str())
                .query_async::<i64>(&mut conn)
                .await?;
            Ok(())
        }
        .await;
        if let Err(err) = published {
            metrics::counter!("chatmesh_chat_member_changes_unannounced_total").increment(1);
            tracing::warn!(channel = channel.as_str(), error = %err, "could not announce a membership change; other instances keep it for up to member_cache.ttl");
        }
    }
}

/// Subscribes to the announcements for `cache` until `shutdown`; returns
/// the subscription's readiness probe.
pub fn follow_changes(
    redis: Cluster,
    tasks: &chatmesh_server::Tasks,
) -> (SubscriberProbe, mpsc::Receiver<Vec<u8>>) {
    let subscriber = Subscriber::new(redis, CHANGES_CHANNEL, Scope::AnyMaster);
    let probe = subscriber.probe("redis:member-changes");
    let (tx, rx) = mpsc::channel(1024);
    tasks.spawn(
        "member-changes",
        subscriber.run(tx, tasks.shutdown().clone()),
    );
    (probe, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryDirectory;
    use std::sync::atomic::AtomicUsize;

    /// Counts the directory's lookups, and can drop a channel from a
    /// cache while one is under way.
    #[derive(Default)]
    struct Counted {
        dir: MemoryDirectory,
        lookups: AtomicUsize,
        drop_during: std::sync::Mutex<Option<Arc<MemberCache>>>,
    }

    #[async_trait]
    impl MemberDirectory for Counted {
        async fn policy_for_member(
            &self,
            channel: &ChannelId,
            user: &UserId,
        ) -> Result<Moderation, ChatError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let answer = self.dir.policy_for_member(channel, user).await;
            if let Some(cache) = self.drop_during.lock().unwrap().take() {
                cache.forget(channel);
            }
            answer
        }
        async fn check_attachments(
            &self,
            channel: &ChannelId,
            ids: &[String],
        ) -> Result<(), ChatError> {
            self.dir.check_attachments(channel, ids).await
        }
        async fn is_owner(&self, channel: &ChannelId, user: &UserId) -> Result<bool, ChatError> {
            self.dir.is_owner(channel, user).await
        }
    }

    /// A feed whose state the test sets.
    #[derive(Default)]
    struct Feed(std::sync::Mutex<Option<u64>>);

    impl ChangeFeed for Feed {
        fn subscription(&self) -> Option<u64> {
            *self.0.lock().unwrap()
        }
    }

    fn setup(ttl: Duration) -> (Arc<Counted>, Arc<Feed>, MemberCache, ChannelId, UserId) {
        let dir = Arc::new(Counted::default());
        let feed = Arc::new(Feed(std::sync::Mutex::new(Some(1))));
        let channel = ChannelId::new("room").unwrap();
        let user = UserId::new("ann").unwrap();
        dir.dir.create_channel(&channel, &user, Moderation::Mask);
        let cache = MemberCache::new(
            dir.clone(),
            feed.clone(),
            &MemberCacheConfig { ttl, channels: 100 },
        );
        (dir, feed, cache, channel, user)
    }

    fn lookups(dir: &Counted) -> usize {
        dir.lookups.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn repeated_rights_ask_the_directory_once() {
        let (dir, _, cache, channel, user) = setup(Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(
                cache.policy_for_member(&channel, &user).await.unwrap(),
                Moderation::Mask
            );
        }
        assert_eq!(lookups(&dir), 1);
    }

    #[tokio::test]
    async fn refusals_are_not_cached_so_a_join_counts_at_once() {
        let (dir, _, cache, channel, _) = setup(Duration::from_secs(60));
        let bob = UserId::new("bob").unwrap();
        assert!(matches!(
            cache.policy_for_member(&channel, &bob).await,
            Err(ChatError::NotMember)
        ));
        dir.dir.join(&channel, &bob);
        assert_eq!(
            cache.policy_for_member(&channel, &bob).await.unwrap(),
            Moderation::Mask
        );
        let nowhere = ChannelId::new("nowhere").unwrap();
        for _ in 0..2 {
            assert!(matches!(
                cache.policy_for_member(&nowhere, &bob).await,
                Err(ChatError::ChannelNotFound)
            ));
        }
        assert_eq!(lookups(&dir), 4);
    }

    #[tokio::test]
    async fn an_announced_leave_is_seen_by_the_next_send() {
        let (dir, _, cache, channel, user) = setup(Duration::from_secs(60));
        let cache = Arc::new(cache);
        cache.policy_for_member(&channel, &user).await.unwrap();
        dir.dir.leave(&channel, &user);
        // Still cached until the announcement arrives.
        assert!(cache.policy_for_member(&channel, &user).await.is_ok());
        let (tx, rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let applying = tokio::spawn(cache.clone().apply(rx, shutdown.clone()));
        tx.send(b"room".to_vec()).await.unwrap();
        drop(tx);
        applying.await.unwrap();
        assert!(matches!(
            cache.policy_for_member(&channel, &user).await,
            Err(ChatError::NotMember)
        ));
    }

    #[tokio::test]
    async fn without_the_feed_every_send_asks_and_a_new_subscription_starts_empty() {
        let (dir, feed, cache, channel, user) = setup(Duration::from_secs(60));
        cache.policy_for_member(&channel, &user).await.unwrap();
        *feed.0.lock().unwrap() = None;
        cache.policy_for_member(&channel, &user).await.unwrap();
        cache.policy_for_member(&channel, &user).await.unwrap();
        assert_eq!(
            lookups(&dir),
            3,
            "no answer from the cache while unsubscribed"
        );
        // The member left while the feed was down; its announcement is lost.
        dir.dir.leave(&channel, &user);
        *feed.0.lock().unwrap() = Some(2);
        assert!(matches!(
            cache.policy_for_member(&channel, &user).await,
            Err(ChatError::NotMember)
        ));
    }

    #[tokio::test]
    async fn a_zero_ttl_turns_the_cache_off() {
        let (dir, _, cache, channel, user) = setup(Duration::ZERO);
        for _ in 0..3 {
            cache.policy_for_member(&channel, &user).await.unwrap();
        }
        assert_eq!(lookups(&dir), 3);
    }

    #[tokio::test]
    async fn an_answer_that_raced_a_drop_is_not_kept() {
        let (dir, _, cache, channel, user) = setup(Duration::from_secs(60));
        let cache = Arc::new(cache);
        // The channel is dropped after the directory answered and before
        // the answer is cached: it may predate the change, so it is
        // returned but not kept.
        *dir.drop_during.lock().unwrap() = Some(cache.clone());
        cache.policy_for_member(&channel, &user).await.unwrap();
        cache.policy_for_member(&channel, &user).await.unwrap();
        assert_eq!(lookups(&dir), 2, "the raced answer was cached");
        cache.policy_for_member(&channel, &user).await.unwrap();
        assert_eq!(lookups(&dir), 2, "a clean answer is cached");
    }
}
