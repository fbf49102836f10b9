//! The message-path benchmark's parts: the mesh under load, the clients
//! receiving, the senders and the mix of posts and changes they send, and
//! the report.

pub(crate) mod mesh;
pub(crate) mod mix;
pub(crate) mod receivers;
pub(crate) mod report;
pub(crate) mod senders;
