//! The public protocol of docs/protocol.md as Rust types: field names, casing and
//! null handling are exactly what clients see on the wire.

mod client;
pub mod frames;
mod objects;
mod server;

pub use client::*;
pub use objects::*;
pub use server::*;

/// The Socket.IO namespace every client connects to.
pub const NAMESPACE: &str = "/chat";

/// The pool of a session opened without one.
pub const DEFAULT_POOL: &str = "default";

/// Event names, client to server.
pub mod client_events {
    pub const JOIN_SESSION: &str = "join-session";
    pub const LEAVE_SESSION: &str = "leave-session";
    pub const SEND_MESSAGE: &str = "send-message";
    pub const TYPING: &str = "typing";
    pub const MARK_READ: &str = "mark-read";
    pub const REFRESH_TOKEN: &str = "refresh-token";
    pub const SET_STATUS: &str = "set-status";
    /// Reactions and delivery positions.
    pub const MARK_DELIVERED: &str = "mark-delivered";
    pub const REACT: &str = "react";
}

/// Event names, server to client.
pub mod server_events {
    pub const CONNECTED: &str = "connected";
    pub const SESSION_JOINED: &str = "session-joined";
    pub const NEW_MESSAGE: &str = "new-message";
    pub const USER_TYPING: &str = "user-typing";
    pub const MESSAGES_READ: &str = "messages-read";
    pub const SESSION_UPDATED: &str = "session-updated";
    pub const SESSION_CLOSED: &str = "session-closed";
    pub const NEW_PENDING_SESSION: &str = "new-pending-session";
    pub const STATS_UPDATE: &str = "stats-update";
    pub const ERROR: &str = "error";
    pub const TOKEN_EXPIRING: &str = "token-expiring";
    pub const AGENT_UPDATED: &str = "agent-updated";
    pub const QUEUE_POSITION: &str = "queue-position";
    pub const SESSION_EVENT: &str = "session-event";
    /// Reactions and delivery positions.
    pub const MESSAGES_DELIVERED: &str = "messages-delivered";
    pub const MESSAGE_REACTIONS: &str = "message-reactions";
    /// An internal note, to staff sockets joined to the session only.
    pub const NEW_NOTE: &str = "new-note";
}
