//! Retries of idempotent calls, within a budget.
//!
//! Reads (history, presence, media downloads, membership, a stored
//! message) and sends that carry an idempotency key may run twice without
//! harm, so one that fails
//! in a way another instance may not (`unavailable`, `overloaded`, a
//! timeout, an instance dying mid-call) is tried again after a short
//! jittered backoff, on whichever instance the balancer picks. Each call
//! deposits into a tower [`TpsBudget`] and each retry withdraws from it, so
//! retries stay a bounded fraction of the calls (`upstream.retry_percent`
//! above a floor of `upstream.retry_min_per_second`) and an outage of the
//! whole service is not multiplied by the retries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use chatmesh_error::{ClientError, ErrorKind};
use tokio::sync::{Semaphore, SemaphorePermit};
use tower::retry::budget::{Budget as _, TpsBudget};

use crate::UpstreamSettings;

/// The retry policy and budget of one service's calls.
#[derive(Clone, Debug)]
pub struct Retries {
    service: &'static str,
    budget: Arc<TpsBudget>,
    backoff: ExponentialBuilder,
    timeout: Duration,
    /// Calls under way (`upstream.max_in_flight`); tokio's semaphore is
    /// fair, so waiting calls go in the order they came.
    in_flight: Arc<Semaphore>,
}

impl Retries {
    /// Retries of calls to `service` as `settings` say.
    pub fn new(service: &'static str, settings: &UpstreamSettings) -> Self {
        Self {
            service,
            budget: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                settings.retry_min_per_second,
                settings.retry_percent as f32 / 100.0,
            )),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(10))
                .with_max_delay(Duration::from_millis(200))
                .with_max_times(settings.retries as usize)
                .with_jitter(),
            timeout: settings.call_timeout,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
        }
    }

    /// A place among the calls under way, waited for until `deadline`.
    async fn turn(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<SemaphorePermit<'_>, ClientError> {
        match tokio::time::timeout_at(deadline, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a call that waited its whole
            // timeout for a place timed out like one that waited on the
            // service.
            _ => Err(ClientError::generic(ErrorKind::TimedOut)),
        }
    }

    /// Runs `attempt` until it succeeds, fails in a way another instance
    /// cannot fix, or the attempts, the budget or the timeout run out; the
    /// whole run takes at most the timeout. `attempt` must be safe to run
    /// more than once.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        self.budget.deposit();
        let service = self.service;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _turn = self.turn(deadline).await?;
        let once = || {
            let call = attempt();
            async move {
                match tokio::time::timeout_at(deadline, call).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(status)) => Err(Failure::from(status)),
                    Err(_) => Err(Failure {
                        error: ClientError::generic(ErrorKind::TimedOut),
                        elsewhere: false,
                    }),
                }
            }
        };
        once.retry(self.backoff)
            // A backoff never outlasts the call's deadline.
            .sleep(move |delay| {
                tokio::time::sleep_until((tokio::time::Instant::now() + delay).min(deadline))
            })
            .when(|f: &Failure| {
                f.elsewhere && tokio::time::Instant::now() < deadline && self.budget.withdraw()
            })
            .notify(|f, delay| {
                metrics::counter!("chatmesh_upstream_retries_total", "service" => service)
                    .increment(1);
                tracing::debug!(service, error = %f.error, retry_in = ?delay, "retrying a call");
            })
            .await
            .map_err(|f| f.error)
    }

    /// One attempt of `call`, never repeated, within the timeout: for
    /// calls that are not safe to run twice.
    pub async fn once<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _turn = self.turn(deadline).await?;
        match tokio::time::timeout_at(deadline, call).await {
            Ok(result) => result.map_err(|s| ClientError::from_status(&s)),
            Err(_) => Err(ClientError::generic(ErrorKind::TimedOut)),
        }
    }

    /// `call` on a clone of `client`, retried as [`Retries::run`] does:
    /// for reads through a generated client, e.g.
    /// `|mut c| async move { c.get_media(req).await }`.
    pub async fn call<C, T, F, Fut>(&self, client: &C, call: F) -> Result<T, ClientError>
    where
        C: Clone,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.run(|| {
            let attempt = call(client.clone());
            async move { attempt.await.map(tonic::Response::into_inner) }
        })
        .await
    }
}

/// A failed attempt, and whether another instance may not fail it.
#[derive(Debug)]
struct Failure {
    error: ClientError,
    elsewhere: bool,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let error = ClientError::from_status(&status);
        Self {
            elsewhere: worth_retrying(&status, &error),
            error,
        }
    }
}

