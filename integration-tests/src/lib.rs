//! Test harness for chatmesh: the real infrastructure started by
//! `scripts/infra up`, and a sandbox that runs the whole mesh in-process on
//! ephemeral ports against it.

pub mod client;
pub mod fixtures;
pub mod infra;
pub mod messages;
pub mod sandbox;
pub mod storage_process;
pub mod wait;

pub use infra::Infra;
pub use sandbox::Sandbox;
