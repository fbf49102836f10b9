//! Classic (unsharded) pub/sub on plain node connections that follow the
//! cluster's topology.
//!
//! Keyspace events are published only by the node that holds the key, so a
//! listener for them needs a subscription on every master, and a new one
//! whenever a master appears. A broadcast channel such as `HEARTBEAT`, on the
//! other hand, reaches every node, so one subscription on any master is
//! enough; it moves to another master when its node goes away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chatmesh_probe::{Probe, ProbeFuture};

use futures::StreamExt as _;
use redis::RedisError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Cluster;

/// Which nodes a [`Subscriber`] listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every master: for events each node publishes about its own keys.
    EveryMaster,
    /// One master at a time: for messages Redis Cluster broadcasts to all
    /// nodes.
    AnyMaster,
}

/// Subscribes one classic pub/sub channel on the nodes `scope` names and
/// keeps doing so across node failures and topology changes.
#[derive(Debug, Clone)]
pub struct Subscriber {
    cluster: Cluster,
    channel: String,
    scope: Scope,
    /// How often the topology is reread.
    refresh: Duration,
    state: Arc<State>,
}

/// Live subscriptions against the nodes wanted.
#[derive(Debug, Default)]
struct State {
    subscribed: AtomicUsize,
    wanted: AtomicUsize,
    /// Subscriptions made so far, counting every resubscription.
    made: AtomicU64,
}

impl Subscriber {
    /// A subscriber for `channel`, rereading the topology every `refresh`.
    pub fn new(cluster: Cluster, channel: impl Into<String>, scope: Scope) -> Self {
        Self {
            cluster,
            channel: channel.into(),
            scope,
            refresh: Duration::from_secs(5),
            state: Arc::default(),
        }
    }

    /// A readiness probe that passes while every wanted node is subscribed.
    pub fn probe(&self, name: impl Into<String>) -> SubscriberProbe {
        SubscriberProbe {
            name: name.into(),
            channel: self.channel.clone(),
            state: self.state.clone(),
        }
    }

