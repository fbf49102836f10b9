use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use chatmesh_probe::{Probe, ProbeFuture};

/// The latest probe results, shared between gRPC health and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    // Tiny critical sections, never held across an await.
    inner: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

impl Readiness {
    /// True once every probe has passed on its latest run.
    pub fn is_ready(&self) -> bool {
        let map = self.lock();
        !map.is_empty() && map.values().all(Result::is_ok)
    }

    /// Each dependency and its latest result.
    pub fn snapshot(&self) -> BTreeMap<String, Result<(), String>> {
        self.lock().clone()
    }

    fn record(&self, name: &str, result: Result<(), String>) -> Option<Result<(), String>> {
        self.lock().insert(name.to_owned(), result)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Result<(), String>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs every probe each `interval` until `shutdown`, recording results in
/// `readiness` and, when a gRPC `reporter` is given, setting `services`
/// (and the server as a whole, `""`) to SERVING only while all of them
/// pass. A probe that takes longer than the interval counts as failed.
pub async fn watch_dependencies(
    probes: Vec<Arc<dyn Probe>>,
    readiness: Readiness,
    reporter: Option<HealthReporter>,
    services: Vec<&'static str>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut was_ready = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let results = futures::future::join_all(probes.iter().map(|probe| async {
            let outcome = match tokio::time::timeout(interval, probe.check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {interval:?}")),
            };
            (probe.name().to_owned(), outcome)
        }))
        .await;
        for (name, outcome) in results {
            let previous = readiness.record(&name, outcome.clone());
            match (&outcome, previous) {
                (Err(reason), Some(Ok(())) | None) => {
                    tracing::warn!(dependency = %name, reason = %reason, "dependency unreachable")
                }
                (Ok(()), Some(Err(_))) => {
                    tracing::info!(dependency = %name, "dependency reachable again")
                }
                _ => {}
            }
        }
        let ready = readiness.is_ready();
        if was_ready != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_status(reporter.as_ref(), &services, status).await;
            tracing::info!(ready, "health status changed");
            was_ready = Some(ready);
        }
    }
    set_status(reporter.as_ref(), &services, ServingStatus::NotServing).await;
}

async fn set_status(
    reporter: Option<&HealthReporter>,
    services: &[&'static str],
    status: ServingStatus,
) {
    if let Some(reporter) = reporter {
        for service in services.iter().copied().chain([""]) {
            reporter.set_service_status(service, status).await;
        }
    }
}
