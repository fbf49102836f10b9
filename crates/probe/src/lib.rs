//! The one trait every infrastructure adapter implements so a service can
//! report whether its dependencies are reachable. It lives apart from the
//! server crate so that the Redis, Kafka and Postgres adapters depend on
//! nothing above them (no tonic, no axum).

use futures::future::BoxFuture;

/// The future a probe returns: `Err` carries a short, loggable reason.
pub type ProbeFuture<'a> = BoxFuture<'a, Result<(), String>>;

/// A check that one dependency is reachable and usable.
pub trait Probe: Send + Sync {
    /// Name of the dependency, e.g. `redis` or `shard:shard_0`.
    fn name(&self) -> &str;
    /// Runs the check once.
    fn check(&self) -> ProbeFuture<'_>;
}
