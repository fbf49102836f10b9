//! The consumer group's part in readiness: this instance is ready once it
//! has joined its group, and stops being ready when its consumer has been
//! fenced or the group has stalled without it (see [`crate::stall`]).

use std::sync::{Arc, Mutex, MutexGuard};

use chatmesh_kafka::GroupContext;
use chatmesh_server::{Probe, ProbeFuture};

/// What the lag watch found wrong with the group, shared with the probe.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupStatus {
    // A std mutex: tiny critical sections, never held across an await.
    inner: Arc<Mutex<Problems>>,
}

#[derive(Debug, Default)]
struct Problems {
    fatal: Option<String>,
    stalled: Option<String>,
}

impl GroupStatus {
    /// Records that the consumer failed for good, with why.
    pub(crate) fn set_fatal(&self, reason: String) {
        self.lock().fatal = Some(reason);
    }

    /// Records whether the group has stalled, with why.
    pub(crate) fn set_stalled(&self, reason: Option<String>) {
        self.lock().stalled = reason;
    }

    /// Why the group keeps this instance from being ready, if it does.
    pub(crate) fn problem(&self) -> Option<String> {
        let problems = self.lock();
        problems.fatal.clone().or_else(|| problems.stalled.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Problems> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The readiness probe of the group membership, `kafka:group`.
#[derive(Debug)]
pub(crate) struct GroupProbe {
    context: Arc<GroupContext>,
    status: GroupStatus,
}

impl GroupProbe {
    /// A probe of the member whose consumer has `context`.
    pub(crate) fn new(context: Arc<GroupContext>, status: GroupStatus) -> Self {
        Self { context, status }
    }

    fn check_now(&self) -> Result<(), String> {
        if let Some(problem) = self.status.problem() {
            return Err(problem);
        }
        if !self.context.joined() {
            return Err(format!(
                "joining consumer group {} as instance {}",
                self.context.group(),
                self.context.instance_id()
            ));
        }
        Ok(())
    }
}

impl Probe for GroupProbe {
    fn name(&self) -> &str {
        "kafka:group"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move { self.check_now() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chatmesh_config::KafkaConfig;
    use rdkafka::consumer::Consumer as _;
    use rdkafka::mocking::MockCluster;

    use super::*;

    #[tokio::test]
    async fn ready_once_joined_until_the_group_stalls_or_the_consumer_is_fenced() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("messages", 1, 1).unwrap();
        let config = KafkaConfig {
            brokers: vec![mock.bootstrap_servers()],
            topic: "messages".into(),
            properties: Default::default(),
        };
        let consumer = chatmesh_kafka::group_consumer(&config, "storage", "storage-0").unwrap();
        let status = GroupStatus::default();
        let probe = GroupProbe::new(consumer.context().clone(), status.clone());
        assert_eq!(
            probe.check().await,
            Err("joining consumer group storage as instance storage-0".into())
        );

        consumer.subscribe(&["messages"]).unwrap();
        let joining = async {
            while !consumer.context().joined() {
                tokio::select! {
                    _ = consumer.recv() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), joining)
            .await
            .expect("joined");
        assert_eq!(probe.check().await, Ok(()));

        status.set_stalled(Some("group stalled".into()));
        assert_eq!(probe.check().await, Err("group stalled".into()));
        status.set_stalled(None);
        assert_eq!(probe.check().await, Ok(()));

        status.set_fatal("fenced".into());
        status.set_stalled(Some("group stalled".into()));
        assert_eq!(
            probe.check().await,
            Err("fenced".into()),
            "fencing comes first"
        );
    }
}
