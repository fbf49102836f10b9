//! A static member of a consumer group: it joins under a stable instance
//! ID, so a restarted process takes its own place back instead of joining
//! as a stranger next to its dead predecessor, and it records what it has
//! seen of the group (its assignment, whether it has joined) for logs and
//! readiness.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chatmesh_config::KafkaConfig;
use rdkafka::consumer::{
    BaseConsumer, Consumer as _, ConsumerContext, Rebalance, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::Notify;

/// A group consumer whose context tracks its membership.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// How long the broker keeps a static member that stopped heartbeating,
/// librdkafka's default, which its documentation advises for static
/// membership. A member restarted within it takes its partitions back
/// without a rebalance. One that does not come back holds them unread this
/// long: a clean stop therefore leaves the group ([`leave`]). It also
/// covers brokers that count a rejoined member's session from its
/// predecessor's last heartbeat. tansu 0.6 does, and expires the member on
/// its first heartbeat when the restart and the join took longer than the
/// timeout; should that process die before it rejoins, the group never
/// forms again.
pub const STATIC_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// How long [`leave`] keeps serving the consumer after its partitions are
/// revoked. librdkafka sends the LeaveGroup request once the revoked
/// partitions' fetchers have stopped, a millisecond or so later; closing
/// the consumer before that would skip it, since a static member never
/// leaves on close.
const LEAVE_SETTLE: Duration = Duration::from_millis(200);

/// The consumer's context: logs rebalances and client errors with the
/// group and instance ID, and remembers the current assignment. The
/// consumer shares it (`Consumer::context` is an `Arc`).
#[derive(Debug)]
pub struct GroupContext {
    group: String,
    instance_id: String,
    /// Set by the first assignment, even an empty one: the member has
    /// completed a join.
    joined: AtomicBool,
    // A std mutex: written by the rebalance callback, read briefly.
    assignment: Mutex<BTreeSet<(String, i32)>>,
    /// Woken after every rebalance.
    changed: Notify,
}

impl GroupContext {
    fn new(group: &str, instance_id: &str) -> Self {
        Self {
            group: group.to_owned(),
            instance_id: instance_id.to_owned(),
            joined: AtomicBool::new(false),
            assignment: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The static member's instance ID (`group.instance.id`).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// True once the member has completed a join and been given its
    /// partitions, possibly none.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// The partitions of `topic` this member holds, as of the last
    /// rebalance it served.
    pub fn assigned(&self, topic: &str) -> BTreeSet<i32> {
        self.assignment()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
            .collect()
    }

    fn assignment(&self) -> MutexGuard<'_, BTreeSet<(String, i32)>> {
        self.assignment.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Transient broker errors come here too. A fatal one (being
        // fenced) is also reported by whoever checks [`fatal`], with what
        // it means for the service.
        tracing::warn!(
            group = %self.group,
            instance_id = %self.instance_id,
            error = %error,
            reason,
            "kafka client error"
        );
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(
                    group = %self.group,
                    instance_id = %self.instance_id,
                    count = assigned.len(),
                    partitions = ?assigned.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
                    "partitions assigned"
                );
                let mut assignment = self.assignment();
                // The cooperative protocol assigns increments; the eager
                // one, the default, the whole assignment.
                if !matches!(
                    consumer.rebalance_protocol(),
                    RebalanceProtocol::Cooperative
                ) {
                    assignment.clear();
                }
                assignment.extend(assigned);
                drop(assignment);
                self.joined.store(true, Ordering::Release);
                self.changed.notify_waiters();
            }
            Rebalance::Revoke(list) => {
                let revoked = partitions(list);
                tracing::info!(
                    group = %self.group,
                    instance_id = %self.instance_id,
                    count = revoked.len(),
                    "partitions revoked"
                );
                let mut assignment = self.assignment();
                for partition in &revoked {
                    assignment.remove(partition);
                }
                drop(assignment);
                self.changed.notify_waiters();
            }
            Rebalance::Error(err) => tracing::warn!(
                group = %self.group,
                instance_id = %self.instance_id,
                error = %err,
                "rebalance failed"
            ),
        }
    }
}

/// A static member of `group` (`group.instance.id` = `instance_id`, with
/// a session of [`STATIC_SESSION_TIMEOUT`]) that never commits on its own
/// and starts from the earliest offset when the group has none. Each live
/// process needs an instance ID of its own: the broker fences the older of
/// two members that share one.
pub fn group_consumer(
    config: &KafkaConfig,
    group: &str,
    instance_id: &str,
) -> Result<GroupConsumer, KafkaError> {
    let mut client = crate::consumer_settings(config, group);
    client.set("group.instance.id", instance_id).set(
        "session.timeout.ms",
        STATIC_SESSION_TIMEOUT.as_millis().to_string(),
    );
    let client = crate::with_overrides(client, config);
    // An operator's `group.instance.id` property wins; name that one.
    let instance_id = client.get("group.instance.id").unwrap_or(instance_id);
    let context = GroupContext::new(group, instance_id);
    client.create_with_context(context)
}

/// Why the consumer can no longer be used, if it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// True when another process joined with the same instance ID.
    pub fenced: bool,
    /// librdkafka's description.
    pub reason: String,
}

