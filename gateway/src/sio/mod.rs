//! The gateway's own Socket.IO v5 / Engine.IO v4 server, WebSocket transport
//! only: the packet decoder and the per-connection task. The frames it
//! writes come from `chat_shared::protocol::frames`, shared with the worker.

pub mod connection;
pub mod packet;
