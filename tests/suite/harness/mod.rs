//! What the tests share, one file per concept:
//!
//! - [`server`]: the standalone chat in this process;
//! - [`processes`]: the `gateway` and `worker` binaries as child processes;
//! - [`backing`] and [`redis_admin`]: Redis and PostgreSQL of a test's own;
//! - [`tokens`]: tokens as the identity provider issues them;
//! - [`http`]: the REST API and raw HTTP;
//! - [`sio_client`]: the Socket.IO client, frame by frame or with many
//!   sends in flight;
//! - [`chat_client`]: clients over it that reconnect and resend across a
//!   drain;
//! - [`eventually`]: waiting, bounded, for a condition to hold;
//! - [`traffic`]: a steady stream of conversations and its delivery check;
//! - [`metrics`]: reading the Prometheus text.
//!
//! Every test runs in isolation from any other running at the same time:
//! free ports, its own data directory or key prefix and database.

use std::time::Duration;

pub mod backing;
pub mod chat_client;
pub mod eventually;
pub mod http;
pub mod metrics;
pub mod processes;
pub mod redis_admin;
pub mod server;
pub mod sio_client;
pub mod tokens;
pub mod traffic;

/// The default bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(10);