/// The consumer's fatal error, if it has one: after it, librdkafka stops
/// consuming for good. With static membership the usual one is being
/// fenced by a newer process with the same instance ID.
pub fn fatal(consumer: &GroupConsumer) -> Option<Fatal> {
    consumer.client().fatal_error().map(|(code, reason)| Fatal {
        fenced: code == RDKafkaErrorCode::FencedInstanceId,
        reason,
    })
}

/// Leaves the group: unsubscribes, serves the consumer until its partitions
/// are revoked (which waits for commits in flight), then a moment more, so
/// librdkafka sends the LeaveGroup request a static member otherwise skips
/// on close. The group rebalances at once instead of after the session
/// timeout. Gives up after `timeout`; returns whether the partitions were
/// revoked in time. Call it only once nothing else reads the consumer.
pub async fn leave(consumer: &GroupConsumer, timeout: Duration) -> bool {
    let context = consumer.context();
    if let Some(fatal) = fatal(consumer) {
        // Fenced: the member is someone else's now, it must not leave.
        tracing::warn!(group = %context.group, reason = %fatal.reason, "not leaving the group: the consumer failed");
        return false;
    }
    consumer.unsubscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let revoked = loop {
        let changed = context.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if context.assignment().is_empty() {
            break true;
        }
        // Receiving serves the rebalance; records of revoked partitions
        // are dropped unprocessed, for the next owner to read.
        tokio::select! {
            _ = consumer.recv() => {}
            () = changed => {}
            () = tokio::time::sleep_until(deadline) => break false,
        }
    };
    if revoked {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let settled = tokio::time::sleep(LEAVE_SETTLE.min(left));
        tokio::pin!(settled);
        loop {
            tokio::select! {
                _ = consumer.recv() => {}
                () = &mut settled => break,
            }
        }
    }
    tracing::info!(
        group = %context.group,
        instance_id = %context.instance_id,
        revoked,
        "left the consumer group"
    );
    revoked
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;

    const TOPIC: &str = "messages";
    /// Generous: the mock broker answers at once, but a join has rounds.
    const WAIT: Duration = Duration::from_secs(30);

    fn config(mock: &MockCluster<'_, impl ClientContext>) -> KafkaConfig {
        KafkaConfig {
            brokers: vec![mock.bootstrap_servers()],
            topic: TOPIC.into(),
            // Heartbeats often, so a heartbeat error comes soon.
            properties: [("heartbeat.interval.ms".into(), "100".into())].into(),
        }
    }

    /// Serves `consumer` until `done` holds, or fails after `WAIT`.
    async fn serve_until(consumer: &GroupConsumer, done: impl Fn() -> bool) {
        let serving = async {
            while !done() {
                tokio::select! {
                    _ = consumer.recv() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        };
        timeout(serving).await;
    }

    async fn timeout<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(WAIT, f).await.expect("timed out")
    }

    #[tokio::test]
    async fn a_member_tracks_its_assignment_and_leaves_when_asked() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic(TOPIC, 4, 1).unwrap();
        let consumer = group_consumer(&config(&mock), "group", "storage-0").unwrap();
        assert_eq!(consumer.context().instance_id(), "storage-0");
        assert!(!consumer.context().joined());
        consumer.subscribe(&[TOPIC]).unwrap();
        serve_until(&consumer, || consumer.context().joined()).await;
        assert_eq!(
            consumer.context().assigned(TOPIC),
            BTreeSet::from([0, 1, 2, 3])
        );
        assert!(fatal(&consumer).is_none());

        assert!(leave(&consumer, WAIT).await);
        assert!(consumer.context().assigned(TOPIC).is_empty());
    }

    #[tokio::test]
    async fn an_operators_instance_id_property_is_the_one_reported() {
        let mock = MockCluster::new(1).unwrap();
        let mut config = config(&mock);
        config
            .properties
            .insert("group.instance.id".into(), "from-properties".into());
        let consumer = group_consumer(&config, "group", "storage-0").unwrap();
        assert_eq!(consumer.context().instance_id(), "from-properties");
    }

    #[tokio::test]
    async fn a_fenced_member_reports_it_and_does_not_leave() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic(TOPIC, 1, 1).unwrap();
        let consumer = group_consumer(&config(&mock), "group", "storage-0").unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        serve_until(&consumer, || consumer.context().joined()).await;

        // What the broker answers a member once a newer process has
        // joined with the same instance ID.
        mock.request_errors(
            RDKafkaApiKey::Heartbeat,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID],
        );
        serve_until(&consumer, || fatal(&consumer).is_some()).await;
        let fatal = fatal(&consumer).unwrap();
        assert!(fatal.fenced, "{fatal:?}");
        assert!(!leave(&consumer, WAIT).await);
    }
}
