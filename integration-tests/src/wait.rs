//! Waiting on readiness instead of sleeping.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 50 ms until it returns `Some`, or fails after
/// `timeout` with `what` and the last error seen.
pub async fn until<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(err) => err.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
