//! Calls from one chatmesh service to another, spread over every instance
//! of the callee. Any service that calls another goes through here: the
//! gateway to chat, presence, storage and media, chat to storage.
//!
//! A service's instances are written in its caller's configuration as one
//! URL, a list of URLs, or a `dns://` name whose every address is an
//! instance ([`endpoints`]). [`balance::channel`] turns that into one
//! cloneable transport for the generated gRPC clients, balanced over the
//! healthy instances; [`retry::Retries`] retries idempotent calls on
//! another instance within a budget; [`health::GrpcHealthProbe`] reports
//! whether any instance is serving, as a readiness dependency.

pub mod balance;
mod discover;
pub mod endpoints;
pub mod health;
pub mod retry;
mod settings;

pub use settings::UpstreamSettings;