    /// Rereads the topology this often (default 5 s). A lost node
    /// connection is replaced sooner, as soon as it ends.
    #[must_use]
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// Runs until `shutdown`, sending every message's payload to `tx`. The
    /// payloads of one node arrive in order; there is no order across nodes.
    pub async fn run(self, tx: mpsc::Sender<Vec<u8>>, shutdown: CancellationToken) {
        let mut running: HashMap<String, CancellationToken> = HashMap::new();
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<String>();
        let mut tick = tokio::time::interval(self.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Rotates the node used for `AnyMaster` after each failure there.
        let mut pick = 0usize;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(addr) = ended_rx.recv() => {
                    running.remove(&addr);
                    pick = pick.wrapping_add(1);
                    // A node that refuses connections is retried at this pace.
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                () = shutdown.cancelled() => break,
            }
            let masters = match self.masters().await {
                Ok(m) if !m.is_empty() => m,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(channel = %self.channel, error = %err, "cannot read the cluster topology");
                    continue;
                }
            };
            let wanted: HashSet<String> = match self.scope {
                Scope::EveryMaster => masters.into_iter().collect(),
                Scope::AnyMaster => {
                    // Keep a working subscription where it is.
                    match running.keys().find(|a| masters.contains(a)) {
                        Some(current) => std::iter::once(current.clone()).collect(),
                        None => std::iter::once(masters[pick % masters.len()].clone()).collect(),
                    }
                }
            };
            self.state.wanted.store(wanted.len(), Ordering::Relaxed);
            running.retain(|addr, token| {
                let keep = wanted.contains(addr);
                if !keep {
                    tracing::info!(channel = %self.channel, node = %addr, "node left the topology; unsubscribing");
                    token.cancel();
                }
                keep
            });
            for addr in wanted {
                if running.contains_key(&addr) {
                    continue;
                }
                let token = shutdown.child_token();
                running.insert(addr.clone(), token.clone());
                let this = self.clone();
                let (tx, ended) = (tx.clone(), ended_tx.clone());
                tokio::spawn(async move {
                    match this.listen(&addr, tx, token.clone()).await {
                        Ok(()) if token.is_cancelled() => return,
                        Ok(()) => {
                            tracing::warn!(channel = %this.channel, node = %addr, "subscription connection closed; resubscribing")
                        }
                        Err(err) => {
                            tracing::warn!(channel = %this.channel, node = %addr, error = %err, "subscription failed; retrying")
                        }
                    }
                    let _ = ended.send(addr);
                });
            }
        }
        for token in running.values() {
            token.cancel();
        }
    }

    async fn masters(&self) -> Result<Vec<String>, RedisError> {
        Ok(self
            .cluster
            .topology()
            .await?
            .into_iter()
            .map(|m| m.addr)
            .collect())
    }

    /// Listens on one node until its connection ends or `token` fires.
    async fn listen(
        &self,
        addr: &str,
        tx: mpsc::Sender<Vec<u8>>,
        token: CancellationToken,
    ) -> Result<(), RedisError> {
        let client = redis::Client::open(self.cluster.node_url(addr))?;
        let connect = tokio::time::timeout(self.cluster.connect_timeout(), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, RedisError>(pubsub)
        });
        let mut pubsub = tokio::select! {
            r = connect => r.map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??,
            () = token.cancelled() => return Ok(()),
        };
        if self.channel.starts_with("__keyevent@") {
            self.check_notifications(&client, addr).await;
        }
        tracing::debug!(channel = %self.channel, node = %addr, "subscribed");
        let gauge =
            metrics::gauge!("chatmesh_redis_subscriptions", "channel" => self.channel.clone());
        gauge.increment(1.0);
        self.state.made.fetch_add(1, Ordering::SeqCst);
        self.state.subscribed.fetch_add(1, Ordering::SeqCst);
        let mut stream = pubsub.on_message();
        let result = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if tx.send(msg.get_payload_bytes().to_vec()).await.is_err() {
                            break Ok(());
                        }
                    }
                    None => break Ok(()),
                },
                () = token.cancelled() => break Ok(()),
            }
        };
        gauge.decrement(1.0);
        self.state.subscribed.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Warns when a node is not configured to publish the events listened
    /// for; the listener cannot fix that itself on managed Redis.
    async fn check_notifications(&self, client: &redis::Client, addr: &str) {
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut conn)
            .await;
        if let Ok(reply) = reply
            && let Some(flags) = reply.get(1)
            && !(flags.contains('E') && (flags.contains('x') || flags.contains('A')))
        {
            tracing::warn!(
                node = %addr,
                flags = %flags,
                "notify-keyspace-events lacks `Ex`: expiry events will not arrive and only the sweep will close expired sessions"
            );
        }
    }
}

/// Readiness of a [`Subscriber`]: every wanted node subscribed.
#[derive(Debug, Clone)]
pub struct SubscriberProbe {
    name: String,
    channel: String,
    state: Arc<State>,
}

impl SubscriberProbe {
    /// Whether every wanted node is subscribed right now.
    pub fn is_subscribed(&self) -> bool {
        let wanted = self.state.wanted.load(Ordering::SeqCst);
        wanted > 0 && self.state.subscribed.load(Ordering::SeqCst) >= wanted
    }

    /// Subscriptions made so far: it changes whenever one is made again,
    /// so a reader can tell that messages may have been missed between
    /// two moments it saw [`Self::is_subscribed`].
    pub fn subscriptions_made(&self) -> u64 {
        self.state.made.load(Ordering::SeqCst)
    }
}

impl Probe for SubscriberProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ProbeFuture<'_> {
        let subscribed = self.state.subscribed.load(Ordering::Relaxed);
        let wanted = self.state.wanted.load(Ordering::Relaxed);
        Box::pin(async move {
            if wanted > 0 && subscribed >= wanted {
                Ok(())
            } else {
                Err(format!(
                    "subscribed to {} on {subscribed} of {wanted} nodes",
                    self.channel
                ))
            }
        })
    }
}