/// Failures of the instance rather than of the request or of what every
/// instance shares: the connection failed or was cut (a status that
/// carries no chatmesh kind), or the instance refused the call because it
/// is full or draining. An instance that answers `unavailable` itself
/// (say, the broker is down) would be answered the same by every other
/// one, so that goes back to the client, which knows whether to wait.
fn worth_retrying(status: &tonic::Status, error: &ClientError) -> bool {
    use tonic_types::StatusExt as _;
    let from_chatmesh = status
        .get_error_details()
        .error_info()
        .is_some_and(|i| i.domain == chatmesh_error::DOMAIN);
    if from_chatmesh {
        matches!(error.kind, ErrorKind::Overloaded | ErrorKind::ShuttingDown)
    } else {
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn settings(retries: u32, min_per_second: u32, percent: u32) -> UpstreamSettings {
        UpstreamSettings {
            retries,
            retry_min_per_second: min_per_second,
            retry_percent: percent,
            ..UpstreamSettings::default()
        }
    }

    /// A connection refused or cut: no chatmesh kind in the status.
    fn transport() -> tonic::Status {
        tonic::Status::unavailable("connection refused")
    }

    fn kind(kind: ErrorKind) -> tonic::Status {
        ClientError::generic(kind).to_status()
    }

    async fn failing(
        retries: &Retries,
        fail: impl Fn() -> tonic::Status,
        succeed_on: u32,
    ) -> (u32, Result<u32, ClientError>) {
        let calls = AtomicU32::new(0);
        let result = retries
            .run(|| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let failure = (n < succeed_on).then(&fail);
                async move {
                    match failure {
                        Some(status) => Err(status),
                        None => Ok(n),
                    }
                }
            })
            .await;
        (calls.load(Ordering::SeqCst), result)
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_or_full_instance_costs_the_caller_nothing() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        assert_eq!(failing(&retries, transport, 2).await.1.unwrap(), 2);
        let overloaded = || kind(ErrorKind::Overloaded);
        assert_eq!(failing(&retries, overloaded, 3).await.1.unwrap(), 3);
        let draining = || kind(ErrorKind::ShuttingDown);
        assert_eq!(failing(&retries, draining, 2).await.1.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        let (calls, result) = failing(&retries, transport, 100).await;
        assert_eq!(calls, 3);
        assert_eq!(result.unwrap_err().kind, ErrorKind::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_every_instance_would_give_are_not_retried() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        for k in [
            // The instance itself says a shared dependency is down.
            ErrorKind::Unavailable,
            ErrorKind::TimedOut,
            ErrorKind::NotMember,
            ErrorKind::InvalidMessage,
            ErrorKind::RateLimited,
            ErrorKind::Internal,
        ] {
            let (calls, result) = failing(&retries, || kind(k), 2).await;
            assert_eq!(calls, 1, "{k}");
            assert_eq!(result.unwrap_err().kind, k);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_fit_in_the_timeout() {
        let retries = Retries::new(
            "test",
            &UpstreamSettings {
                call_timeout: Duration::from_secs(1),
                retries: 100,
                ..UpstreamSettings::default()
            },
        );
        let started = tokio::time::Instant::now();
        let (_, result) = failing(&retries, transport, u32::MAX).await;
        assert!(result.unwrap_err().retryable());
        assert!(
            started.elapsed() <= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // An attempt that hangs is cut at the timeout.
        let started = tokio::time::Instant::now();
        let hung: Result<(), ClientError> = retries
            .run(std::future::pending::<Result<(), tonic::Status>>)
            .await;
        assert_eq!(hung.unwrap_err().kind, ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_past_the_in_flight_bound_wait_their_turn_in_order() {
        let retries = Arc::new(Retries::new(
            "test",
            &UpstreamSettings {
                max_in_flight: 2,
                call_timeout: Duration::from_secs(1),
                ..UpstreamSettings::default()
            },
        ));
        let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..3_u32 {
            let (retries, started, release) = (retries.clone(), started.clone(), release.clone());
            calls.spawn(async move {
                retries
                    .run(|| {
                        let (started, release) = (started.clone(), release.clone());
                        async move {
                            let _ = started.send(n);
                            let _ = release.acquire().await.map(|p| p.forget());
                            Ok::<_, tonic::Status>(n)
                        }
                    })
                    .await
            });
            // Each call reaches the bound before the next is made.
            tokio::task::yield_now().await;
        }
        assert_eq!(started_rx.recv().await, Some(0));
        assert_eq!(started_rx.recv().await, Some(1));
        assert!(
            started_rx.try_recv().is_err(),
            "a third call passed the bound of 2"
        );
        release.add_permits(1);
        assert_eq!(
            started_rx.recv().await,
            Some(2),
            "the waiting call goes when one ends"
        );
        release.add_permits(2);
        while let Some(done) = calls.join_next().await {
            done.unwrap().unwrap();
        }
        // A call that cannot get a place within its timeout times out.
        let held: Vec<_> = (0..2)
            .map(|_| retries.in_flight.try_acquire().unwrap())
            .collect();
        let waited = retries.run(|| async { Ok::<_, tonic::Status>(()) }).await;
        assert_eq!(waited.unwrap_err().kind, ErrorKind::TimedOut);
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_during_an_outage() {
        // A floor of 1 retry a second and 10% of calls: 100 failing calls
        // in a row may retry about 10 + 10 times, not 200.
        let retries = Retries::new("test", &settings(2, 1, 10));
        let mut total = 0;
        for _ in 0..100 {
            total += failing(&retries, transport, u32::MAX).await.0;
        }
        let retried = total - 100;
        assert!(retried <= 30, "{retried} retries for 100 calls");
        assert!(retried >= 1, "no retry at all");
    }
}
