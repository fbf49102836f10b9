//! Calls spread over every instance of a service.
//!
//! One URL gets a plain lazy channel. Several get tonic's balanced channel
//! (tower's power-of-two-choices balancer over one connection per
//! instance), and a task per instance that checks its gRPC health every
//! second: an instance that fails two checks in a row is taken out of the
//! balancer and put back after its next good check. The last instance
//! standing is never taken out, so with every instance down a call fails
//! at once with `unavailable` instead of waiting for one to come back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_server::Tasks;
use tokio::sync::mpsc;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::instances;

/// How often each instance's health is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Failed checks in a row before an instance is taken out.
const FAILURES: u32 = 2;

/// An endpoint to `url` that connects on first use.
pub(crate) fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true))
}

/// A channel to the service at `endpoints` (one URL or several, see
/// [`crate::config::ServiceEndpoints`]); `service` names it in logs, and
/// the health checks of several instances run on `tasks`.
pub(crate) fn channel(
    service: &'static str,
    endpoints: &str,
    tasks: &Tasks,
) -> anyhow::Result<Channel> {
    let urls = instances(endpoints);
    if let [url] = urls.as_slice() {
        return Ok(endpoint(url)?.connect_lazy());
    }
    let parsed: Vec<(String, Endpoint)> = urls
        .iter()
        .map(|url| Ok(((*url).to_owned(), endpoint(url)?)))
        .collect::<anyhow::Result<_>>()?;
    let (channel, changes) = Channel::balance_channel::<String>(parsed.len().max(1) * 2);
    let members = Arc::new(Mutex::new(HashSet::new()));
    for (url, endpoint) in parsed {
        let watcher = Watcher {
            service,
            url,
            endpoint,
            changes: changes.clone(),
            members: members.clone(),
        };
        tasks.spawn("upstream-health", watcher.run(tasks.shutdown().clone()));
    }
    Ok(channel)
}

struct Watcher {
    service: &'static str,
    url: String,
    endpoint: Endpoint,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    // The instances of this service now in the balancer.
    members: Arc<Mutex<HashSet<String>>>,
}

impl Watcher {
    async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut health = HealthClient::new(self.endpoint.clone().connect_lazy());
        let mut failures = 0_u32;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            let serving = matches!(
                tokio::time::timeout(CHECK_EVERY, check).await,
                Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
            );
            failures = if serving {
                0
            } else {
                failures.saturating_add(1)
            };
            let member = self.is_member();
            if serving && !member {
                self.insert().await;
            } else if !serving && member && failures >= FAILURES {
                self.remove().await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_member(&self) -> bool {
        self.lock().contains(&self.url)
    }

    async fn insert(&self) {
        let change = Change::Insert(self.url.clone(), self.endpoint.clone());
        if self.changes.send(change).await.is_ok() {
            self.lock().insert(self.url.clone());
            tracing::info!(service = self.service, instance = %self.url, "instance healthy; calls go to it");
        }
    }

    async fn remove(&self) {
        {
            let mut members = self.lock();
            if members.len() <= 1 {
                return;
            }
            members.remove(&self.url);
        }
        metrics::counter!("chatmesh_gateway_upstream_ejections_total", "service" => self.service)
            .increment(1);
        tracing::warn!(service = self.service, instance = %self.url, "instance failed its health checks; no calls go to it");
        let _ = self.changes.send(Change::Remove(self.url.clone())).await;
    }
}
