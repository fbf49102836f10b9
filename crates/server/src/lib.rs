//! What every chatmesh service process shares: loading config and exiting
//! cleanly when it is wrong, serving gRPC with health and reflection, an
//! admin HTTP port, health driven by dependency probes, and graceful
//! shutdown on SIGTERM.

mod admin;
mod entry;
mod grpc;
mod layers;
mod probe;
mod shutdown;
mod tasks;

pub use admin::{admin_routes, serve_admin};
pub use entry::{ServiceConfig, run_main};
pub use grpc::{Listeners, serve_grpc};
pub use layers::{GrpcLayer, GrpcLimits, Guarded};
pub use probe::{Probe, ProbeFuture, Readiness, watch_dependencies};
pub use shutdown::shutdown_on_signal;
pub use tasks::Tasks;
