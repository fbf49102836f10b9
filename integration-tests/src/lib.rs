//! Test harness for chatmesh: the real infrastructure started by
//! `scripts/infra up`, and a sandbox that runs the whole mesh in-process on
//! ephemeral ports against it.

pub mod client;
pub mod fixtures;
pub mod infra;
pub mod mesh;
pub mod messages;
pub mod process;
pub mod proxy;
pub mod sandbox;
pub mod storage_process;
pub mod traffic;
pub mod wait;

pub use infra::Infra;
pub use sandbox::Sandbox;

/// Sends the services' logs to the test output, filtered by `RUST_LOG`
/// (default `warn`). Safe to call from every test.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
