//! How a caller spreads, checks, times and retries its calls.

use std::time::Duration;

use serde::Deserialize;

/// How calls to a service's instances are spread, checked, timed and
/// retried: the gateway's `upstream` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// How often each instance's gRPC health is checked.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Failed checks in a row after which an instance gets no calls, until
    /// a check succeeds again.
    pub health_failures: u32,
    /// How often a `dns://` name is resolved again.
    #[serde(with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// How long one attempt of a read (history, presence, media,
    /// membership) may take.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// How long one attempt of a send may take. It waits for the broker's
    /// acknowledgement, so it gets longer than a read.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Retries of a failed idempotent call, after the first attempt.
    pub retries: u32,
    /// Retries allowed as a percentage of calls, over the last 10 seconds.
    pub retry_percent: u32,
    /// Retries allowed per second whatever the percentage says.
    pub retry_min_per_second: u32,
    /// Calls of one kind (reads, sends) to the service that may be under
    /// way at once; more wait their turn, in order, within their timeout.
    /// A burst (thousands of clients resubscribing after a restart) then
    /// reaches the service as a steady stream instead of overflowing its
    /// `server.max_concurrent_requests` and coming back refused.
    pub max_in_flight: usize,
    /// The response time an instance is assumed to have before its first.
    #[serde(with = "humantime_serde")]
    pub default_rtt: Duration,
    /// How fast an instance's measured load forgets a slow response.
    #[serde(with = "humantime_serde")]
    pub load_decay: Duration,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(1),
            health_failures: 2,
            dns_refresh: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(15),
            retries: 2,
            retry_percent: 20,
            retry_min_per_second: 10,
            max_in_flight: 256,
            default_rtt: Duration::from_millis(30),
            load_decay: Duration::from_secs(10),
        }
    }
}
