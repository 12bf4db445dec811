//! The gateway: terminates client connections (Socket.IO over WebSocket and
//! REST), authenticates and validates, turns writes into commands for the
//! worker, and pushes fanned-out events to its local sockets. It keeps no
//! state that another gateway would need: any pod can serve any client.
#![forbid(unsafe_code)]

pub mod admission;
pub mod agents;
pub mod app;
pub mod attachments;
pub mod attachments_cleanup;
pub mod channel_locks;
pub mod config;
pub mod history;
pub mod http_caller;
pub mod http_edges;
pub mod http_error;
pub mod http_server;
pub mod hub;
pub mod metrics;
pub mod ops;
pub mod outbound;
pub mod presence;
pub mod queue_view;
pub mod rate_limit;
pub mod requests;
pub mod rest;
pub mod rest_notes;
pub mod routing;
pub mod sio;
pub mod socket;
pub mod state;
pub mod supervisor;
pub mod token_lifetime;
pub mod user_sockets;
pub mod web;

pub use app::{Gateway, GatewayError, Listeners};
pub use config::GatewayConfig;
