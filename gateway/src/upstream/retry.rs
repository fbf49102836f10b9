//! Retries of the gateway's idempotent calls, within a budget.
//!
//! Reads (history, presence, media downloads, membership) and sends that
//! carry an idempotency key may run twice without harm, so one that fails
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
use tower::retry::budget::{Budget as _, TpsBudget};

use crate::config::UpstreamSettings;

/// The retry policy and budget of one service's calls.
#[derive(Clone, Debug)]
pub(crate) struct Retries {
    service: &'static str,
    budget: Arc<TpsBudget>,
    backoff: ExponentialBuilder,
    timeout: Duration,
}

impl Retries {
    /// Retries of calls to `service` as `settings` say.
    pub(crate) fn new(service: &'static str, settings: &UpstreamSettings) -> Self {
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
        }
    }

    /// Runs `attempt` until it succeeds, fails in a way retrying cannot
    /// help, or the attempts, the budget or the timeout run out. `attempt`
    /// must be safe to run more than once.
    pub(crate) async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.budget.deposit();
        let service = self.service;
        let retried = attempt
            .retry(self.backoff)
            .sleep(tokio::time::sleep)
            .when(|err: &ClientError| worth_retrying(err) && self.budget.withdraw())
            .notify(|err, delay| {
                metrics::counter!("chatmesh_gateway_upstream_retries_total", "service" => service)
                    .increment(1);
                tracing::debug!(service, error = %err, retry_in = ?delay, "retrying a call");
            });
        // Retries share the one attempt's time: a caller waits at most
        // the timeout, however many instances failed fast before.
        match tokio::time::timeout(self.timeout, retried).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::generic(ErrorKind::TimedOut)),
        }
    }

    /// `call` on a clone of `client`, retried as [`Retries::run`] does,
    /// each attempt within the attempt timeout: for reads through a
    /// generated client, e.g. `|mut c| async move { c.get_media(req).await }`.
    pub(crate) async fn call<C, T, F, Fut>(&self, client: &C, call: F) -> Result<T, ClientError>
    where
        C: Clone,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.run(|| {
            let attempt = call(client.clone());
            async move { self.attempt(attempt).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// One attempt of `call`, as a [`ClientError`] when it fails or takes
    /// longer than the attempt timeout.
    pub(crate) async fn attempt<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|s| ClientError::from_status(&s)),
            Err(_) => Err(ClientError::generic(ErrorKind::TimedOut)),
        }
    }
}

/// Failures another attempt, maybe on another instance, may get past.
/// `rate_limited` and `in_progress` are left to the client, which knows
/// whether to wait.
fn worth_retrying(err: &ClientError) -> bool {
    matches!(
        err.kind,
        ErrorKind::Unavailable
            | ErrorKind::Overloaded
            | ErrorKind::TimedOut
            | ErrorKind::ShuttingDown
    )
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

    async fn failing(retries: &Retries, kind: ErrorKind, succeed_on: u32) -> (u32, bool) {
        let calls = AtomicU32::new(0);
        let result = retries
            .run(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= succeed_on {
                    Ok(n)
                } else {
                    Err(ClientError::generic(kind))
                }
            })
            .await;
        (calls.load(Ordering::SeqCst), result.is_ok())
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_instance_costs_the_caller_nothing() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        assert_eq!(
            failing(&retries, ErrorKind::Unavailable, 2).await,
            (2, true)
        );
        assert_eq!(failing(&retries, ErrorKind::Overloaded, 3).await, (3, true));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        assert_eq!(
            failing(&retries, ErrorKind::Unavailable, 100).await,
            (3, false)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_answers_are_not_retried() {
        let retries = Retries::new("test", &settings(2, 10, 20));
        for kind in [
            ErrorKind::NotMember,
            ErrorKind::InvalidMessage,
            ErrorKind::RateLimited,
            ErrorKind::Internal,
        ] {
            assert_eq!(failing(&retries, kind, 2).await, (1, false), "{kind}");
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
        let result: Result<(), ClientError> = retries
            .run(|| async { Err(ClientError::generic(ErrorKind::Unavailable)) })
            .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::TimedOut);
        assert!(started.elapsed() <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_during_an_outage() {
        // A floor of 1 retry a second and 10% of calls: 100 failing calls
        // in a row may retry about 10 + 10 times, not 200.
        let retries = Retries::new("test", &settings(2, 1, 10));
        let mut total = 0;
        for _ in 0..100 {
            total += failing(&retries, ErrorKind::Unavailable, u32::MAX).await.0;
        }
        let retried = total - 100;
        assert!(retried <= 30, "{retried} retries for 100 calls");
        assert!(retried >= 1, "no retry at all");
    }
}
